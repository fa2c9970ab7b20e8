"""Sharded runs equal single-device runs; param layouts match the rules table; bad layouts are explained."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import rsft
from rsft import sharding
from rsft.api import abstract_model
from rsft.models import ModelConfig
from rsft.tools import tiny_models

pytest.importorskip("torch")


def test_eight_fake_devices():
  assert jax.device_count() == 8


def test_make_mesh_resolves_minus_one_and_rejects_bad_sizes():
  assert dict(sharding.make_mesh(2, -1, 2).shape) == {"data": 2, "fsdp": 2, "sequence": 1, "tensor": 2}
  assert dict(sharding.make_mesh(1, -1, 1).shape) == {"data": 1, "fsdp": 8, "sequence": 1, "tensor": 1}
  assert dict(sharding.make_mesh(1, -1, 1, sequence=4).shape) == {"data": 1, "fsdp": 2, "sequence": 4, "tensor": 1}
  with pytest.raises(ValueError, match="at most one"):
    sharding.make_mesh(-1, -1, 1)
  with pytest.raises(ValueError, match="does not fit 8 devices"):
    sharding.make_mesh(1, 3, 1)
  with pytest.raises(ValueError, match="uses 4 devices but 8"):
    sharding.make_mesh(1, 2, 2)


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("qwen2")
  tiny_models.build("qwen2", path)
  return path


@pytest.mark.parametrize("mesh_shape", [(1, 4, 2), (2, 4, 1)])
def test_sharded_equals_single_device(qwen2_dir, mesh_shape):
  ids, mask = tiny_models.left_padded_batch(length=128, pad=17)
  ids, mask = np.concatenate([ids] * 4), np.concatenate([mask] * 4)  # batch 8 divides data*fsdp
  ref = np.asarray(rsft.token_logprobs(rsft.load_model(qwen2_dir), ids, mask))
  mesh = sharding.make_mesh(*mesh_shape)
  m = rsft.load_model(qwen2_dir, mesh=mesh)
  q = m.params["layers"]["self_attn"]["q_proj"]["kernel"][...]
  assert q.sharding.spec == P(None, "fsdp", "tensor" if mesh_shape[2] > 1 else None, None)
  assert len(q.addressable_shards) == 8
  got = rsft.token_logprobs(m, ids, mask)
  assert got.sharding.mesh.shape == mesh.shape
  np.testing.assert_allclose(np.asarray(got), ref, atol=2e-5)


# The rules table applied to Qwen3 (untied, q/k-norm) on data=1, fsdp=4, tensor=2.
EXPECTED_QWEN3_SPECS = {
  "embed_tokens.embedding": P("tensor", "fsdp"),
  "lm_head": P("fsdp", "tensor"),
  "norm.scale": P(None),
  "layers.input_layernorm.scale": P(None, None),
  "layers.post_attention_layernorm.scale": P(None, None),
  "layers.self_attn.q_proj.kernel": P(None, "fsdp", "tensor", None),
  "layers.self_attn.k_proj.kernel": P(None, "fsdp", "tensor", None),
  "layers.self_attn.v_proj.kernel": P(None, "fsdp", "tensor", None),
  "layers.self_attn.o_proj.kernel": P(None, "tensor", None, "fsdp"),
  "layers.self_attn.q_norm.scale": P(None, None),
  "layers.self_attn.k_norm.scale": P(None, None),
  "layers.mlp.gate_proj.kernel": P(None, "fsdp", "tensor"),
  "layers.mlp.up_proj.kernel": P(None, "fsdp", "tensor"),
  "layers.mlp.down_proj.kernel": P(None, "tensor", "fsdp"),
}


def qwen3_cfg(**kw):
  base = dict(
    model_type="qwen3",
    vocab_size=512,
    hidden_size=64,
    intermediate_size=96,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=24,
    rope_theta=5e6,
    qk_norm=True,
  )
  return ModelConfig(**{**base, **kw})


def test_param_specs_match_expected_table():
  _, state, _ = abstract_model(qwen3_cfg(), mesh=sharding.make_mesh(1, 4, 2))
  assert sharding.param_specs(state, sharding.Rules(sharding.make_mesh(1, 4, 2))) == EXPECTED_QWEN3_SPECS


def test_two_kv_heads_on_tensor_4_are_replicated_and_still_exact():
  cfg = qwen3_cfg()
  mesh = sharding.make_mesh(1, 2, 4)
  specs = sharding.param_specs(abstract_model(cfg, mesh=mesh)[1], sharding.Rules(mesh))
  assert specs["layers.self_attn.k_proj.kernel"] == P(None, "fsdp", None, None)  # 2 KV heads, tensor=4
  assert specs["layers.self_attn.q_proj.kernel"] == P(None, "fsdp", "tensor", None)
  ids = np.random.default_rng(0).integers(0, 512, (2, 40))
  ref = rsft.token_logprobs(rsft.init_model(cfg, seed=1), ids)
  got = rsft.token_logprobs(rsft.init_model(cfg, seed=1, mesh=mesh), ids)
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-5)


def test_indivisible_layout_is_refused_with_an_explanation():
  cfg = qwen3_cfg(num_heads=14, num_kv_heads=2, hidden_size=224, head_dim=16)  # Qwen2.5-0.5B-like heads
  with pytest.raises(
    ValueError,
    match=r"layers.self_attn.[qo]_proj.kernel: dimension q_heads=14 is not divisible "
    r"by mesh axis tensor=4.*valid: \[1, 2, 7, 14\]",
  ):
    abstract_model(cfg, mesh=sharding.make_mesh(1, 2, 4))
  with pytest.raises(ValueError, match="embed=100 is not divisible by mesh axis fsdp=8"):
    abstract_model(qwen3_cfg(hidden_size=100), mesh=sharding.make_mesh(1, 8, 1))
