"""Declarative HF <-> rsft weight tables, one per model family.

A row says which HF tensor becomes which rsft parameter, how its layout changes, and which ModelConfig flag must
be set for the row to exist. `{i}` rows are per layer and stack into the leading `[L, ...]` dimension.
Transforms (HF linear weights are [out, in]; rsft kernels are [in, out] with heads split out):
  copy      same layout (norm scales, embedding)
  flatten   rsft [N, H] bias  <-> HF [N*H]
  linear    rsft [in, out]    <-> HF [out, in]
  heads_in  rsft [D, N, H]    <-> HF [N*H, D]   (q/k/v)
  heads_out rsft [N, H, D]    <-> HF [D, N*H]   (o)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rsft.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Row:
  hf: str
  rsft: str
  transform: str
  when: str | None = None  # name of a boolean ModelConfig attribute / property

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf


_L = "model.layers.{i}."
COMMON = (
    Row("model.embed_tokens.weight", "embed_tokens.embedding", "copy"),
    Row("model.norm.weight", "norm.scale", "copy"),
    Row("lm_head.weight", "lm_head", "linear", when="has_lm_head"),
    Row("score.weight", "score", "linear", when="has_score"),
    Row(_L + "input_layernorm.weight", "layers.input_layernorm.scale", "copy"),
    Row(_L + "post_attention_layernorm.weight", "layers.post_attention_layernorm.scale", "copy"),
    Row(_L + "self_attn.q_proj.weight", "layers.self_attn.q_proj.kernel", "heads_in"),
    Row(_L + "self_attn.k_proj.weight", "layers.self_attn.k_proj.kernel", "heads_in"),
    Row(_L + "self_attn.v_proj.weight", "layers.self_attn.v_proj.kernel", "heads_in"),
    Row(_L + "self_attn.o_proj.weight", "layers.self_attn.o_proj.kernel", "heads_out"),
    Row(_L + "mlp.gate_proj.weight", "layers.mlp.gate_proj.kernel", "linear"),
    Row(_L + "mlp.up_proj.weight", "layers.mlp.up_proj.kernel", "linear"),
    Row(_L + "mlp.down_proj.weight", "layers.mlp.down_proj.kernel", "linear"),
)
QKV_BIAS = tuple(Row(_L + f"self_attn.{p}_proj.bias", f"layers.self_attn.{p}_proj.bias", "flatten", when="qkv_bias")
                 for p in "qkv")
O_BIAS = (Row(_L + "self_attn.o_proj.bias", "layers.self_attn.o_proj.bias", "copy", when="o_bias"),)
QK_NORM = tuple(Row(_L + f"self_attn.{p}_norm.weight", f"layers.self_attn.{p}_norm.scale", "copy", when="qk_norm")
                for p in "qk")

TABLES = {
    "qwen2": COMMON + QKV_BIAS,  # q/k/v bias always, no o_proj bias
    "qwen3": COMMON + QK_NORM + QKV_BIAS + O_BIAS,  # biases only with attention_bias=true
    "llama": COMMON + QKV_BIAS + O_BIAS,
}

# Buffers some exporters write that carry no weights (recomputed from config).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def rows_for(cfg: ModelConfig) -> list[Row]:
  return [r for r in TABLES[cfg.model_type] if r.when is None or getattr(cfg, r.when)]


def hf_keys(row: Row, num_layers: int) -> list[str]:
  return [row.hf.format(i=i) for i in range(num_layers)] if row.per_layer else [row.hf]


def hf_shape(transform: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor shape that maps to an rsft (per-layer) parameter of `shape`."""
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
      out[j:j + tile, i:i + tile] = bits[i:i + tile, j:j + tile].T
  return out.view(x.dtype)


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
