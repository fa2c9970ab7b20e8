"""The layouts of the declarative HF <-> rsft weight tables (each family's table is in rsft/models/families/).

A row says which HF tensor becomes which rsft parameter(s), how its layout changes, and which ModelConfig flag
must be set for the row to exist. `{i}` rows are per layer and stack into the leading `[L, ...]` dimension.
Transforms (HF linear weights are [out, in]; rsft kernels are [in, out] with heads split out):
  copy      same layout (norm scales, embedding)
  flatten   rsft [N, H] bias  <-> HF [N*H]
  linear    rsft [in, out]    <-> HF [out, in]
  heads_in  rsft [D, N, H]    <-> HF [N*H, D]   (q/k/v)
  heads_out rsft [N, H, D]    <-> HF [D, N*H]   (o)
A fused row names several rsft parameters; its transform splits the one HF tensor on load and fuses them back
on export (still one HF tensor at a time):
  qkv_grouped       rsft q [D, N, H], k, v [D, K, H] <-> HF [(N + 2K)*H, D], grouped per KV head: that head's
                    N/K query heads, then its key, then its value (InternLM2's wqkv)
  qkv_grouped_bias  rsft q [N, H], k, v [K, H]       <-> HF [(N + 2K)*H], the same grouping
"""

from __future__ import annotations

import math

import numpy as np

from rsft.models import families
from rsft.models.config import ModelConfig
from rsft.models.families import Row

FUSED = ("qkv_grouped", "qkv_grouped_bias")

# Buffers some exporters write that carry no weights (recomputed from config).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def rows_for(cfg: ModelConfig) -> list[Row]:
  """The family's table rows whose tensors this configuration has."""
  return [r for r in cfg.family.weights if r.when is None or getattr(cfg, r.when)]


def lm_head_key(model_type: str) -> str:
  """The family's output-projection tensor name (a tied model's checkpoint may still carry it)."""
  return next(r.hf for r in families.get(model_type).weights if r.rsft == "lm_head")


def hf_keys(row: Row, num_layers: int) -> list[str]:
  return [row.hf.format(i=i) for i in range(num_layers)] if row.per_layer else [row.hf]


def hf_tensors(
  cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]
) -> list[tuple[str, tuple[int, ...], Row, int | None]]:
  """Every tensor of the family's HF checkpoint as (key, shape, row, layer or None), from the rsft parameter
  shapes (stacked [L, ...] for per-layer rows): what loading expects and export and synthetic checkpoints write."""
  out = []
  for row in rows_for(cfg):
    want = hf_shape(row.transform, *(shapes[n][1:] if row.per_layer else shapes[n] for n in row.targets))
    out += [
      (key, want, row, layer if row.per_layer else None) for layer, key in enumerate(hf_keys(row, cfg.num_layers))
    ]
  return out


def hf_shape(transform: str, shape: tuple[int, ...], *more: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor shape that maps to an rsft (per-layer) parameter of `shape` (a fused row: to all of its
  parameters' shapes, in the row's order)."""
  if transform == "qkv_grouped":
    (d, n, h), (_, k, _) = shape, more[0]
    return ((n + 2 * k) * h, d)
  if transform == "qkv_grouped_bias":
    (n, h), (k, _) = shape, more[0]
    return ((n + 2 * k) * h,)
  if transform == "copy":
    return shape
  if transform == "flatten":
    return (math.prod(shape),)
  if transform == "linear":
    return shape[::-1]
  if transform == "heads_in":
    return (math.prod(shape[1:]), shape[0])
  if transform == "heads_out":
    return (shape[-1], math.prod(shape[:-1]))
  raise ValueError(f"unknown transform {transform!r}")


def _transpose(x: np.ndarray, tile: int = 256) -> np.ndarray:
  """Contiguous x.T for a 2-D array, copied in cache-sized tiles through a same-width integer view.

  numpy's generic copy loop for ml_dtypes' bfloat16 is ~10x slower than for uint16 (only the bits move), and
  tiling halves the cache misses of a large strided transpose.
  """
  bits = x.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])
  out = np.empty(bits.shape[::-1], bits.dtype)
  for i in range(0, bits.shape[0], tile):
    for j in range(0, bits.shape[1], tile):
      out[j : j + tile, i : i + tile] = bits[i : i + tile, j : j + tile].T
  return out.view(x.dtype)


def _bits(x: np.ndarray) -> np.ndarray:
  """Same-width unsigned view: slicing copies and concatenations of bfloat16 then run at integer speed."""
  return x.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def _split_grouped(x: np.ndarray, shapes: list[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
  """HF [(N + 2K)*H(, D)] grouped per KV head -> rsft q, k, v (kernels [D, heads, H] or biases [heads, H])."""
  kernel = x.ndim == 2
  n, h = shapes[0][-2:]
  k = shapes[1][-2]
  g = n // k
  grouped = _bits(x).reshape((k, g + 2, h) + x.shape[1:])
  parts = (grouped[:, :g], grouped[:, g], grouped[:, g + 1])
  out = []
  for part, heads in zip(parts, (n, k, k)):
    flat = np.ascontiguousarray(part).reshape((heads * h,) + x.shape[1:])
    out.append((_transpose(flat) if kernel else flat).reshape(x.shape[1:] + (heads, h)).view(x.dtype))
  return tuple(out)


def _fuse_grouped(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
  """rsft q, k, v -> HF's grouped [(N + 2K)*H(, D)]: the inverse of _split_grouped."""
  kernel = q.ndim == 3
  n, h = q.shape[-2:]
  kv = k.shape[-2]
  rows = lambda y, heads: (_transpose(y.reshape(y.shape[0], -1)) if kernel else y).reshape(heads, h, -1)
  qh = _bits(rows(q, n)).reshape(kv, n // kv, h, -1)
  kh, vh = (_bits(rows(y, kv)).reshape(kv, 1, h, -1) for y in (k, v))
  fused = np.concatenate([qh, kh, vh], axis=1).reshape(((n + 2 * kv) * h,) + q.shape[:kernel])
  return fused.view(q.dtype)


def to_rsft_parts(transform: str, x: np.ndarray, shapes: list[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
  """One HF tensor -> its row's rsft parameter(s) of `shapes` (one for a plain row)."""
  if transform in FUSED:
    return _split_grouped(x, shapes)
  return (to_rsft(transform, x, shapes[0]),)


def to_hf_parts(transform: str, parts: list[np.ndarray]) -> np.ndarray:
  """A row's rsft parameter(s) -> its one HF tensor."""
  if transform in FUSED:
    return _fuse_grouped(*parts)
  return to_hf(transform, parts[0])


def to_rsft(transform: str, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  if transform in ("copy", "flatten"):
    return x.reshape(shape)
  return _transpose(x).reshape(shape)  # linear, heads_in, heads_out


def to_hf(transform: str, y: np.ndarray) -> np.ndarray:
  if transform == "copy":
    return y
  if transform == "flatten":
    return y.reshape(-1)
  if transform == "linear":
    return _transpose(y)
  if transform == "heads_in":
    return _transpose(y.reshape(y.shape[0], -1))
  if transform == "heads_out":
    return _transpose(y.reshape(-1, y.shape[-1]))
  raise ValueError(f"unknown transform {transform!r}")
