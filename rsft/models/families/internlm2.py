"""InternLM2 / InternLM2.5: remote code (no transformers class). Llama's layout under other names, q/k/v fused
into one tensor grouped per KV head, one `bias` flag for wqkv and wo, dynamic NTK rope (docs/models.md)."""

from __future__ import annotations

from typing import Any

from rsft.models.families.base import Family, Row, register

_I = "model.layers.{i}."
_QKV = tuple(f"layers.self_attn.{p}_proj.kernel" for p in "qkv")
WEIGHTS = (
  Row("model.tok_embeddings.weight", "embed_tokens.embedding", "copy"),
  Row("model.norm.weight", "norm.scale", "copy"),
  Row("output.weight", "lm_head", "linear", when="has_lm_head"),
  Row(_I + "attention_norm.weight", "layers.input_layernorm.scale", "copy"),
  Row(_I + "ffn_norm.weight", "layers.post_attention_layernorm.scale", "copy"),
  Row(_I + "attention.wqkv.weight", _QKV, "qkv_grouped"),
  Row(
    _I + "attention.wqkv.bias",
    tuple(f"layers.self_attn.{p}_proj.bias" for p in "qkv"),
    "qkv_grouped_bias",
    when="qkv_bias",
  ),
  Row(_I + "attention.wo.weight", "layers.self_attn.o_proj.kernel", "heads_out"),
  Row(_I + "attention.wo.bias", "layers.self_attn.o_proj.bias", "copy", when="o_bias"),
  Row(_I + "feed_forward.w1.weight", "layers.mlp.gate_proj.kernel", "linear"),
  Row(_I + "feed_forward.w3.weight", "layers.mlp.up_proj.kernel", "linear"),
  Row(_I + "feed_forward.w2.weight", "layers.mlp.down_proj.kernel", "linear"),
)


def _read(cfg: dict[str, Any], source: str) -> dict[str, Any]:
  heads = cfg["num_attention_heads"]
  if cfg["hidden_size"] % heads:
    raise ValueError(f"{source}: hidden_size={cfg['hidden_size']} is not a multiple of num_attention_heads={heads}.")
  bias = bool(cfg.get("bias", True))  # InternLM2Config defaults it to true
  # InternLM2Attention derives head_dim, whatever else the file says.
  return {"qkv_bias": bias, "o_bias": bias, "head_dim": cfg["hidden_size"] // heads}


def _check(cfg) -> None:
  if cfg.head_dim * cfg.num_heads != cfg.hidden_size:
    raise ValueError(
      f"internlm2: head_dim={cfg.head_dim} must be hidden_size / num_heads = "
      f"{cfg.hidden_size} / {cfg.num_heads} (InternLM2 derives it; its config has no head_dim)."
    )
  if cfg.qkv_bias != cfg.o_bias or cfg.rope_llama3:
    raise ValueError("internlm2: only one `bias` flag for wqkv and wo, and default or dynamic rope are supported.")


def _write(cfg, out: dict[str, Any]) -> dict[str, Any]:
  """The layout its own configuration_internlm2.py reads (transformers needs the modeling files beside it)."""
  return {
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.hidden_size,
    "intermediate_size": cfg.intermediate_size,
    "num_hidden_layers": cfg.num_layers,
    "num_attention_heads": cfg.num_heads,
    "num_key_value_heads": cfg.num_kv_heads,
    "hidden_act": "silu",
    "rms_norm_eps": cfg.rms_norm_eps,
    "bias": cfg.qkv_bias,
    "rope_theta": cfg.rope_theta,
    "rope_scaling": {"type": "dynamic", "factor": cfg.rope_dynamic} if cfg.rope_dynamic else None,
    "max_position_embeddings": cfg.max_position_embeddings,
    "tie_word_embeddings": cfg.tie_word_embeddings,
    "pad_token_id": cfg.pad_token_id,
    "torch_dtype": cfg.checkpoint_dtype,
  }


INTERNLM2 = register(
  Family(
    model_type="internlm2",
    hf_name="InternLM2",
    about="InternLM2/2.5",
    weights=WEIGHTS,
    read=_read,
    write=_write,
    check=_check,
    heads=("lm",),
    remote_code=True,
    dtype_key="torch_dtype",  # its remote code is written for transformers 4.x, which reads torch_dtype
  )
)
