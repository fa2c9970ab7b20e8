"""rsft: JAX-native reasoning SFT — train, evaluate and analyse Qwen-family models.

Public API (stable; see DESIGN.md): load_model, token_logprobs, generate, reward_scores, export_hf (and
export_lora, a LoRA step as a PEFT adapter folder).
"""

from rsft.api import (
  Model,
  Options,
  export_hf,
  export_lora,
  generate,
  init_model,
  load_model,
  reshard,
  reward_scores,
  token_logprobs,
)

__all__ = [
  "Model",
  "Options",
  "export_hf",
  "export_lora",
  "generate",
  "init_model",
  "load_model",
  "reshard",
  "reward_scores",
  "token_logprobs",
]
__version__ = "0.1.0"
