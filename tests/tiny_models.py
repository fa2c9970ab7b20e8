"""Tiny random Hugging Face checkpoints with awkward shapes, built locally (no network)."""

from __future__ import annotations

import numpy as np

VOCAB = 512


def qwen2_config(**kw):
  import transformers
  # GQA 7:1 (14 q heads, 2 kv heads), q/k/v bias, tied embeddings.
  base = dict(vocab_size=VOCAB, hidden_size=224, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=10000.0,
              max_position_embeddings=1024)
  return transformers.Qwen2Config(**{**base, **kw})


def qwen3_config(**kw):
  import transformers
  # q/k-norm, untied, rope_theta 5e6, head_dim (24) != hidden/heads (64/4 = 16).
  base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False,
              rope_theta=5e6, max_position_embeddings=1024)
  return transformers.Qwen3Config(**{**base, **kw})


def llama3_config(**kw):
  import transformers
  # llama3 rope scaling with a short original context so all three frequency bands are used.
  base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
              rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=64),
              max_position_embeddings=1024)
  return transformers.LlamaConfig(**{**base, **kw})


CONFIGS = {"qwen2": qwen2_config, "qwen3": qwen3_config, "llama": llama3_config}


def build(kind: str, path, seed: int = 0, head: str = "lm", dtype: str = "float32", **kw):
  """Saves a random model of `kind` to `path` and returns the torch model (float32, eval mode)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  cfg = CONFIGS[kind](**kw)
  if head == "lm":
    model = transformers.AutoModelForCausalLM.from_config(cfg)
  else:
    cfg.num_labels = 1
    cfg.pad_token_id = 0
    model = transformers.AutoModelForSequenceClassification.from_config(cfg)
  with torch.no_grad():  # HF init leaves norms at 1 and biases at 0; randomise them so the mapping is tested.
    for name, p in model.named_parameters():
      if name.endswith("norm.weight") or name.endswith(".bias"):
        p.add_(0.1 * torch.randn_like(p))
  model.eval()
  model.to(getattr(torch, dtype)).save_pretrained(str(path))
  return model.float()


def left_padded_batch(seed: int = 0, length: int = 300, pad: int = 37):
  """A batch of 2: row 0 full length, row 1 left-padded by `pad` tokens (pad id 0)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, VOCAB, size=(2, length)).astype(np.int32)
  mask = np.ones_like(ids)
  ids[1, :pad] = 0
  mask[1, :pad] = 0
  return ids, mask


def hf_logprobs(model, ids, mask):
  """transformers reference: positions from the mask (as generate does), float32 log_softmax gather."""
  import torch

  ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
  pos = (mask_t.cumsum(-1) - 1).clamp(min=0)
  with torch.no_grad():
    logits = model(input_ids=ids_t, attention_mask=mask_t, position_ids=pos).logits.float()
  lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids_t[:, 1:, None])[..., 0]
  return (lp * mask_t[:, 1:] * mask_t[:, :-1]).numpy()
