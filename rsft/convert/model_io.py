"""Whole models in and out: a Hugging Face checkpoint dir or an rsft step dir -> a sharded Model, and a Model
(or step dir) -> a Hugging Face dir. The tensors move through the mapping tables (hf_to_rsft / rsft_to_hf)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from jax.sharding import Mesh

from rsft import sharding
from rsft.convert import fingerprint, gguf, step_dir
from rsft.convert.hf_to_rsft import checkpoint_files, is_gguf, load_params
from rsft.convert.rsft_to_hf import export
from rsft.models import families
from rsft.models import lora as lora_lib
from rsft.models.config import ModelConfig
from rsft.models.model import Model, abstract_model, merge_adapters

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_QWEN_STOPS = ("<|im_end|>", "<|endoftext|>")


# Families whose tokenizer class ships as code in the checkpoint dir (no transformers class): InternLM2's
# sentencepiece tokenizer. Only the user's own local checkpoint dir is read; nothing is downloaded.


def load_tokenizer(path: str | None) -> Any:
  """The HF tokenizer in `path`, or None when the directory has no tokenizer files. The one place rsft builds a
  tokenizer from a directory (training, evaluation, the prompt dump)."""
  if not path or not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
    return None
  import transformers  # local: heavy import, only when a tokenizer is present.

  remote = False
  if os.path.exists(os.path.join(path, "config.json")):
    with open(os.path.join(path, "config.json")) as f:
      family = families.FAMILIES.get(json.load(f).get("model_type"))
    remote = family is not None and family.remote_code
  return transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=remote)


def default_stop_ids(path: str | None, tokenizer: Any) -> list[int]:
  """generation_config.json's eos_token_id when present, else the tokenizer's EOS plus Qwen's two stops."""
  gen = os.path.join(path, "generation_config.json") if path else ""
  if gen and os.path.exists(gen):
    with open(gen) as f:
      eos = json.load(f).get("eos_token_id")
    if eos is not None:
      return [eos] if isinstance(eos, int) else list(eos)
  if tokenizer is None:
    return []
  ids = {tokenizer.eos_token_id} | {
    tokenizer.convert_tokens_to_ids(t) for t in _QWEN_STOPS if t in tokenizer.get_vocab()
  }
  return sorted(i for i in ids if i is not None)


def checkpoint_problem(path: str, need_tokenizer: bool = False) -> str | None:
  """Why `path` cannot be loaded as a model, read from its file list and config only (no weights are read), so a
  run can refuse a missing or partial download before it spends any compute; None when it looks loadable."""
  if not os.path.isdir(path):
    return f"{path} is not a directory (a Hugging Face checkpoint directory or an rsft step directory)"
  if step_dir.is_step_dir(path):
    return None
  config = os.path.join(path, "config.json")
  if not os.path.isfile(config):
    return f"{path}: no config.json, so not a Hugging Face checkpoint directory"
  try:
    with open(config) as f:
      json.load(f)
  except (OSError, ValueError) as e:  # unreadable or truncated
    return f"{config}: {type(e).__name__}: {e}"
  try:
    files = checkpoint_files(path)
  except (OSError, ValueError) as e:  # no weights, a shard missing, a broken index: the message names the file
    return str(e)
  unreadable = [f for f in files if not os.access(f, os.R_OK)]
  if unreadable:
    return f"{path}: weight file(s) not readable by this user: {unreadable}"
  if need_tokenizer and not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
    return f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})"
  return None


def load_model(
  path: str,
  dtype: Any = "float32",
  mesh: Mesh | None = None,
  remat_policy: str = "none",
  param_dtype: Any = None,
  attention: str = "auto",
) -> Model:
  """Loads a Hugging Face checkpoint dir (see rsft.models.config for the families), an rsft step dir, or a GGUF
  file (Llama / Qwen2 / Qwen3, dequantized on load: rsft/convert/gguf.py).

  Computes in `dtype` and stores parameters in `param_dtype` (default: `dtype`; training keeps float32 master
  weights with bfloat16 compute). With a `mesh`, parameters are placed by the logical-axis rules.

  Args:
    path: an HF checkpoint dir, a training step dir (WORKDIR/checkpoints/<step>) or a .gguf file.
    dtype: compute dtype ("float32", "bfloat16", "float16").
    mesh: where the parameters live (rsft.sharding.make_mesh); None keeps them on the default device.
    remat_policy: activation checkpointing of the layers when training (rsft.models.layers.REMAT_POLICIES).
    param_dtype: storage dtype of the parameters; None = `dtype`.
    attention: full-sequence attention implementation (rsft.models.attention: auto, xla, chunked, splash, cudnn).

  Returns:
    A Model with its tokenizer (None when the dir has none), the source config.json and the default stop ids.
  """
  path = os.fspath(path)
  if is_gguf(path):
    return _load_gguf(path, dtype, mesh, remat_policy, param_dtype, attention)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: not a directory; expected a Hugging Face checkpoint directory or a .gguf file.")
  if step_dir.is_step_dir(path):
    return _load_step(path, dtype, mesh, remat_policy, param_dtype, attention)
  cfg, raw = ModelConfig.from_dir(path)
  graphdef, state, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)  # checks the layout
  params = load_params(path, cfg, state, sharding.Rules(mesh))
  tokenizer = load_tokenizer(path)
  return Model(cfg, params, graphdef, tokenizer, mesh, raw, path, default_stop_ids(path, tokenizer))


def _load_gguf(path: str, dtype: Any, mesh: Mesh | None, remat_policy: str, param_dtype: Any, attention: str) -> Model:
  raw = gguf.hf_config(path)
  cfg = ModelConfig.from_hf_dict(raw, source=path)
  graphdef, state, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)
  params = load_params(path, cfg, state, sharding.Rules(mesh))
  tokenizer = gguf.load_tokenizer(path)
  stops = gguf.generation_config(raw).get("eos_token_id")
  return Model(
    cfg,
    params,
    graphdef,
    tokenizer,
    mesh,
    raw,
    path,
    [stops] if isinstance(stops, int) else list(stops or default_stop_ids(None, tokenizer)),
  )


def _load_step(path: str, dtype: Any, mesh: Mesh | None, remat_policy: str, param_dtype: Any, attention: str) -> Model:
  """A training checkpoint step dir: params only, into this mesh's shardings."""
  meta = step_dir.read_meta(path)
  cfg = ModelConfig.from_arch(meta["model_config"])
  if meta.get("lora"):
    return _load_adapted(path, meta, dtype, mesh, remat_policy, param_dtype, attention)
  graphdef, state, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)
  params = step_dir.restore_params(path, sharding.abstract_arrays(state, sharding.Rules(mesh)))
  tokenizer = load_tokenizer(meta.get("tokenizer"))
  return Model(
    cfg,
    params,
    graphdef,
    tokenizer,
    mesh,
    meta.get("hf_config"),
    meta.get("tokenizer"),
    default_stop_ids(None, tokenizer),
  )


def _load_adapted(
  path: str, meta: dict[str, Any], dtype: Any, mesh: Mesh | None, remat_policy: str, param_dtype: Any, attention: str
) -> Model:
  """A LoRA step dir: its base (from the path it records, checked against the recorded fingerprint) with the
  step's adapters merged into the kernels."""
  record = meta["lora"]
  base_path = record["base"]
  problem = None if is_gguf(base_path) and os.path.isfile(base_path) else checkpoint_problem(base_path)
  if problem:
    raise FileNotFoundError(f"{path}: LoRA adapters on the base {base_path}, which cannot be loaded: {problem}")
  lora_lib.check_base(record, dict(record, base_fingerprint=fingerprint.of(base_path)), f"{path}: base")
  lora = lora_lib.from_record(record)
  base = load_model(base_path, dtype, mesh, remat_policy, param_dtype, attention)
  _, state, _ = abstract_model(base.config, dtype, param_dtype, mesh, remat_policy, attention, lora)
  adapters, _ = lora_lib.split(sharding.abstract_arrays(state, sharding.Rules(mesh)))
  merged = merge_adapters(base, lora, step_dir.restore_params(path, adapters))
  tokenizer = load_tokenizer(meta.get("tokenizer"))
  return dataclasses.replace(
    merged,
    tokenizer=tokenizer,
    hf_config=meta.get("hf_config"),
    path=meta.get("tokenizer"),
    stop_token_ids=default_stop_ids(None, tokenizer),
  )


def export_hf(m_or_dir: Model | str, out_dir: str, dtype: str | None = None) -> str:
  """Writes an HF dir (safetensors + config.json + tokenizer files) that transformers loads.

  Args:
    m_or_dir: a loaded Model, or any path load_model takes (a training step dir, an HF dir, a .gguf file).
    out_dir: the directory to write (created).
    dtype: tensor dtype on disk; None = the original checkpoint's, so HF -> rsft -> HF is bit-exact.

  Returns:
    out_dir.
  """
  m = m_or_dir if isinstance(m_or_dir, Model) else load_model(m_or_dir)
  out_dir = os.fspath(out_dir)
  if m.path and is_gguf(m.path):  # no side files to copy: the tokenizer and the stop come from the GGUF
    export(m.config, m.params, out_dir, m.hf_config, None, dtype)
    m.tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
      json.dump(gguf.generation_config(m.hf_config), f, indent=2)
    return out_dir
  return export(m.config, m.params, out_dir, m.hf_config, m.path, dtype)
