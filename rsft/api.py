"""The stable public API (DESIGN.md), re-exported from the layers that own each part:

models.model   Model, abstract_model, init_model, reshard   (the model held as graphdef + sharded state)
convert        load_model, export_hf, export_lora, default_stop_ids   (HF / rsft checkpoint dirs in and out)
infer          token_logprobs, reward_scores, generate      (scoring and the KV-cache sampler)
"""

from rsft.convert.model_io import default_stop_ids, export_hf, load_model, load_tokenizer
from rsft.convert.peft_export import export_lora
from rsft.infer.sampler import Options, generate
from rsft.infer.scorer import reward_scores, token_logprobs
from rsft.models.model import Model, abstract_model, init_model, reshard

__all__ = [
  "Model",
  "Options",
  "abstract_model",
  "default_stop_ids",
  "export_hf",
  "export_lora",
  "generate",
  "init_model",
  "load_model",
  "load_tokenizer",
  "reshard",
  "reward_scores",
  "token_logprobs",
]
