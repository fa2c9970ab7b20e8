"""The study's architectures as their published config.json values, for work that needs no weights: AOT fit
checks, throughput benchmarks with random weights, sizing. Real runs read config.json from model.path."""

from __future__ import annotations

from rsft.models.config import ModelConfig

_QWEN3 = dict(
  model_type="qwen3",
  vocab_size=151936,
  head_dim=128,
  num_kv_heads=8,
  rope_theta=1e6,
  qk_norm=True,
  max_position_embeddings=32768,
  checkpoint_dtype="bfloat16",
)
_QWEN25 = dict(
  model_type="qwen2",
  vocab_size=151936,
  rope_theta=1e6,
  qkv_bias=True,
  head_dim=128,
  max_position_embeddings=131072,
  checkpoint_dtype="bfloat16",
)
# internlm/internlm2_5-20b: no biases, dynamic NTK rope (factor 2) past 32k, its own 92,544-token vocabulary.
_INTERNLM25 = dict(
  model_type="internlm2",
  vocab_size=92544,
  head_dim=128,
  rope_theta=1e6,
  rope_dynamic=2.0,
  rms_norm_eps=1e-5,
  max_position_embeddings=32768,
  pad_token_id=2,
  checkpoint_dtype="bfloat16",
)
# Mistral-7B-v0.2 (and RM-Mistral-7B, the Table 5 reward model trained from its Instruct version): no sliding window.
_MISTRAL = dict(
  model_type="mistral",
  vocab_size=32000,
  head_dim=128,
  rope_theta=1e6,
  rms_norm_eps=1e-5,
  max_position_embeddings=32768,
  sliding_window=None,
  checkpoint_dtype="bfloat16",
)

# name: (hidden, intermediate, layers, heads, kv heads, tied embeddings[, vocab])
_SHAPES = {
  "qwen3_0.6b": (_QWEN3, 1024, 3072, 28, 16, 8, True),
  "qwen3_1.7b": (_QWEN3, 2048, 6144, 28, 16, 8, True),
  "qwen3_4b": (_QWEN3, 2560, 9728, 36, 32, 8, True),
  "qwen3_8b": (_QWEN3, 4096, 12288, 36, 32, 8, False),
  "qwen3_14b": (_QWEN3, 5120, 17408, 40, 40, 8, False),
  "qwen2.5_1.5b": (_QWEN25, 1536, 8960, 28, 12, 2, True),
  "qwen2.5_3b": (_QWEN25, 2048, 11008, 36, 16, 2, True),
  "qwen2.5_7b": (_QWEN25, 3584, 18944, 28, 28, 4, False, 152064),
  "qwen2.5_14b": (_QWEN25, 5120, 13824, 48, 40, 8, False, 152064),
  "internlm2.5_20b": (_INTERNLM25, 6144, 16384, 48, 48, 8, False),
  "mistral_7b": (_MISTRAL, 4096, 14336, 32, 32, 8, False),
  "rm_mistral_7b": (dict(_MISTRAL, head="score"), 4096, 14336, 32, 32, 8, False),
}
# Hub directory names (configs/paper.py's MODELS) resolve to the same presets.
HUB_NAMES = {
  "Qwen3-0.6B-Base": "qwen3_0.6b",
  "Qwen3-1.7B-Base": "qwen3_1.7b",
  "Qwen3-4B-Base": "qwen3_4b",
  "Qwen3-8B-Base": "qwen3_8b",
  "Qwen3-14B-Base": "qwen3_14b",
  "Qwen2.5-1.5B": "qwen2.5_1.5b",
  "Qwen2.5-3B": "qwen2.5_3b",
  "Qwen2.5-7B": "qwen2.5_7b",
  "Qwen2.5-14B": "qwen2.5_14b",
  "internlm2_5-20b": "internlm2.5_20b",
  "Mistral-7B-v0.2": "mistral_7b",
  "RM-Mistral-7B": "rm_mistral_7b",
}
NAMES = tuple(_SHAPES)


def get(name: str) -> ModelConfig:
  """A preset by its short name ("qwen3_14b") or hub directory name ("Qwen3-14B-Base")."""
  key = HUB_NAMES.get(name, name)
  if key not in _SHAPES:
    raise ValueError(f"unknown architecture preset {name!r}; known: {', '.join(NAMES)}")
  family, hidden, inter, layers, heads, kv, tied, *vocab = _SHAPES[key]
  fields = dict(
    family,
    hidden_size=hidden,
    intermediate_size=inter,
    num_layers=layers,
    num_heads=heads,
    num_kv_heads=kv,
    tie_word_embeddings=tied,
  )
  if vocab:
    fields["vocab_size"] = vocab[0]
  return ModelConfig(**fields)
