"""Attention with each row's tokens split over the mesh's `sequence` axis (context parallelism, mesh.sequence).

The train step lays rows out in zigzag order (rsft.train.step.zigzag: device i holds chunks i and 2S-1-i of 2S), so
causal work is even. `mesh.sequence_attention` picks how queries meet the other shards' keys: `gathered` (keys and
values all-gathered) or `ring` (key blocks passed round by ppermute). Both mask by position and segment
(`position_mask`), so they are exact in any column order (the probe's scorer and sampler pass rows unpermuted), and
both run in XLA: the splash and cuDNN kernels (rsft/models/attention.py) take whole rows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from rsft.models.attention import _MASK_VALUE, ATTENTION_CHUNK, dot_product_attention, opaque
from rsft.models.layers import precision
from rsft.sharding import Rules, sequence_shards


def attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  positions: jax.Array | None,
  implementation: str,
  rules: Rules,
  window: int | None = None,
) -> jax.Array:
  """`ring` when the model was built with it (mesh.sequence_attention=ring), else `gathered`."""
  return (ring if implementation == "ring" else gathered)(q, k, v, segment_ids, positions, rules, window)


def position_mask(
  q_segments: jax.Array,
  kv_segments: jax.Array,
  q_positions: jax.Array,
  kv_positions: jax.Array,
  window: int | None = None,
) -> jax.Array:
  """[B, Tq, S] bool: segment_mask with causality read from positions instead of column order. Within a segment
  (a packed document, or a row's real tokens) positions rise by one per token, so this is the same mask for any
  order of the columns: the zigzag layout of context parallelism."""
  distance = q_positions[:, :, None] - kv_positions[:, None, :]
  mask = (distance >= 0) & (q_segments[:, :, None] == kv_segments[:, None, :]) & (kv_segments[:, None, :] != 0)
  return mask if window is None else mask & (distance < window)


def gathered(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  positions: jax.Array,
  rules: Rules,
  window: int | None = None,
  chunk: int = ATTENTION_CHUNK,
) -> jax.Array:
  """Context parallelism by all-gather: queries stay split over the `sequence` axis, keys and values (with their
  segment ids and positions) are gathered whole on every shard of it, and each shard attends its own queries to
  them, query blocks of `chunk` rematerialised as in `chunked`. With zigzag rows every shard holds as many early
  as late queries, so the causal work is even. The exact XLA reference math: a kernel (splash, cuDNN) does not
  take this path."""
  if positions is None:
    raise ValueError("context parallelism (mesh.sequence > 1) needs token positions for the causal mask.")
  return opaque(functools.partial(_gathered, rules=rules, window=window, chunk=chunk))(q, k, v, segment_ids, positions)


def _gathered(q, k, v, segment_ids, positions, rules, window, chunk):
  whole = ("batch", None, "act_kv_heads", None)
  k, v = rules.constrain(k, whole), rules.constrain(v, whole)
  kv_segments, kv_positions = (rules.constrain(x, ("batch", None)) for x in (segment_ids, positions))
  b, t, n, h = q.shape
  shards = sequence_shards(rules.mesh)
  local = t // shards  # each shard's own queries
  if local <= chunk or local % chunk:
    return dot_product_attention(q, k, v, position_mask(segment_ids, kv_segments, positions, kv_positions, window))

  # Block j holds query block j of every shard's slice, so every shard works on every block (a block of the whole
  # row would belong to one shard and leave the others idle).
  def blocks(x):
    x = x.reshape(b, shards, local // chunk, chunk, *x.shape[2:]).swapaxes(1, 2)  # [B, blocks, S, chunk, ...]
    return x.swapaxes(0, 1).reshape(local // chunk, b, shards * chunk, *x.shape[4:])

  @jax.checkpoint
  def one(args):
    q_block, seg_block, pos_block = args
    q_block = rules.constrain(q_block, ("batch", "length", "act_heads", None))
    return dot_product_attention(q_block, k, v, position_mask(seg_block, kv_segments, pos_block, kv_positions, window))

  out = jax.lax.map(one, (blocks(q), blocks(segment_ids), blocks(positions)))  # [blocks, B, S * chunk, N, H]
  out = out.reshape(local // chunk, b, shards, chunk, n, h).transpose(1, 2, 0, 3, 4, 5)
  return out.reshape(b, t, n, h)


def _ring_chunks(x, chunks):
  """[B, T, ...] -> [chunks, B, T / chunks, ...]: the blocks one scan step works on."""
  return x.reshape(x.shape[0], chunks, x.shape[1] // chunks, *x.shape[2:]).swapaxes(0, 1)


def _ring_unchunk(x):
  return x.swapaxes(0, 1).reshape(x.shape[1], x.shape[0] * x.shape[2], *x.shape[3:])


def _ring_probs(qc, k, mask, m, l=None):
  """exp(scores - m) of query block qc [B,C,K,G,H] against key block k [B,S,K,H] ([B,K,G,C,S] float32), zero
  where masked, divided by l when given; and the masked scores' row maxima."""
  s = jnp.einsum("BCKGH,BSKH->BKGCS", qc, k, preferred_element_type=jnp.float32, precision=precision(qc.dtype))
  s = jnp.where(mask, s * qc.shape[-1] ** -0.5, _MASK_VALUE)
  m = jnp.maximum(m, s.max(axis=-1)) if l is None else m
  p = jnp.where(mask, jnp.exp(s - m[..., None]), 0.0)
  return (p if l is None else p / jnp.where(l == 0, 1.0, l)[..., None]), m


def _ring_block(t: int, chunk: int) -> int:
  """Block length: the largest divisor of a zigzag half (t / 2) up to `chunk`, so blocks never straddle the halves
  and causal pairs can be skipped even when t <= chunk; the whole of t when that would be under min(64, chunk)."""
  half = t // 2 if t % 2 == 0 else t
  block = max(d for d in range(1, min(chunk, half) + 1) if half % d == 0)
  return block if block >= min(64, chunk, half) else t


def _ring_layout(q, seg, pos, chunk):
  """Queries grouped by KV head and split into blocks (_ring_block)."""
  b, t, n, h = q.shape
  blocks = t // _ring_block(t, chunk)
  return (
    blocks,
    (lambda x, kv: _ring_chunks(x.reshape(b, t, kv, n // kv, h), blocks)),
    _ring_chunks(seg, blocks),
    _ring_chunks(pos, blocks),
  )


def _ring_forward(q, k, v, seg, pos, axis, shards, window, chunk):
  """One device's queries against every shard's keys, the key blocks passed round the ring (device i sends to
  i + 1) while the current one is attended to, block pair by block pair under an online softmax; pairs wholly
  masked (causality, other documents) are skipped. Returns the output and the softmax statistics m, l (apart:
  MASK + log(l) would round to MASK), all the backward pass needs besides the inputs."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  blocks, group, q_seg, q_pos = _ring_layout(q, seg, pos, chunk)
  qg = group(q, kv)  # [C, B, c, K, G, H]
  perm = [(i, (i + 1) % shards) for i in range(shards)]

  def attend(stats, visiting):
    k_all, v_all, seg_all, pos_all = (_ring_chunks(x, blocks) for x in visiting)

    def query_block(args):
      qc, sc, pc, *stats = args

      def key_block(stats, key):
        k_b, v_b, seg_b, pos_b = key
        mask = position_mask(sc, seg_b, pc, pos_b, window)[:, None, None]

        def update(stats):
          m, l, acc = stats
          p, m_new = _ring_probs(qc, k_b, mask, m)
          correction = jnp.exp(m - m_new)
          pv = jnp.einsum(
            "BKGCS,BSKH->BKGCH",
            p.astype(v_b.dtype),
            v_b,
            preferred_element_type=jnp.float32,
            precision=precision(v_b.dtype),
          )
          return m_new, l * correction + p.sum(axis=-1), acc * correction[..., None] + pv

        return jax.lax.cond(mask.any(), update, lambda s: s, stats), None

      return jax.lax.scan(key_block, tuple(stats), (k_all, v_all, seg_all, pos_all))[0]

    return jax.lax.map(query_block, (qg, q_seg, q_pos, *stats))

  def step(carry, _):
    visiting, stats = carry
    passed = jax.lax.ppermute(visiting, axis, perm)  # in flight while this block is attended to
    return (passed, attend(stats, visiting)), None

  shape = (blocks, b, kv, n // kv, t // blocks)
  stats = (
    jnp.full(shape, _MASK_VALUE, jnp.float32),
    jnp.zeros(shape, jnp.float32),
    jnp.zeros(shape + (h,), jnp.float32),
  )
  (visiting, stats), _ = jax.lax.scan(step, ((k, v, seg, pos), stats), None, length=shards - 1)
  m, l, acc = attend(stats, visiting)
  out = acc / jnp.where(l == 0, 1.0, l)[..., None]  # [C, B, K, G, c, H]; a padding query sees nothing: zeros
  out = _ring_unchunk(out.transpose(0, 1, 4, 2, 3, 5)).reshape(b, t, n, h).astype(q.dtype)
  return out, m, l


def _ring_backward(q, k, v, seg, pos, out, m, l, d_out, axis, shards, window, chunk):
  """The flash-attention backward round the ring: each key block travels with its dK, dV accumulators, which
  arrive back home after `shards` hops; dQ stays put. The same block pairs are skipped as in the forward pass."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  blocks, group, q_seg, q_pos = _ring_layout(q, seg, pos, chunk)
  qg, dog = group(q, kv), group(d_out, kv)
  delta = (dog.astype(jnp.float32) * group(out, kv).astype(jnp.float32)).sum(-1).transpose(0, 1, 3, 4, 2)
  perm = [(i, (i + 1) % shards) for i in range(shards)]
  scale = h**-0.5

  def attend(visiting, dkv):
    k_all, v_all, seg_all, pos_all = (_ring_chunks(x, blocks) for x in visiting)

    def query_block(dkv, args):
      qc, doc, sc, pc, m_c, l_c, delta_c = args

      def key_block(dq, key):
        k_b, v_b, seg_b, pos_b = key
        mask = position_mask(sc, seg_b, pc, pos_b, window)[:, None, None]

        def grads(dq):
          p, _ = _ring_probs(qc, k_b, mask, m_c, l_c)
          dv = jnp.einsum(
            "BKGCS,BCKGH->BSKH",
            p.astype(doc.dtype),
            doc,
            preferred_element_type=jnp.float32,
            precision=precision(doc.dtype),
          )
          dp = jnp.einsum(
            "BCKGH,BSKH->BKGCS", doc, v_b, preferred_element_type=jnp.float32, precision=precision(doc.dtype)
          )
          ds = (p * (dp - delta_c[..., None]) * scale).astype(qc.dtype)  # p is 0 where masked
          dq = dq + jnp.einsum(
            "BKGCS,BSKH->BCKGH", ds, k_b, preferred_element_type=jnp.float32, precision=precision(qc.dtype)
          )
          return dq, (
            jnp.einsum("BKGCS,BCKGH->BSKH", ds, qc, preferred_element_type=jnp.float32, precision=precision(qc.dtype)),
            dv,
          )

        nothing = lambda dq: (dq, (jnp.zeros(k_b.shape, jnp.float32), jnp.zeros(v_b.shape, jnp.float32)))
        return jax.lax.cond(mask.any(), grads, nothing, dq)

      dq, (dk, dv) = jax.lax.scan(key_block, jnp.zeros(qc.shape, jnp.float32), (k_all, v_all, seg_all, pos_all))
      return (dkv[0] + _ring_unchunk(dk), dkv[1] + _ring_unchunk(dv)), dq

    return jax.lax.scan(query_block, dkv, (qg, dog, q_seg, q_pos, m, l, delta))

  zeros = (jnp.zeros(k.shape, jnp.float32),) * 2

  def step(carry, _):  # this step's dK/dV start from zeros, so the arriving sums are in flight meanwhile
    visiting, dkv, dq = carry
    passed = jax.lax.ppermute(visiting, axis, perm)
    mine, dq_b = attend(visiting, zeros)
    dkv = jax.tree.map(jnp.add, dkv, mine)
    return (passed, jax.lax.ppermute(dkv, axis, perm), dq + dq_b), None

  (visiting, dkv, dq), _ = jax.lax.scan(
    step, ((k, v, seg, pos), zeros, jnp.zeros(qg.shape, jnp.float32)), None, length=shards - 1
  )
  mine, dq_b = attend(visiting, zeros)
  dk, dv = jax.lax.ppermute(jax.tree.map(jnp.add, dkv, mine), axis, perm)  # the last hop brings them home
  dq = _ring_unchunk(dq + dq_b).reshape(b, t, n, h)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


def ring(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  segment_ids: jax.Array,
  positions: jax.Array,
  rules: Rules,
  window: int | None = None,
  chunk: int = ATTENTION_CHUNK,
) -> jax.Array:
  """Context parallelism by ring: no device holds the whole row's keys. Each attends its queries to one key
  block at a time while the next arrives from its neighbour (ppermute, left to XLA's async collectives to
  overlap), `shards` steps in all; the backward pass sends each block's dK/dV round with it. Within a step the
  work goes in (query block, key block) pairs of `chunk` under an online softmax, pairs wholly masked skipped, so
  memory is linear in the row (a flash kernel's schedule in XLA) and zigzag rows give every device the same
  pairs to skip. Exact up to float order for every real token; a padding query (segment 0) attends to nothing and
  gives zeros, where the reference averages every key (neither is ever read)."""
  if positions is None:
    raise ValueError("context parallelism (mesh.sequence > 1) needs token positions for the causal mask.")
  n, kv_heads = q.shape[2], k.shape[2]
  q_spec = rules.spec(("batch", "length", "act_heads", None), q.shape, "q", strict=False)
  kv_spec = rules.spec(("batch", "length", "act_kv_heads", None), k.shape, "k", strict=False)
  if q_spec[2] is not None and kv_spec[2] is None and kv_heads < n:  # KV heads replicated, query heads split
    k, v = (jnp.repeat(x, n // kv_heads, axis=2) for x in (k, v))
    kv_spec = q_spec
  rows = jax.sharding.PartitionSpec(q_spec[0], q_spec[1])
  if q_spec[1] is None:  # rows not split (a length the axis does not divide): nothing to pass round
    return gathered(q, k, v, segment_ids, positions, rules, window, chunk)
  static = ("sequence", sequence_shards(rules.mesh), window, chunk)
  stats = jax.sharding.PartitionSpec(None, q_spec[0], q_spec[2], None, q_spec[1])  # [blocks, B, K, G, t]
  forward = jax.shard_map(
    lambda *a: _ring_forward(*a, *static),
    mesh=rules.mesh,
    check_vma=False,
    in_specs=(q_spec, kv_spec, kv_spec, rows, rows),
    out_specs=(q_spec, stats, stats),
  )
  forward = opaque(forward)
  backward = jax.shard_map(
    lambda *a: _ring_backward(*a, *static),
    mesh=rules.mesh,
    check_vma=False,
    in_specs=(q_spec, kv_spec, kv_spec, rows, rows, q_spec, stats, stats, q_spec),
    out_specs=(q_spec, kv_spec, kv_spec),
  )

  # The VJP is taken around the shard_maps, not inside them: autodiff never sees the forward's loops (inside an
  # outer scan it would otherwise save every block pair's probabilities).
  @jax.custom_vjp
  def attend(q, k, v, seg, pos):
    return forward(q, k, v, seg, pos)[0]

  def attend_forward(q, k, v, seg, pos):
    out, m, l = forward(q, k, v, seg, pos)
    m, l = (checkpoint_name(x, "attn_stats") for x in (m, l))  # remat=save_names keeps them (and out), so the
    out = checkpoint_name(out, "attn_out")  # ring forward is not re-run for the backward
    return out, (q, k, v, seg, pos, out, m, l)

  attend.defvjp(attend_forward, lambda res, d_out: (*backward(*res, d_out), None, None))
  return attend(q, k, v, segment_ids, positions)
