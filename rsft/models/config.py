"""Architecture description read from a Hugging Face `config.json`.

We parse the JSON ourselves instead of going through `transformers.AutoConfig`: transformers v5 moved
`rope_theta` into `rope_parameters`, and `getattr(cfg, "rope_theta", default)` then silently returns the
default (the tunix / vllm / DeepSpeed bug). Every field the model uses is read explicitly here, and anything we
do not implement is an error, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from rsft.models import families

SUPPORTED_ROPE_TYPES = ("default", "llama3", "dynamic")
_HEADS = {"ForCausalLM": "lm", "ForSequenceClassification": "score"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything the decoder needs; hashable so it can be a static jit argument."""

  model_type: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  o_bias: bool = False
  qk_norm: bool = False
  # llama3 rope scaling: (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).
  rope_llama3: tuple[float, float, float, int] | None = None
  head: str = "lm"  # "lm" (CausalLM) or "score" (SequenceClassification)
  num_labels: int = 1
  pad_token_id: int | None = None
  max_position_embeddings: int = 32768
  checkpoint_dtype: str = "float32"  # dtype of the tensors on disk; export writes this back
  # Dynamic NTK rope scaling factor (InternLM2's rope_scaling {"type": "dynamic"}): beyond max_position_embeddings
  # the rope base grows with the sequence length (rsft.models.layers.dynamic_ntk_inv_freq).
  rope_dynamic: float | None = None
  # Mistral's sliding window: a token attends to the last `sliding_window` tokens, itself included. None = full.
  sliding_window: int | None = None

  def __post_init__(self):
    family = families.get(self.model_type)
    if self.head not in family.heads:
      raise ValueError(f"{self.model_type}: head={self.head!r} is not supported; the family has {family.heads}.")
    if self.sliding_window is not None and (not family.sliding_window or self.sliding_window < 1):
      with_window = tuple(f.model_type for f in families.FAMILIES.values() if f.sliding_window)
      raise ValueError(
        f"sliding_window={self.sliding_window!r}: only a positive window on a family with one {with_window} is "
        "supported (Qwen2's use_sliding_window is not implemented)."
      )
    if self.rope_dynamic is not None and self.rope_llama3 is not None:
      raise ValueError("rope_dynamic and rope_llama3 are exclusive rope scalings.")
    if family.check is not None:
      family.check(self)

  @property
  def family(self) -> families.Family:
    return families.get(self.model_type)

  @property
  def has_lm_head(self) -> bool:
    return self.head == "lm" and not self.tie_word_embeddings

  @property
  def has_score(self) -> bool:
    return self.head == "score"

  def to_hf_dict(self) -> dict[str, Any]:
    """A config.json for this architecture (from-scratch models have no original to copy): the common fields,
    then the family's `write` (InternLM2's is its own layout, which rsft reloads; transformers needs the remote
    modeling files beside it)."""
    suffix = "ForCausalLM" if self.head == "lm" else "ForSequenceClassification"
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
    if self.rope_llama3:
      f, lo, hi, orig = self.rope_llama3
      rope = {
        "rope_type": "llama3",
        "rope_theta": self.rope_theta,
        "factor": f,
        "low_freq_factor": lo,
        "high_freq_factor": hi,
        "original_max_position_embeddings": orig,
      }
    elif self.rope_dynamic:
      rope = {"rope_type": "dynamic", "rope_theta": self.rope_theta, "factor": self.rope_dynamic}
    out = {
      "architectures": [self.family.hf_name + suffix],
      "model_type": self.model_type,
      "vocab_size": self.vocab_size,
      "hidden_size": self.hidden_size,
      "intermediate_size": self.intermediate_size,
      "num_hidden_layers": self.num_layers,
      "num_attention_heads": self.num_heads,
      "num_key_value_heads": self.num_kv_heads,
      "head_dim": self.head_dim,
      "hidden_act": "silu",
      "rms_norm_eps": self.rms_norm_eps,
      "tie_word_embeddings": self.tie_word_embeddings,
      "rope_theta": self.rope_theta,
      "rope_parameters": rope,
      "max_position_embeddings": self.max_position_embeddings,
      "pad_token_id": self.pad_token_id,
      "dtype": self.checkpoint_dtype,
    }
    if self.head == "score":
      out["num_labels"] = self.num_labels
      out["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
      out["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
    return out if self.family.write is None else self.family.write(self, out)

  @classmethod
  def from_hf_dict(cls, cfg: dict[str, Any], source: str = "config.json") -> ModelConfig:
    model_type = cfg.get("model_type")
    family = families.get(model_type, source)
    arch = (cfg.get("architectures") or [f"{family.hf_name}ForCausalLM"])[0]
    head = next((h for suffix, h in _HEADS.items() if arch.endswith(suffix)), None)
    if head is None:
      raise ValueError(
        f"{source}: architecture {arch!r} is not supported; expected *ForCausalLM or *ForSequenceClassification."
      )
    if head not in family.heads:
      classes = " or ".join(family.hf_name + suffix for suffix, h in _HEADS.items() if h in family.heads)
      raise ValueError(f"{source}: {arch} is not supported; {model_type} has only {classes}.")
    if cfg.get("hidden_act", "silu") != "silu":
      raise ValueError(f"{source}: hidden_act={cfg['hidden_act']!r} is not supported (only 'silu').")
    if cfg.get("mlp_bias"):
      raise ValueError(f"{source}: mlp_bias=true is not supported.")
    if cfg.get("use_sliding_window") and not family.sliding_window:
      raise ValueError(f"{source}: use_sliding_window=true is not supported for {model_type} (full attention only).")
    rope_theta, llama3, dynamic = _read_rope(cfg, source)
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    if heads % kv_heads:
      raise ValueError(f"{source}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}.")
    attention_bias = bool(cfg.get("attention_bias", False))
    # The common reading (Llama's); the family's `read` overrides where it departs from it.
    fields = dict(
      qkv_bias=attention_bias,
      o_bias=attention_bias,
      head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
      qk_norm=False,
      sliding_window=None,
    )
    fields.update(family.read(cfg, source))
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return cls(
      model_type=model_type,
      vocab_size=cfg["vocab_size"],
      hidden_size=cfg["hidden_size"],
      intermediate_size=cfg["intermediate_size"],
      num_layers=cfg["num_hidden_layers"],
      num_heads=heads,
      num_kv_heads=kv_heads,
      rope_theta=float(rope_theta),
      rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
      tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
      rope_llama3=llama3,
      head=head,
      num_labels=int(cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 1) if head == "score" else 1,
      pad_token_id=cfg.get("pad_token_id"),
      max_position_embeddings=int(cfg.get("max_position_embeddings", 32768)),
      checkpoint_dtype=str(dtype),
      rope_dynamic=dynamic,
      **fields,
    )

  @classmethod
  def from_dir(cls, path: str) -> tuple[ModelConfig, dict[str, Any]]:
    """Returns the parsed config and the raw JSON (kept so export can write it back unchanged)."""
    file = os.path.join(path, "config.json")
    if not os.path.exists(file):
      raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face checkpoint directory.")
    with open(file) as f:
      raw = json.load(f)
    return cls.from_hf_dict(raw, source=file), raw

  @classmethod
  def from_arch(cls, arch: dict[str, Any]) -> ModelConfig:
    """From-scratch models (config `model.arch`): same field names as this dataclass."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(arch) - names)
    if unknown:
      raise ValueError(f"model.arch: unknown fields {unknown}; valid fields are {sorted(names)}.")
    arch = dict(arch)
    if arch.get("rope_llama3") is not None:
      arch["rope_llama3"] = tuple(arch["rope_llama3"])
    return cls(**arch)


def _read_rope(cfg: dict[str, Any], source: str) -> tuple[float, tuple | None, float | None]:
  """Reads rope_theta and scaling from either the v4 layout (top level + rope_scaling, InternLM2's too) or v5
  rope_parameters: (theta, llama3 parameters or None, dynamic NTK factor or None)."""
  params = dict(cfg.get("rope_parameters") or {})
  scaling = cfg.get("rope_scaling") or {}
  theta = cfg.get("rope_theta", params.get("rope_theta"))
  if theta is None:
    raise ValueError(f"{source}: neither rope_theta nor rope_parameters.rope_theta is set.")
  merged = {**params, **scaling}
  rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
  if rope_type not in SUPPORTED_ROPE_TYPES:
    raise ValueError(f"{source}: rope type {rope_type!r} is not supported; rsft supports {SUPPORTED_ROPE_TYPES}.")
  if rope_type == "default":
    return theta, None, None
  if rope_type == "dynamic":
    if "factor" not in merged:
      raise ValueError(f"{source}: dynamic rope scaling is missing field 'factor'.")
    return theta, None, float(merged["factor"])
  try:
    llama3 = (
      float(merged["factor"]),
      float(merged["low_freq_factor"]),
      float(merged["high_freq_factor"]),
      int(merged["original_max_position_embeddings"]),
    )
  except KeyError as e:
    raise ValueError(f"{source}: llama3 rope scaling is missing field {e.args[0]!r}.") from None
  return theta, llama3, None
