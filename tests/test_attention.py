"""Attention implementations against the einsum reference: values and gradients, packed / padded rows, meshes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsft import sharding
from rsft.models import attention


def inputs(b=3, t=40, n=4, k=2, h=16, seed=0):
  rng = np.random.default_rng(seed)
  q, kk, v = (jnp.asarray(rng.normal(size=(b, t, m, h)), jnp.float32) for m in (n, k, k))
  seg = np.zeros((b, t), np.int32)
  seg[0, : t - 7] = 1  # one segment, right padding (the study's rows)
  seg[1, :15], seg[1, 15:31] = 1, 2  # packed: two segments then padding
  if b > 2:
    seg[2, 5:] = 1  # left padding (the sampler's layout)
  return q, kk, v, jnp.asarray(seg)


def reference(q, k, v, seg):
  return attention.dot_product_attention(q, k, v, attention.segment_mask(seg, seg))


def real(x, seg):  # padding positions' outputs are never used and differ by implementation
  return np.where(np.asarray(seg)[..., None, None] > 0, np.asarray(x), 0.0)


@pytest.mark.parametrize("chunk", [8, 16, 64])
def test_chunked_matches_reference_values_and_gradients(chunk):
  q, k, v, seg = inputs()
  np.testing.assert_allclose(
    real(attention.chunked(q, k, v, seg, chunk), seg), real(reference(q, k, v, seg), seg), atol=1e-5
  )
  w = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32) * (seg[..., None, None] > 0)
  loss = lambda f: lambda q, k, v: (f(q, k, v) * w).sum()
  want = jax.grad(loss(lambda q, k, v: reference(q, k, v, seg)), argnums=(0, 1, 2))(q, k, v)
  got = jax.grad(loss(lambda q, k, v: attention.chunked(q, k, v, seg, chunk)), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_cudnn_path_takes_flash_for_simple_rows_and_falls_back_for_packed_ones():
  q, k, v, seg = inputs()
  simple = seg.at[1:].set(seg[0])  # all rows one right-padded segment
  assert not bool(attention.flash_eligible(seg)) and bool(attention.flash_eligible(simple))
  assert not bool(attention.flash_eligible(simple.at[:, 0].set(0)))  # left padding: not one prefix segment
  # Each branch on its own (cudnn's lax.cond picks by flash_eligible, asserted above), then the whole path.
  np.testing.assert_allclose(
    real(attention.cudnn_flash(q, k, v, simple), simple), real(reference(q, k, v, simple), simple), atol=1e-5
  )
  np.testing.assert_allclose(real(attention.chunked(q, k, v, seg), seg), real(reference(q, k, v, seg), seg), atol=1e-5)
  for s in (seg, simple):
    np.testing.assert_allclose(real(jax.jit(attention.cudnn)(q, k, v, s), s), real(reference(q, k, v, s), s), atol=1e-5)


def test_splash_interpret_mode_matches_reference():
  q, k, v, seg = inputs(b=2, t=200, n=4, k=2, h=128)
  got = attention.splash(q, k, v, seg, sharding.Rules(None), interpret=True, block=128)
  np.testing.assert_allclose(real(got, seg), real(reference(q, k, v, seg), seg), atol=2e-5)


def test_splash_under_shard_map_on_a_mesh():
  q, k, v, seg = inputs(b=2, t=128, n=4, k=2, h=128, seed=3)
  mesh = sharding.make_mesh(data=2, fsdp=1, tensor=2, devices=jax.devices()[:4])
  got = attention.splash(q, k, v, seg, sharding.Rules(mesh), interpret=True, block=128)
  np.testing.assert_allclose(real(got, seg), real(reference(q, k, v, seg), seg), atol=2e-5)


def test_resolve():
  assert attention.resolve("auto", 100, "tpu") == "splash" and attention.resolve("auto", 100, "gpu") == "cudnn"
  assert attention.resolve("auto", 2048, "cpu") == "xla" and attention.resolve("auto", 4096, "cpu") == "chunked"
  assert attention.resolve("chunked", 10, "tpu") == "chunked"
  with pytest.raises(ValueError, match="model.attention='flash'"):
    attention.resolve("flash", 10)


def test_model_logprobs_equal_across_implementations():
  import rsft
  from rsft.models import ModelConfig

  cfg = ModelConfig.from_arch(
    dict(
      model_type="qwen3",
      vocab_size=128,
      hidden_size=64,
      intermediate_size=96,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      head_dim=16,
      qk_norm=True,
      tie_word_embeddings=True,
      rope_theta=10000.0,
    )
  )
  ids = np.random.default_rng(0).integers(1, 128, (4, 50))
  mask = np.ones_like(ids)
  mask[1, 40:] = 0
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  out = {}
  for impl in ("xla", "chunked", "cudnn"):
    m = rsft.init_model(cfg, seed=0, mesh=mesh, attention=impl)
    if impl == "chunked":
      assert m.module().attention_impl == "chunked"
    out[impl] = np.asarray(rsft.token_logprobs(m, ids, mask))
  real_cols = mask[:, 1:] > 0
  for impl in ("chunked", "cudnn"):
    np.testing.assert_allclose(out[impl][real_cols], out["xla"][real_cols], atol=2e-5)


def _paged_inputs(shards=2, rows=4, k=2, n=4, h=128, layers=3, pages=12, page=16, dtype=jnp.bfloat16, seed=0):
  """A paged pool [D, K, L, pages, page, H] with distinct random pages per row (page 0 is scratch)."""
  rng = np.random.default_rng(seed)
  pool = lambda: jnp.asarray(rng.normal(size=(shards, k, layers, pages, page, h)), dtype)
  per_shard = rows // shards
  table = np.concatenate(
    [rng.permutation(np.arange(1, pages))[: per_shard * 4].reshape(per_shard, 4) for _ in range(shards)]
  ).astype(np.int32)
  lengths = jnp.asarray(rng.integers(1, 4 * page + 1, rows), jnp.int32)
  pages_ = attention.Pages(jnp.asarray(table), lengths, jnp.max(lengths))
  q = jnp.asarray(rng.normal(size=(rows, 1, n, h)), dtype)
  return q, pool(), pool(), pages_


def _paged_reference(q, k_pool, v_pool, layer, pages):
  """Each row's columns gathered by hand (numpy), float32 softmax."""
  rows, _, n, h = q.shape
  shards, kv, _, _, page, _ = k_pool.shape
  out = np.zeros((rows, 1, n, h), np.float32)
  for b in range(rows):
    d = b // (rows // shards)
    for head in range(n):
      g = head // (n // kv)
      cols = int(pages.lengths[b])
      ks = np.concatenate([np.asarray(k_pool[d, g, layer, p], np.float32) for p in np.asarray(pages.table[b])])[:cols]
      vs = np.concatenate([np.asarray(v_pool[d, g, layer, p], np.float32) for p in np.asarray(pages.table[b])])[:cols]
      s = ks @ np.asarray(q[b, 0, head], np.float32) * h**-0.5
      w = np.exp(s - s.max())
      out[b, 0, head] = (w / w.sum()) @ vs
  return out


@pytest.mark.parametrize("mesh_shape", [None, (2, 1, 2)])
def test_paged_attention_xla_and_pallas_kernel_match_the_reference(mesh_shape):
  """Decode against a paged pool: the exact XLA path (float32 and bf16) and TPU's Pallas paged-attention kernel
  (Pallas's TPU interpreter here; bf16 cache, as the kernel computes with bf16 keys and values) read the same
  columns, also under shard_map over (shards, heads); the kernel step writes the new key / value first."""
  rules = sharding.Rules(sharding.make_mesh(*mesh_shape, devices=jax.devices()[:4]) if mesh_shape else None)
  layer = jnp.int32(1)
  q, k_pool, v_pool, pages = _paged_inputs()
  columns = (pages.lengths - 1)[:, None]
  want = _paged_reference(q, k_pool, v_pool, 1, pages)
  for dtype, tol in ((jnp.float32, 2e-5), (jnp.bfloat16, 2e-2)):
    cast = lambda x: x.astype(dtype)
    got = attention.paged_attention(cast(q), cast(k_pool), cast(v_pool), layer, pages, columns)
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=tol)
  assert attention.paged_kernel_fits(q, k_pool, None, rules)
  assert not attention.paged_kernel_fits(q.astype(jnp.float32), k_pool.astype(jnp.float32), None, rules)
  assert not attention.paged_kernel_fits(q, k_pool, 4096, rules)  # sliding window: the XLA path
  rng = np.random.default_rng(5)
  k_new, v_new = (jnp.asarray(rng.normal(size=(4, 1, 2, 128)), jnp.bfloat16) for _ in range(2))
  live = jnp.asarray([True, True, False, True])
  out, k_after, v_after = attention.paged_kernel_step(
    q, k_new, v_new, k_pool, v_pool, layer, pages, live, rules, interpret=True
  )
  k_want, v_want = (
    attention.write_pages(pool, layer, pages, columns, new, live) for pool, new in ((k_pool, k_new), (v_pool, v_new))
  )
  np.testing.assert_array_equal(np.asarray(k_after, np.float32), np.asarray(k_want, np.float32))
  np.testing.assert_array_equal(np.asarray(v_after, np.float32), np.asarray(v_want, np.float32))
  live_rows = np.asarray(live)
  np.testing.assert_allclose(
    np.asarray(out, np.float32)[live_rows], _paged_reference(q, k_want, v_want, 1, pages)[live_rows], atol=2e-2
  )


def test_chunked_memory_inside_a_layer_scan_is_linear_in_the_row():
  """The backward of a scan over layers calling `chunked`: temporaries less than double when the row doubles (JAX
  used to hoist each query block's mask, which depends only on the loop-constant segment ids, out of the loop)."""
  temp = []
  for length in (2048, 4096):
    seg = np.ones((1, length), np.int32)
    attend = lambda x, k, v: attention.chunked(x, k, v, seg, chunk=128)
    f = lambda q, k, v: jax.lax.scan(lambda x, _: (attend(x, k, v) + x, None), q, None, length=2)[0].sum()
    shapes = [jax.ShapeDtypeStruct((1, length, h, 8), np.float32) for h in (4, 2, 2)]
    temp.append(jax.jit(jax.grad(f, argnums=(0, 1, 2))).lower(*shapes).compile().memory_analysis().temp_size_in_bytes)
  assert temp[1] < 2 * temp[0], temp
