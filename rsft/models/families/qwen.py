"""Qwen2 / Qwen2.5 and Qwen3: the Llama layout; Qwen2 hard-codes its biases, Qwen3 adds q/k RMSNorm."""

from rsft.models.families.base import LLAMA_LAYOUT, O_BIAS, QK_NORM, QKV_BIAS, Family, register, with_attention_bias

QWEN2 = register(
  Family(
    model_type="qwen2",
    hf_name="Qwen2",
    about="Qwen2/Qwen2.5",
    weights=LLAMA_LAYOUT + QKV_BIAS,
    # q/k/v bias always, no o_proj bias, whatever `attention_bias` says (maxtext PR #3113).
    read=lambda cfg, source: {"qkv_bias": True, "o_bias": False},
  )
)

QWEN3 = register(
  Family(
    model_type="qwen3",
    hf_name="Qwen3",
    about="Qwen3",
    weights=LLAMA_LAYOUT + QK_NORM + QKV_BIAS + O_BIAS,  # biases only with attention_bias=true
    read=lambda cfg, source: {"qk_norm": True},
    write=with_attention_bias,
  )
)
