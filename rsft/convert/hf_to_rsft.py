"""Streaming HF safetensors -> sharded rsft parameters.

Every header is checked against the mapping table before a byte of weights is read (missing key, unexpected key,
wrong shape: the error names the file, the key and the expected shape). Then one file at a time, one tensor at a
time: read on host, cast on host to `param_dtype`, transform, and place straight onto its target sharding with
`jax.make_array_from_callback` (each process fills only its addressable shards, so this also works on a multi-host
pod where every host reads the same files from a shared filesystem).
Per-layer tensors are written in place into a preallocated, donated `[L, ...]` buffer, so the host never holds
more than one tensor and the devices never hold more than the model plus one layer's tensor. A fused HF tensor
(InternLM2's wqkv) is split on the host into its row's parameters, each placed the same way.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rsft.convert import mappings
from rsft.convert.safetensors_io import TensorInfo, read_header, read_tensor
from rsft.models.config import ModelConfig
from rsft.sharding import Rules, flatten_state, var_sharding


def checkpoint_files(path: str) -> list[str]:
  """The safetensors files of an HF dir: from model.safetensors.index.json, or the single model.safetensors."""
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      weight_map = json.load(f).get("weight_map")
    if not weight_map:
      raise ValueError(f"{index}: no weight_map.")
    files = [os.path.join(path, name) for name in sorted(set(weight_map.values()))]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
      raise FileNotFoundError(f"{index} lists shard file(s) that do not exist: {missing}.")
    return files
  single = os.path.join(path, "model.safetensors")
  if os.path.exists(single):
    return [single]
  found = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
  if found:
    raise FileNotFoundError(f"{path}: has {found} but neither model.safetensors nor model.safetensors.index.json.")
  raise FileNotFoundError(
    f"{path}: no *.safetensors weights (PyTorch .bin checkpoints are not supported; "
    "convert them with transformers' save_pretrained(safe_serialization=True))."
  )


def is_gguf(path: str) -> bool:
  return path.endswith(".gguf") and os.path.isfile(path)


def tensor_source(path: str) -> tuple[dict[str, Any], Callable[[Any], np.ndarray]]:
  """(HF key -> where the tensor is, with .file and .shape; a function reading one tensor to host memory) for an HF
  dir's safetensors or a GGUF file (dequantized to float32 under HF names, rsft/convert/gguf.py)."""
  if is_gguf(path):
    from rsft.convert import gguf

    return gguf.tensors(path), gguf.reader_for(path)
  headers: dict[str, TensorInfo] = {}
  for file in checkpoint_files(path):
    headers.update(read_header(file))
  return headers, _read_safetensors


def _read_safetensors(info: TensorInfo) -> np.ndarray:
  fd = os.open(info.file, os.O_RDONLY)
  try:
    return read_tensor(fd, info)
  finally:
    os.close(fd)


def plan(
  path: str, cfg: ModelConfig, shapes: dict[str, tuple[int, ...]], headers: dict[str, Any] | None = None
) -> dict[str, tuple[Any, mappings.Row, int | None]]:
  """HF key -> (where it is, which row, layer index), after validating every key and shape."""
  headers = dict(headers if headers is not None else tensor_source(path)[0])
  out, problems = {}, []
  for key, want, row, layer in mappings.hf_tensors(cfg, shapes):
    info = headers.pop(key, None)
    if info is None:
      problems.append(f"missing tensor {key!r} (expected shape {want})")
    elif info.shape != want:
      problems.append(f"{info.file}: tensor {key!r} has shape {info.shape}, expected {want}")
    else:
      out[key] = (info, row, layer)
  for key, info in headers.items():
    if key.endswith(mappings.IGNORED_SUFFIXES):
      continue
    if key == mappings.lm_head_key(cfg.model_type) and cfg.tie_word_embeddings:
      logging.warning("%s: ignoring %s, the model ties it to the embedding.", info.file, key)
      continue
    problems.append(
      f"{info.file}: unexpected tensor {key!r} (shape {info.shape}) for a {cfg.model_type} {cfg.head} model"
    )
  if problems:
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(
      f"{path}: checkpoint does not match the {cfg.model_type} mapping:\n  " + "\n  ".join(problems[:20]) + more
    )
  return out


@functools.cache
def _zeros_fn(shape, dtype, sharding):
  return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)


@functools.cache
def _set_layer_fn(sharding):
  return jax.jit(
    lambda buf, x, i: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype), i, 0),
    out_shardings=sharding,
    donate_argnums=0,
  )


def _place(host: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _layer_sharding(sharding: Any) -> Any:
  if isinstance(sharding, NamedSharding):
    return NamedSharding(sharding.mesh, P(*tuple(sharding.spec)[1:]))
  return sharding


def load_params(path: str, cfg: ModelConfig, abstract_state: nnx.State, rules: Rules) -> nnx.State:
  """Fills `abstract_state` (from nnx.eval_shape) with the checkpoint's weights, placed by `rules`."""
  flat_vars = flatten_state(abstract_state)
  shapes = {name: tuple(v.shape) for name, v in flat_vars.items()}
  headers, read = tensor_source(path)
  todo = plan(path, cfg, shapes, headers)
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  values: dict[str, jax.Array] = {}
  start, nbytes = time.time(), 0
  files = sorted({info.file for info, _, _ in todo.values()})
  for info, row, layer in sorted(todo.values(), key=lambda it: (it[0].file, it[0].start)):
    targets = [(name, flat_vars[name]) for name in row.targets]
    host = read(info).astype(targets[0][1].dtype, copy=False)  # cast on host: no full-precision device copy
    nbytes += host.nbytes
    shapes = [tuple(var.shape) if layer is None else tuple(var.shape[1:]) for _, var in targets]
    for (name, var), one in zip(targets, mappings.to_rsft_parts(row.transform, host, shapes)):
      sharding = var_sharding(name, var, rules) or default
      if layer is None:
        values[name] = _place(one, sharding)
        continue
      if name not in values:
        values[name] = _zeros_fn(tuple(var.shape), var.dtype, sharding)()
      values[name] = _set_layer_fn(sharding)(values[name], _place(one, _layer_sharding(sharding)), layer)
    del host
  logging.info(
    "loaded %s (%d file(s), %.2f GB, %.1f GB/s)",
    path,
    len(files),
    nbytes / 1e9,
    nbytes / 1e9 / max(time.time() - start, 1e-9),
  )
  pure: dict[str, Any] = {}
  for name, value in values.items():
    node = pure
    *parents, leaf = name.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  nnx.replace_by_pure_dict(abstract_state, pure)
  return abstract_state
