"""Chunked output head: per-token log-probabilities without materialising [T, vocab] float32 logits.

At T=32k and V=152k, full float32 logits are ~20 GB per sequence. We `lax.scan` over sequence chunks; each chunk
projects through the head in float32, takes a float32 logsumexp and gathers the target logit (the tunix
`compute_chunked_logps` pattern). The chunk body is rematerialised, so the backward pass (training loss) also
holds only one chunk of logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rsft.models.layers import precision


def chunked_logprobs(
  hidden: jax.Array, kernel: jax.Array, targets: jax.Array, chunk: int = 1024, stats: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array, jax.Array]:
  """log p(targets) under softmax(hidden @ kernel). hidden [B,T,D], kernel [D,V], targets [B,T] -> f32 [B,T].

  stats=True returns (logprobs, entropy, is_greedy): the per-token entropy of the predicted distribution (f32,
  no gradient) and whether the target is the arg-max token (lm-evaluation-harness' `is_greedy`).
  """
  b, t, d = hidden.shape
  c = min(chunk, t)
  pad = -t % c
  h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, -1, c, d).swapaxes(0, 1)
  y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, -1, c).swapaxes(0, 1)

  @jax.checkpoint
  def one_chunk(h_c, y_c):
    # rows x chunk as one axis: the kernel's gradient then contracts a single axis (layers.Linear says why)
    logits = jnp.einsum(
      "MD,DV->MV", h_c.reshape(-1, d), kernel, preferred_element_type=jnp.float32, precision=precision(h_c.dtype)
    ).reshape(*h_c.shape[:2], -1)
    target_logit = jnp.take_along_axis(logits, y_c[..., None], axis=-1)[..., 0]
    lse = jax.nn.logsumexp(logits, axis=-1)
    if not stats:
      return target_logit - lse
    logits = jax.lax.stop_gradient(logits)
    entropy = jax.lax.stop_gradient(lse) - jnp.sum(jax.nn.softmax(logits, axis=-1) * logits, axis=-1)
    is_greedy = jax.lax.stop_gradient(target_logit) >= jnp.max(logits, axis=-1)
    return target_logit - lse, entropy, is_greedy

  _, out = jax.lax.scan(lambda carry, xs: (carry, one_chunk(*xs)), None, (h, y))
  unchunk = lambda a: a.swapaxes(0, 1).reshape(b, -1)[:, :t]
  return tuple(map(unchunk, out)) if stats else unchunk(out)
