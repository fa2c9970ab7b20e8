"""A model family as one declarative entry: how its config.json becomes ModelConfig fields, which classes and
heads it has, and its HF <-> rsft weight table.

One decoder serves every family (rsft/models/decoder.py), so a family is data, not code paths: the decoder reads
ModelConfig fields only. Add one with `register(Family(...))`; docs/contributing.md ("Add a model family") has
the checklist and tests/test_registry.py registers a toy family from a test file alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from rsft.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Row:
  """One HF tensor <-> rsft parameter(s). `{i}` in `hf` marks a per-layer row (stacked into a leading [L, ...]);
  `transform` is one of rsft.convert.mappings' layouts; `when` names a boolean ModelConfig attribute or property
  that must hold for the tensor to exist."""

  hf: str
  rsft: str | tuple[str, ...]  # a tuple for a fused HF tensor (FUSED transforms), in the transform's order
  transform: str
  when: str | None = None

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf

  @property
  def targets(self) -> tuple[str, ...]:
    return self.rsft if isinstance(self.rsft, tuple) else (self.rsft,)


def _nothing(cfg: dict[str, Any], source: str) -> dict[str, Any]:
  return {}


@dataclasses.dataclass(frozen=True)
class Family:
  """Everything that tells one checkpoint family from another.

  Attributes:
    model_type: config.json's `model_type`, the registry key.
    hf_name: the HF class prefix (`Qwen3` -> Qwen3ForCausalLM, Qwen3ForSequenceClassification).
    weights: the declarative HF <-> rsft weight table.
    about: the releases it covers, for error messages and docs ("Qwen2/Qwen2.5").
    read: config.json (and its path, for errors) -> the ModelConfig fields where this family departs from the
      common reading (biases from `attention_bias`, head_dim from the file or hidden/heads, no qk-norm, no window).
    write: (ModelConfig, the common config.json) -> the config.json export writes for a from-scratch model.
    check: raises ValueError when a ModelConfig breaks one of the family's constraints (also for `model.arch`).
    heads: the output heads it has ("lm" = *ForCausalLM, "score" = *ForSequenceClassification).
    sliding_window: whether ModelConfig.sliding_window may be set (read by `read`).
    remote_code: its classes and tokenizer are the checkpoint's own Python (`trust_remote_code`).
    dtype_key: the config.json key export writes the dtype under (`torch_dtype` for transformers 4.x remote code).
  """

  model_type: str
  hf_name: str
  weights: tuple[Row, ...]
  about: str = ""
  read: Callable[[dict[str, Any], str], dict[str, Any]] = _nothing
  write: Callable[[ModelConfig, dict[str, Any]], dict[str, Any]] | None = None
  check: Callable[[ModelConfig], None] | None = None
  heads: tuple[str, ...] = ("lm", "score")
  sliding_window: bool = False
  remote_code: bool = False
  dtype_key: str = "dtype"


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
  """Adds a family; registering a `model_type` twice is refused (replace the dict entry on purpose instead)."""
  if family.model_type in FAMILIES:
    raise ValueError(f"model family {family.model_type!r} is already registered.")
  FAMILIES[family.model_type] = family
  return family


def supported() -> tuple[str, ...]:
  return tuple(FAMILIES)


def get(model_type: str | None, source: str | None = None) -> Family:
  """The registered family, or a ValueError naming `source` (the config.json) and every supported family."""
  if model_type not in FAMILIES:
    where = f"{source}: " if source else ""
    about = ", ".join(f.about or f.model_type for f in FAMILIES.values())
    raise ValueError(f"{where}model_type={model_type!r} is not supported; rsft supports {supported()} ({about}).")
  return FAMILIES[model_type]


# The Llama layout, shared by Qwen2, Qwen3, Llama and Mistral; `when` rows exist only with their ModelConfig flag.
_L = "model.layers.{i}."
LLAMA_LAYOUT = (
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
QKV_BIAS = tuple(
  Row(_L + f"self_attn.{p}_proj.bias", f"layers.self_attn.{p}_proj.bias", "flatten", when="qkv_bias") for p in "qkv"
)
O_BIAS = (Row(_L + "self_attn.o_proj.bias", "layers.self_attn.o_proj.bias", "copy", when="o_bias"),)
QK_NORM = tuple(
  Row(_L + f"self_attn.{p}_norm.weight", f"layers.self_attn.{p}_norm.scale", "copy", when="qk_norm") for p in "qk"
)


def with_attention_bias(cfg: ModelConfig, out: dict[str, Any]) -> dict[str, Any]:
  """config.json writer for families whose one `attention_bias` flag covers q, k, v and o (Qwen3, Llama)."""
  return {**out, "attention_bias": cfg.qkv_bias}
