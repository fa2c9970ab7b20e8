"""SFT loss as a per-token weighted NLL, where the per-token scale encodes the aggregation.

objective = -sum_{b,t} scale[b,t] * log p(target[b,t]). Because it is a plain sum, splitting the global batch into
micro-batches (gradient accumulation) changes nothing: the scales are computed once from the whole global batch.
  token_mean  scale = w / sum(w over the global batch)                    (default)
  verl        the study's trainer (paper.md "Gradient-scaling subtlety"): each of R data-parallel ranks runs
              micro-batches of m rows, takes the token mean per micro-batch, sums gradients over its micro-batches,
              and ranks average: scale = w / (R * sum(w over that micro-batch)). Rank r holds global rows r, r+R, ...
              (DistributedSampler), and its micro-batch j holds its local rows [j*m, (j+1)*m).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rsft.config import CHOICES

AGGREGATIONS = CHOICES["train.loss_aggregation"]


def token_scales(
  weights: jax.Array, aggregation: str = "token_mean", ranks: int = 1, rows_per_micro: int = 1
) -> jax.Array:
  """[B, T] float32 scales; rows with no supervised token get 0."""
  weights = weights.astype(jnp.float32)
  if aggregation == "token_mean":
    return weights / jnp.maximum(weights.sum(), 1.0)
  if aggregation != "verl":
    raise ValueError(f"train.loss_aggregation={aggregation!r}; choose one of {AGGREGATIONS}")
  rows = weights.shape[0]
  if rows % (ranks * rows_per_micro):
    raise ValueError(
      f"verl aggregation: global batch {rows} is not a multiple of ranks ({ranks}) x "
      f"micro-batch rows ({rows_per_micro})."
    )
  g = jnp.arange(rows)
  groups_per_rank = rows // ranks // rows_per_micro
  group = (g % ranks) * groups_per_rank + (g // ranks) // rows_per_micro
  group_sums = jax.ops.segment_sum(weights.sum(axis=1), group, num_segments=rows // rows_per_micro)
  return weights / (ranks * jnp.maximum(group_sums[group], 1.0))[:, None]
