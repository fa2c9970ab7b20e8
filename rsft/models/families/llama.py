"""Llama 3.x (llama3 rope scaling is read for every family) and Mistral (sliding-window attention, no biases)."""

from typing import Any

from rsft.models.families.base import LLAMA_LAYOUT, O_BIAS, QKV_BIAS, Family, register, with_attention_bias

MISTRAL_DEFAULT_WINDOW = 4096  # transformers' MistralConfig default when config.json has no `sliding_window` key

LLAMA = register(
  Family(
    model_type="llama",
    hf_name="Llama",
    about="Llama 3.x",
    weights=LLAMA_LAYOUT + QKV_BIAS + O_BIAS,
    write=with_attention_bias,
  )
)


def _read_mistral(cfg: dict[str, Any], source: str) -> dict[str, Any]:
  window = cfg.get("sliding_window", MISTRAL_DEFAULT_WINDOW)  # an explicit null means full attention
  return {"qkv_bias": False, "o_bias": False, "sliding_window": None if window is None else int(window)}


MISTRAL = register(
  Family(
    model_type="mistral",
    hf_name="Mistral",
    about="Mistral",
    weights=LLAMA_LAYOUT,
    read=_read_mistral,
    # written even when None: transformers' default is 4096
    write=lambda cfg, out: {**out, "sliding_window": cfg.sliding_window},
    sliding_window=True,
  )
)
