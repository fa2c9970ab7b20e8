"""Token selection with per-row parameters as arrays, so changing temperature / top-p / top-k never recompiles.

vLLM's order: presence / frequency penalties on the logits (output tokens only), temperature, the row's top-k
(the k-th best logit is the bar; ties at the bar stay), then top-p over the *whole* vocabulary: the smallest set of
best tokens whose probability reaches top_p (a token stays iff the mass strictly above it is < top_p; the best
token always stays). The nucleus is found without a full sort: a 32-step bisection over float32 bit patterns
finds its probability floor exactly, each step one masked sum over the vocabulary. Temperature 0 means greedy.
The reported log-prob is always the *model's* (unpenalised, untempered, untruncated) log-probability of the
chosen token, so it matches the scorer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1e30


def nucleus_floor(probs: jax.Array, top_p: jax.Array) -> jax.Array:
  """probs f32 [B, V], top_p [B] -> the smallest probability inside each row's nucleus [B].

  The nucleus floor is the smallest t with sum(p[p > t]) < top_p: every token with p >= t has less than top_p
  above it, every token below t has at least top_p above it. Non-negative float32s order like their int32 bit
  patterns, so bisecting the bits finds t exactly in 32 steps.
  """
  bits = lambda x: jax.lax.bitcast_convert_type(x, jnp.int32)
  as_float = lambda b: jax.lax.bitcast_convert_type(b, jnp.float32)

  def enough_above(t: jax.Array) -> jax.Array:  # sum(p[p > t]) < top_p, per row
    return jnp.sum(jnp.where(probs > t[:, None], probs, 0.0), axis=-1) < top_p

  def step(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    ok = enough_above(as_float(mid))
    return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

  lo = jnp.zeros(probs.shape[:1], jnp.int32)
  hi = bits(jnp.max(probs, axis=-1))  # nothing lies above the best token: always inside
  lo, hi = jax.lax.fori_loop(0, 32, step, (lo, hi))
  return as_float(hi)


def penalize(logits: jax.Array, counts: jax.Array, presence: jax.Array, frequency: jax.Array) -> jax.Array:
  """vLLM's presence / frequency penalties: counts [B, V] of each token in the row's output so far."""
  return logits - frequency[:, None] * counts - presence[:, None] * (counts > 0)


def select(logits: jax.Array, keys: jax.Array, temperature: jax.Array, top_p: jax.Array, top_k: jax.Array,
           k_cap: int, vocab_limit: jax.Array | int | None = None,
           penalties: tuple[jax.Array, jax.Array, jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
  """logits f32 [B, V], keys [B] PRNG keys, per-row params [B] -> (tokens [B], logprobs [B]).

  k_cap bounds top_k (a static `lax.top_k` size, used only when some row has top_k > 0). penalties: (counts
  [B, V], presence [B], frequency [B]). Ids >= vocab_limit (embedding rows past the tokenizer) are never chosen;
  the reported log-prob is still under the model's full distribution, which is what the scorer computes.
  """
  model_logprobs = jax.nn.log_softmax(logits, axis=-1)
  if penalties is not None:
    logits = penalize(logits, *penalties)
  if vocab_limit is not None:
    logits = jnp.where(jnp.arange(logits.shape[-1])[None, :] < vocab_limit, logits, NEG)

  def top_k_bar() -> jax.Array:
    top_vals, _ = jax.lax.top_k(logits, k_cap)  # sorted, best first
    k = jnp.clip(top_k, 1, k_cap)
    bar = jnp.take_along_axis(top_vals, (k - 1)[:, None], axis=1)[:, 0]
    return jnp.where(top_k > 0, bar, -jnp.inf)

  def sample() -> jax.Array:
    scaled = logits / jnp.maximum(temperature, 1e-6)[:, None]
    no_bar = lambda: jnp.full(logits.shape[:1], -jnp.inf, logits.dtype)
    bar = jax.lax.cond(jnp.any(top_k > 0), top_k_bar, no_bar)
    scaled = jnp.where(logits >= bar[:, None], scaled, NEG)
    probs = jax.nn.softmax(scaled, axis=-1)
    floor = jax.lax.cond(jnp.any(top_p < 1.0), lambda: nucleus_floor(probs, top_p),
                         lambda: jnp.zeros(probs.shape[:1], probs.dtype))
    scaled = jnp.where(probs >= floor[:, None], scaled, NEG)
    sampled = jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1).astype(jnp.int32))

  # An all-greedy batch skips the sampling work: a runtime branch, not a recompile.
  tokens = jax.lax.cond(jnp.all(temperature <= 0), lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32), sample)
  return tokens, jnp.take_along_axis(model_logprobs, tokens[:, None], axis=1)[:, 0]


def row_keys(seed: jax.Array, row_ids: jax.Array, step: jax.Array) -> jax.Array:
  """fold_in(fold_in(key(seed), row id), step): a row's randomness does not depend on its batch-mates. step: one
  for all rows or one per row (each row's own count of tokens so far)."""
  base = jax.random.key(seed)
  steps = jnp.broadcast_to(jnp.asarray(step), row_ids.shape)
  return jax.vmap(lambda r, s: jax.random.fold_in(jax.random.fold_in(base, r), s))(row_ids, steps)
