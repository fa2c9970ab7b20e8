"""KV-cache sampler: one jitted prefill and one jitted `lax.while_loop` decode, run in host-visible chunks.

Prompts are left-padded to a length bucket, so every row writes the same cache column at each step (tunix /
gemma layout) and compiles stay few. The cache is `[L, B, S, K, H]` with S = prompt bucket + max_new_tokens, so
it can never overflow. Per-row temperature / top-p / top-k / penalties / token limits are arrays (no recompiles
when they change); a row's random key is derived from (seed, row id, step) only. Finished rows emit padding and
their positions freeze. Presence / frequency penalties (vLLM's, over the row's output tokens) keep a [rows, V]
count table in the decode state, so they are a static switch: a batch without them carries no table.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
import tqdm
from flax import nnx

from rsft import sharding
from rsft.infer.sampling import row_keys, select
from rsft.models import attention
from rsft.models.decoder import positions_from_mask
from rsft.models.layers import precision
from rsft.models.model import abstract_model


@dataclasses.dataclass(frozen=True)
class Options:
  n: int = 1                       # samples per prompt (one prefill, cache repeated)
  top_k_cap: int = 64              # static bound on top-k (top-p is over the whole vocabulary); >= the largest top_k
  prompt_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
  chunk_steps: int = 256           # decode steps per host round trip (early stop, progress)
  pad_id: int = 0
  pad_prompts_to: int = 0          # pad smaller calls up to this many prompts (an eval run's last batch): no recompile
  prefill_chunk: int = 512         # prompt tokens per prefill piece (bounds attention memory); 0 = whole prompt


@dataclasses.dataclass
class GenerateResult:
  tokens: list[list[int]]          # generated ids, stop token included when hit
  logprobs: list[list[float]]      # model log-prob of each generated id
  finish_reason: list[str]         # "stop" | "length"


def _bucket(length: int, buckets: Sequence[int]) -> int:
  return next((b for b in sorted(buckets) if b >= length), length)


# Trace counts per jitted function: a trace happens once per compile, so these are the compile counts (logged,
# and tested: changing sampling parameters or running more chunks must not add any).
COMPILES: collections.Counter = collections.Counter()

# Logical axes of the decode state, so prefill and every decode chunk agree on its layout (batch over data,
# KV heads over tensor); a chunk's output layout is then its input layout and the second chunk never recompiles.
_STATE_AXES = dict(cache=("layers", "batch", None, "act_kv_heads", None), kv_valid=("batch", None),
                   logits=("batch", None), pos=("batch",), tokens=("batch", None), logprobs=("batch", None),
                   done=("batch",), step=(), counts=("batch", None))


def _constrain(rules, state: dict[str, Any]) -> dict[str, Any]:
  out = {}
  for key, value in state.items():
    axes = _STATE_AXES[key]
    out[key] = ({k: rules.constrain(v, axes) for k, v in value.items()} if isinstance(value, dict)
                else rules.constrain(value, axes))
  return out


def _repeat_rows(rules, x: jax.Array, n: int, axes: tuple[str | None, ...]) -> jax.Array:
  """Each batch row n times in a row. Broadcasting to [..., B, n, ...] under the batch layout first keeps the
  copies on the shard that holds their row (a bare jnp.repeat let XLA re-gather a whole KV cache)."""
  if n == 1:
    return x
  at = axes.index("batch")
  wide = jnp.broadcast_to(jnp.expand_dims(x, at + 1), x.shape[:at + 1] + (n,) + x.shape[at + 1:])
  wide = rules.constrain(wide, axes[:at + 1] + (None,) + axes[at + 1:])
  return wide.reshape(x.shape[:at] + (x.shape[at] * n,) + x.shape[at + 1:])


def _last_logits(model, hidden: jax.Array) -> jax.Array:
  return jnp.einsum("BD,DV->BV", hidden, model.head_kernel(), preferred_element_type=jnp.float32,
                    precision=precision(hidden.dtype))


@functools.partial(jax.jit, static_argnames=("graphdef", "cache_len", "max_new", "n", "pad_id", "chunk",
                                             "penalties"))
def prefill(graphdef, params, ids, mask, *, cache_len: int, max_new: int, n: int = 1, pad_id: int = 0,
            chunk: int = 0, penalties: bool = False):
  """Runs the left-padded prompts [B, P] once, then repeats each row n times (samples share the prefill).

  With `model.attention` resolving to a kernel (splash, cuDNN, query-chunked) the prompt attends to itself in one
  pass. With the einsum reference and `chunk` dividing P, the prompt runs in a scan over P / chunk pieces, so
  attention scores take [B, chunk, S] rather than [B, P, S] (long judge / benchmark prompts). Returns the whole decode state, laid
  out on the model's mesh, with the logits for the first new token.
  """
  COMPILES["prefill"] += 1
  logging.info("sampler: compiling prefill for %d prompts x %d tokens (cache %d)", *ids.shape, cache_len)
  model = nnx.merge(graphdef, params)
  cfg = model.cfg
  b, p = ids.shape
  shape = (cfg.num_layers, b, cache_len, cfg.num_kv_heads, cfg.head_dim)
  cache = {"k": jnp.zeros(shape, model.dtype), "v": jnp.zeros(shape, model.dtype)}
  kv_valid = jnp.zeros((b, cache_len), bool).at[:, :p].set(mask > 0)
  positions = positions_from_mask(mask)
  if attention.resolve(model.attention_impl, p) != "xla":  # a memory-lean kernel: the whole prompt at once
    hidden, cache = model.extend(ids, positions, cache, jnp.int32(0), kv_valid, segment_ids=mask)
    last = hidden[:, -1]
  elif chunk and p > chunk and p % chunk == 0:
    pieces = lambda x: x.reshape(b, p // chunk, chunk).swapaxes(0, 1)  # [P/chunk, B, chunk]

    def step(carry, xs):
      cache, _ = carry
      piece_ids, piece_pos, start = xs
      hidden, cache = model.extend(piece_ids, piece_pos, cache, start, kv_valid)
      return (cache, hidden[:, -1]), None

    starts = jnp.arange(0, p, chunk, dtype=jnp.int32)
    last = jnp.zeros((b, cfg.hidden_size), model.dtype)
    (cache, last), _ = jax.lax.scan(step, (cache, last), (pieces(ids), pieces(positions), starts))
  else:
    hidden, cache = model.extend(ids, positions, cache, jnp.int32(0), kv_valid)
    last = hidden[:, -1]
  rep = lambda x, key: _repeat_rows(model.rules, x, n, _STATE_AXES[key])
  rows = b * n
  state = dict(cache={k: rep(v, "cache") for k, v in cache.items()}, kv_valid=rep(kv_valid, "kv_valid"),
               logits=rep(_last_logits(model, last), "logits"),
               pos=rep(mask.sum(axis=1).astype(jnp.int32), "pos"),
               tokens=jnp.full((rows, max_new), pad_id, jnp.int32), logprobs=jnp.zeros((rows, max_new), jnp.float32),
               done=jnp.zeros((rows,), bool), step=jnp.int32(0))
  if penalties:
    state["counts"] = jnp.zeros((rows, cfg.vocab_size), jnp.int32)
  return _constrain(model.rules, state)


@functools.partial(jax.jit, static_argnames=("graphdef", "k_cap", "max_new", "chunk", "pad_id"),
                   donate_argnames=("state",))
def decode(graphdef, params, state, params_rows, stop_ids, seed, prompt_len, vocab_limit, *, k_cap: int,
           max_new: int, chunk: int, pad_id: int = 0):
  """Runs up to `chunk` decode steps (fewer if every row is done or max_new is reached).

  params_rows: per-row (temperature, top_p, top_k, row id, token limit, presence, frequency penalty); a row
  stops with "length" once it has `token limit` new tokens (<= max_new)."""
  COMPILES["decode"] += 1
  logging.info("sampler: compiling decode for %d rows (cache %d)", *state["kv_valid"].shape)
  model = nnx.merge(graphdef, params)
  temperature, top_p, top_k, row_ids, row_limit, presence, frequency = params_rows
  end = jnp.minimum(state["step"] + chunk, max_new)

  def cond(s):
    # The cache holds prompt bucket + max_new columns, so `step < end <= max_new` is also the cache-full guard.
    return (s["step"] < end) & ~jnp.all(s["done"])

  def body(s):
    step = s["step"]
    penalties = (s["counts"], presence, frequency) if "counts" in s else None
    tok, lp = select(s["logits"], row_keys(seed, row_ids, step), temperature, top_p, top_k, k_cap, vocab_limit,
                     penalties)
    tok = jnp.where(s["done"], pad_id, tok)
    lp = jnp.where(s["done"], 0.0, lp)
    hit = jnp.isin(tok, stop_ids) & ~s["done"]
    write = prompt_len + step
    kv_valid = jax.lax.dynamic_update_slice_in_dim(s["kv_valid"], jnp.ones((tok.shape[0], 1), bool), write, axis=1)
    hidden, cache = model.extend(tok[:, None], s["pos"][:, None], s["cache"], write, kv_valid)
    done = s["done"] | hit | (step + 1 >= row_limit)
    new = dict(s, cache=cache, kv_valid=kv_valid, logits=_last_logits(model, hidden[:, 0]),
               tokens=s["tokens"].at[:, step].set(tok), logprobs=s["logprobs"].at[:, step].set(lp),
               done=done, pos=s["pos"] + (~done).astype(jnp.int32), step=step + 1)
    if "counts" in s:
      new["counts"] = s["counts"].at[jnp.arange(tok.shape[0]), tok].add((~s["done"]).astype(jnp.int32))
    return new

  return _constrain(model.rules, jax.lax.while_loop(cond, body, state))


def prompts_that_fit(cfg: Any, dtype: Any, mesh: Any, cache_len: int, n: int, memory_bytes: float,
                     utilization: float = 0.9) -> int:
  """Prompts per generate call (each x n rows) whose decode state fits `utilization` of one device's memory after
  the weights (vLLM's gpu_memory_utilization): per row the K and V caches of `cache_len` positions (KV heads split
  over `tensor` when they divide), counted twice as headroom for prefill's temporaries (prefill, which writes the
  cache, is the sampler's peak: 18.5 of 31.25 GiB per chip for Qwen3-14B, 36 rows x 34,816 positions on
  v6e-16, rsft.tools.fit), plus float32 logits and the token buffers."""
  item = jnp.dtype(dtype).itemsize
  tensor = mesh.shape.get("tensor", 1) if mesh is not None else 1
  state = abstract_model(cfg, dtype, dtype)[1]
  weights = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) * item / tensor
  kv_split = tensor if cfg.num_kv_heads % tensor == 0 else 1
  per_row = 2 * 2 * cfg.num_layers * cache_len * cfg.num_kv_heads * cfg.head_dim * item / kv_split
  per_row += 3 * cfg.vocab_size * 4 + 2 * cache_len * 4
  rows_per_device = int((memory_bytes * utilization - weights) // per_row)
  if rows_per_device < 1:
    raise ValueError(f"sampling: one row of {cache_len} cache positions does not fit {memory_bytes / 2**30:.1f} GiB "
                     f"per device after {weights / 2**30:.1f} GiB of weights; raise sample.mesh.tensor or lower "
                     "eval.max_new_tokens.")
  return max(1, rows_per_device * sharding.batch_multiple(mesh) // n)


def generate(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: Any = 0.0,
             top_p: Any = 1.0, top_k: Any = 0, seed: int = 0, stop_token_ids: Sequence[int] | None = None,
             options: Options | None = None, vocab_limit: int | None = None,
             prompt_ids: Sequence[int] | None = None, presence_penalty: Any = 0.0, frequency_penalty: Any = 0.0,
             max_total_tokens: int | None = None) -> GenerateResult:
  """Samples continuations of token-id prompts with a KV cache; rsft.generate.

  temperature / top_p / top_k / presence_penalty / frequency_penalty: scalars or one value per prompt (0
  temperature = greedy; top-p is exact over the whole vocabulary; changing them never recompiles).
  stop_token_ids default to the model's (generation_config.json, else EOS + Qwen's stops).
  options: Options (n samples per prompt, top-k cap, prompt buckets, chunk steps).
  Returns .tokens, .logprobs (model log-prob of each token) and .finish_reason ("stop" | "length"), with
  n consecutive entries per prompt. Runs on the model's mesh (batch over data, KV heads over tensor); see
  rsft.reshard for a sampling mesh.

  presence_penalty / frequency_penalty: scalars or one per prompt (vLLM semantics, output tokens only).
  max_total_tokens: caps prompt + output per prompt (vLLM's max_model_len): a prompt of P tokens gets at most
  min(max_new_tokens, max_total_tokens - P) new tokens, then finishes with "length".

  prompt_ids: a stable id per prompt (default: its index). Sample j of prompt i draws its randomness from
  (seed, prompt_ids[i] * n + j, step), so an eval run that batches prompts differently (a resumed run) samples
  exactly the same tokens.
  """
  if model.config.head != "lm":
    raise ValueError("generate needs a CausalLM checkpoint; this one is a reward (score) model.")
  if stop_token_ids is None:
    stop_token_ids = getattr(model, "stop_token_ids", None) or []
  opts = options or Options()
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("generate needs at least one prompt, and every prompt needs at least one token.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}.")
  n, real = opts.n, len(prompts)
  uids = np.arange(real) if prompt_ids is None else np.asarray(prompt_ids, np.int64)
  if uids.shape != (real,):
    raise ValueError(f"prompt_ids has {uids.size} entries for {real} prompts.")
  # Pad the prompt count so rows (prompts x n) split evenly over the batch axes; padded rows are dropped.
  multiple = sharding.batch_multiple(model.mesh)
  b = max(real, opts.pad_prompts_to)
  while (b * n) % multiple:
    b += 1
  prompts = list(prompts) + [prompts[-1]] * (b - real)
  p = _bucket(max(len(x) for x in prompts), opts.prompt_buckets)
  max_pos = getattr(model.config, "max_position_embeddings", None)
  if max_pos and max(len(x) for x in prompts) + max_new_tokens > max_pos:
    logging.warning("generate: prompt + max_new_tokens exceeds max_position_embeddings=%d; RoPE is used beyond "
                    "the trained context.", max_pos)
  ids = np.full((b, p), opts.pad_id, np.int32)
  mask = np.zeros((b, p), np.int32)
  for i, prompt in enumerate(prompts):
    ids[i, p - len(prompt):], mask[i, p - len(prompt):] = prompt, 1
  per_prompt = lambda v, dtype: np.resize(np.broadcast_to(np.asarray(v, dtype), (real,)), b)
  per_row = lambda v, dtype: np.repeat(per_prompt(v, dtype), n)
  temp, tp, tk = per_row(temperature, np.float32), per_row(top_p, np.float32), per_row(top_k, np.int32)
  pres, freq = per_row(presence_penalty, np.float32), per_row(frequency_penalty, np.float32)
  penalties = bool(np.any(pres != 0) or np.any(freq != 0))
  lengths = np.asarray([len(x) for x in prompts])
  room = np.full(b, max_new_tokens) if not max_total_tokens else np.minimum(max_new_tokens, max_total_tokens - lengths)
  if (room[:real] < 1).any():
    logging.warning("generate: %d prompt(s) fill max_total_tokens=%d (the longest has %d tokens): their output is "
                    "empty, finish_reason 'length'.", int((room[:real] < 1).sum()), max_total_tokens,
                    int(lengths[:real].max()))
  room = np.maximum(room, 0)
  limit_rows = np.repeat(np.maximum(room, 1), n).astype(np.int32)  # a full row still runs one (discarded) step
  keep_rows = np.repeat(room, n)
  if tk.max() > opts.top_k_cap:
    raise ValueError(f"top_k={int(tk.max())} exceeds options.top_k_cap={opts.top_k_cap}; raise the cap.")
  row_ids = (np.repeat(np.resize(uids, b), n) * n + np.tile(np.arange(n), b)).astype(np.int32)
  put = lambda x: sharding.put_batch(model.mesh, x)
  state = prefill(model.graphdef, model.params, put(ids), put(mask), cache_len=p + max_new_tokens,
                  max_new=max_new_tokens, n=n, pad_id=opts.pad_id, chunk=opts.prefill_chunk, penalties=penalties)
  stops = jnp.asarray(list(stop_token_ids) if stop_token_ids else [-1], jnp.int32)
  limit = vocab_limit or (len(model.tokenizer) if model.tokenizer is not None else model.config.vocab_size)
  params_rows = tuple(put(x) for x in (temp, tp, tk, row_ids, limit_rows, pres, freq))
  progress = tqdm.tqdm(total=max_new_tokens, desc="decode", unit="step", disable=max_new_tokens < 4 * opts.chunk_steps,
                       leave=False)
  while True:
    state = decode(model.graphdef, model.params, state, params_rows, stops, jnp.uint32(seed), jnp.int32(p),
                   jnp.int32(min(limit, model.config.vocab_size)), k_cap=min(opts.top_k_cap, model.config.vocab_size),
                   max_new=max_new_tokens, chunk=opts.chunk_steps, pad_id=opts.pad_id)
    step, all_done = int(state["step"]), bool(jnp.all(state["done"]))
    progress.update(step - progress.n)
    if all_done or step >= max_new_tokens:
      break
  progress.close()
  logging.log_every_n_seconds(logging.INFO, "sampler: compiles so far prefill=%d decode=%d", 60,
                              COMPILES["prefill"], COMPILES["decode"])
  tokens, logprobs = (sharding.to_host(state[k]) for k in ("tokens", "logprobs"))
  stop_set = np.asarray(stops)
  out_tokens, out_lps, reasons = [], [], []
  for r in range(real * n):
    keep = min(step, int(keep_rows[r]))
    hits = np.flatnonzero(np.isin(tokens[r, :keep], stop_set))  # a row's tokens end at its first stop
    length = int(hits[0]) + 1 if len(hits) else keep
    out_tokens.append(tokens[r, :length].tolist())
    out_lps.append(logprobs[r, :length].tolist())
    reasons.append("stop" if len(hits) else "length")
  return GenerateResult(out_tokens, out_lps, reasons)
