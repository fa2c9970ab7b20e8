"""Causal self-attention over segment ids, by backend: one reference and three memory-lean implementations.

`model.attention` picks one for training, scoring and (inside `Decoder.__call__`) any full-sequence forward:
  xla      the einsum reference: materialises [B, K, G, T, T] float32 scores (fine for short rows, tests);
  chunked  queries in blocks of `ATTENTION_CHUNK`, each block rematerialised in the backward pass, so the live
           scores are [B, K, G, chunk, T]: the portable long-context path (any backend, any segment layout);
  splash   TPU Pallas splash attention with segment ids (packing and padding), under shard_map over the mesh;
  cudnn    GPU cuDNN flash attention through `jax.nn.dot_product_attention` (causal + per-row lengths); rows
           that are not one right-padded segment (packing, left padding) take the chunked path via lax.cond;
  auto     splash on TPU, cudnn on GPU, otherwise xla up to 2,048 tokens and chunked beyond.
On a mesh with a `sequence` axis (context parallelism) attention is rsft/models/context_parallel.py's.
A whole prompt prefilled into an empty cache uses the chosen kernel too; chunked prefill reads the contiguous
cache block by block (`cached_attention`). Decode reads each row's pages of the sampler's paged cache
(`paged_attention`, an exact XLA path), or on TPU (splash resolved) jax's Pallas paged-attention kernel
(`paged_kernel_step`).
A token attends to earlier tokens of its own segment; segment 0 is padding (its outputs are never used).
With a sliding `window` (Mistral's `sliding_window`) it attends to the last `window` tokens of its segment, itself
included: key j is seen by query i iff 0 <= i - j < window (transformers' `sliding_window_overlay`,
`kv_idx > q_idx - window`). Every implementation takes it: xla and chunked in the explicit mask, cudnn through
`local_window_size=(window - 1, 0)` (cuDNN's own sliding window; rows it cannot take fall back to chunked, which has
the window too) and splash through a `LocalMask` in place of the causal mask. Index distance equals position
distance because segments are contiguous (packing, left or right padding).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rsft.models.layers import precision
from rsft.sharding import Rules

IMPLEMENTATIONS = ("auto", "xla", "chunked", "splash", "cudnn")
SEQUENCE_IMPLEMENTATIONS = ("allgather", "ring")  # mesh.sequence_attention: how queries meet other shards' keys
ATTENTION_CHUNK = 1024
DECODE_BLOCK = 128  # cache columns per block of cached_attention (chunked prefill reads blocks up to the filled length)
SPLASH_BLOCK = 512
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully masked (padding) rows give no NaN.


def resolve(implementation: str, seq_len: int, platform: str | None = None) -> str:
  if implementation in SEQUENCE_IMPLEMENTATIONS:  # a context-parallel model on rows its mesh does not split
    return "chunked"
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"model.attention={implementation!r}; choose one of {IMPLEMENTATIONS}")
  if implementation != "auto":
    return implementation
  platform = platform or jax.default_backend()
  if platform == "tpu":
    return "splash"
  if platform in ("gpu", "cuda", "rocm"):
    return "cudnn"
  return "xla" if seq_len <= 2048 else "chunked"


def segment_mask(
  q_segments: jax.Array, kv_segments: jax.Array, q_offset: int | jax.Array = 0, window: int | None = None
) -> jax.Array:
  """[B, Tq, S] bool: causal (query i sits at position q_offset + i), same segment, key not padding, and with a
  `window` at most window - 1 tokens back."""
  q_idx = q_offset + jnp.arange(q_segments.shape[1])
  kv_idx = jnp.arange(kv_segments.shape[1])
  distance = q_idx[None, :, None] - kv_idx[None, None, :]
  mask = (distance >= 0) & (q_segments[:, :, None] == kv_segments[:, None, :]) & (kv_segments[:, None, :] != 0)
  return mask if window is None else mask & (distance < window)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """Reference GQA attention. q [B,T,N,H], k/v [B,S,K,H], mask [B,T,S] bool. Softmax in float32."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  qg = q.reshape(b, t, kv, n // kv, h)
  scores = jnp.einsum("BTKGH,BSKH->BKGTS", qg, k, preferred_element_type=jnp.float32, precision=precision(q.dtype)) * (
    h**-0.5
  )
  scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v, precision=precision(v.dtype))
  return out.reshape(b, t, n, h)


class CacheMask(NamedTuple):
  """Which cache columns a query sees (decode and chunked prefill): a valid column c with c <= query_columns[t],
  and with a sliding window, query_positions[b, t] - key_positions[b, c] < window. `filled` columns [0, filled)
  are the only ones written; attention reads no further."""

  kv_valid: jax.Array  # [B, S] bool
  query_columns: jax.Array  # [T] int: the column each query was written to
  filled: jax.Array  # int: columns [0, filled) hold the cache's contents
  query_positions: jax.Array | None = None  # [B, T], with a window
  key_positions: jax.Array | None = None  # [B, S], with a window
  window: int | None = None


def _online_softmax(qg: jax.Array, blocks: jax.Array, read_block, scale: float):
  """Attention of grouped queries qg [B,T,K,G,H] over `blocks` blocks of keys, one at a time under a while loop
  with an online softmax. read_block(i) -> (k [B,S,K,H], v, mask [B,T,S]). A block that is wholly masked for a
  query leaves its running sums exactly unchanged (or, before the first visible column, is wiped exactly by the
  rescale), so the result does not depend on how far the loop runs. Returns [B,T,K*G,H] in qg's dtype."""
  b, t, kv, g, h = qg.shape

  def body(carry):
    i, m, l, acc = carry
    k, v, mask = read_block(i)
    scores = (
      jnp.einsum(
        "BTKGH,BSKH->BKGTS", qg, k.astype(qg.dtype), preferred_element_type=jnp.float32, precision=precision(qg.dtype)
      )
      * scale
    )
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
    m_new = jnp.maximum(m, scores.max(axis=-1))
    correction = jnp.exp(m - m_new)
    p = jnp.exp(scores - m_new[..., None])
    l = l * correction + p.sum(axis=-1)
    acc = acc * correction[..., None] + jnp.einsum(
      "BKGTS,BSKH->BKGTH",
      p.astype(qg.dtype),
      v.astype(qg.dtype),
      preferred_element_type=jnp.float32,
      precision=precision(qg.dtype),
    )
    return i + 1, m_new, l, acc

  shape = (b, kv, g, t)
  init = (
    jnp.int32(0),
    jnp.full(shape, _MASK_VALUE, jnp.float32),
    jnp.zeros(shape, jnp.float32),
    jnp.zeros(shape + (h,), jnp.float32),
  )
  _, _, l, acc = jax.lax.while_loop(lambda c: c[0] < blocks, body, init)
  out = acc / jnp.where(l == 0, 1.0, l)[..., None]  # [B, K, G, T, H]; a row with no block run gives zeros
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, kv * g, h).astype(qg.dtype)


def cached_attention(
  q: jax.Array, k_all: jax.Array, v_all: jax.Array, layer: jax.Array, visible: CacheMask, block: int = DECODE_BLOCK
) -> jax.Array:
  """q [B,T,N,H] against layer `layer` of the [L, B, S, K, H] caches, reading only the filled columns (chunked
  prefill into a contiguous cache): blocks of `block` columns up to `visible.filled`, so a piece costs what is
  written, not the cache's capacity."""
  b, t, n, h = q.shape
  s, kv = k_all.shape[2], k_all.shape[3]
  block = min(block, s)

  def read_block(i):
    start = jnp.minimum(i * block, s - block)  # the last block may overlap the one before: its repeats are masked
    cols = start + jnp.arange(block)
    k = jax.lax.dynamic_slice(k_all, (layer, 0, start, 0, 0), (1, b, block, kv, h))[0]
    v = jax.lax.dynamic_slice(v_all, (layer, 0, start, 0, 0), (1, b, block, kv, h))[0]
    mask = (
      jax.lax.dynamic_slice_in_dim(visible.kv_valid, start, block, axis=1)[:, None, :]
      & (cols[None, None, :] <= visible.query_columns[None, :, None])
      & (cols >= i * block)[None, None, :]
    )
    if visible.window is not None:
      keys = jax.lax.dynamic_slice_in_dim(visible.key_positions, start, block, axis=1)
      mask &= (visible.query_positions[:, :, None] - keys[:, None, :]) < visible.window
    return k, v, mask

  blocks = (visible.filled + block - 1) // block
  return _online_softmax(q.reshape(b, t, kv, n // kv, h), blocks, read_block, h**-0.5)


class Pages(NamedTuple):
  """Where each row's cache lives in a paged pool (the sampler's continuous batching).

  The pools are [D, K, L, pages, page_size, H]: D = data-parallel shards, row b's pages in shard b // (B / D),
  page 0 of each shard a scratch page that rows without a page write to. Row b's column c (its token at position
  c: a row holds no padding) is page `table[b, c // page_size]`, slot c % page_size. One shard's pool is, with no
  copy, the [K, L * pages, page_size, H] array TPU's Pallas paged-attention kernel reads (layer l's page p at
  l * pages + p)."""

  table: jax.Array  # [B, pages_per_row] int: shard-local page ids
  lengths: jax.Array  # [B] int: columns [0, lengths) hold the row's tokens, this call's included
  reach: jax.Array  # int: attention reads no column at or beyond it (max length of the live rows)


def _per_shard(fn, pool: jax.Array, *args: jax.Array) -> jax.Array:
  """fn(one shard's pool [K, L, pages, ...], *that shard's rows) under vmap over the leading shard axis: a gather
  or scatter with the shard as a batching dimension, which stays on the shard's devices (and, leading, needs no
  transposed copy of the pool)."""
  d = pool.shape[0]
  split = lambda x: x.reshape((d, x.shape[0] // d) + x.shape[1:])
  return jax.vmap(fn)(pool, *map(split, args))


def _write_page(table: jax.Array, columns: jax.Array, page_size: int, live: jax.Array) -> jax.Array:
  """The page that column [B,T] of each row goes to; a row (live [B]) or token (live [B,T]) not live writes the
  scratch page 0."""
  live = live if live.ndim == 2 else live[:, None]
  return jnp.where(live, jnp.take_along_axis(table, jnp.maximum(columns, 0) // page_size, axis=1), 0)


def write_pages(
  pool: jax.Array, layer: jax.Array, pages: Pages, columns: jax.Array, values: jax.Array, live: jax.Array
) -> jax.Array:
  """values [B,T,K,H] written at columns [B,T] of layer `layer`; rows (or tokens, live [B,T]) not `live` write the
  scratch page."""
  page_size = pool.shape[4]
  page = _write_page(pages.table, columns, page_size, live)
  # p[:, layer, pg, off] is [K, rows, T, H]: the values go in heads first
  return _per_shard(
    lambda p, pg, off, val: p.at[:, layer, pg, off].set(val.transpose(2, 0, 1, 3).astype(p.dtype)),
    pool,
    page,
    columns % page_size,
    values,
  )


def paged_kernel_fits(q: jax.Array, k_pool: jax.Array, window: int | None, rules: Rules) -> bool:
  """Whether TPU's Pallas paged-attention kernel takes this decode step: one query per row, no sliding window,
  a bfloat16 cache (the kernel computes with bf16 keys and values whatever it is given, so a float32 cache keeps
  the exact path), head_dim a multiple of 128 (its lanes), and query and KV heads split alike over `tensor`."""
  if q.shape[1] != 1 or window is not None or k_pool.dtype != jnp.bfloat16 or q.shape[-1] % 128:
    return False
  if rules.mesh is None:
    return True
  q_heads = rules.spec(("batch", None, "act_heads", None), q.shape, "q", strict=False)[2]
  kv_heads = rules.spec(("batch", "act_kv_heads"), k_pool.shape[:2], "pool", strict=False)[1]
  return q_heads == kv_heads


def paged_kernel_step(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  k_pool: jax.Array,
  v_pool: jax.Array,
  layer: jax.Array,
  pages: Pages,
  live: jax.Array,
  rules: Rules,
  interpret: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One decode step on TPU: each row's new key / value (k, v [B,1,K,H]) written into its page, then jax's Pallas
  paged-attention kernel, under shard_map over (shards, heads). The writes are per-row dynamic-update-slices on this
  device's pool, one head at a time, which keep the pool's layout (a scatter, or updates spanning the heads, made
  XLA re-lay the whole pool out around the kernel: a copy per call). Returns (out [B,1,N,H], k_pool, v_pool)."""
  from jax.experimental.pallas import tpu as pltpu
  from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention_kernel as pallas_paged

  h = q.shape[-1]
  n_layers, n_pages, page_size = k_pool.shape[2:5]
  per_row = pages.table.shape[1]
  per_block = next(d for d in (8, 4, 2, 1) if per_row % d == 0)

  def step(q, k, v, k_pool, v_pool, table, lengths, live):  # this device's shards (one under shard_map), rows
    rows = q.shape[0] // k_pool.shape[0]
    column = lengths - 1
    page = _write_page(table, column[:, None], page_size, live)[:, 0]

    def write(r, pools):  # head by head: each update is one contiguous row of H, whatever the pool's tiling
      for head in range(k_pool.shape[1]):
        at = (r // rows, head, layer, page[r], column[r] % page_size, 0)
        pools = tuple(
          jax.lax.dynamic_update_slice(pool, x[r, 0, head].reshape(1, 1, 1, 1, 1, h).astype(pool.dtype), at)
          for pool, x in zip(pools, (k, v))
        )
      return pools

    k_pool, v_pool = jax.lax.fori_loop(0, q.shape[0], write, (k_pool, v_pool))
    flat = lambda pool, d: pool[d].reshape(pool.shape[1], n_layers * n_pages, page_size, h)  # a bitcast, no copy
    outs = [
      pallas_paged.paged_attention(
        q[d * rows : (d + 1) * rows, 0] * jnp.asarray(h**-0.5, q.dtype),
        flat(k_pool, d),
        flat(v_pool, d),
        lengths[d * rows : (d + 1) * rows],
        table[d * rows : (d + 1) * rows] + layer * n_pages,
        pages_per_compute_block=per_block,
      )
      for d in range(k_pool.shape[0])
    ]
    return jnp.concatenate(outs)[:, None].astype(q.dtype), k_pool, v_pool

  call = step
  if rules.mesh is not None:
    q_spec = rules.spec(("batch", None, "act_heads", None), q.shape, "q", strict=False)
    kv_spec = rules.spec(("batch", None, "act_kv_heads", None), k.shape, "k", strict=False)
    pool_spec = rules.spec(("batch", "act_kv_heads", None, None, None, None), k_pool.shape, "pool", strict=False)
    rows = jax.sharding.PartitionSpec(q_spec[0])
    call = jax.shard_map(
      step,
      mesh=rules.mesh,
      check_vma=False,
      out_specs=(q_spec, pool_spec, pool_spec),
      in_specs=(
        q_spec,
        kv_spec,
        kv_spec,
        pool_spec,
        pool_spec,
        jax.sharding.PartitionSpec(q_spec[0], None),
        rows,
        rows,
      ),
    )
  lengths = jnp.where(live, pages.lengths, 1)  # idle slots keep stale lengths: the kernel reads one column of them
  args = (q, k, v, k_pool, v_pool, pages.table, lengths, live)
  if interpret:  # the CPU tests: the same kernel through Pallas's TPU interpreter
    with pltpu.force_tpu_interpret_mode():
      return call(*args)
  return call(*args)


def paged_attention(
  q: jax.Array,
  k_pool: jax.Array,
  v_pool: jax.Array,
  layer: jax.Array,
  pages: Pages,
  query_columns: jax.Array,
  window: int | None = None,
) -> jax.Array:
  """q [B,T,N,H] (query t of row b at column query_columns[b, t]) against its row's pages of layer `layer`,
  a page per block up to `pages.reach`: a step costs what the rows have written. Key column c is seen iff
  c <= the query's column and, with a `window`, the query's column - c < window (columns are positions).
  The exact XLA path; on TPU decode takes `paged_kernel_step` where `paged_kernel_fits`."""
  b, t, n, h = q.shape
  kv, page_size = k_pool.shape[1], k_pool.shape[4]

  def read_block(i):
    page = pages.table[:, i]
    k, v = (
      _per_shard(lambda p, pg: p[:, layer, pg], pool, page)  # [D, K, rows, page, H]
      .transpose(0, 2, 3, 1, 4)
      .reshape(b, page_size, kv, h)
      for pool in (k_pool, v_pool)
    )
    cols = i * page_size + jnp.arange(page_size)
    mask = (cols[None, None, :] <= query_columns[:, :, None]) & (cols[None, None, :] < pages.lengths[:, None, None])
    if window is not None:
      mask &= (query_columns[:, :, None] - cols[None, None, :]) < window
    return k, v, mask

  blocks = (pages.reach + page_size - 1) // page_size
  return _online_softmax(q.reshape(b, t, kv, n // kv, h), blocks, read_block, h**-0.5)


def opaque(fn):
  """`fn` recomputed in the backward pass rather than split by partial evaluation: inside a scan over layers, JAX
  hoists what depends only on loop constants (the rows' segment ids and positions) out of the loop, and would keep
  a mask per block pair (or per query block) for every layer: quadratic memory."""
  return jax.checkpoint(fn, policy=jax.checkpoint_policies.nothing_saveable)


def chunked(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  chunk: int = ATTENTION_CHUNK,
  window: int | None = None,
) -> jax.Array:
  """Query blocks under a scan; each block is rematerialised, so the backward pass keeps no [T, T] scores (and,
  opaque to partial evaluation, no [T, T] masks hoisted out of a layer scan)."""
  if q.shape[1] <= chunk:
    return dot_product_attention(q, k, v, segment_mask(segment_ids, segment_ids, window=window))
  return opaque(functools.partial(_chunked, chunk=chunk, window=window))(q, k, v, segment_ids)


def _chunked(q, k, v, segment_ids, chunk, window):
  b, t, n, h = q.shape
  pad = -t % chunk
  qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
  seg_q = jnp.pad(segment_ids, ((0, 0), (0, pad)))
  blocks = (t + pad) // chunk
  q_blocks = qp.reshape(b, blocks, chunk, n, h).swapaxes(0, 1)
  seg_blocks = seg_q.reshape(b, blocks, chunk).swapaxes(0, 1)

  @jax.checkpoint
  def one(args):
    i, q_block, seg_block = args
    return dot_product_attention(q_block, k, v, segment_mask(seg_block, segment_ids, i * chunk, window))

  out = jax.lax.map(one, (jnp.arange(blocks), q_blocks, seg_blocks))
  return out.swapaxes(0, 1).reshape(b, t + pad, n, h)[:, :t]


def flash_eligible(segment_ids: jax.Array) -> jax.Array:
  """Whether cuDNN's flash kernel can take the batch: every row is one segment then padding (its lengths say
  it all). Packed or left-padded rows are not."""
  lengths = (segment_ids > 0).sum(axis=1)
  prefix = jnp.arange(segment_ids.shape[1])[None, :] < lengths[:, None]
  return jnp.all(jnp.where(prefix, segment_ids == segment_ids[:, :1], segment_ids == 0))


def cudnn_flash(
  q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, window: int | None = None
) -> jax.Array:
  """cuDNN flash attention (causal, per-row lengths, optional window) for rows that are flash_eligible."""
  lengths = (segment_ids > 0).sum(axis=1).astype(jnp.int32)
  return jax.nn.dot_product_attention(
    q,
    k,
    v,
    is_causal=True,
    query_seq_lengths=lengths,
    key_value_seq_lengths=lengths,
    implementation=_cudnn_impl(q.dtype),
    local_window_size=None if window is None else (window - 1, 0),
  )


def cudnn(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, window: int | None = None) -> jax.Array:
  """cuDNN flash attention for flash_eligible batches; anything else falls back to chunked (exactly)."""
  return jax.lax.cond(
    flash_eligible(segment_ids),
    lambda q, k, v: cudnn_flash(q, k, v, segment_ids, window),
    lambda q, k, v: chunked(q, k, v, segment_ids, window=window),
    q,
    k,
    v,
  )


def _cudnn_impl(dtype) -> str | None:
  """'cudnn' on GPU for bf16/fp16 (all cuDNN's fused attention takes); float32 (parity checks) and other
  backends (the CPU tests of this path) make the same call through XLA."""
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  return "cudnn" if jax.default_backend() == "gpu" and half else "xla"


@functools.lru_cache(maxsize=32)
def _splash_kernel(seq_len: int, heads: int, block: int, interpret: bool, window: int | None = None):
  """Built once per shape: the kernel precomputes its block-sparsity tables from the causal (or causal local)
  mask in numpy, so blocks wholly outside a sliding window are skipped."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

  shape = (seq_len, seq_len)
  one = lambda: sm.CausalMask(shape) if window is None else sm.LocalMask(shape, (window - 1, 0), 0)
  mask = sm.MultiHeadMask([one() for _ in range(heads)])
  sizes = sk.BlockSizes(
    block_q=block,
    block_kv=block,
    block_kv_compute=block,
    block_q_dkv=block,
    block_kv_dkv=block,
    block_kv_dkv_compute=block,
    block_q_dq=block,
    block_kv_dq=block,
  )
  return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def splash(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  rules: Rules,
  interpret: bool = False,
  block: int = SPLASH_BLOCK,
  window: int | None = None,
) -> jax.Array:
  """TPU splash attention: shard_map over (batch, heads) shards; rows padded to a block multiple."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk

  b, t, n, h = q.shape
  kv_heads = k.shape[2]
  block = min(block, max(128, -(-t // 128) * 128))
  pad = -t % block
  padded = t + pad
  q = q * jnp.asarray(h**-0.5, q.dtype)  # the kernel does not scale

  def kernel(q, k, v, seg):
    if q.shape[2] % k.shape[2]:
      raise ValueError(f"splash: {q.shape[2]} local query heads for {k.shape[2]} key heads")
    attend = _splash_kernel(padded, q.shape[2], block, interpret, window)
    to_heads = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # [B,N,T,H]
    seg = jnp.pad(seg, ((0, 0), (0, pad)))
    out = jax.vmap(lambda q1, k1, v1, s1: attend(q1, k1, v1, segment_ids=sk.SegmentIds(s1, s1)))(
      to_heads(q), to_heads(k), to_heads(v), seg
    )
    return out.transpose(0, 2, 1, 3)[:, :t]

  if rules.mesh is None:
    return kernel(q, k, v, segment_ids)
  q_spec = rules.spec(("batch", "length", "act_heads", None), q.shape, "q", strict=False)
  kv_spec = rules.spec(("batch", "length", "act_kv_heads", None), k.shape, "k", strict=False)
  if q_spec[2] is not None and kv_spec[2] is None and kv_heads < n:  # KV heads replicated, query heads split
    k, v = (jnp.repeat(x, n // kv_heads, axis=2) for x in (k, v))
    kv_spec = q_spec
  seg_spec = jax.sharding.PartitionSpec(q_spec[0], None)
  return jax.shard_map(
    kernel, mesh=rules.mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec), out_specs=q_spec, check_vma=False
  )(q, k, v, segment_ids)


def self_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  implementation: str,
  rules: Rules,
  window: int | None = None,
) -> jax.Array:
  """q [B,T,N,H], k/v [B,T,K,H], segment_ids [B,T] -> [B,T,N,H] with the chosen implementation (and sliding
  `window`, None = full causal attention). Rows split over a `sequence` axis: rsft/models/context_parallel.py."""
  impl = resolve(implementation, q.shape[1])
  if impl == "xla":
    return dot_product_attention(q, k, v, segment_mask(segment_ids, segment_ids, window=window))
  if impl == "chunked":
    return chunked(q, k, v, segment_ids, window=window)
  if impl == "cudnn":
    return cudnn(q, k, v, segment_ids, window=window)
  return splash(q, k, v, segment_ids, rules, interpret=jax.default_backend() != "tpu", window=window)
