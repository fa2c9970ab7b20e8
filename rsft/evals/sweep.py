"""The checkpoint sweep (eval.mode=sweep) and grading of outside responses (eval.mode=grade).

For each selected checkpoint (step 0 = model.path, the base model) and benchmark: the items' prompts go to
WORKDIR/eval/prompts/<benchmark>.jsonl, completions to eval/generations/step_<s>/<benchmark>.jsonl (the
resumable generate mode), grades to eval/grades/step_<s>/<benchmark>.jsonl (resumable too). A killed sweep
rerun with the same command redoes nothing already written, and a model is only loaded when some of its
generations are missing. Results are recomputed from the grade files at the end: eval/results.jsonl (one row
per step x benchmark x metric, with a bootstrap interval over items) and eval/summary.{md,csv}.
"""

from __future__ import annotations

import collections
import csv
import gc
import json
import os
from typing import Any

import ml_collections
from absl import logging

from rsft import distributed
from rsft.evals import benchmarks, checkpoints, grading, jsonl, loaders, metrics, modes
from rsft.evals.benchmarks import Benchmark, Item
from rsft.evals.judges import Judges


def _steps(config: Any, workdir: str) -> list[tuple[int, str]]:
  """(step, model dir) to evaluate: step 0 is model.path (when set), then the selected checkpoints."""
  candidates = ([0] if config.model.path else []) + checkpoints.list_steps(workdir)
  if not candidates:
    raise ValueError(f"nothing to evaluate: {workdir}/checkpoints has no steps and model.path is not set.")
  wanted = checkpoints.select(config.eval.checkpoints, candidates)
  return [(s, config.model.path if s == 0 else checkpoints.step_dir(workdir, s)) for s in wanted]


def _decoding(config: Any, bench: Benchmark) -> ml_collections.ConfigDict:
  """The benchmark's decoding (paper.md §4) with the sweep-wide overrides eval.n / max_new_tokens / temperature /
  top_p / top_k."""
  s = config.sample
  return ml_collections.ConfigDict(dict(
      n=config.eval.n or bench.n, max_new_tokens=config.eval.max_new_tokens or bench.max_new_tokens,
      temperature=bench.temperature if config.eval.temperature < 0 else config.eval.temperature,
      top_p=bench.top_p if config.eval.top_p < 0 else config.eval.top_p,
      top_k=bench.top_k if config.eval.top_k < 0 else config.eval.top_k, seed=s.seed, batch_size=s.batch_size,
      top_k_cap=s.top_k_cap, chunk_steps=s.chunk_steps, prompt_buckets=tuple(s.prompt_buckets)))


def _write_prompts(path: str, items: list[Item]) -> None:
  rows = "".join(json.dumps({"id": it.id, "prompt": it.prompt}, ensure_ascii=False) + "\n" for it in items)
  if distributed.is_primary() and (not os.path.exists(path) or open(path, encoding="utf-8").read() != rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(rows)
    os.replace(path + ".tmp", path)


def _read(path: str) -> list[dict[str, Any]]:
  return [row for _, row in jsonl.read(path)] if os.path.exists(path) else []


def grade_generations(bench: Benchmark, items: list[Item], gen_path: str, grade_path: str,
                      settings: dict[str, Any], judges: Any = None) -> None:
  generations = _read(gen_path)
  with jsonl.ResumableWriter(grade_path, lambda r: (r["index"], r["sample"]), settings) as writer:
    todo = [g for g in generations if (g["index"], g["sample"]) not in writer.done]
    if not todo:
      return
    grades = grading.grade(bench, [items[g["index"]] for g in todo], [g["completion"] for g in todo], judges=judges)
    writer.write([dict(index=g["index"], sample=g["sample"], id=items[g["index"]].id, **gr,
                       tokens=g["completion_tokens"], truncated=g["finish_reason"] == "length")
                  for g, gr in zip(todo, grades)])


def summarize(workdir: str, steps: list[int], benches: list[Benchmark], items: dict[str, list[Item]],
              n_by_bench: dict[str, int]) -> list[dict[str, Any]]:
  """results.jsonl rows from the grade files; per-category rows for benchmarks with categories."""
  rows = []
  for step in steps:
    for bench in benches:
      grades = _read(os.path.join(workdir, "eval", "grades", f"step_{step}", f"{bench.name}.jsonl"))
      per_item: dict[int, list[dict]] = collections.defaultdict(list)
      for g in grades:
        per_item[g["index"]].append(g)
      complete = {i: v for i, v in per_item.items() if len(v) == n_by_bench[bench.name]}
      if len(complete) < len(items[bench.name]):
        logging.warning("step %d %s: %d of %d items graded; results cover those only.", step, bench.name,
                        len(complete), len(items[bench.name]))
      for name, m in metrics.summarize(complete, ks=(1, 4, 8, 16)).items():
        rows.append(dict(step=step, benchmark=bench.name, domain=bench.domain, metric=name, **m))
      by_category = collections.defaultdict(dict)
      for i, v in complete.items():
        if items[bench.name][i].category:
          by_category[items[bench.name][i].category][i] = v
      for category, subset in sorted(by_category.items()):
        k = n_by_bench[bench.name]
        m = metrics.summarize(subset)[f"avg@{k}"]
        rows.append(dict(step=step, benchmark=bench.name, domain=bench.domain, metric=f"avg@{k}/{category}", **m))
  return rows


def write_tables(workdir: str, rows: list[dict[str, Any]], benches: list[Benchmark],
                 n_by_bench: dict[str, int]) -> None:
  if not distributed.is_primary():
    return
  out = os.path.join(workdir, "eval")
  with open(os.path.join(out, "results.jsonl"), "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  headline = {(r["step"], r["benchmark"]): r for r in rows if r["metric"] == f"avg@{n_by_bench[r['benchmark']]}"}
  steps = sorted({r["step"] for r in rows})
  names = [b.name for b in benches]
  header = ["step"] + [f"{b.name} (avg@{n_by_bench[b.name]})" for b in benches]
  table = [[str(s)] + [f"{100 * headline[(s, n)]['value']:.1f}" if (s, n) in headline else "" for n in names]
           for s in steps]
  with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
    csv.writer(f).writerows([header] + table)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                          for r in table]
  ci = ["", "Scores x100; 95% bootstrap intervals over items are in results.jsonl (ci_low, ci_high)."]
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("\n".join(lines + ci) + "\n")


def _check_judges(eval_cfg: Any, benches: list[Benchmark]) -> None:
  """Fail before generating anything when a model-graded benchmark has no grader configured."""
  needs = {"reward": ("reward_model",), "truthfulqa": ("truth_judge", "info_judge"), "harm_judge": ("safety_judge",)}
  for b in benches:
    missing = [k for k in needs.get(b.grader, ()) if not eval_cfg[k]]
    if missing:
      raise ValueError(f"benchmark {b.name} is graded by a model: set " +
                       ", ".join(f"--config.eval.{k}" for k in missing))


def run_sweep(config: Any, workdir: str, load_model, renderer_for) -> list[dict[str, Any]]:
  benches = [benchmarks.get(name) for name in config.eval.benchmarks]
  steps = _steps(config, workdir)
  files = loaders.parse_files(config.eval.files)
  for name in files:
    benchmarks.get(name)  # a typo in eval.files is an error naming the closest benchmark
  items = {b.name: loaders.load_items(b, config.eval.data_dir, config.eval.limit, files.get(b.name)) for b in benches}
  decoding = {b.name: _decoding(config, b) for b in benches}
  prompt_files = {}
  for b in benches:
    prompt_files[b.name] = os.path.join(workdir, "eval", "prompts", f"{b.name}.jsonl")
    _write_prompts(prompt_files[b.name], items[b.name])
  distributed.sync("prompts written")
  _check_judges(config.eval, benches)
  logging.info("sweep: steps %s x benchmarks %s", [s for s, _ in steps], [b.name for b in benches])
  for step, path in steps:
    where = lambda kind, b: os.path.join(workdir, "eval", kind, f"step_{step}", f"{b.name}.jsonl")
    model, renderer = None, None
    for b in benches:  # generate everything this checkpoint still owes, then release it
      n = decoding[b.name].n
      distributed.sync(f"check step {step} {b.name}")  # all processes decide on the same file contents
      if len({(r["index"], r["sample"]) for r in _read(where("generations", b))}) < len(items[b.name]) * n:
        if model is None:
          model = load_model(path)
          renderer = renderer_for(model)
        settings = dict(model=os.path.abspath(path), step=step, benchmark=b.name)
        modes.generate_file(model, decoding[b.name], config.eval, prompt_files[b.name], where("generations", b),
                            settings, renderer)
    del model
    gc.collect()
    judges = Judges(config.eval, load_model)  # judge models load on first use, after the policy is gone
    for b in benches:
      grade_generations(b, items[b.name], where("generations", b), where("grades", b),
                        dict(benchmark=b.name, grader=b.grader), judges)
    judges.close()
    gc.collect()
  n_by_bench = {b.name: decoding[b.name].n for b in benches}
  distributed.sync("graded")
  rows = summarize(workdir, [s for s, _ in steps], benches, items, n_by_bench)
  write_tables(workdir, rows, benches, n_by_bench)
  return rows


def grade_file(input_path: str, output_path: str, judges: Any = None) -> dict[str, int]:
  """eval.mode=grade: rows {benchmark, item (a row of its data file), response} -> + score, answer, status."""
  requests = []
  for number, row in jsonl.read(input_path):
    where = f"{input_path}:{number}"
    missing = [k for k in ("benchmark", "item", "response") if k not in row]
    if missing:
      raise ValueError(f"{where}: missing field(s) {missing}")
    bench = benchmarks.get(row["benchmark"])
    absent = [f for f in bench.fields if row["item"].get(f) in (None, "")]
    if absent:
      raise ValueError(f"{where}: item lacks field(s) {absent} of benchmark {bench.name}")
    requests.append((len(requests), row, bench, bench.make_item(row["item"], len(requests))))
  with jsonl.ResumableWriter(output_path, lambda r: (r["index"],), dict(mode="grade", input=input_path)) as writer:
    todo = [r for r in requests if (r[0],) not in writer.done]
    by_bench = collections.defaultdict(list)
    for r in todo:
      by_bench[r[2].name].append(r)
    written = 0
    for rows in by_bench.values():
      grades = grading.grade(rows[0][2], [r[3] for r in rows], [r[1]["response"] for r in rows], judges=judges)
      writer.write([dict(r[1], index=r[0], **g) for r, g in zip(rows, grades)])
      written += len(rows)
  return {"written": written, "done_before": len(writer.done), "rows": len(requests)}
