"""Token selection with per-row parameters as arrays, so changing temperature / top-p / top-k never recompiles.

Order (vLLM / MaxText composite): restrict to the static `k_cap` best logits with `lax.top_k` (no full-vocab sort),
then the row's own top-k, then temperature, then top-p (the smallest prefix with cumulative probability >= top_p;
the best token always stays). Temperature 0 means greedy. The reported log-prob is always the *model's*
(untempered, untruncated) log-probability of the chosen token, so it matches the scorer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1e30


def select(logits: jax.Array, keys: jax.Array, temperature: jax.Array, top_p: jax.Array, top_k: jax.Array,
           k_cap: int, vocab_limit: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """logits f32 [B, V], keys [B] PRNG keys, per-row params [B] -> (tokens [B], logprobs [B]).

  Ids >= vocab_limit (embedding rows past the tokenizer) are never chosen; the reported log-prob is still
  under the model's full distribution, which is what the scorer computes.
  """
  model_logprobs = jax.nn.log_softmax(logits, axis=-1)
  if vocab_limit is not None:
    logits = jnp.where(jnp.arange(logits.shape[-1])[None, :] < vocab_limit, logits, NEG)

  def sample() -> jax.Array:
    top_vals, top_ids = jax.lax.top_k(logits, k_cap)  # sorted, best first
    rank = jnp.arange(k_cap)[None, :]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, k_cap), k_cap)[:, None]
    scaled = jnp.where(rank < k, top_vals / jnp.maximum(temperature, 1e-6)[:, None], NEG)
    probs = jax.nn.softmax(scaled, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly before each candidate
    scaled = jnp.where((before < top_p[:, None]) | (rank == 0), scaled, NEG)
    choice = jax.vmap(jax.random.categorical)(keys, scaled)
    sampled = jnp.take_along_axis(top_ids, choice[:, None], axis=1)[:, 0]
    return jnp.where(temperature > 0, sampled, top_ids[:, 0])

  # An all-greedy batch skips the top-k (a sort on some backends): a runtime branch, not a recompile.
  tokens = jax.lax.cond(jnp.all(temperature <= 0), lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32), sample)
  return tokens, jnp.take_along_axis(model_logprobs, tokens[:, None], axis=1)[:, 0]


def row_keys(seed: jax.Array, row_ids: jax.Array, step: jax.Array) -> jax.Array:
  """fold_in(fold_in(key(seed), row id), step): a row's randomness does not depend on its batch-mates."""
  base = jax.random.key(seed)
  return jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(base, r), step))(row_ids)
