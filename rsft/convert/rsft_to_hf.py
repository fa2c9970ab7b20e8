"""rsft parameters -> a Hugging Face directory that `transformers` loads (safetensors + config.json).

The inverse of hf_to_rsft through the same mapping table; layers are unstacked and tensors are gathered to the
host one at a time and streamed to disk, so exporting a sharded 14B model needs one tensor of host memory.
Tied models write no `lm_head.weight`, as transformers does. Remote-code families (InternLM2) keep their layout:
the config.json goes back as it came (its `torch_dtype` key included) and the Python files its `auto_map` and the
tokenizer config's name travel with it, so `trust_remote_code` loading keeps working.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
from flax import nnx

from rsft.convert import mappings
from rsft.convert.safetensors_io import write_file
from rsft.models.config import ModelConfig
from rsft.sharding import flatten_state

# Files copied verbatim from the source checkpoint when present.
SIDE_FILES = (
  "tokenizer.json",
  "tokenizer_config.json",
  "vocab.json",
  "merges.txt",
  "special_tokens_map.json",
  "added_tokens.json",
  "chat_template.jinja",
  "generation_config.json",
  "tokenizer.model",
)
MAX_SHARD_BYTES = 5 * 2**30


def export(
  cfg: ModelConfig,
  params: nnx.State,
  out_dir: str,
  hf_config: dict[str, Any] | None = None,
  source_dir: str | None = None,
  dtype: str | None = None,
  max_shard_bytes: int = MAX_SHARD_BYTES,
) -> str:
  """Writes `out_dir`; `dtype` defaults to the dtype of the checkpoint the model came from."""
  dtype = dtype or cfg.checkpoint_dtype
  np_dtype = np.dtype(jax.numpy.dtype(dtype))
  os.makedirs(out_dir, exist_ok=True)
  flat = flatten_state(params)

  entries = mappings.hf_tensors(cfg, {name: tuple(v.shape) for name, v in flat.items()})

  def produce(key: str) -> np.ndarray:
    _, _, row, layer = lookup[key]
    parts = []
    for name in row.targets:
      value = flat[name][...]
      value = value[layer] if layer is not None else value
      parts.append(np.asarray(jax.device_get(value)).astype(np_dtype))
    return mappings.to_hf_parts(row.transform, parts)

  lookup = {e[0]: e for e in entries}
  shards, size = [[]], 0
  for key, shape, _, _ in entries:
    nbytes = int(np.prod(shape)) * np_dtype.itemsize
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append((key, shape, np_dtype))
    size += nbytes
  names = (
    ["model.safetensors"]
    if len(shards) == 1
    else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
  )
  for name, specs in zip(names, shards):
    write_file(os.path.join(out_dir, name), specs, produce)
  if len(shards) > 1:
    total = sum(int(np.prod(s)) * np_dtype.itemsize for _, s, _, _ in entries)
    index = {
      "metadata": {"total_size": total},
      "weight_map": {k: n for n, specs in zip(names, shards) for k, _, _ in specs},
    }
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
      json.dump(index, f, indent=2)

  config = dict(hf_config) if hf_config else cfg.to_hf_dict()
  config.pop("torch_dtype" if cfg.family.dtype_key == "dtype" else "dtype", None)
  config[cfg.family.dtype_key] = dtype
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  if source_dir and os.path.abspath(source_dir) != os.path.abspath(out_dir):
    for name in SIDE_FILES + remote_code_files(source_dir):
      if os.path.exists(os.path.join(source_dir, name)):
        shutil.copy(os.path.join(source_dir, name), os.path.join(out_dir, name))
  return out_dir


def remote_code_files(source_dir: str) -> tuple[str, ...]:
  """The .py modules that config.json's and tokenizer_config.json's `auto_map` name ("module.Class", or
  "repo--module.Class" for code from another hub repo, which is not a local file)."""
  names = set()
  for json_name in ("config.json", "tokenizer_config.json"):
    path = os.path.join(source_dir, json_name)
    if not os.path.exists(path):
      continue
    with open(path) as f:
      auto_map = json.load(f).get("auto_map") or {}
    for ref in auto_map.values():
      for one in ref if isinstance(ref, (list, tuple)) else (ref,):
        if isinstance(one, str) and "--" not in one and "." in one:
          names.add(one.rsplit(".", 1)[0] + ".py")
  return tuple(sorted(names))
