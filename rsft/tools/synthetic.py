"""Random-weight Hugging Face checkpoints of any size, written shard by shard (never the whole model in memory),
for the load benchmarks (bench/load.py, bench/accelerator_check.py): a 1.1B model built through transformers
would need its full float32 copy in host memory first."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_dtypes
import numpy as np

from rsft.convert import mappings
from rsft.convert.safetensors_io import write_file
from rsft.models import ModelConfig
from rsft.models.model import abstract_model
from rsft.sharding import flatten_state

# Qwen3 layout at ~1.1B parameters: real vocab, head_dim 128, GQA 2:1, tied embeddings (like Qwen3-1.7B, fewer
# layers). 2.2 GB in bf16.
QWEN3_1B = dict(
  model_type="qwen3",
  vocab_size=151936,
  hidden_size=2048,
  intermediate_size=6144,
  num_layers=16,
  num_heads=16,
  num_kv_heads=8,
  head_dim=128,
  rope_theta=1e6,
  qk_norm=True,
  tie_word_embeddings=True,
  checkpoint_dtype="bfloat16",
)
# The same layout, small enough for a smoke run.
QWEN3_TINY = dict(
  QWEN3_1B,
  vocab_size=512,
  hidden_size=64,
  intermediate_size=128,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=32,
)


def write_checkpoint(path: str, arch: dict[str, Any], shards: int = 2, seed: int = 0) -> None:
  """Random bf16 weights (normal, std 0.02) in `shards` safetensors files + index + config.json."""
  cfg = ModelConfig(**arch)
  _, state, _ = abstract_model(cfg, "bfloat16")
  shapes = {name: tuple(v.shape) for name, v in flatten_state(state).items()}
  specs = [(key, shape, np.dtype(ml_dtypes.bfloat16)) for key, shape, _, _ in mappings.hf_tensors(cfg, shapes)]
  shape_of = {k: s for k, s, _ in specs}
  rng = np.random.default_rng(seed)
  produce = lambda key: (0.02 * rng.standard_normal(shape_of[key], np.float32)).astype(ml_dtypes.bfloat16)
  os.makedirs(path, exist_ok=True)
  bounds = np.linspace(0, len(specs), shards + 1).astype(int)
  parts = {f"model-{i + 1:05d}-of-{shards:05d}.safetensors": specs[bounds[i] : bounds[i + 1]] for i in range(shards)}
  for name, part in parts.items():
    write_file(os.path.join(path, name), part, produce)
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": {k: n for n, part in parts.items() for k, _, _ in part}}, f)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg.to_hf_dict(), f, indent=2)
