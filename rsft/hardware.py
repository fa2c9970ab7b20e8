"""Per-chip hardware figures, in one table, so the MFU train.py logs, the step-time floor and HBM limit of
rsft.tools.fit and the decode roofline of bench/ never disagree about the same chip.

A chip is found by the device kind jax (or torch.cuda.get_device_name) reports, by its longest matching prefix:
"TPU v5 lite" (v5e) wins over "TPU v5" (v5p), "NVIDIA H100 PCIe" over "NVIDIA H100". Lowest layer: stdlib and jax.

Sources (data sheets, read 2025):
- TPUs: cloud.google.com/tpu/docs/{v4,v5e,v5p,v6e} "System architecture" tables (peak bf16 compute per chip, HBM
  capacity and bandwidth). Their "GB" are GiB: the compiler's usable figure exceeds the decimal reading (v5p's
  sheet says 95 GB, libtpu lets a program use 95.74 GiB, so its stacks are 96 GiB).
- Usable HBM: what libtpu's compiler reports as available ("exceeds available HBM (30.75G)"), measured with
  `python -m rsft.tools.fit` (docs/fit.md); below the capacity by what the runtime reserves.
- NVIDIA: the A100 / H100 / H200 data sheets, dense (no 2:4 sparsity) bf16 Tensor Core FLOP/s, capacity in the
  sheets' nominal GB and bandwidth in decimal bytes/s.
"""

from __future__ import annotations

import dataclasses

import jax

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
  kinds: tuple[str, ...]  # device-kind prefixes (jax's and torch's spellings)
  peak_bf16_flops: float  # dense, per chip
  hbm_bytes: float  # capacity per chip, as the data sheet states it
  hbm_bandwidth: float  # bytes/s per chip
  usable_hbm_bytes: float | None = None  # what libtpu's compiler lets one program use (TPUs)
  family: str | None = None  # TPU generation as slice names spell it ("v5p" in v5p-32)
  tensorcores: int = 1  # per chip: the "-N" of a v4 / v5p slice name counts TensorCores
  torus_dims: int = 0  # ICI torus dimensions (TPUs)


CHIPS: tuple[Chip, ...] = (
  # TPUs. jax reports v5e as "TPU v5 lite", v5p as "TPU v5" (or "TPU v5p"), v6e as "TPU v6 lite".
  Chip(("TPU v4",), 275e12, 32 * GIB, 1200e9, 30.75 * GIB, "v4", 2, 3),
  Chip(("TPU v5 lite", "TPU v5e"), 197e12, 16 * GIB, 819e9, 15.75 * GIB, "v5e", 1, 2),
  Chip(("TPU v5p", "TPU v5"), 459e12, 96 * GIB, 2765e9, 95.74 * GIB, "v5p", 2, 3),
  Chip(("TPU v6 lite", "TPU v6e"), 918e12, 32 * GIB, 1640e9, 31.25 * GIB, "v6e", 1, 2),
  # NVIDIA. jax/torch report e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB".
  Chip(("NVIDIA A100",), 312e12, 40e9, 1555e9),  # 40 GB (SXM4 and PCIe)
  Chip(("NVIDIA A100-SXM4-80GB",), 312e12, 80e9, 2039e9),
  Chip(("NVIDIA A100 80GB PCIe",), 312e12, 80e9, 1935e9),
  Chip(("NVIDIA H100",), 989e12, 80e9, 3.35e12),  # SXM5
  Chip(("NVIDIA H100 PCIe",), 756e12, 80e9, 2.0e12),
  Chip(("NVIDIA H100 NVL",), 835e12, 94e9, 3.9e12),
  Chip(("NVIDIA H200",), 989e12, 141e9, 4.8e12),
)
TPUS: dict[str, Chip] = {c.family: c for c in CHIPS if c.family}


def chip(device_kind: str) -> Chip | None:
  """The chip whose longest prefix `device_kind` starts with; None for CPUs and unknown devices."""
  matches = [(len(k), c) for c in CHIPS for k in c.kinds if device_kind.startswith(k)]
  return max(matches, key=lambda m: m[0])[1] if matches else None


def peak_flops(device_kind: str) -> float | None:
  """Dense bf16 peak FLOP/s of one chip (None: unknown, so no MFU is logged)."""
  c = chip(device_kind)
  return c.peak_bf16_flops if c else None


def hbm_bandwidth(device_kind: str) -> float | None:
  """Peak HBM bytes/s of one chip (None: unknown)."""
  c = chip(device_kind)
  return c.hbm_bandwidth if c else None


def local_peak_flops() -> float | None:
  """Peak bf16 FLOP/s of all devices of this job (jax exposes one device per chip, megacore included)."""
  per_chip = peak_flops(jax.devices()[0].device_kind)
  return per_chip * jax.device_count() if per_chip else None


def device_memory_bytes(device: object | None = None) -> float | None:
  """What one device may allocate: the runtime's own limit (GPU/TPU `memory_stats()`), else the table's usable
  HBM for the chip, else None (CPU: no fixed budget)."""
  device = device or jax.local_devices()[0]  # this process's own: memory_stats() needs an addressable device
  stats = getattr(device, "memory_stats", lambda: None)()
  if stats and stats.get("bytes_limit"):
    return float(stats["bytes_limit"])
  c = chip(getattr(device, "device_kind", ""))
  return (c.usable_hbm_bytes or c.hbm_bytes) if c else None
