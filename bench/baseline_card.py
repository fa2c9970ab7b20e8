"""A checkpoint's benchmark score under rsft beside the same prompts decoded by transformers and graded by the same
grader: does rsft's engine, not its grader or prompts, move the score? (docs/baseline_smollm2.md)

  python eval.py --config=configs/smollm2_countdown.py --workdir=W --config.eval.checkpoints=0 \\
      --config.eval.benchmarks=ifeval --config.eval.limit=0
  python bench/baseline_card.py --workdir=W --benchmark=ifeval --step=0
  python bench/baseline_card.py --smoke      # a tiny random Llama and 8 IFEval prompts: the path, not the numbers

Reads what eval.py wrote for that step: the prompts (eval/prompts/<b>.jsonl), rsft's generations with their
decoding settings (eval/generations/step_<s>/<b>.jsonl and .meta.json: temperature, top-p, top-k, cap, stop ids)
and its grades. Renders each prompt with the same Renderer, decodes it with transformers.generate in static
left-padded batches under those settings (its own random stream: the two sample different tokens, so the scores
agree only within sampling noise), decodes the text the same way (special tokens skipped or kept as rsft did) and
grades it with rsft's grader. Prints both scores with 95% bootstrap intervals over items and the paired
difference's interval; writes W/eval/baseline_<b>_step_<s>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DATA = os.path.join(ROOT, "..", "shared", "benchmarks")


def _rows(path: str) -> list[dict]:
  from rsft.evals import jsonl

  if not os.path.exists(path):
    raise SystemExit(f"error: {path} is missing: run eval.py for this step and benchmark first (see --help)")
  return [row for _, row in jsonl.read(path)]


def transformers_responses(model_dir: str, prompts: list[list[int]], settings: dict, batch: int) -> tuple[list, float]:
  """(response texts in prompt order, seconds) from transformers.generate under rsft's decoding settings."""
  import torch
  import transformers

  from rsft.evals.requests import Renderer

  hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  renderer = Renderer(tokenizer)
  d, stops = settings["defaults"], settings["stop_token_ids"]
  sampling = dict(do_sample=True, temperature=d["temperature"], top_p=d["top_p"], top_k=d["top_k"] or 0)
  if d["temperature"] == 0:
    sampling = dict(do_sample=False)
  torch.manual_seed(settings["seed"])
  order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths share a batch, as rsft admits them
  texts: list[str | None] = [None] * len(prompts)
  start = time.perf_counter()
  for i in range(0, len(order), batch):
    rows = [prompts[j] for j in order[i : i + batch]]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), stops[0], dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(rows):
      ids[r, width - len(p) :], mask[r, width - len(p) :] = torch.tensor(p), 1
    with torch.no_grad():
      out = hf.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=settings["max_new_tokens"],
        eos_token_id=stops,
        pad_token_id=stops[0],
        **sampling,
      )[:, width:].tolist()
    for j, row in zip(order[i : i + batch], out):
      end = next((k for k, t in enumerate(row) if t in stops), len(row))
      texts[j] = renderer.decode(row[:end], settings["skip_special_tokens"])
  return texts, time.perf_counter() - start


def card(
  workdir: str, benchmark: str, step: int, data_dir: str, batch: int, limit: int = 0, protocol: str = "study"
) -> dict:
  from rsft.evals import benchmarks, grading, loaders, metrics
  from rsft.evals.requests import Renderer

  gen_path = os.path.join(workdir, "eval", "generations", f"step_{step}", f"{benchmark}.jsonl")
  generations = _rows(gen_path)
  with open(gen_path + ".meta.json") as f:
    settings = json.load(f)
  grades = {
    g["index"]: g["score"]
    for g in _rows(os.path.join(workdir, "eval", "grades", f"step_{step}", f"{benchmark}.jsonl"))
    if g["sample"] == 0
  }
  prompts = {
    r["index"] if "index" in r else i: r
    for i, r in enumerate(_rows(os.path.join(workdir, "eval", "prompts", f"{benchmark}.jsonl")))
  }
  bench = benchmarks.get(benchmark, protocol)
  items = loaders.load_items(bench, data_dir, len(prompts))
  indices = sorted(g["index"] for g in generations if g["sample"] == 0 and g["index"] in grades)
  full = dict(
    rsft_all=float(np.mean([grades[i] for i in indices])),
    rsft_all_ci=metrics.bootstrap_ci([grades[i] for i in indices]),
    items_all=len(indices),
  )
  indices = indices[:limit] if limit else indices
  import transformers

  renderer = Renderer(transformers.AutoTokenizer.from_pretrained(settings["model"]), settings["chat_template"])
  ids = [renderer.prompt(prompts[i], f"{benchmark} prompt {i}") for i in indices]
  for i in indices:
    if items[i].prompt != prompts[i]["prompt"]:
      raise SystemExit(f"error: {benchmark} item {i}: the data in {data_dir} is not what eval.py prompted with")
  texts, seconds = transformers_responses(settings["model"], ids, settings, batch)
  theirs = [g["score"] for g in grading.grade(bench, [items[i] for i in indices], texts)]
  ours = [grades[i] for i in indices]
  diff = np.asarray(ours) - np.asarray(theirs)
  chosen = set(indices)
  ours_len = np.mean([g["completion_tokens"] for g in generations if g["sample"] == 0 and g["index"] in chosen])
  return dict(
    benchmark=benchmark,
    step=step,
    items=len(indices),
    model=settings["model"],
    **full,
    decoding=dict(settings["defaults"], max_new_tokens=settings["max_new_tokens"], seed=settings["seed"]),
    rsft=float(np.mean(ours)),
    rsft_ci=metrics.bootstrap_ci(ours),
    transformers=float(np.mean(theirs)),
    transformers_ci=metrics.bootstrap_ci(theirs),
    difference=float(diff.mean()),
    difference_ci=metrics.bootstrap_ci(diff),
    rsft_mean_tokens=float(ours_len),
    transformers_seconds=seconds,
  )


def smoke() -> None:
  """A tiny random Llama through eval.py (generate + grade) and then this card, in a temporary workdir."""
  from rsft.data import tiny_tokenizer
  from rsft.tools import tiny_models

  tmp = tempfile.mkdtemp()
  model = os.path.join(tmp, "model")
  tiny_models.build("llama", model)
  with open(os.path.join(BENCH_DATA, "ifeval.jsonl")) as f:
    texts = [json.loads(line)["prompt"] for line, _ in zip(f, range(64))]
  tiny_tokenizer.train(texts, tiny_models.VOCAB, model)  # with its chat template, into the model dir
  workdir = os.path.join(tmp, "run")
  subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "eval.py"),
      "--config=" + os.path.join(ROOT, "configs/base.py"),
      f"--workdir={workdir}",
      f"--config.model.path={model}",
      "--config.eval.benchmarks=ifeval",
      "--config.eval.limit=8",
      "--config.eval.max_new_tokens=8",
      f"--config.eval.data_dir={BENCH_DATA}",
      "--config.eval.checkpoints=0",
      "--config.model.dtype=float32",
      "--config.sample.max_num_seqs=8",
      "--config.mesh.fsdp=1",
      "--config.mesh.data=-1",
    ],
    check=True,
  )
  report(card(workdir, "ifeval", 0, BENCH_DATA, batch=8))


def report(r: dict) -> None:
  print(f"{r['benchmark']} step {r['step']}, {r['items']} items, {r['decoding']}:")
  if r["items_all"] != r["items"]:
    print(
      f"  rsft on all {r['items_all']} items: {r['rsft_all']:.3f} [{r['rsft_all_ci'][0]:.3f}, "
      f"{r['rsft_all_ci'][1]:.3f}]; the comparison below is on the first {r['items']}"
    )
  print(
    f"  rsft         {r['rsft']:.3f} [{r['rsft_ci'][0]:.3f}, {r['rsft_ci'][1]:.3f}] "
    f"(mean {r['rsft_mean_tokens']:.0f} tokens)"
  )
  print(f"  transformers {r['transformers']:.3f} [{r['transformers_ci'][0]:.3f}, {r['transformers_ci'][1]:.3f}]")
  print(
    f"  rsft - transformers {r['difference']:+.3f} [{r['difference_ci'][0]:+.3f}, {r['difference_ci'][1]:+.3f}]"
    f" (paired over items; an interval holding 0 = equal within sampling noise)"
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir")
  parser.add_argument("--benchmark", default="ifeval")
  parser.add_argument("--step", type=int, default=0)
  parser.add_argument("--data_dir", default="", help="eval.data_dir of the eval.py run ('' = the user cache)")
  parser.add_argument("--batch", type=int, default=32, help="transformers.generate's static batch")
  parser.add_argument("--limit", type=int, default=0, help="compare on the first N items only (0 = all)")
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    return smoke()
  if not args.workdir:
    parser.error("--workdir is required (or --smoke)")
  from rsft.evals import loaders

  r = card(args.workdir, args.benchmark, args.step, args.data_dir or loaders.default_dir(), args.batch, args.limit)
  report(r)
  out = os.path.join(args.workdir, "eval", f"baseline_{args.benchmark}_step_{args.step}.json")
  with open(out, "w") as f:
    json.dump(r, f, indent=1)
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
