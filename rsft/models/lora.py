"""Low-rank adapters (LoRA, Hu et al. 2021) on the decoder's linear maps.

With rank r a target map y = x W becomes y = x W + (alpha / r) (x A) B, A [in..., r] and B [r, out...], B zero at
the start so the adapted model begins as the base. The adapters are `nnx.LoRAParam`s inside the same stacked
`Linear` modules (rsft/models/layers.py), so they scan, remat and shard with their layer; training differentiates
them alone (rsft/train/step.py) and `merge` folds them into the kernels for sampling and export. Every family
has the same module names, so the targets mean the same maps in each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rsft.models.config import ModelConfig

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK = "R"  # the rank's letter in the adapters' einsums (the decoder's use B T D N K H F M)


@dataclasses.dataclass(frozen=True)
class LoRA:
  """Adapter settings (config `train.lora`); hashable, so part of the static graphdef."""

  rank: int
  alpha: float
  targets: tuple[str, ...] = TARGETS
  dropout: float = 0.0  # training only: the share of the adapters' input dropped (rescaled), as PEFT's lora_dropout

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def check(self, cfg: ModelConfig) -> None:
    """Unknown targets and a rank above a target's width are errors naming the setting."""
    unknown = sorted(set(self.targets) - set(TARGETS))
    if unknown or not self.targets:
      raise ValueError(f"train.lora.targets: unknown module(s) {unknown or '(none given)'}; choose from {TARGETS}.")
    if self.rank < 1:
      raise ValueError(f"train.lora.rank={self.rank}: must be a positive integer (0 = full fine-tuning).")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"train.lora.dropout={self.dropout}: a rate in [0, 1).")
    for name in self.targets:
      fan_in, fan_out = widths(cfg)[name]
      if self.rank > min(fan_in, fan_out):
        raise ValueError(
          f"train.lora.rank={self.rank} is larger than {name}'s width ({fan_in} -> {fan_out}): a rank above "
          f"min(in, out) = {min(fan_in, fan_out)} adds parameters and no capacity."
        )


def from_config(section: Any) -> LoRA | None:
  """The `train.lora` section as settings, or None for full fine-tuning (rank 0)."""
  if not section.rank:
    return None
  return LoRA(int(section.rank), float(section.alpha), tuple(section.targets), float(section.get("dropout") or 0.0))


def to_record(lora: LoRA, base: str, base_fingerprint: str) -> dict[str, Any]:
  """What a checkpoint's meta records (`meta["lora"]`): the settings and the base they adapt; from_record reads it."""
  return dict(
    rank=lora.rank,
    alpha=lora.alpha,
    targets=list(lora.targets),
    dropout=lora.dropout,
    base=base,
    base_fingerprint=base_fingerprint,
  )


def from_record(record: dict[str, Any]) -> LoRA:
  """The settings a checkpoint's meta records (`meta["lora"]`)."""
  return LoRA(int(record["rank"]), float(record["alpha"]), tuple(record["targets"]))  # no dropout outside training


def check_resume(saved: dict[str, Any] | None, current: dict[str, Any] | None) -> None:
  """A resumed run's train.lora must be the one its checkpoints were written with (full fine-tuning or the same
  rank, alpha and targets), on the same base."""
  if bool(saved) != bool(current):
    have = f"LoRA adapters (train.lora.rank={saved['rank']})" if saved else "the full model (train.lora.rank=0)"
    raise ValueError(
      f"train.lora.rank={current['rank'] if current else 0}: this run's checkpoints hold {have}; resume with "
      "their setting or start a new workdir."
    )
  if not saved:
    return
  for key in ("rank", "alpha", "targets"):
    if saved[key] != current[key]:
      raise ValueError(
        f"train.lora.{key}={current[key]!r}: this run's checkpoints were trained with {saved[key]!r}; resume with "
        "it or start a new workdir."
      )
  check_base(saved, current, "model.path")


def check_base(saved: dict[str, Any], current: dict[str, Any], setting: str) -> None:
  """Adapters only go on the base they were trained on: the recorded fingerprint must match the base at hand."""
  if saved["base_fingerprint"] != current["base_fingerprint"]:
    raise ValueError(
      f"{setting}={current['base']}: its weights (fingerprint {current['base_fingerprint'][:12]}) are not the base "
      f"these adapters were trained on ({saved['base']}, fingerprint {saved['base_fingerprint'][:12]})."
    )


def widths(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
  """Each target's (inputs, outputs) as a matrix."""
  d, f, q, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  return dict(
    q_proj=(d, q), k_proj=(d, kv), v_proj=(d, kv), o_proj=(q, d), gate_proj=(d, f), up_proj=(d, f), down_proj=(f, d)
  )


@dataclasses.dataclass(frozen=True)
class Factors:
  """How one target's adapters attach to its kernel einsum ("BTD,DNH->BTNH": A is [D, R], B is [R, N, H])."""

  down: str  # x A: "BTD,DR->BTR"
  up: str  # (x A) B: "BTR,RNH->BTNH"
  merge: str  # A B as a kernel: "DR,RNH->DNH"
  a_dims: tuple[int, ...]  # indices of the kernel dims A keeps (its inputs)
  b_dims: tuple[int, ...]  # indices of the kernel dims B keeps (its outputs)


def factors(eqn: str) -> Factors:
  lhs, kernel = eqn.split("->")[0].split(",")
  out = eqn.split("->")[1]
  inputs = "".join(c for c in kernel if c in lhs)
  outputs = "".join(c for c in kernel if c not in lhs)
  rows = "".join(c for c in lhs if c not in kernel)
  return Factors(
    down=f"{lhs},{inputs}{RANK}->{rows}{RANK}",
    up=f"{rows}{RANK},{RANK}{outputs}->{out}",
    merge=f"{inputs}{RANK},{RANK}{outputs}->{kernel}",
    a_dims=tuple(kernel.index(c) for c in inputs),
    b_dims=tuple(kernel.index(c) for c in outputs),
  )


def adapter_params(
  rngs: nnx.Rngs,
  eqn: str,
  shape: Sequence[int],
  axes: Sequence[str | None],
  rank: int,
  param_dtype: Any,
  stack: int | None,
) -> tuple[nnx.LoRAParam, nnx.LoRAParam]:
  """A ~ N(0, 1 / fan_in) and B = 0 (the adapted model starts as the base), with the kernel's logical axes on the
  dims each keeps and an unsharded `lora_rank` axis."""
  f = factors(eqn)
  lead, lead_axes = ((stack,), ("layers",)) if stack else ((), ())
  a_shape = tuple(shape[i] for i in f.a_dims) + (rank,)
  b_shape = (rank,) + tuple(shape[i] for i in f.b_dims)
  a_axes = tuple(axes[i] for i in f.a_dims) + ("lora_rank",)
  b_axes = ("lora_rank",) + tuple(axes[i] for i in f.b_dims)
  fan_in = math.prod(a_shape[:-1])
  a = jax.random.normal(rngs.params(), lead + a_shape, jnp.float32) / math.sqrt(fan_in)
  b = jnp.zeros(lead + b_shape, jnp.float32)
  return (
    nnx.LoRAParam(a.astype(param_dtype), logical_axes=lead_axes + a_axes),
    nnx.LoRAParam(b.astype(param_dtype), logical_axes=lead_axes + b_axes),
  )


def split(state: nnx.State) -> tuple[nnx.State, nnx.State]:
  """(adapters, base) of an adapted model's state."""
  return nnx.split_state(state, nnx.LoRAParam, ...)


def merge(graphdef: Any, state: nnx.State) -> nnx.State:
  """An adapted model's state with each kernel replaced by W + scale * A B (in float32, cast back) and the adapters
  dropped: the plain model's state, for sampling at full speed and for export. `graphdef` is the adapted model's."""
  model = nnx.merge(graphdef, state)
  out = {}
  for group in ("self_attn", "mlp"):
    for name in TARGETS:
      linear = getattr(getattr(model.layers, group), name, None)
      if linear is None or linear.lora_a is None:
        continue
      f = factors(linear.eqn)
      merged = jnp.einsum(
        "L" + f.merge.replace(",", ",L").replace("->", "->L"),
        linear.lora_a[...].astype(jnp.float32),
        linear.lora_b[...].astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
      )
      kernel = linear.kernel[...]
      out[(group, name)] = (kernel.astype(jnp.float32) + linear.lora_scale * merged).astype(kernel.dtype)
  _, base = split(state)
  flat = dict(nnx.to_flat_state(base))
  for (group, name), kernel in out.items():
    key = ("layers", group, name, "kernel")
    flat[key] = flat[key].replace(kernel)
  return nnx.from_flat_state(flat)
