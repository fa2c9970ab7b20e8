"""Bad inputs fail early with errors that name the file, the key and what was expected."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import rsft
from rsft.models import ModelConfig
from rsft.tools import tiny_models

pytest.importorskip("torch")


@pytest.fixture
def qwen3_dir(tmp_path):
  tiny_models.build("qwen3", tmp_path / "hf")
  return tmp_path / "hf"


def edit_weights(path, fn):
  file = os.path.join(path, "model.safetensors")
  tensors = load_file(file)
  fn(tensors)
  save_file(tensors, file, metadata={"format": "pt"})
  return file


def edit_config(path, **changes):
  file = os.path.join(path, "config.json")
  with open(file) as f:
    cfg = json.load(f)
  for key, value in changes.items():
    if value is None:
      cfg.pop(key, None)
    else:
      cfg[key] = value
  with open(file, "w") as f:
    json.dump(cfg, f)


def test_missing_shard_file(tmp_path):
  hf = tiny_models.build("qwen3", tmp_path / "hf")
  hf.save_pretrained(tmp_path / "multi", max_shard_size="200KB")
  victim = sorted(f for f in os.listdir(tmp_path / "multi") if f.endswith(".safetensors"))[1]
  os.remove(tmp_path / "multi" / victim)
  with pytest.raises(FileNotFoundError, match=f"lists shard file.*{victim}"):
    rsft.load_model(tmp_path / "multi")


def test_wrong_tensor_shape(qwen3_dir):
  key = "model.layers.1.mlp.up_proj.weight"
  file = edit_weights(qwen3_dir, lambda t: t.__setitem__(key, np.zeros((95, 64), np.float32)))
  with pytest.raises(ValueError, match=rf"{file}: tensor '{key}' has shape \(95, 64\), expected \(96, 64\)"):
    rsft.load_model(qwen3_dir)


def test_missing_and_unexpected_tensors(qwen3_dir):
  def edit(t):
    t.pop("model.layers.2.self_attn.k_norm.weight")
    t["model.layers.0.self_attn.extra.weight"] = np.zeros((3,), np.float32)

  file = edit_weights(qwen3_dir, edit)
  with pytest.raises(ValueError) as err:
    rsft.load_model(qwen3_dir)
  assert "missing tensor 'model.layers.2.self_attn.k_norm.weight' (expected shape (24,))" in str(err.value)
  assert f"{file}: unexpected tensor 'model.layers.0.self_attn.extra.weight'" in str(err.value)


def test_no_weights_or_no_config(tmp_path, qwen3_dir):
  os.remove(qwen3_dir / "model.safetensors")
  with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
    rsft.load_model(qwen3_dir)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    rsft.load_model(tmp_path)


def test_unknown_model_type(qwen3_dir):
  edit_config(qwen3_dir, model_type="gemma3")
  with pytest.raises(
    ValueError,
    match=r"model_type='gemma3' is not supported; rsft supports \('qwen2', 'qwen3', "
    r"'llama', 'mistral', 'internlm2'\)",
  ):
    rsft.load_model(qwen3_dir)


def test_unsupported_rope_scaling(qwen3_dir):
  edit_config(qwen3_dir, rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0})
  with pytest.raises(ValueError, match="rope type 'yarn' is not supported"):
    rsft.load_model(qwen3_dir)


def test_rope_theta_from_either_config_layout(qwen3_dir):
  """transformers v4 wrote a top-level rope_theta; v5 writes rope_parameters. Both give 5e6, never a default."""
  assert ModelConfig.from_dir(str(qwen3_dir))[0].rope_theta == 5e6
  edit_config(qwen3_dir, rope_parameters=None, rope_theta=5e6, rope_scaling=None)
  assert ModelConfig.from_dir(str(qwen3_dir))[0].rope_theta == 5e6
  edit_config(qwen3_dir, rope_theta=None)
  with pytest.raises(ValueError, match="neither rope_theta nor rope_parameters.rope_theta"):
    ModelConfig.from_dir(str(qwen3_dir))


def test_bad_token_ids_and_shapes(qwen3_dir):
  m = rsft.load_model(qwen3_dir)
  with pytest.raises(ValueError, match=r"token ids must lie in \[0, 512\)"):
    rsft.token_logprobs(m, [[1, 2, 512]])
  with pytest.raises(ValueError, match="attention_mask shape"):
    rsft.token_logprobs(m, [[1, 2, 3]], [[1, 1]])
