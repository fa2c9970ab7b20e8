"""Evaluation-shaped decoding: variable response lengths, rsft vs transformers.generate, in one run.

  python bench/eval_throughput.py [--prompts=96] [--batch=32] [--caps=512,4096]
  python bench/eval_throughput.py --smoke        # 16 prompts, batches of 8, caps 64 and 256, in seconds
Results go to stdout (progress bars to stderr).

The workload of issue 15: a tiny random Qwen3, `prompts` prompts of 20-60 tokens handed to generate in batches of
`batch` (as the sweep does), sampled at T 1.0 with a set of stop tokens, so response lengths are random and most
rows stop long before the cap. Two length distributions: "short" (10 stop ids: geometric, mean ~50 tokens) and
"long tail" (2 stop ids: mean ~250, a share of rows reaching the cap). Reported per distribution and cap: useful
tokens (generated, stop included) per second, slot occupancy (useful tokens / rows x decode steps each batch
ran), the ratio rsft / transformers at the same cap, and rsft's time per useful token at the largest cap relative
to the smallest (decode reads only each cache's filled columns, so a cap the rows never reach should cost nothing).
Each side runs each workload once untimed first. rsft uses its evaluation defaults (rsft.Options()); both sides
decode in float32 with the same prompts, batches, temperature and stops.
rsft still decodes static batches here (a batch runs until its longest row stops); continuous batching is the
next part of issue 15, so occupancy is the same on both sides.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

SHAPE = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, max_position_embeddings=8192)  # the caps stay inside the trained context
DISTRIBUTIONS = {"short": 10, "long tail": 2}  # name -> number of stop ids (of the 512-token vocabulary)


def timed(fn):
  """(result, seconds) of the second of two calls: the first is the untimed warm-up of the same workload."""
  fn()
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def occupancy(lengths: list[int], batch: int) -> float:
  """Useful tokens / (rows x steps) over static batches: each batch runs as many steps as its longest row."""
  steps = sum(max(lengths[i:i + batch]) * len(lengths[i:i + batch]) for i in range(0, len(lengths), batch))
  return sum(lengths) / max(steps, 1)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--prompts", type=int, default=96)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--caps", default="512,4096")
  parser.add_argument("--smoke", action="store_true", help="16 prompts, batches of 8, caps 64 and 256")
  args = parser.parse_args()
  if args.smoke:
    args.prompts, args.batch, args.caps = 16, 8, "64,256"
  caps = [int(c) for c in args.caps.split(",")]
  import torch
  import transformers

  import rsft
  from rsft.tools import tiny_models

  torch.manual_seed(0)
  path = tempfile.mkdtemp()
  hf = tiny_models.build("qwen3", path, **SHAPE)
  m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  prompts = [rng.integers(20, tiny_models.VOCAB, int(rng.integers(20, 61))).tolist() for _ in range(args.prompts)]
  batches = [list(range(i, min(i + args.batch, len(prompts)))) for i in range(0, len(prompts), args.batch)]

  def rsft_run(cap: int, stops: list[int]) -> list[int]:
    lengths = []
    for rows in batches:
      res = rsft.generate(m, [prompts[i] for i in rows], cap, temperature=1.0, seed=1, stop_token_ids=stops,
                          prompt_ids=rows)
      lengths += [len(t) for t in res.tokens]
    return lengths

  def hf_run(cap: int, stops: list[int]) -> list[int]:
    lengths = []
    for rows in batches:
      width = max(len(prompts[i]) for i in rows)
      ids = torch.zeros((len(rows), width), dtype=torch.long)
      mask = torch.zeros_like(ids)
      for r, i in enumerate(rows):
        ids[r, width - len(prompts[i]):], mask[r, width - len(prompts[i]):] = torch.tensor(prompts[i]), 1
      with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=cap, do_sample=True, temperature=1.0,
                          top_k=0, top_p=1.0, eos_token_id=stops, pad_token_id=0)[:, width:].tolist()
      for row in out:
        stop = next((j for j, t in enumerate(row) if t in stops), None)
        lengths.append(len(row) if stop is None else stop + 1)
    return lengths

  print(f"tiny Qwen3 {SHAPE}, {len(prompts)} prompts of 20-60 tokens in batches of {args.batch}, T 1.0, float32; "
        f"rsft with its evaluation defaults (rsft.Options()), transformers generate with its KV cache")
  for name, count in DISTRIBUTIONS.items():
    stops = list(range(1, count + 1))
    per_token = {}  # rsft seconds per useful token: longer rows at a larger cap are work, not overhead
    for cap in caps:
      mine, t_rsft = timed(lambda: rsft_run(cap, stops))
      theirs, t_hf = timed(lambda: hf_run(cap, stops))
      per_token[cap] = t_rsft / sum(mine)
      print(f"{name:9s} cap {cap:5d}: rsft {sum(mine) / t_rsft:8.0f} useful tok/s (mean length "
            f"{np.mean(mine):.0f}, occupancy {occupancy(mine, args.batch):.2f}); transformers "
            f"{sum(theirs) / t_hf:8.0f} useful tok/s (mean length {np.mean(theirs):.0f}, occupancy "
            f"{occupancy(theirs, args.batch):.2f}); ratio rsft / transformers {(sum(mine) / t_rsft) / (sum(theirs) / t_hf):.2f}")
    print(f"{name:9s} rsft cost per useful token at cap {caps[-1]} / cap {caps[0]}: "
          f"{per_token[caps[-1]] / per_token[caps[0]]:.2f}")


if __name__ == "__main__":
  main()
