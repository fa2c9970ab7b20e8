"""KV-cache sampler: one jitted prefill and one jitted `lax.while_loop` decode, run in host-visible chunks.

Prompts are left-padded to a length bucket, so every row writes the same cache column at each step (tunix /
gemma layout) and compiles stay few. The cache is `[L, B, S, K, H]` with S = prompt bucket + max_new_tokens, so
it can never overflow. Per-row temperature / top-p / top-k are arrays (no recompiles when they change); a row's
random key is derived from (seed, row id, step) only. Finished rows emit padding and their positions freeze.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from rsft.infer.sampling import NEG, row_keys, select
from rsft.models.decoder import positions_from_mask
from rsft.models.layers import precision


@dataclasses.dataclass(frozen=True)
class Options:
  n: int = 1                       # samples per prompt (one prefill, cache repeated)
  top_k_cap: int = 64              # static bound on top-k (candidates for top-p); >= the largest top_k used
  prompt_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
  chunk_steps: int = 256           # decode steps per host round trip (early stop, progress)
  pad_id: int = 0


@dataclasses.dataclass
class GenerateResult:
  tokens: list[list[int]]          # generated ids, stop token included when hit
  logprobs: list[list[float]]      # model log-prob of each generated id
  finish_reason: list[str]         # "stop" | "length"


def _bucket(length: int, buckets: Sequence[int]) -> int:
  return next((b for b in sorted(buckets) if b >= length), length)


def _last_logits(model, hidden: jax.Array) -> jax.Array:
  return jnp.einsum("BD,DV->BV", hidden, model.head_kernel(), preferred_element_type=jnp.float32,
                    precision=precision(hidden.dtype))


@functools.partial(jax.jit, static_argnames=("graphdef", "cache_len"))
def prefill(graphdef, params, ids, mask, cache_len: int) -> dict[str, Any]:
  """Runs the left-padded prompts [B, P]; returns the decode state with logits for the first new token."""
  model = nnx.merge(graphdef, params)
  cfg = model.cfg
  b, p = ids.shape
  shape = (cfg.num_layers, b, cache_len, cfg.num_kv_heads, cfg.head_dim)
  cache = {"k": jnp.zeros(shape, model.dtype), "v": jnp.zeros(shape, model.dtype)}
  kv_valid = jnp.zeros((b, cache_len), bool).at[:, :p].set(mask > 0)
  hidden, cache = model.extend(ids, positions_from_mask(mask), cache, jnp.int32(0), kv_valid)
  return dict(cache=cache, kv_valid=kv_valid, logits=_last_logits(model, hidden[:, -1]),
              pos=mask.sum(axis=1).astype(jnp.int32))


def repeat_rows(state: dict[str, Any], n: int) -> dict[str, Any]:
  if n == 1:
    return state
  rep = lambda x: jnp.repeat(x, n, axis=0)
  return dict(cache={k: jnp.repeat(v, n, axis=1) for k, v in state["cache"].items()},
              kv_valid=rep(state["kv_valid"]), logits=rep(state["logits"]), pos=rep(state["pos"]))


@functools.partial(jax.jit, static_argnames=("graphdef", "k_cap", "max_new", "chunk"), donate_argnames=("state",))
def decode(graphdef, params, state, params_rows, stop_ids, seed, prompt_len, vocab_limit, *, k_cap: int,
           max_new: int, chunk: int, pad_id: int = 0):
  """Runs up to `chunk` decode steps (fewer if every row is done or max_new is reached)."""
  model = nnx.merge(graphdef, params)
  temperature, top_p, top_k, row_ids = params_rows
  end = jnp.minimum(state["step"] + chunk, max_new)
  vocab = jnp.arange(state["logits"].shape[-1])

  def cond(s):
    return (s["step"] < end) & ~jnp.all(s["done"])

  def body(s):
    step = s["step"]
    logits = jnp.where(vocab[None, :] < vocab_limit, s["logits"], NEG)
    tok, lp = select(logits, row_keys(seed, row_ids, step), temperature, top_p, top_k, k_cap)
    tok = jnp.where(s["done"], pad_id, tok)
    lp = jnp.where(s["done"], 0.0, lp)
    hit = jnp.isin(tok, stop_ids) & ~s["done"]
    write = prompt_len + step
    kv_valid = jax.lax.dynamic_update_slice_in_dim(s["kv_valid"], jnp.ones((tok.shape[0], 1), bool), write, axis=1)
    hidden, cache = model.extend(tok[:, None], s["pos"][:, None], s["cache"], write, kv_valid)
    done = s["done"] | hit
    return dict(s, cache=cache, kv_valid=kv_valid, logits=_last_logits(model, hidden[:, 0]),
                tokens=s["tokens"].at[:, step].set(tok), logprobs=s["logprobs"].at[:, step].set(lp),
                stopped=s["stopped"] | hit, done=done, pos=s["pos"] + (~done).astype(jnp.int32), step=step + 1)

  return jax.lax.while_loop(cond, body, state)


def generate(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: Any = 0.0,
             top_p: Any = 1.0, top_k: Any = 0, seed: int = 0, stop_token_ids: Sequence[int] | None = None,
             options: Options | None = None, vocab_limit: int | None = None) -> GenerateResult:
  """Samples `options.n` continuations per prompt (see rsft.generate)."""
  opts = options or Options()
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("generate needs at least one prompt, and every prompt needs at least one token.")
  b, n = len(prompts), opts.n
  p = _bucket(max(len(x) for x in prompts), opts.prompt_buckets)
  ids = np.full((b, p), opts.pad_id, np.int32)
  mask = np.zeros((b, p), np.int32)
  for i, prompt in enumerate(prompts):
    ids[i, p - len(prompt):], mask[i, p - len(prompt):] = prompt, 1
  per_row = lambda v, dtype: np.repeat(np.broadcast_to(np.asarray(v, dtype), (b,)), n)
  temp, tp, tk = per_row(temperature, np.float32), per_row(top_p, np.float32), per_row(top_k, np.int32)
  if tk.max() > opts.top_k_cap:
    raise ValueError(f"top_k={int(tk.max())} exceeds options.top_k_cap={opts.top_k_cap}; raise the cap.")
  rows = b * n
  state = repeat_rows(prefill(model.graphdef, model.params, ids, mask, p + max_new_tokens), n)
  state.update(tokens=jnp.full((rows, max_new_tokens), opts.pad_id, jnp.int32),
               logprobs=jnp.zeros((rows, max_new_tokens), jnp.float32), done=jnp.zeros((rows,), bool),
               stopped=jnp.zeros((rows,), bool), step=jnp.int32(0))
  stops = jnp.asarray(list(stop_token_ids) if stop_token_ids else [-1], jnp.int32)
  limit = vocab_limit or (len(model.tokenizer) if model.tokenizer is not None else model.config.vocab_size)
  params_rows = (jnp.asarray(temp), jnp.asarray(tp), jnp.asarray(tk), jnp.arange(rows, dtype=jnp.int32))
  while True:
    state = decode(model.graphdef, model.params, state, params_rows, stops, jnp.uint32(seed), jnp.int32(p),
                   jnp.int32(min(limit, model.config.vocab_size)), k_cap=min(opts.top_k_cap, model.config.vocab_size),
                   max_new=max_new_tokens, chunk=opts.chunk_steps, pad_id=opts.pad_id)
    step, all_done = int(state["step"]), bool(jnp.all(state["done"]))
    logging.log_every_n_seconds(logging.INFO, "generate: %d/%d steps", 10, step, max_new_tokens)
    if all_done or step >= max_new_tokens:
      break
  tokens, logprobs = np.asarray(state["tokens"]), np.asarray(state["logprobs"])
  stopped = np.asarray(state["stopped"])
  out_tokens, out_lps, reasons = [], [], []
  for r in range(rows):
    length = step
    if stopped[r]:
      length = int(np.flatnonzero(np.isin(tokens[r], np.asarray(stops)))[0]) + 1
    out_tokens.append(tokens[r, :length].tolist())
    out_lps.append(logprobs[r, :length].tolist())
    reasons.append("stop" if stopped[r] else "length")
  return GenerateResult(out_tokens, out_lps, reasons)
