"""HF -> rsft -> HF is bit-exact; sharded multi-file checkpoints load; exports load in transformers."""

import json
import os

import numpy as np
import pytest
import safetensors

import rsft
from rsft import sharding
from rsft.models import ModelConfig
from rsft.tools import tiny_models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def read_all(path):
  """key -> raw bytes view of every tensor in an HF dir (all shards)."""
  out = {}
  for name in sorted(os.listdir(path)):
    if name.endswith(".safetensors"):
      with safetensors.safe_open(os.path.join(path, name), "np") as f:
        for key in f.keys():
          out[key] = f.get_tensor(key)
  return out


def assert_bit_equal(a_dir, b_dir):
  a, b = read_all(a_dir), read_all(b_dir)
  assert sorted(a) == sorted(b)
  for key in a:
    assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
    assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize(
  "kind,dtype", [("qwen2", "float32"), ("qwen3", "float32"), ("llama", "float32"), ("qwen3", "bfloat16")]
)
def test_round_trip_is_bit_exact(tmp_path, kind, dtype):
  tiny_models.build(kind, tmp_path / "hf", dtype=dtype)
  out = rsft.export_hf(rsft.load_model(tmp_path / "hf"), tmp_path / "out")
  assert_bit_equal(tmp_path / "hf", out)
  if kind == "qwen2":  # tied: no lm_head written, as transformers does
    assert "lm_head.weight" not in read_all(out)
  with open(os.path.join(out, "config.json")) as f:
    assert json.load(f)["dtype"] == dtype


def test_reward_model_round_trip(tmp_path):
  tiny_models.build("llama", tmp_path / "hf", head="score")
  out = rsft.export_hf(str(tmp_path / "hf"), tmp_path / "out")  # from a directory path
  assert_bit_equal(tmp_path / "hf", out)
  assert transformers.AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1


def test_sharded_multi_file_checkpoint_loads_and_exports(tmp_path):
  hf = tiny_models.build("qwen3", tmp_path / "hf")
  hf.save_pretrained(tmp_path / "multi", max_shard_size="200KB")
  assert os.path.exists(tmp_path / "multi" / "model.safetensors.index.json")
  assert len([f for f in os.listdir(tmp_path / "multi") if f.endswith(".safetensors")]) > 2
  ids, mask = tiny_models.left_padded_batch(length=96, pad=9)
  ids, mask = np.concatenate([ids] * 4), np.concatenate([mask] * 4)
  single = np.asarray(rsft.token_logprobs(rsft.load_model(tmp_path / "hf"), ids, mask))
  m = rsft.load_model(tmp_path / "multi", mesh=sharding.make_mesh(1, 4, 2))
  np.testing.assert_allclose(np.asarray(rsft.token_logprobs(m, ids, mask)), single, atol=2e-5)
  # Export from the sharded model, itself in several files, and load it back with transformers.
  out = rsft.convert.export(m.config, m.params, str(tmp_path / "out"), m.hf_config, m.path, max_shard_bytes=150_000)
  with open(os.path.join(out, "model.safetensors.index.json")) as f:
    assert len(set(json.load(f)["weight_map"].values())) > 2
  assert_bit_equal(tmp_path / "hf", out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).float().eval()
  np.testing.assert_allclose(tiny_models.hf_logprobs(reloaded, ids[:2], mask[:2]), single[:2], atol=1e-4)


def test_from_scratch_model_exports_to_transformers(tmp_path):
  cfg = ModelConfig(
    model_type="qwen3",
    vocab_size=256,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=1,
    head_dim=16,
    rope_theta=1e6,
    qk_norm=True,
    tie_word_embeddings=True,
  )
  m = rsft.init_model(cfg, seed=0)
  out = rsft.export_hf(m, tmp_path / "out")
  hf = transformers.AutoModelForCausalLM.from_pretrained(out).float().eval()
  ids = np.random.default_rng(0).integers(0, 256, (2, 40)).astype(np.int32)
  mask = np.ones_like(ids)
  np.testing.assert_allclose(np.asarray(rsft.token_logprobs(m, ids)), tiny_models.hf_logprobs(hf, ids, mask), atol=1e-4)


def test_tokenizer_and_side_files_travel(tmp_path):
  """A checkpoint dir with the real Qwen tokenizer exposes m.tokenizer and export copies its files."""
  src = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tokenizers", "qwen3")
  if not os.path.isdir(src):
    pytest.skip("../shared/tokenizers/qwen3 not present")
  tiny_models.build("qwen3", tmp_path / "hf")
  for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
    (tmp_path / "hf" / name).write_bytes(open(os.path.join(src, name), "rb").read())
  m = rsft.load_model(tmp_path / "hf")
  assert m.tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
  out = rsft.export_hf(m, tmp_path / "out")
  assert os.path.exists(os.path.join(out, "merges.txt"))
