"""The forward pass through an output head: the one place that merges a model and runs it to log-probabilities
or reward scores. The training loss, teacher-forced scoring, rsft.token_logprobs and reward models all call these,
so their numbers are the same numbers.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rsft.models.decoder import positions_from_mask
from rsft.models.head import chunked_logprobs
from rsft.models.layers import precision


def logprobs(
  graphdef: Any,
  params: Any,
  inputs: jax.Array,
  positions: jax.Array,
  segment_ids: jax.Array,
  targets: jax.Array,
  chunk: int,
  stats: bool = False,
  dropout_key: jax.Array | None = None,
):
  """log p(targets[b, t] | inputs[b, :t+1]) through the chunked LM head: f32 [B, T] (with stats=True also the
  per-token entropy and is_greedy; see models.head.chunked_logprobs). Packed rows: segment_ids separate them.
  `dropout_key`: LoRA dropout (training only)."""
  model = nnx.merge(graphdef, params)
  hidden = model(inputs, positions, segment_ids, dropout_key)
  return chunked_logprobs(hidden, model.head_kernel(), targets, chunk, stats)


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk", "stats"))
def padded_logprobs(graphdef: Any, params: Any, ids: jax.Array, mask: jax.Array, chunk: int, stats: bool = False):
  """Teacher-forced log p(ids[b, t+1] | ids[b, :t+1]) of left- or right-padded rows: f32 [B, T-1].

  0 where the target is padding, and where the context is padding only: the first real token of a left-padded
  row is not predicted, exactly as in the unpadded row, so padding never changes a row's numbers."""
  targets = jnp.pad(ids[:, 1:], ((0, 0), (0, 1)))
  out = logprobs(graphdef, params, ids, positions_from_mask(mask), mask, targets, chunk, stats)
  lp, *rest = (x[:, :-1] for x in (out if stats else (out,)))
  lp = jnp.where((mask[:, 1:] > 0) & (mask[:, :-1] > 0), lp, 0.0)
  return (lp, *rest) if stats else lp


@functools.partial(jax.jit, static_argnames=("graphdef",))
def last_token_scores(graphdef: Any, params: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
  """A SequenceClassification model's head read at the rightmost real token (left or right padding): f32 [B, L]."""
  model = nnx.merge(graphdef, params)
  hidden = model(ids, positions_from_mask(mask), mask)
  last = ids.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)
  pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  return jnp.einsum(
    "BD,DL->BL",
    pooled,
    model.score[...].astype(pooled.dtype),
    preferred_element_type=jnp.float32,
    precision=precision(pooled.dtype),
  )
