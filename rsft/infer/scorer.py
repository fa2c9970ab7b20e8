"""Teacher-forced scoring of (prompt, completion) pairs: per-token log-prob, entropy and is_greedy.

Reuses the training forward and the chunked head, so scores, training loss and the sampler's reported log-probs
are the same numbers. Pairs are sorted by length and packed into right-padded batches of at most `batch_tokens`
positions, with lengths rounded up to `length_multiple` so compiles stay few.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from rsft.models.decoder import positions_from_mask
from rsft.models.head import chunked_logprobs


@dataclasses.dataclass
class Score:
  logprobs: list[float]   # one per completion token
  entropies: list[float]
  is_greedy: bool         # every completion token was the arg-max (lm-evaluation-harness semantics)
  sum: float
  mean: float


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _score_batch(graphdef, params, ids, mask, chunk):
  model = nnx.merge(graphdef, params)
  hidden = model(ids, positions_from_mask(mask), mask)
  return chunked_logprobs(hidden[:, :-1], model.head_kernel(), ids[:, 1:], chunk, stats=True)


def score(m: Any, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
          batch_tokens: int = 16384, length_multiple: int = 128, chunk: int = 1024) -> list[Score]:
  if len(prompts) != len(completions):
    raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
  if any(len(p) == 0 for p in prompts):
    raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
  seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
  order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
  out: list[Score | None] = [None] * len(seqs)
  start = 0
  while start < len(order):
    width = -(-len(seqs[order[start]]) // length_multiple) * length_multiple
    rows = 1
    while start + rows < len(order):
      w = -(-len(seqs[order[start + rows]]) // length_multiple) * length_multiple
      if (rows + 1) * w > batch_tokens:
        break
      width, rows = w, rows + 1
    batch = order[start:start + rows]
    ids = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.int32)
    for r, i in enumerate(batch):
      ids[r, :len(seqs[i])], mask[r, :len(seqs[i])] = seqs[i], 1
    lp, ent, greedy = map(np.asarray, _score_batch(m.graphdef, m.params, ids, mask, chunk))
    for r, i in enumerate(batch):
      a, b = len(prompts[i]) - 1, len(seqs[i]) - 1  # predictions of the completion tokens
      lps = lp[r, a:b]
      out[i] = Score(lps.tolist(), ent[r, a:b].tolist(), bool(greedy[r, a:b].all()), float(lps.sum()),
                     float(lps.mean()) if b > a else 0.0)
    start += rows
  return out
