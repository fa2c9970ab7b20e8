"""float32 parity with transformers for every family, the reward head, bf16 tolerance and the chunked head."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rsft
from rsft.models.head import chunked_logprobs
from rsft.tools import tiny_models

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """kind -> (dir, torch model) for the three tiny families."""
  out = {}
  for kind in tiny_models.CONFIGS:
    path = tmp_path_factory.mktemp(kind)
    out[kind] = (path, tiny_models.build(kind, path))
  return out


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama"])
def test_token_logprobs_match_transformers(checkpoints, kind):
  path, hf = checkpoints[kind]
  ids, mask = tiny_models.left_padded_batch(length=300, pad=37)
  m = rsft.load_model(path)
  got = np.asarray(rsft.token_logprobs(m, ids, mask, chunk_size=128))
  want = tiny_models.hf_logprobs(hf, ids, mask)
  assert got.shape == (2, 299) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  assert np.all(got[1, :37] == 0)  # targets that are padding (or have only padding as context)


def test_architecture_read_from_config_json(checkpoints):
  q2 = rsft.load_model(checkpoints["qwen2"][0]).config
  q3 = rsft.load_model(checkpoints["qwen3"][0]).config
  ll = rsft.load_model(checkpoints["llama"][0]).config
  assert (q2.qkv_bias, q2.o_bias, q2.tie_word_embeddings, q2.num_heads // q2.num_kv_heads) == (True, False, True, 7)
  assert (q3.qk_norm, q3.head_dim, q3.rope_theta, q3.tie_word_embeddings) == (True, 24, 5e6, False)
  assert ll.rope_llama3 == (8.0, 1.0, 4.0, 64) and ll.rope_theta == 500000.0


def test_left_padding_does_not_change_a_row(checkpoints):
  m = rsft.load_model(checkpoints["qwen3"][0])
  ids, mask = tiny_models.left_padded_batch(length=64, pad=10)
  padded = np.asarray(rsft.token_logprobs(m, ids, mask))[1, 10:]
  alone = np.asarray(rsft.token_logprobs(m, ids[1:, 10:]))[0]
  np.testing.assert_allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_reward_head_matches_transformers(tmp_path, kind):
  hf = tiny_models.build(kind, tmp_path, head="score", seed=3)
  ids, mask = tiny_models.left_padded_batch(length=260, pad=50)
  m = rsft.load_model(tmp_path)
  got = np.asarray(rsft.reward_scores(m, ids, mask))
  pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
  with torch.no_grad():
    want = (
      hf(
        input_ids=torch.tensor(ids).long(),
        attention_mask=torch.tensor(mask).long(),
        position_ids=torch.tensor(pos).long(),
      )
      .logits[:, 0]
      .numpy()
    )
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  with pytest.raises(ValueError, match="CausalLM"):
    rsft.token_logprobs(m, ids, mask)


def test_bfloat16_load_is_close_to_float32(checkpoints):
  """Stated tolerance: bf16 params + compute stay within 0.02 nats per token (mean < 0.005) of float32.

  Measured on this tiny Qwen3: max 0.0033, mean 0.0009.
  """
  path, _ = checkpoints["qwen3"]
  ids, mask = tiny_models.left_padded_batch(length=256, pad=20)
  f32 = np.asarray(rsft.token_logprobs(rsft.load_model(path), ids, mask))
  bf16_model = rsft.load_model(path, dtype="bfloat16")
  assert bf16_model.params["layers"]["mlp"]["up_proj"]["kernel"][...].dtype == jnp.bfloat16
  bf16 = np.asarray(rsft.token_logprobs(bf16_model, ids, mask))
  assert bf16.dtype == np.float32
  diff = np.abs(bf16 - f32)
  assert diff.max() < 0.02 and diff.mean() < 0.005, (diff.max(), diff.mean())
  # float32 master weights with bfloat16 compute (the training setting) gives the same numbers as bf16 weights.
  mixed = rsft.load_model(path, dtype="bfloat16", param_dtype="float32")
  assert mixed.params["layers"]["mlp"]["up_proj"]["kernel"][...].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(rsft.token_logprobs(mixed, ids, mask)), bf16, atol=1e-6)


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_chunked_head_equals_dense_value_and_gradient(chunk):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  h = jax.random.normal(k1, (2, 50, 16))
  w = jax.random.normal(k2, (16, 97))
  y = jax.random.randint(k3, (2, 50), 0, 97)

  def dense(h, w):
    return jnp.take_along_axis(jax.nn.log_softmax(h @ w, -1), y[..., None], -1)[..., 0]

  np.testing.assert_allclose(chunked_logprobs(h, w, y, chunk), dense(h, w), atol=1e-5)
  g_chunk = jax.grad(lambda h, w: chunked_logprobs(h, w, y, chunk).sum(), argnums=(0, 1))(h, w)
  g_dense = jax.grad(lambda h, w: dense(h, w).sum(), argnums=(0, 1))(h, w)
  for a, b in zip(g_chunk, g_dense):
    np.testing.assert_allclose(a, b, atol=1e-4)


def tiny_qwen3(**kw):
  from rsft.models import ModelConfig

  base = dict(
    model_type="qwen3",
    vocab_size=128,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rope_theta=1e6,
    qk_norm=True,
  )
  return ModelConfig(**{**base, **kw})


def test_float32_matmuls_run_at_highest_precision():
  """Without it GPUs use TF32: on an H100 parity with transformers fell to 5e-4 (bench/accelerator_check.py)."""
  import jax.extend

  from rsft.models.forward import padded_logprobs

  m = rsft.init_model(tiny_qwen3())
  ids = jnp.ones((1, 8), jnp.int32)
  closed = jax.make_jaxpr(lambda p: padded_logprobs(m.graphdef, p, ids, ids, 4))(m.params)

  def dot_precisions(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        yield eqn.params["precision"]
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            yield from dot_precisions(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            yield from dot_precisions(sub)

  found = list(dot_precisions(closed.jaxpr))
  assert len(found) >= 7  # q, k, v, o, attention x2, MLP x3, head
  assert all(p == (jax.lax.Precision.HIGHEST,) * 2 for p in found), found


def _remat_loss(params, graphdef):
  from rsft.models import forward

  ids = jax.random.randint(jax.random.key(0), (2, 16), 0, 128)
  return -forward.padded_logprobs(graphdef, params, ids, jnp.ones_like(ids), 8).mean()


@pytest.fixture(scope="module")
def no_remat():
  """(params, loss, grads) without remat, computed once."""
  m = rsft.init_model(tiny_qwen3())
  return m.params, *jax.jit(jax.value_and_grad(_remat_loss), static_argnums=1)(m.params, m.graphdef)


@pytest.mark.parametrize("policy", ["full", "save_dots_no_batch", "save_names", "offload"])
def test_remat_policies_change_memory_not_math(no_remat, policy):
  from rsft.api import abstract_model

  params, v0, g0 = no_remat
  graphdef = abstract_model(tiny_qwen3(), remat_policy=policy)[0]  # same params, rematerialised layer body
  remats = lambda g: str(jax.make_jaxpr(_remat_loss, static_argnums=1)(params, g)).count("remat2[")
  assert remats(graphdef) == remats(abstract_model(tiny_qwen3())[0]) + 1  # the layer body is wrapped
  v1, g1 = jax.jit(jax.value_and_grad(_remat_loss), static_argnums=1)(params, graphdef)
  np.testing.assert_allclose(v0, v1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_init_scales_each_projection_by_its_true_fan_in():
  """std 1/sqrt(fan in) per projection: o_proj sums over heads x head_dim (1/sqrt(N*H)), not over heads alone, so
  a from-scratch model's residual stream starts at unit scale."""
  from rsft.sharding import flatten_state

  cfg = tiny_qwen3(hidden_size=96, num_heads=6, head_dim=32, intermediate_size=160, num_layers=2)
  flat = {k: np.asarray(v[...]) for k, v in flatten_state(rsft.init_model(cfg, seed=3).params).items()}
  d, n, h, f = 96, 6, 32, 160
  want = {"q_proj": d, "k_proj": d, "v_proj": d, "o_proj": n * h, "gate_proj": d, "up_proj": d, "down_proj": f}
  for name, fan in want.items():
    kernel = next(v for k, v in flat.items() if k.endswith(f"{name}.kernel"))
    assert abs(kernel.std() * np.sqrt(fan) - 1) < 0.05, (name, kernel.std(), 1 / np.sqrt(fan))


def test_save_names_saves_what_it_names():
  """Every name the policy lists is tagged in the layer, and XLA's memory plan for the gradient keeps more
  (the saved activations) than under full remat and less than without remat."""
  from rsft.api import abstract_model
  from rsft.models.layers import _SAVE_NAMES

  cfg = tiny_qwen3(hidden_size=64, intermediate_size=256, num_layers=4, vocab_size=64)
  params = rsft.init_model(cfg).params
  ids = jnp.ones((4, 256), jnp.int32)

  def loss(p, graphdef):
    from rsft.models import forward

    return -forward.padded_logprobs(graphdef, p, ids, jnp.ones_like(ids), 256).mean()

  def temp_bytes(policy):
    graphdef = abstract_model(cfg, remat_policy=policy)[0]
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    return grad.lower(params, graphdef).compile().memory_analysis().temp_size_in_bytes

  jaxpr = str(jax.make_jaxpr(loss, static_argnums=1)(params, abstract_model(cfg, remat_policy="save_names")[0]))
  names = [n for n in _SAVE_NAMES if n != "attn_stats"]  # the ring's (a sequence mesh): test_context_parallel.py
  assert all(f"name={n}" in jaxpr for n in names), [n for n in names if f"name={n}" not in jaxpr]
  full, names, none = temp_bytes("full"), temp_bytes("save_names"), temp_bytes("none")
  assert full < names < none, (full, names, none)
