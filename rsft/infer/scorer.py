"""Teacher-forced scoring: rsft.token_logprobs and rsft.reward_scores on token arrays, and (prompt, completion)
pairs scored for per-token log-prob, entropy and is_greedy.

Runs the one forward + chunked head (rsft.models.forward), so scores, training loss and the sampler's reported
log-probs are the same numbers. Pairs are sorted by length and packed into right-padded batches of at most `batch_tokens`
positions, with lengths rounded up to `length_multiple` so compiles stay few (one per width). Reward-model
scoring of whole sequences uses the same batching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from rsft import sharding
from rsft.models.forward import last_token_scores, padded_logprobs


@dataclasses.dataclass
class Score:
  logprobs: list[float]  # one per completion token
  entropies: list[float]
  is_greedy: bool  # every completion token was the arg-max (lm-evaluation-harness semantics)
  sum: float
  mean: float


def _prepare(m: Any, ids: Any, attention_mask: Any) -> tuple[jax.Array, jax.Array]:
  ids = np.asarray(ids, dtype=np.int32)
  if ids.ndim != 2:
    raise ValueError(f"ids must be [batch, time]; got shape {ids.shape}.")
  mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int32)
  if mask.shape != ids.shape:
    raise ValueError(f"attention_mask shape {mask.shape} differs from ids shape {ids.shape}.")
  if ids.size and (ids.min() < 0 or ids.max() >= m.config.vocab_size):
    raise ValueError(f"token ids must lie in [0, {m.config.vocab_size}); got [{ids.min()}, {ids.max()}].")
  return sharding.put_batch(m.mesh, ids), sharding.put_batch(m.mesh, mask)


def _needs(m: Any, head: str, what: str) -> None:
  if m.config.head != head:
    kind = "a CausalLM" if head == "lm" else "a *ForSequenceClassification"
    other = "a reward (score) model" if head == "lm" else "a CausalLM"
    raise ValueError(f"{what} needs {kind} checkpoint; this one is {other}.")


def token_logprobs(m: Any, ids: Any, attention_mask: Any = None, chunk_size: int = 1024) -> jax.Array:
  """float32 [B, T-1]: lp[b,t] = log p(ids[b,t+1] | ids[b,:t+1]).

  0 where the target is padding, and where the context is padding only (the first real token of a row).
  """
  _needs(m, "lm", "token_logprobs")
  ids, mask = _prepare(m, ids, attention_mask)
  return padded_logprobs(m.graphdef, m.params, ids, mask, chunk_size)


def reward_scores(m: Any, ids: Any, attention_mask: Any = None) -> jax.Array:
  """float32 [B] (or [B, num_labels] when num_labels > 1): the head read at the rightmost real token."""
  _needs(m, "score", "reward_scores")
  ids, mask = _prepare(m, ids, attention_mask)
  scores = last_token_scores(m.graphdef, m.params, ids, mask)
  return scores[:, 0] if m.config.num_labels == 1 else scores


def length_batches(
  lengths: Sequence[int], batch_tokens: int, length_multiple: int, row_multiple: int = 1
) -> Iterator[tuple[list[int], int, int]]:
  """Groups sequences (shortest first) into right-padded batches of at most `batch_tokens` positions.

  Yields (indices, width, rows): width is the longest length rounded up to `length_multiple`; rows is the count
  rounded up to a power of two (within the budget) and to a multiple of `row_multiple`, so a width compiles at
  most log2(batch) times and rows split evenly over the mesh's batch axes. Padding rows are all-padding.
  """
  round_up = lambda x, m: -(-x // m) * m
  order = sorted(range(len(lengths)), key=lambda i: lengths[i])
  start = 0
  while start < len(order):
    width = round_up(max(lengths[order[start]], 1), length_multiple)
    count = 1
    while start + count < len(order):
      w = round_up(lengths[order[start + count]], length_multiple)
      if (count + 1) * w > batch_tokens:
        break
      width, count = w, count + 1
    rows = round_up(min(1 << (count - 1).bit_length(), max(count, batch_tokens // width)), row_multiple)
    yield order[start : start + count], width, rows
    start += count


def _right_padded(seqs: Sequence[Sequence[int]], batch: Sequence[int], width: int, rows: int):
  ids = np.zeros((rows, width), np.int32)
  mask = np.zeros((rows, width), np.int32)
  for r, i in enumerate(batch):
    ids[r, : len(seqs[i])], mask[r, : len(seqs[i])] = seqs[i], 1
  return ids, mask


def score(
  m: Any,
  prompts: Sequence[Sequence[int]],
  completions: Sequence[Sequence[int]],
  batch_tokens: int = 16384,
  length_multiple: int = 128,
  chunk: int = 1024,
) -> list[Score]:
  """Teacher-forced statistics of each completion given its prompt, in the input order."""
  _needs(m, "lm", "score")
  if len(prompts) != len(completions):
    raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
  if any(len(p) == 0 for p in prompts):
    raise ValueError("every prompt needs at least one token (the first completion token is predicted from it)")
  seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
  out: list[Score | None] = [None] * len(seqs)
  lengths = [len(s) for s in seqs]
  for batch, width, rows in length_batches(lengths, batch_tokens, length_multiple, sharding.batch_multiple(m.mesh)):
    ids, mask = _right_padded(seqs, batch, width, rows)
    put = lambda x: sharding.put_batch(m.mesh, x)
    lp, ent, greedy = map(sharding.to_host, padded_logprobs(m.graphdef, m.params, put(ids), put(mask), chunk, True))
    for r, i in enumerate(batch):
      a, b = len(prompts[i]) - 1, len(seqs[i]) - 1  # predictions of the completion tokens
      lps = lp[r, a:b]
      out[i] = Score(
        lps.tolist(),
        ent[r, a:b].tolist(),
        bool(greedy[r, a:b].all()),
        float(lps.sum()),
        float(lps.mean()) if b > a else 0.0,
      )
  return out


def rewards(
  m: Any, sequences: Sequence[Sequence[int]], batch_tokens: int = 16384, length_multiple: int = 128
) -> np.ndarray:
  """Reward-model scores of whole token sequences (prompt + response, chat-rendered), batched by length and
  sharded over the mesh's batch axes: float32 [N] (or [N, num_labels])."""
  _needs(m, "score", "rewards")
  if any(len(s) == 0 for s in sequences):
    raise ValueError("every sequence needs at least one token.")
  out = np.zeros((len(sequences), m.config.num_labels), np.float32)
  for batch, width, rows in length_batches(
    [len(s) for s in sequences], batch_tokens, length_multiple, sharding.batch_multiple(m.mesh)
  ):
    ids, mask = _right_padded(sequences, batch, width, rows)
    scores = last_token_scores(m.graphdef, m.params, sharding.put_batch(m.mesh, ids), sharding.put_batch(m.mesh, mask))
    out[batch] = sharding.to_host(scores)[: len(batch)]
  return out[:, 0] if m.config.num_labels == 1 else out
