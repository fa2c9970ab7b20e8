"""Token selection with per-row parameters as arrays, so changing temperature / top-p / top-k never recompiles.

vLLM's order: presence / frequency penalties on the logits (output tokens only), temperature, the row's top-k
(the k-th best logit is the bar; ties at the bar stay), then top-p: the smallest set of best tokens whose
probability reaches top_p (a token stays iff the mass strictly above it is < top_p; the best token always stays).
Temperature 0 means greedy. The reported log-prob is always the *model's* (unpenalised, untempered, untruncated)
log-probability of the chosen token, so it matches the scorer.

What a step costs is what decides the engine's speed at Qwen's 151,936-token vocabulary, so no pass over the
vocabulary is spent that the row does not need (bench/sampling_cost.py):
  - the log-prob is logit - logsumexp (one reduction, no [B, V] log-prob table);
  - top-k rows, and top-p rows whose nucleus lies inside the best `k_cap` tokens (the usual case at T <= 1 on a
    trained model), work on those `k_cap` candidates only ([B, k_cap] after one top_k pass: k_cap Gumbel draws,
    not V). Only pure temperature sampling and a nucleus wider than `k_cap` (a flat distribution) draw over the
    whole vocabulary (the latter with the exact 32-step bisection for the nucleus floor).
Every draw is the Gumbel-max of one token id's own noise, so float32 rounding differences between meshes or batch
sizes change a token only at a near-tie of perturbed logits (an inverse-CDF draw flips on any nearby boundary).
The candidates are the `k_cap` best logits: a token tied with the k-th best but outside that list is dropped (ties
of float32 logits at the bar; the whole-vocabulary path keeps them).
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


def _gumbel_for_ids(key: jax.Array, ids: jax.Array) -> jax.Array:
  """Gumbel noise for the token ids [N] of one row: each id's own draw (fold_in(key, id)), so a candidate's noise
  does not depend on where it ranks (two near-equal logits swapping places on another mesh draw the same)."""
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (), jnp.float32, minval=1e-20))(ids)
  return -jnp.log(-jnp.log(u))


def _candidates(logits, keys, temperature, top_p, top_k, k_cap):
  """Sampling among the k_cap best tokens: (tokens [B], whether each row's allowed set lies inside them [B])."""
  vals, idx = jax.lax.top_k(logits, k_cap)  # sorted, best first
  k = jnp.clip(top_k, 1, k_cap)
  bar = jnp.take_along_axis(vals, (k - 1)[:, None], axis=1)
  kept = jnp.where((top_k > 0)[:, None], vals >= bar, True)
  scaled = vals / temperature[:, None]
  # Probabilities under the row's top-k law (renormalised over the kept ones) or, without top-k, the whole vocabulary
  # (a pass over it only when such a row is in the batch).
  full_lse = jax.lax.cond(
    jnp.any(top_k <= 0),
    lambda: jax.nn.logsumexp(logits / temperature[:, None], axis=-1),
    lambda: jnp.zeros(logits.shape[:1], jnp.float32),
  )
  z = jnp.where(top_k > 0, jax.nn.logsumexp(jnp.where(kept, scaled, NEG), axis=-1), full_lse)
  probs = jnp.where(kept, jnp.exp(scaled - z[:, None]), 0.0)
  above = jnp.sum(jnp.where(probs[:, None, :] > probs[:, :, None], probs[:, None, :], 0.0), axis=-1)
  nucleus = kept & ((above < top_p[:, None]) | (jnp.arange(k_cap) == 0))  # the best token always stays
  fits = (top_k > 0) | ~nucleus[:, -1]  # the k_cap-th best is out: everything below it is out too
  perturbed = jnp.where(nucleus, scaled + jax.vmap(_gumbel_for_ids)(keys, idx), -jnp.inf)
  return jnp.take_along_axis(idx, jnp.argmax(perturbed, axis=-1)[:, None], axis=1)[:, 0].astype(jnp.int32), fits


def _whole_vocabulary(logits, keys, temperature, top_p):
  scaled = logits / temperature[:, None]

  def nucleus():  # probabilities, and the floor's bisection, only when a row has top-p
    probs = jnp.exp(scaled - jax.nn.logsumexp(scaled, axis=-1, keepdims=True))
    return jnp.where(probs >= nucleus_floor(probs, top_p)[:, None], scaled, NEG)

  scaled = jax.lax.cond(jnp.any(top_p < 1.0), nucleus, lambda: scaled)
  return jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)


def _sample(logits, keys, temperature, top_p, top_k, k_cap):
  temperature = jnp.maximum(temperature, 1e-6)
  narrow = (top_k > 0) | (top_p < 1.0)
  tokens, fits = jax.lax.cond(
    jnp.any(narrow),
    lambda: _candidates(logits, keys, temperature, top_p, top_k, k_cap),
    lambda: (jnp.zeros(logits.shape[:1], jnp.int32), jnp.zeros(logits.shape[:1], bool)),
  )
  fits &= narrow
  wide = jax.lax.cond(jnp.all(fits), lambda: tokens, lambda: _whole_vocabulary(logits, keys, temperature, top_p))
  return jnp.where(fits, tokens, wide)


def select(
  logits: jax.Array,
  keys: jax.Array,
  temperature: jax.Array,
  top_p: jax.Array,
  top_k: jax.Array,
  k_cap: int,
  vocab_limit: jax.Array | int | None = None,
  penalties: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
  """logits f32 [B, V], keys [B] PRNG keys, per-row params [B] -> (tokens [B], logprobs [B]).

  k_cap bounds top_k (a static `lax.top_k` size) and is the candidate count. penalties: (counts [B, V],
  presence [B], frequency [B]). Ids >= vocab_limit (embedding rows past the tokenizer) are never chosen; the
  reported log-prob is still under the model's full distribution, which is what the scorer computes.
  """
  model_logits = logits
  if penalties is not None:
    logits = penalize(logits, *penalties)
  if vocab_limit is not None:
    logits = jnp.where(jnp.arange(logits.shape[-1])[None, :] < vocab_limit, logits, NEG)
  k_cap = min(k_cap, logits.shape[-1])
  greedy = lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32)
  # An all-greedy batch skips the sampling work: a runtime branch, not a recompile.
  tokens = jax.lax.cond(
    jnp.all(temperature <= 0),
    greedy,
    lambda: jnp.where(temperature > 0, _sample(logits, keys, temperature, top_p, top_k, k_cap), greedy()),
  )
  chosen = jnp.take_along_axis(model_logits, tokens[:, None], axis=1)[:, 0]
  return tokens, chosen - jax.nn.logsumexp(model_logits, axis=-1)


def row_keys(seed: jax.Array, row_ids: jax.Array, step: jax.Array) -> jax.Array:
  """fold_in(fold_in(key(seed), row id), step): a row's randomness does not depend on its batch-mates. step: one
  for all rows or one per row (each row's own count of tokens so far)."""
  base = jax.random.key(seed)
  steps = jnp.broadcast_to(jnp.asarray(step), row_ids.shape)
  return jax.vmap(lambda r, s: jax.random.fold_in(jax.random.fold_in(base, r), s))(row_ids, steps)
