"""Causal self-attention over segment ids, by backend: one reference and three memory-lean implementations.

`model.attention` picks one for training, scoring and (inside `Decoder.__call__`) any full-sequence forward:
  xla      the einsum reference: materialises [B, K, G, T, T] float32 scores (fine for short rows, tests);
  chunked  queries in blocks of `ATTENTION_CHUNK`, each block rematerialised in the backward pass, so the live
           scores are [B, K, G, chunk, T]: the portable long-context path (any backend, any segment layout);
  splash   TPU Pallas splash attention with segment ids (packing and padding), under shard_map over the mesh;
  cudnn    GPU cuDNN flash attention through `jax.nn.dot_product_attention` (causal + per-row lengths); rows
           that are not one right-padded segment (packing, left padding) take the chunked path via lax.cond;
  auto     splash on TPU, cudnn on GPU, otherwise xla up to 2,048 tokens and chunked beyond.
A whole prompt prefilled into an empty cache uses the chosen kernel too; chunked prefill and decode (queries
against the cache) keep the reference with an explicit mask.
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
ATTENTION_CHUNK = 1024
DECODE_BLOCK = 128  # cache columns per block of cached_attention (decode reads whole blocks up to the filled length)
SPLASH_BLOCK = 512
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite: fully masked (padding) rows give no NaN.


def resolve(implementation: str, seq_len: int, platform: str | None = None) -> str:
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


def segment_mask(q_segments: jax.Array, kv_segments: jax.Array, q_offset: int | jax.Array = 0,
                 window: int | None = None) -> jax.Array:
  """[B, Tq, S] bool: causal (query i sits at position q_offset + i), same segment, key not padding, and with a
  `window` at most window - 1 tokens back."""
  q_idx = q_offset + jnp.arange(q_segments.shape[1])
  kv_idx = jnp.arange(kv_segments.shape[1])
  distance = q_idx[None, :, None] - kv_idx[None, None, :]
  mask = ((distance >= 0) & (q_segments[:, :, None] == kv_segments[:, None, :]) & (kv_segments[:, None, :] != 0))
  return mask if window is None else mask & (distance < window)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """Reference GQA attention. q [B,T,N,H], k/v [B,S,K,H], mask [B,T,S] bool. Softmax in float32."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  qg = q.reshape(b, t, kv, n // kv, h)
  scores = jnp.einsum("BTKGH,BSKH->BKGTS", qg, k, preferred_element_type=jnp.float32,
                      precision=precision(q.dtype)) * (h ** -0.5)
  scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v, precision=precision(v.dtype))
  return out.reshape(b, t, n, h)


class CacheMask(NamedTuple):
  """Which cache columns a query sees (decode and chunked prefill): a valid column c with c <= query_columns[t],
  and with a sliding window, query_positions[b, t] - key_positions[b, c] < window. `filled` columns [0, filled)
  are the only ones written; attention reads no further."""
  kv_valid: jax.Array            # [B, S] bool
  query_columns: jax.Array       # [T] int: the column each query was written to
  filled: jax.Array              # int: columns [0, filled) hold the cache's contents
  query_positions: jax.Array | None = None  # [B, T], with a window
  key_positions: jax.Array | None = None    # [B, S], with a window
  window: int | None = None


def cached_attention(q: jax.Array, k_all: jax.Array, v_all: jax.Array, layer: jax.Array, visible: CacheMask,
                     block: int = DECODE_BLOCK) -> jax.Array:
  """q [B,T,N,H] against layer `layer` of the [L, B, S, K, H] caches, reading only the filled columns.

  Blocks of `block` columns are read one at a time under a while loop with an online softmax, so a decode step
  costs what the sequences have written, not the cache's capacity (prompt bucket + max_new_tokens). A block
  that is wholly masked for a query leaves its running sums exactly unchanged (or, before the first visible
  column, is wiped exactly by the rescale), so the result does not depend on how far the loop runs.
  """
  b, t, n, h = q.shape
  s, kv = k_all.shape[2], k_all.shape[3]
  block = min(block, s)
  qg = q.reshape(b, t, kv, n // kv, h)
  scale = h ** -0.5

  def body(carry):
    i, m, l, acc = carry
    start = jnp.minimum(i * block, s - block)  # the last block may overlap the one before: its repeats are masked
    cols = start + jnp.arange(block)
    k = jax.lax.dynamic_slice(k_all, (layer, 0, start, 0, 0), (1, b, block, kv, h))[0].astype(q.dtype)
    v = jax.lax.dynamic_slice(v_all, (layer, 0, start, 0, 0), (1, b, block, kv, h))[0].astype(q.dtype)
    mask = (jax.lax.dynamic_slice_in_dim(visible.kv_valid, start, block, axis=1)[:, None, :]
            & (cols[None, None, :] <= visible.query_columns[None, :, None]) & (cols >= i * block)[None, None, :])
    if visible.window is not None:
      keys = jax.lax.dynamic_slice_in_dim(visible.key_positions, start, block, axis=1)
      mask &= (visible.query_positions[:, :, None] - keys[:, None, :]) < visible.window
    scores = jnp.einsum("BTKGH,BSKH->BKGTS", qg, k, preferred_element_type=jnp.float32,
                        precision=precision(q.dtype)) * scale
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASK_VALUE)
    m_new = jnp.maximum(m, scores.max(axis=-1))
    correction = jnp.exp(m - m_new)
    p = jnp.exp(scores - m_new[..., None])
    l = l * correction + p.sum(axis=-1)
    acc = acc * correction[..., None] + jnp.einsum("BKGTS,BSKH->BKGTH", p.astype(v.dtype), v,
                                                   preferred_element_type=jnp.float32, precision=precision(v.dtype))
    return i + 1, m_new, l, acc

  shape = (b, kv, n // kv, t)
  init = (jnp.int32(0), jnp.full(shape, _MASK_VALUE, jnp.float32), jnp.zeros(shape, jnp.float32),
          jnp.zeros(shape + (h,), jnp.float32))
  blocks = (visible.filled + block - 1) // block
  _, _, l, acc = jax.lax.while_loop(lambda c: c[0] < blocks, body, init)
  out = acc / l[..., None]  # [B, K, G, T, H]
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h).astype(q.dtype)


def chunked(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, chunk: int = ATTENTION_CHUNK,
            window: int | None = None) -> jax.Array:
  """Query blocks under a scan; each block is rematerialised, so the backward pass keeps no [T, T] scores."""
  b, t, n, h = q.shape
  if t <= chunk:
    return dot_product_attention(q, k, v, segment_mask(segment_ids, segment_ids, window=window))
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


def cudnn_flash(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array,
                window: int | None = None) -> jax.Array:
  """cuDNN flash attention (causal, per-row lengths, optional window) for rows that are flash_eligible."""
  lengths = (segment_ids > 0).sum(axis=1).astype(jnp.int32)
  return jax.nn.dot_product_attention(q, k, v, is_causal=True, query_seq_lengths=lengths,
                                      key_value_seq_lengths=lengths, implementation=_cudnn_impl(q.dtype),
                                      local_window_size=None if window is None else (window - 1, 0))


def cudnn(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, window: int | None = None) -> jax.Array:
  """cuDNN flash attention for flash_eligible batches; anything else falls back to chunked (exactly)."""
  return jax.lax.cond(flash_eligible(segment_ids), lambda q, k, v: cudnn_flash(q, k, v, segment_ids, window),
                      lambda q, k, v: chunked(q, k, v, segment_ids, window=window), q, k, v)


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
  sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                        block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
  return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def splash(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, rules: Rules,
           interpret: bool = False, block: int = SPLASH_BLOCK, window: int | None = None) -> jax.Array:
  """TPU splash attention: shard_map over (batch, heads) shards; rows padded to a block multiple."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  b, t, n, h = q.shape
  kv_heads = k.shape[2]
  block = min(block, max(128, -(-t // 128) * 128))
  pad = -t % block
  padded = t + pad
  q = q * jnp.asarray(h ** -0.5, q.dtype)  # the kernel does not scale

  def kernel(q, k, v, seg):
    if q.shape[2] % k.shape[2]:
      raise ValueError(f"splash: {q.shape[2]} local query heads for {k.shape[2]} key heads")
    attend = _splash_kernel(padded, q.shape[2], block, interpret, window)
    to_heads = lambda x: jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # [B,N,T,H]
    seg = jnp.pad(seg, ((0, 0), (0, pad)))
    out = jax.vmap(lambda q1, k1, v1, s1: attend(q1, k1, v1, segment_ids=sk.SegmentIds(s1, s1)))(
        to_heads(q), to_heads(k), to_heads(v), seg)
    return out.transpose(0, 2, 1, 3)[:, :t]

  if rules.mesh is None:
    return kernel(q, k, v, segment_ids)
  q_spec = rules.spec(("batch", "length", "act_heads", None), q.shape, "q", strict=False)
  kv_spec = rules.spec(("batch", "length", "act_kv_heads", None), k.shape, "k", strict=False)
  if q_spec[2] is not None and kv_spec[2] is None and kv_heads < n:  # KV heads replicated, query heads split
    k, v = (jnp.repeat(x, n // kv_heads, axis=2) for x in (k, v))
    kv_spec = q_spec
  seg_spec = jax.sharding.PartitionSpec(q_spec[0], None)
  return jax.shard_map(kernel, mesh=rules.mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec), out_specs=q_spec,
                       check_vma=False)(q, k, v, segment_ids)


def self_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, implementation: str,
                   rules: Rules, window: int | None = None) -> jax.Array:
  """q [B,T,N,H], k/v [B,T,K,H], segment_ids [B,T] -> [B,T,N,H] with the chosen implementation (and sliding
  `window`, None = full causal attention)."""
  impl = resolve(implementation, q.shape[1])
  if impl == "xla":
    return dot_product_attention(q, k, v, segment_mask(segment_ids, segment_ids, window=window))
  if impl == "chunked":
    return chunked(q, k, v, segment_ids, window=window)
  if impl == "cudnn":
    return cudnn(q, k, v, segment_ids, window=window)
  return splash(q, k, v, segment_ids, rules, interpret=jax.default_backend() != "tpu", window=window)

