"""Mesh construction and the single logical-axis rules table.

Model code names every dimension logically ("embed", "q_heads", ...). This file alone decides how those names
map onto the physical mesh `(data, fsdp, sequence, tensor)` (the MaxText / T5X scheme). Divisibility is checked up
front: a dimension that does not divide its mesh axis is an error that names the parameter, the dimension and the axis,
except KV heads, which are replicated (Qwen2.5 <= 3B has 2 KV heads, so tensor=4 must still work).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "sequence", "tensor")  # sequence: context parallelism (1 = off)

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated). One table for params and activations.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
  # parameters
  ("vocab", "tensor"),
  ("embed", ("fsdp", "sequence")),  # ZeRO-3 over the sequence axis too (MaxText): context parallelism costs
  # no state memory, only the all-gather of weights spans more devices
  ("q_heads", "tensor"),
  ("kv_heads", "tensor"),
  ("mlp", "tensor"),
  ("head_dim", None),
  ("layers", None),
  ("norm", None),
  ("labels", None),
  ("lora_rank", None),  # adapters keep their layer's sharding on the dims they share with the kernel
  # activations
  ("batch", ("data", "fsdp")),
  ("length", "sequence"),
  ("act_embed", None),
  ("act_heads", "tensor"),
  ("act_kv_heads", "tensor"),
  ("act_mlp", "tensor"),
  ("act_vocab", "tensor"),
)

# Logical axes that fall back to replication (with a log line) when they do not divide their mesh axis.
REPLICATE_IF_INDIVISIBLE = frozenset({"kv_heads", "act_kv_heads", "batch", "length"})  # length: a decode step


def make_mesh(
  data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence[Any] | None = None, sequence: int = 1
) -> Mesh:
  """Builds the `(data, fsdp, sequence, tensor)` mesh; at most one size may be -1 (= all remaining devices)."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [data, fsdp, sequence, tensor]
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))}: at most one axis may be -1.")
  known = math.prod(s for s in sizes if s != -1)
  if any(s == 0 or s < -1 for s in sizes) or len(devices) % known:
    odd = [f"mesh.{a}={s}" for a, s in zip(MESH_AXES, sizes) if s == 0 or s < -1 or (s > 0 and len(devices) % s)]
    raise ValueError(
      f"mesh {dict(zip(MESH_AXES, sizes))} does not fit {len(devices)} devices: change "
      f"{', '.join(odd) or 'an axis'} so that the sizes multiply to a divisor of {len(devices)}."
    )
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != len(devices):
    raise ValueError(
      f"mesh {dict(zip(MESH_AXES, sizes))} uses {math.prod(sizes)} devices but "
      f"{len(devices)} are present; set one axis to -1 to use the rest."
    )
  try:
    arr = mesh_utils.create_device_mesh(sizes, devices=devices)
  except Exception:  # noqa: BLE001 - odd topologies (fake CPU devices) fall back to device order.
    arr = np.asarray(devices).reshape(sizes)
  return Mesh(arr, MESH_AXES)


def mesh_from_config(mesh_cfg: Any) -> Mesh:
  return make_mesh(mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor, sequence=mesh_cfg.sequence)


def sequence_shards(mesh: Mesh | None) -> int:
  """Devices a row's tokens are split over (the `sequence` axis: context parallelism)."""
  return 1 if mesh is None else mesh.shape.get("sequence", 1)


@dataclasses.dataclass(frozen=True)
class Rules:
  """Hashable logical->mesh mapping bound to a mesh; lives in the model as static data."""

  mesh: Mesh | None
  table: tuple[tuple[str, Any], ...] = LOGICAL_RULES

  def spec(self, axes: Sequence[str | None], shape: Sequence[int], name: str = "array", strict: bool = True) -> P:
    """PartitionSpec for `shape` with logical `axes`.

    strict=True raises on an indivisible dimension (except REPLICATE_IF_INDIVISIBLE axes); strict=False
    silently replicates it (activation constraints on odd batch sizes).
    """
    if self.mesh is None:
      return P()
    if len(axes) != len(shape):
      raise ValueError(f"{name}: logical axes {tuple(axes)} do not match shape {tuple(shape)}.")
    table = dict(self.table)
    used: set[str] = set()
    out = []
    for axis, dim in zip(axes, shape):
      if axis is not None and axis not in table:
        raise KeyError(f"{name}: logical axis {axis!r} has no rule; known axes: {sorted(table)}.")
      target = table.get(axis) if axis is not None else None
      mesh_axes = tuple(a for a in ((target,) if isinstance(target, str) else (target or ())) if self.mesh.shape[a] > 1)
      if set(mesh_axes) & used:
        raise ValueError(f"{name}: mesh axes {mesh_axes} are used twice in logical axes {tuple(axes)}.")
      size = math.prod(self.mesh.shape[a] for a in mesh_axes)
      if size > 1 and dim % size:
        if strict and axis not in REPLICATE_IF_INDIVISIBLE:
          raise ValueError(
            f"{name}: dimension {axis}={dim} is not divisible by mesh axis {'x'.join(mesh_axes)}={size}; "
            f"use a mesh where {'x'.join(mesh_axes)} divides {dim} (valid: {_divisors(dim, 64)})."
          )
        if strict:
          logging.log_first_n(
            logging.INFO,
            "%s: %s=%d does not divide %s=%d; replicating that dimension.",
            20,
            name,
            axis,
            dim,
            "x".join(mesh_axes),
            size,
          )
        mesh_axes = ()
      used.update(mesh_axes)
      out.append(None if not mesh_axes else mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return P(*out)

  def sharding(
    self, axes: Sequence[str | None], shape: Sequence[int], name: str = "array", strict: bool = True
  ) -> NamedSharding | None:
    if self.mesh is None:
      return None
    return NamedSharding(self.mesh, self.spec(axes, shape, name, strict))

  def constrain(self, x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """Activation sharding hint; a no-op without a mesh (never skipped just because we run on CPU)."""
    if self.mesh is None:
      return x
    return jax.lax.with_sharding_constraint(x, self.sharding(axes, x.shape, strict=False))


def _divisors(n: int, limit: int) -> list[int]:
  return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _is_var(x: Any) -> bool:
  from flax import nnx  # local: keep this module importable without flax for launch tooling.

  return isinstance(x, nnx.Variable)


def path_name(path: Sequence[Any]) -> str:
  """'layers.self_attn.q_proj' for a jax key path into an nnx.State."""
  return ".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def flatten_state(state: Any) -> dict[str, Any]:
  """'layers.self_attn.q_proj.kernel' -> nnx.Variable (abstract or concrete), the names the mapping tables use."""
  out = {}
  jax.tree_util.tree_map_with_path(lambda p, v: out.__setitem__(path_name(p), v), state, is_leaf=_is_var)
  return out


def var_sharding(name: str, var: Any, rules: Rules) -> NamedSharding | None:
  return rules.sharding(var.get_metadata()["logical_axes"], var.shape, name)


def state_shardings(abstract_state: Any, rules: Rules) -> Any:
  """A NamedSharding per parameter, from its `logical_axes` metadata; raises on an impossible layout.

  The result is a pytree prefix of the state, so it can be passed to jit `out_shardings` or `device_put`.
  """
  return jax.tree_util.tree_map_with_path(
    lambda path, var: var_sharding(path_name(path), var, rules), abstract_state, is_leaf=_is_var
  )


def abstract_arrays(abstract_state: Any, rules: Rules) -> Any:
  """The state with each leaf a ShapeDtypeStruct carrying its target sharding (orbax restore targets)."""
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(path, x):
    name = path_name(path[:-1])  # the last key is the Variable's `value`
    sharding = rules.sharding(_logical_axes[name], x.shape, name) if rules.mesh is not None else default
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  _logical_axes = {name: var.get_metadata()["logical_axes"] for name, var in flatten_state(abstract_state).items()}
  return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def param_specs(abstract_state: Any, rules: Rules) -> dict[str, P]:
  """'a.b.c' -> PartitionSpec for every parameter (for golden tables and logs)."""
  return {
    name: rules.spec(var.get_metadata()["logical_axes"], var.shape, name)
    for name, var in flatten_state(abstract_state).items()
  }


def batch_multiple(mesh: Mesh | None) -> int:
  """Rows must be a multiple of this (data x fsdp) to be split over the mesh rather than replicated."""
  return 1 if mesh is None else mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)


def micro_batch_rows(global_batch: int, micro_batch_size: int, mesh: Mesh | None) -> int:
  """Rows per accumulation step: micro_batch_size, or with 0 one row per data-parallel device (data x fsdp), the
  layout that fits the study's 20k-token rows on every slice docs/fit.md lists."""
  rows = micro_batch_size or batch_multiple(mesh)
  if global_batch % rows:
    raise ValueError(
      f"train.global_batch_size={global_batch} is not a multiple of the micro-batch "
      f"({rows} rows{' = data x fsdp devices' if not micro_batch_size else ''})."
    )
  return rows


def put_batch(mesh: Mesh | None, x: Any) -> jax.Array:
  """A host array [B, ...] placed with its batch over (data, fsdp) when it divides (else replicated).

  Every process passes the same whole array (the eval sweep is deterministic on every host) and contributes the
  rows its own devices hold, so this is one code path for one host and for a pod."""
  target = batch_sharding(Rules(mesh), np.shape(x))
  if target is None or target.is_fully_addressable:
    return jax.device_put(x, target)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, target, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
  """The whole array on this host, gathered from the other processes when they hold part of it."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def batch_sharding(rules: Rules, shape: Sequence[int]) -> NamedSharding | None:
  """Sharding for a [B, T] input: batch over (data, fsdp) when it divides, else replicated."""
  return rules.sharding(("batch",) + (None,) * (len(shape) - 1), shape, "inputs", strict=False)
