"""What choosing the next token costs at a vocabulary: rsft.infer.sampling.select vs transformers' sampling (its
logits processors + softmax + torch.multinomial, what `generate` runs each step), in one run.

  python bench/sampling_cost.py [--batch=32] [--vocabs=777,32000,151936] [--repeats=20]
  python bench/sampling_cost.py --smoke          # batch 4, vocabularies 64 and 512, in seconds

Per vocabulary and setting (greedy; T 1.0; the study's T 0.6 / top-p 0.95 / top-k 20; top-p 0.95 alone), on
logits shaped like a trained model's (a few dozen tokens hold most of the mass, as at T <= 1 on real text) and on
flat random logits (a tiny random model's: a nucleus of thousands), the time per step for `batch` rows, best of
`repeats`, and the ratio transformers / rsft (> 1: rsft is faster). rsft's reported log-prob (the model's, for the
scorer) is included in its time; transformers' is not. Float32 on this process's device.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SETTINGS = {"greedy": (0.0, 1.0, 0), "T 1.0": (1.0, 1.0, 0), "study": (0.6, 0.95, 20), "top-p 0.95": (0.6, 0.95, 0)}


def best_time(fn, repeats: int) -> float:
  fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def trained_like(rng, batch: int, vocab: int) -> np.ndarray:
  """Logits with a peaked head (24 tokens around +12) over a normal tail."""
  logits = rng.normal(0.0, 1.5, (batch, vocab)).astype(np.float32)
  head = rng.integers(0, vocab, (batch, min(24, vocab)))
  np.put_along_axis(logits, head, rng.normal(12.0, 1.5, head.shape).astype(np.float32), axis=1)
  return logits


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--vocabs", default="777,32000,151936")
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    args.batch, args.vocabs, args.repeats = 4, "64,512", 2
  import jax
  import jax.numpy as jnp
  import torch
  from transformers.generation import logits_process as lp

  from rsft.infer import sampling

  rng = np.random.default_rng(0)
  b = args.batch
  print(f"batch {b}, float32, best of {args.repeats}; ms per step; ratio = transformers / rsft")
  for vocab in (int(v) for v in args.vocabs.split(",")):
    for shape, logits in (
      ("trained-like", trained_like(rng, b, vocab)),
      ("flat", rng.normal(0.0, 1.0, (b, vocab)).astype(np.float32)),
    ):
      x, xt = jnp.asarray(logits), torch.from_numpy(logits)
      keys = sampling.row_keys(jnp.uint32(0), jnp.arange(b), jnp.int32(0))
      select = jax.jit(sampling.select, static_argnums=5)
      for name, (temp, top_p, top_k) in SETTINGS.items():
        row = lambda v, dt: jnp.full((b,), v, dt)
        mine = lambda: jax.block_until_ready(
          select(x, keys, row(temp, jnp.float32), row(top_p, jnp.float32), row(top_k, jnp.int32), 64)
        )
        warpers = lp.LogitsProcessorList(
          ([lp.TemperatureLogitsWarper(temp)] if temp > 0 else [])
          + ([lp.TopKLogitsWarper(top_k)] if top_k else [])
          + ([lp.TopPLogitsWarper(top_p)] if top_p < 1 else [])
        )

        def theirs():
          with torch.no_grad():
            scores = warpers(None, xt.clone())
            if temp == 0:
              return scores.argmax(dim=-1)
            return torch.multinomial(torch.softmax(scores, dim=-1), 1)

        t_mine, t_theirs = best_time(mine, args.repeats), best_time(theirs, args.repeats)
        print(
          f"vocab {vocab:6d} {shape:12s} {name:10s}: rsft {t_mine * 1e3:8.3f} ms, transformers "
          f"{t_theirs * 1e3:8.3f} ms, ratio {t_theirs / t_mine:6.2f}"
        )


if __name__ == "__main__":
  main()
