"""GGUF (llama.cpp's format) -> the Hugging Face names, shapes and config that hf_to_rsft loads.

A GGUF file holds the config as metadata (`llama.block_count`, ...), the tokenizer (tokens, merges, chat template)
and the tensors under llama.cpp's names, many quantized. This module reads it with the `gguf` package (llama.cpp's
own reader), dequantizes one tensor at a time to float32 on request, and gives each the HF name and layout, so
rsft's mapping tables, shape checks and sharded placement serve GGUF as they serve safetensors. llama.cpp stores
a Llama's q/k rows permuted for its interleaved rope (convert_hf_to_gguf.py `LlamaModel.permute`); `_unpermute`
puts them back in HF's half-split order. The tokenizer is built by transformers' own GGUF converter.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from rsft.models import families

# GGUF general.architecture -> HF model_type. Qwen2/Qwen3 GGUFs keep HF's q/k order; Llama's are permuted.
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
_PERMUTED = ("llama",)
_LAYER = "model.layers.{i}."
# GGUF tensor name -> HF tensor name ("{i}": the layer).
NAMES = {
  "token_embd.weight": "model.embed_tokens.weight",
  "output_norm.weight": "model.norm.weight",
  "output.weight": "lm_head.weight",
  "blk.{i}.attn_norm.weight": _LAYER + "input_layernorm.weight",
  "blk.{i}.ffn_norm.weight": _LAYER + "post_attention_layernorm.weight",
  "blk.{i}.attn_q.weight": _LAYER + "self_attn.q_proj.weight",
  "blk.{i}.attn_k.weight": _LAYER + "self_attn.k_proj.weight",
  "blk.{i}.attn_v.weight": _LAYER + "self_attn.v_proj.weight",
  "blk.{i}.attn_output.weight": _LAYER + "self_attn.o_proj.weight",
  "blk.{i}.attn_q.bias": _LAYER + "self_attn.q_proj.bias",
  "blk.{i}.attn_k.bias": _LAYER + "self_attn.k_proj.bias",
  "blk.{i}.attn_v.bias": _LAYER + "self_attn.v_proj.bias",
  "blk.{i}.attn_q_norm.weight": _LAYER + "self_attn.q_norm.weight",
  "blk.{i}.attn_k_norm.weight": _LAYER + "self_attn.k_norm.weight",
  "blk.{i}.ffn_gate.weight": _LAYER + "mlp.gate_proj.weight",
  "blk.{i}.ffn_up.weight": _LAYER + "mlp.up_proj.weight",
  "blk.{i}.ffn_down.weight": _LAYER + "mlp.down_proj.weight",
}
IGNORED = ("rope_freqs.weight",)  # llama3 rope factors: recomputed from the config, as HF does


def _reader(path: str) -> Any:
  """One parsed reader per file version: parsing a GGUF's metadata (50k tokens and merges as fields) takes seconds."""
  stat = os.stat(path)
  return _parsed(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _parsed(path: str, mtime_ns: int, size: int) -> Any:
  del mtime_ns, size  # the cache key: a rewritten file is parsed again
  try:
    import gguf
  except ImportError:
    raise ImportError(
      f"{path}: reading GGUF needs the `gguf` package (pip install gguf; it is in rsft's lock)."
    ) from None
  try:
    return gguf.GGUFReader(path)
  except (ValueError, OSError, IndexError) as e:  # not a GGUF file, a truncated one
    raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e}).") from None


def _field(reader: Any, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def _short(x: float) -> float:
  """A float32 metadata value as the decimal it was written from (9.9999997e-06 -> 1e-05)."""
  return float(f"{x:.7g}")


def hf_config(path: str, reader: Any = None) -> dict[str, Any]:
  """The config.json of the GGUF's model, from its metadata; an architecture rsft cannot map is an error."""
  reader = reader or _reader(path)
  arch = _field(reader, "general.architecture")
  if arch not in ARCHITECTURES:
    raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; rsft reads {sorted(ARCHITECTURES)}.")
  get = lambda key, default=None: _field(reader, f"{arch}.{key}", default)
  names = {t.name for t in reader.tensors}
  heads = int(get("attention.head_count"))
  hidden = int(get("embedding_length"))
  vocab = get("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
  model_type = ARCHITECTURES[arch]
  config = {
    "architectures": [families.get(model_type).hf_name + "ForCausalLM"],
    "model_type": model_type,
    "vocab_size": int(vocab),
    "hidden_size": hidden,
    "intermediate_size": int(get("feed_forward_length")),
    "num_hidden_layers": int(get("block_count")),
    "num_attention_heads": heads,
    "num_key_value_heads": int(get("attention.head_count_kv", heads)),
    "head_dim": int(get("attention.key_length", hidden // heads)),
    "rope_theta": _short(get("rope.freq_base", 10000.0)),
    "rms_norm_eps": _short(get("attention.layer_norm_rms_epsilon", 1e-6)),
    "max_position_embeddings": int(get("context_length", 2048)),
    "tie_word_embeddings": "output.weight" not in names,
    "hidden_act": "silu",
    "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
    "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
    "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id"),
  }
  if model_type == "llama":
    config.update(attention_bias="blk.0.attn_q.bias" in names, mlp_bias=False)
  if model_type == "qwen3":
    config["attention_bias"] = "blk.0.attn_q.bias" in names
  if get("rope.scaling.type") not in (None, "none"):
    raise ValueError(f"{path}: GGUF rope scaling {get('rope.scaling.type')!r} is not supported.")
  return config


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One GGUF tensor under its HF name: what hf_to_rsft's plan checks (file, shape) and `read` dequantizes."""

  file: str
  key: str
  shape: tuple[int, ...]
  start: int  # its byte offset in the file (read order)
  gguf_name: str
  qtype: Any
  unpermute_heads: int | None  # the head count of a permuted Llama q/k weight, else None


def _unpermute(x: np.ndarray, heads: int) -> np.ndarray:
  """Inverse of llama.cpp's permute: per head, rows (pairs interleaved) back to HF's (first half, second half)."""
  half = x.shape[0] // heads // 2
  return x.reshape(heads, half, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _hf_name(name: str) -> str | None:
  if name.startswith("blk."):
    _, layer, rest = name.split(".", 2)
    hf = NAMES.get(f"blk.{{i}}.{rest}")
    return hf.format(i=int(layer)) if hf and layer.isdigit() else None
  return NAMES.get(name)


def tensors(path: str, reader: Any = None) -> dict[str, Tensor]:
  """HF key -> Tensor for every tensor of the file; a name or quantization rsft cannot read is an error naming it."""
  import gguf

  reader = reader or _reader(path)
  config = hf_config(path, reader)
  permuted = config["model_type"] in _PERMUTED
  out, problems = {}, []
  for t in reader.tensors:
    if t.name in IGNORED:
      continue
    key = _hf_name(t.name)
    if key is None:
      problems.append(f"tensor {t.name!r} has no Hugging Face name in rsft's GGUF table")
      continue
    qtype = gguf.GGMLQuantizationType(t.tensor_type)
    if qtype.name not in _DEQUANTIZABLE:
      problems.append(
        f"tensor {t.name!r} is stored as {qtype.name}, which rsft cannot dequantize "
        f"(supported: {', '.join(sorted(_DEQUANTIZABLE))})"
      )
      continue
    heads = None
    if permuted and t.name.endswith(("attn_q.weight", "attn_k.weight")):
      heads = config["num_attention_heads"] if "attn_q" in t.name else config["num_key_value_heads"]
    shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists the fastest dimension first
    out[key] = Tensor(path, key, shape, int(t.data_offset), t.name, qtype, heads)
  if problems:
    raise ValueError(f"{path}: cannot read this GGUF:\n  " + "\n  ".join(problems))
  return out


_DEQUANTIZABLE = (
  "F32",
  "F16",
  "BF16",
  "F64",
  "Q4_0",
  "Q4_1",
  "Q5_0",
  "Q5_1",
  "Q8_0",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
  "IQ2_XXS",
  "IQ2_XS",
  "IQ2_S",
  "IQ3_XXS",
  "IQ3_S",
  "IQ1_S",
  "IQ1_M",
  "IQ4_NL",
  "IQ4_XS",
  "TQ1_0",
  "TQ2_0",
)


def reader_for(path: str) -> Callable[[Tensor], np.ndarray]:
  """A function that dequantizes one tensor to float32 in HF layout (the file is opened once, memory-mapped)."""
  from gguf import quants

  reader = _reader(path)
  by_name = {t.name: t for t in reader.tensors}

  def read(info: Tensor) -> np.ndarray:
    t = by_name[info.gguf_name]
    x = np.asarray(quants.dequantize(t.data, info.qtype), dtype=np.float32).reshape(info.shape)
    return _unpermute(x, info.unpermute_heads) if info.unpermute_heads else x

  return read


def load_tokenizer(path: str) -> Any:
  """The HF tokenizer transformers builds from the GGUF's vocabulary, merges and chat template."""
  import transformers

  return transformers.AutoTokenizer.from_pretrained(
    os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path)
  )


def generation_config(config: dict[str, Any]) -> dict[str, Any]:
  """generation_config.json: the GGUF's end-of-turn token is the stop (SmolLM2's `<|im_end|>`)."""
  return {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config.get(k) is not None}
