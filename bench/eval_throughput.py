"""Evaluation-shaped decoding: variable response lengths; rsft continuous batching vs rsft's static schedule vs
transformers.generate, in one run.

  python bench/eval_throughput.py [--prompts=96] [--batch=32] [--caps=512,4096] [--vocab=512] [--prompt_range=20,60]
  python bench/eval_throughput.py --vocab=777 --prompt_range=8,40 --stop_share=0.0208 \
      --shape=num_hidden_layers=3,hidden_size=96,head_dim=40                                # issue 26's workload
  python bench/eval_throughput.py --smoke        # 16 prompts, 8 in flight, caps 32 and 96, in seconds
Results go to stdout (progress bars to stderr).

The workload of issue 15: a tiny random Qwen3, `prompts` prompts of 20-60 tokens, at most `batch` sequences in
flight, sampled at T 1.0 with a set of stop tokens, so response lengths are random and most rows stop long before
the cap. Two length distributions: "short" (10 stop ids: geometric, mean ~50 tokens) and "long tail" (2 stop ids:
mean ~250, a share of rows reaching the cap, like the study's reasoning traces). Three systems:
  rsft         one generate call for all prompts, Options(max_num_seqs=batch): a finished row's slot takes the
               next prompt at once;
  rsft static  the same call with schedule="static": a batch runs until its longest row stops (the sweep's old
               path, which handed generate one batch at a time);
  transformers generate in batches of `batch` with its KV cache.
Reported per distribution and cap: useful tokens (generated, stop included) per second, slot occupancy (useful
tokens / the rows each decode step ran over: once no prompt waits, rsft runs
the live rows in a compacted batch), the ratios to transformers at the same cap, and each rsft schedule's time per
useful token at the largest cap relative to the smallest, best of --repeats interleaved runs (attention reads
each row's written pages only, so a cap the rows never reach should cost nothing). Each side runs each workload once untimed first; all decode in
float32 with the same prompts, temperature and stops.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from rsft.tools.benchtools import hf_generate, timed

SHAPE = dict(
  num_hidden_layers=2,
  hidden_size=64,
  intermediate_size=128,
  num_attention_heads=4,
  num_key_value_heads=2,
  head_dim=16,
  max_position_embeddings=8192,
)  # the caps stay inside the trained context
DISTRIBUTIONS = {"short": 10, "long tail": 2}  # name -> number of stop ids (of the 512-token vocabulary)


def static_occupancy(lengths: list[int], batch: int) -> float:
  """Useful tokens / (rows x steps) over static batches: each batch runs as many steps as its longest row."""
  steps = sum(max(lengths[i : i + batch]) * len(lengths[i : i + batch]) for i in range(0, len(lengths), batch))
  return sum(lengths) / max(steps, 1)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--prompts", type=int, default=96)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--caps", default="512,4096")
  parser.add_argument("--repeats", type=int, default=5, help="runs per cap for rsft's cost vs cap")
  parser.add_argument("--vocab", type=int, default=512, help="the tiny model's vocabulary")
  parser.add_argument("--shape", default="", help="overrides of the model's shape, e.g. hidden_size=96,head_dim=40")
  parser.add_argument("--prompt_range", default="20,60", help="prompt lengths, lowest,highest")
  parser.add_argument(
    "--stop_share",
    type=float,
    default=0.0,
    help="one distribution whose stop set is this share of the vocabulary (0: the two defaults)",
  )
  parser.add_argument("--smoke", action="store_true", help="16 prompts, 8 in flight, caps 32 and 96")
  args = parser.parse_args()
  if args.smoke:
    args.prompts, args.batch, args.caps, args.repeats = 16, 8, "32,96", 1
  caps = [int(c) for c in args.caps.split(",")]
  import torch

  import rsft
  from rsft.tools import tiny_models

  torch.manual_seed(0)
  path = tempfile.mkdtemp()
  shape = {**SHAPE, **{k: int(v) for k, v in (kv.split("=") for kv in args.shape.split(",") if kv)}}
  hf = tiny_models.build("qwen3", path, vocab_size=args.vocab, **shape)
  m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  low, high = (int(x) for x in args.prompt_range.split(","))
  prompts = [rng.integers(20, args.vocab, int(rng.integers(low, high + 1))).tolist() for _ in range(args.prompts)]
  distributions = (
    {f"stops {args.stop_share:g}": max(1, int(args.vocab * args.stop_share))}
    if args.stop_share
    else {name: count * args.vocab // 512 for name, count in DISTRIBUTIONS.items()}
  )

  def rsft_run(cap: int, stops: list[int], schedule: str) -> tuple[list[int], float]:
    res = rsft.generate(
      m,
      prompts,
      cap,
      temperature=1.0,
      seed=1,
      stop_token_ids=stops,
      options=rsft.Options(max_num_seqs=args.batch, schedule=schedule),
    )
    lengths = [len(t) for t in res.tokens]
    return lengths, sum(lengths) / max(res.row_steps, 1)

  def hf_run(cap: int, stops: list[int]) -> list[int]:
    lengths = []
    for row in hf_generate(
      hf,
      prompts,
      args.batch,
      max_new_tokens=cap,
      do_sample=True,
      temperature=1.0,
      top_k=0,
      top_p=1.0,
      eos_token_id=stops,
    ):
      stop = next((j for j, t in enumerate(row) if t in stops), None)
      lengths.append(len(row) if stop is None else stop + 1)
    return lengths

  print(
    f"tiny Qwen3 {shape}, vocabulary {args.vocab}, {len(prompts)} prompts of {low}-{high} tokens, at most "
    f"{args.batch} in flight, T 1.0, "
    f"float32; rsft with its evaluation defaults otherwise (rsft.Options()), transformers generate with its KV "
    f"cache in batches of {args.batch}"
  )
  for name, count in distributions.items():
    stops = list(range(1, count + 1))
    for cap in caps:
      (mine, occ), t_rsft = timed(lambda: rsft_run(cap, stops, "continuous"))
      (old, occ_old), t_old = timed(lambda: rsft_run(cap, stops, "static"))
      theirs, t_hf = timed(lambda: hf_run(cap, stops))
      rate = lambda tokens, seconds: sum(tokens) / seconds
      print(
        f"{name:9s} cap {cap:5d}: rsft {rate(mine, t_rsft):8.0f} useful tok/s (mean length {np.mean(mine):.0f}, "
        f"occupancy {occ:.2f}); rsft static {rate(old, t_old):8.0f} (occupancy {occ_old:.2f}); transformers "
        f"{rate(theirs, t_hf):8.0f} (mean length {np.mean(theirs):.0f}, occupancy "
        f"{static_occupancy(theirs, args.batch):.2f}); ratio rsft / transformers "
        f"{rate(mine, t_rsft) / rate(theirs, t_hf):.2f}, rsft static / transformers "
        f"{rate(old, t_old) / rate(theirs, t_hf):.2f}, rsft / rsft static {rate(mine, t_rsft) / rate(old, t_old):.2f}"
      )
    # Seconds per useful token (longer rows at a larger cap are work, not overhead): each schedule at each cap
    # `repeats` times, interleaved, the fastest kept, so machine noise does not pass for a cap's cost.
    per_token = {schedule: {cap: float("inf") for cap in caps} for schedule in ("continuous", "static")}
    for _ in range(args.repeats):
      for cap in caps:
        for schedule, costs in per_token.items():
          (lengths, _), seconds = timed(lambda: rsft_run(cap, stops, schedule), warm=False)
          costs[cap] = min(costs[cap], seconds / sum(lengths))
    for schedule, costs in per_token.items():
      label = "rsft" if schedule == "continuous" else "rsft static"
      print(
        f"{name:9s} {label} cost per useful token at cap {caps[-1]} / cap {caps[0]}: "
        f"{costs[caps[-1]] / costs[caps[0]]:.2f} (best of {args.repeats}, interleaved)"
      )


if __name__ == "__main__":
  main()
