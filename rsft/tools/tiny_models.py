"""Tiny random Hugging Face checkpoints with awkward shapes, built locally (no network): the parity tests' models,
in the package so bench/ scripts import them as `rsft.tools.tiny_models` (torch and transformers are imported
inside the functions: importing this module needs neither)."""

from __future__ import annotations

import numpy as np

VOCAB = 512


def qwen2_config(**kw):
  import transformers

  # GQA 7:1 (14 q heads, 2 kv heads), q/k/v bias, tied embeddings.
  base = dict(
    vocab_size=VOCAB,
    hidden_size=224,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=14,
    num_key_value_heads=2,
    tie_word_embeddings=True,
    rope_theta=10000.0,
    max_position_embeddings=1024,
  )
  return transformers.Qwen2Config(**{**base, **kw})


def qwen3_config(**kw):
  import transformers

  # q/k-norm, untied, rope_theta 5e6, head_dim (24) != hidden/heads (64/4 = 16).
  base = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=24,
    tie_word_embeddings=False,
    rope_theta=5e6,
    max_position_embeddings=1024,
  )
  return transformers.Qwen3Config(**{**base, **kw})


def llama3_config(**kw):
  import transformers

  # llama3 rope scaling with a short original context so all three frequency bands are used.
  base = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=False,
    rope_parameters=dict(
      rope_type="llama3",
      rope_theta=500000.0,
      factor=8.0,
      low_freq_factor=1.0,
      high_freq_factor=4.0,
      original_max_position_embeddings=64,
    ),
    max_position_embeddings=1024,
  )
  return transformers.LlamaConfig(**{**base, **kw})


def mistral_config(**kw):
  import transformers

  # GQA 3:1, head_dim (12) != hidden/heads (48/6 = 8), untied, and a sliding window far shorter than the tests'
  # sequences so that it matters.
  base = dict(
    vocab_size=VOCAB,
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=12,
    tie_word_embeddings=False,
    rope_theta=200000.0,
    sliding_window=16,
    max_position_embeddings=1024,
  )
  return transformers.MistralConfig(**{**base, **kw})


CONFIGS = {"qwen2": qwen2_config, "qwen3": qwen3_config, "llama": llama3_config}
BUILDERS = {**CONFIGS, "mistral": mistral_config}  # test_parity builds every CONFIGS family; the rest on demand


def build(kind: str, path, seed: int = 0, head: str = "lm", dtype: str = "float32", **kw):
  """Saves a random model of `kind` to `path` and returns the torch model (float32, eval mode)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  cfg = BUILDERS[kind](**kw)
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


def internlm2_config(max_position_embeddings: int = 64, bias: bool = True, dtype: str = "float32", **kw) -> dict:
  """An InternLM2(.5)-style config.json (its keys as internlm2_5-20b ships them, remote-code entries included):
  GQA 3:1, head_dim = hidden / heads (InternLM2 derives it), untied, dynamic NTK rope."""
  return {
    "architectures": ["InternLM2ForCausalLM"],
    "attn_implementation": "eager",
    "auto_map": {
      "AutoConfig": "configuration_internlm2.InternLM2Config",
      "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
      "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
    },
    "bias": bias,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 72,
    "initializer_range": 0.02,
    "intermediate_size": 80,
    "max_position_embeddings": max_position_embeddings,
    "model_type": "internlm2",
    "num_attention_heads": 6,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "pad_token_id": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 2.0, "type": "dynamic"},
    "rope_theta": 50000.0,
    "tie_word_embeddings": False,
    "torch_dtype": dtype,
    "transformers_version": "4.41.0",
    "use_cache": True,
    "vocab_size": VOCAB,
    **kw,
  }


def build_internlm2(path, seed: int = 0, dtype: str = "float32", **kw):
  """Writes an InternLM2 checkpoint (its tensor names, fused grouped wqkv, config.json, stub remote-code files) whose
  weights are those of a random transformers Llama with the same shapes and dynamic rope, and returns that Llama
  (float32, eval mode): transformers has no InternLM2 class, and InternLM2 is Llama in another layout."""
  import json
  import os

  import safetensors.torch
  import torch
  import transformers

  cfg = internlm2_config(dtype=dtype, **kw)
  heads, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
  h, g = d // heads, heads // kv
  torch.manual_seed(seed)
  llama = transformers.LlamaForCausalLM(
    transformers.LlamaConfig(
      vocab_size=cfg["vocab_size"],
      hidden_size=d,
      intermediate_size=cfg["intermediate_size"],
      num_hidden_layers=cfg["num_hidden_layers"],
      num_attention_heads=heads,
      num_key_value_heads=kv,
      rms_norm_eps=cfg["rms_norm_eps"],
      attention_bias=cfg["bias"],
      tie_word_embeddings=False,
      max_position_embeddings=cfg["max_position_embeddings"],
      rope_parameters=dict(rope_type="dynamic", factor=cfg["rope_scaling"]["factor"], rope_theta=cfg["rope_theta"]),
    )
  )
  with torch.no_grad():  # random norms and biases; q/k scaled up so attention is peaked and RoPE shows in the output
    for name, p in llama.named_parameters():
      if name.endswith("norm.weight") or name.endswith(".bias"):
        p.add_(0.1 * torch.randn_like(p))
      if name.endswith(("q_proj.weight", "k_proj.weight")):
        p.mul_(4.0)
  llama.eval()
  w = {k: v.detach().to(getattr(torch, dtype)) for k, v in llama.state_dict().items()}

  def fused(layer: int, kind: str) -> torch.Tensor:
    at = f"model.layers.{layer}.self_attn."
    q, k, v = (w[at + f"{p}_proj.{kind}"] for p in "qkv")
    tail = q.shape[1:]
    grouped = torch.cat([q.reshape(kv, g, h, *tail), k.reshape(kv, 1, h, *tail), v.reshape(kv, 1, h, *tail)], 1)
    return grouped.reshape(-1, *tail)

  out = {
    "model.tok_embeddings.weight": w["model.embed_tokens.weight"],
    "model.norm.weight": w["model.norm.weight"],
    "output.weight": w["lm_head.weight"],
  }
  for i in range(cfg["num_hidden_layers"]):
    src, dst = f"model.layers.{i}.", f"model.layers.{i}."
    out[dst + "attention.wqkv.weight"] = fused(i, "weight")
    out[dst + "attention.wo.weight"] = w[src + "self_attn.o_proj.weight"]
    if cfg["bias"]:
      out[dst + "attention.wqkv.bias"] = fused(i, "bias")
      out[dst + "attention.wo.bias"] = w[src + "self_attn.o_proj.bias"]
    out[dst + "attention_norm.weight"] = w[src + "input_layernorm.weight"]
    out[dst + "ffn_norm.weight"] = w[src + "post_attention_layernorm.weight"]
    for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
      out[dst + f"feed_forward.{ours}.weight"] = w[src + f"mlp.{theirs}.weight"]
  os.makedirs(path, exist_ok=True)
  safetensors.torch.save_file(
    {k: v.contiguous() for k, v in out.items()}, os.path.join(path, "model.safetensors"), metadata={"format": "pt"}
  )
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
  for name in ("configuration_internlm2.py", "modeling_internlm2.py"):
    with open(os.path.join(path, name), "w") as f:
      f.write("# stand-in for InternLM2's remote code (not run by the tests)\n")
  return llama.float()
