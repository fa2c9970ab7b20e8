"""The stable public API (see DESIGN.md): load_model, token_logprobs, reward_scores, export_hf.

The model is held functionally: an NNX graphdef (static, hashable; it carries the mesh rules) plus an nnx.State
of sharded parameters. The jitted functions below merge them inside the trace, so there is no per-call Python
graph walk (flax performance guide) and no hidden global mesh.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rsft import convert, sharding
from rsft.infer import scorer
from rsft.models import Decoder, ModelConfig
from rsft.models.decoder import positions_from_mask
from rsft.models.head import chunked_logprobs

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclasses.dataclass
class Model:
  """A loaded model: `config` (ModelConfig), `params` (nnx.State of sharded arrays), `tokenizer` or None."""

  config: ModelConfig
  params: nnx.State
  graphdef: Any
  tokenizer: Any = None
  mesh: Mesh | None = None
  hf_config: dict[str, Any] | None = None  # the source config.json, written back by export_hf
  path: str | None = None
  stop_token_ids: list[int] = dataclasses.field(default_factory=list)  # generate's default stops

  def module(self) -> Decoder:
    return nnx.merge(self.graphdef, self.params)


def abstract_model(cfg: ModelConfig, dtype: Any = "float32", param_dtype: Any = None, mesh: Mesh | None = None,
                   remat_policy: str = "none", attention: str = "auto") -> tuple[Any, nnx.State, Any]:
  """(graphdef, abstract state, shardings) without allocating anything; validates the mesh layout.
  `attention`: the full-sequence attention implementation (rsft/models/attention.py), part of the graphdef."""
  dtype = jnp.dtype(dtype)
  param_dtype = jnp.dtype(param_dtype or dtype)
  rules = sharding.Rules(mesh)
  model = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=dtype,
                                         rules=rules, remat_policy=remat_policy, attention_impl=attention))
  graphdef, state = nnx.split(model)
  return graphdef, state, sharding.state_shardings(state, rules)


def init_model(cfg: ModelConfig, seed: int = 0, dtype: Any = "float32", param_dtype: Any = None,
               mesh: Mesh | None = None, remat_policy: str = "none", attention: str = "auto") -> Model:
  """A randomly initialised model, created directly in its sharded layout (from-scratch runs, tests)."""
  graphdef, state, shardings = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)

  @functools.partial(jax.jit, out_shardings=shardings)
  def init():
    return nnx.split(Decoder(cfg, rngs=nnx.Rngs(seed), param_dtype=jnp.dtype(param_dtype or dtype),
                             dtype=jnp.dtype(dtype), rules=sharding.Rules(mesh), remat_policy=remat_policy,
                             attention_impl=attention))[1]

  return Model(cfg, init(), graphdef, mesh=mesh)


def load_model(path: str, dtype: Any = "float32", mesh: Mesh | None = None, remat_policy: str = "none",
               param_dtype: Any = None, attention: str = "auto") -> Model:
  """Loads a Hugging Face checkpoint dir (Qwen2/2.5, Qwen3, Llama 3.x; CausalLM or SequenceClassification).

  Computes in `dtype` and stores parameters in `param_dtype` (default: `dtype`; training keeps float32 master
  weights with bfloat16 compute). With a `mesh`, parameters are placed by the logical-axis rules.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: not a directory; expected a Hugging Face checkpoint directory.")
  params_dir, meta_dir = os.path.join(path, "params"), os.path.join(path, "meta")
  if os.path.isdir(params_dir) or os.path.isdir(meta_dir):  # an rsft step dir
    if not (os.path.isdir(params_dir) and os.listdir(params_dir) and os.path.isdir(meta_dir)):
      raise ValueError(f"{path}: an rsft checkpoint step whose params/ is empty or meta/ missing (a save that was "
                       "interrupted?); load another step.")
    return _load_step(path, dtype, mesh, remat_policy, param_dtype, attention)
  cfg, raw = ModelConfig.from_dir(path)
  graphdef, state, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)  # validates the layout first
  params = convert.load_params(path, cfg, state, sharding.Rules(mesh))
  tokenizer = None
  if any(os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES):
    import transformers  # local: heavy import, only when a tokenizer is present.
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
  return Model(cfg, params, graphdef, tokenizer, mesh, raw, path, default_stop_ids(path, tokenizer))


_QWEN_STOPS = ("<|im_end|>", "<|endoftext|>")


def default_stop_ids(path: str | None, tokenizer: Any) -> list[int]:
  """generation_config.json's eos_token_id when present, else the tokenizer's EOS plus Qwen's two stops."""
  import json
  gen = os.path.join(path, "generation_config.json") if path else ""
  if gen and os.path.exists(gen):
    with open(gen) as f:
      eos = json.load(f).get("eos_token_id")
    if eos is not None:
      return [eos] if isinstance(eos, int) else list(eos)
  if tokenizer is None:
    return []
  ids = {tokenizer.eos_token_id} | {tokenizer.convert_tokens_to_ids(t) for t in _QWEN_STOPS
                                    if t in tokenizer.get_vocab()}
  return sorted(i for i in ids if i is not None)


def _load_step(path: str, dtype: Any, mesh: Mesh | None, remat_policy: str, param_dtype: Any,
               attention: str) -> Model:
  """A training checkpoint step dir (WORKDIR/checkpoints/<step>): params only, into this mesh's shardings."""
  from rsft.train import checkpoint

  meta = checkpoint.read_meta(path)
  fields = dict(meta["model_config"])
  if fields.get("rope_llama3"):
    fields["rope_llama3"] = tuple(fields["rope_llama3"])
  cfg = ModelConfig(**fields)
  graphdef, state, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)
  params = checkpoint.restore_params(path, sharding.abstract_arrays(state, sharding.Rules(mesh)))
  tokenizer = None
  if meta.get("tokenizer") and any(os.path.exists(os.path.join(meta["tokenizer"], f)) for f in _TOKENIZER_FILES):
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(meta["tokenizer"])
  return Model(cfg, params, graphdef, tokenizer, mesh, meta.get("hf_config"), meta.get("tokenizer"),
               default_stop_ids(None, tokenizer))


def reshard(m: Model, mesh: Mesh | None, dtype: Any = None) -> Model:
  """The same model on another mesh (training layout -> a data x tensor sampling mesh), without a host round trip.

  `dtype` casts parameters and compute alike (float32 master weights usually sample in bfloat16); None keeps both.
  """
  current = m.module()
  param_dtype = jnp.dtype(dtype) if dtype is not None else jax.tree.leaves(m.params)[0].dtype
  graphdef, _, shardings = abstract_model(m.config, dtype or current.dtype, param_dtype, mesh,
                                          current.remat_policy, current.attention_impl)
  cast = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(param_dtype), p), out_shardings=shardings)
  return dataclasses.replace(m, params=cast(jax.device_put(m.params, shardings)), graphdef=graphdef, mesh=mesh)


def _prepare(m: Model, ids: Any, attention_mask: Any) -> tuple[jax.Array, jax.Array]:
  ids = np.asarray(ids, dtype=np.int32)
  if ids.ndim != 2:
    raise ValueError(f"ids must be [batch, time]; got shape {ids.shape}.")
  mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int32)
  if mask.shape != ids.shape:
    raise ValueError(f"attention_mask shape {mask.shape} differs from ids shape {ids.shape}.")
  if ids.size and (ids.min() < 0 or ids.max() >= m.config.vocab_size):
    raise ValueError(f"token ids must lie in [0, {m.config.vocab_size}); got [{ids.min()}, {ids.max()}].")
  return sharding.put_batch(m.mesh, ids), sharding.put_batch(m.mesh, mask)


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _token_logprobs(graphdef, params, ids, mask, chunk):
  model = nnx.merge(graphdef, params)
  hidden = model(ids, positions_from_mask(mask), mask)
  lp = chunked_logprobs(hidden[:, :-1], model.head_kernel(), ids[:, 1:], chunk)
  # A target needs real context too: the first real token of a left-padded row is not predicted, exactly as
  # in the unpadded row, so padding never changes a row's numbers.
  return jnp.where((mask[:, 1:] > 0) & (mask[:, :-1] > 0), lp, 0.0)


def token_logprobs(m: Model, ids: Any, attention_mask: Any = None, chunk_size: int = 1024) -> jax.Array:
  """float32 [B, T-1]: lp[b,t] = log p(ids[b,t+1] | ids[b,:t+1]).

  0 where the target is padding, and where the context is padding only (the first real token of a row).
  """
  if m.config.head != "lm":
    raise ValueError("token_logprobs needs a CausalLM checkpoint; this one is a reward (score) model.")
  ids, mask = _prepare(m, ids, attention_mask)
  return _token_logprobs(m.graphdef, m.params, ids, mask, chunk_size)


def reward_scores(m: Model, ids: Any, attention_mask: Any = None) -> jax.Array:
  """float32 [B] (or [B, num_labels] when num_labels > 1): the head read at the rightmost real token."""
  if m.config.head != "score":
    raise ValueError("reward_scores needs a *ForSequenceClassification checkpoint; this one is a CausalLM.")
  ids, mask = _prepare(m, ids, attention_mask)
  scores = scorer.score_head(m.graphdef, m.params, ids, mask)
  return scores[:, 0] if m.config.num_labels == 1 else scores


def generate(m: Model, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: Any = 0.0,
             top_p: Any = 1.0, top_k: Any = 0, seed: int = 0, stop_token_ids: Sequence[int] | None = None,
             options: Any = None, prompt_ids: Sequence[int] | None = None, presence_penalty: Any = 0.0,
             frequency_penalty: Any = 0.0, max_total_tokens: int | None = None):
  """Samples continuations of token-id prompts with a KV cache (rsft/infer/sampler.py).

  temperature / top_p / top_k / presence_penalty / frequency_penalty: scalars or one value per prompt (0
  temperature = greedy; top-p is exact over the whole vocabulary; changing them never recompiles).
  max_total_tokens caps prompt + output per prompt (vLLM's max_model_len). stop_token_ids default to the model's (generation_config.json, else EOS + Qwen's stops).
  options: rsft.infer.sampler.Options (n samples per prompt, top-k cap, prompt buckets, chunk steps).
  Returns .tokens, .logprobs (model log-prob of each token) and .finish_reason ("stop" | "length"), with
  n consecutive entries per prompt. prompt_ids: stable ids that seed each prompt's samples (default: index).
  Runs on the model's mesh (batch over data, KV heads over tensor); see rsft.reshard for a sampling mesh.
  """
  from rsft.infer import sampler
  if m.config.head != "lm":
    raise ValueError("generate needs a CausalLM checkpoint; this one is a reward (score) model.")
  stops = m.stop_token_ids if stop_token_ids is None else stop_token_ids
  return sampler.generate(m, prompts, max_new_tokens, temperature, top_p, top_k, seed, stops, options,
                          prompt_ids=prompt_ids, presence_penalty=presence_penalty,
                          frequency_penalty=frequency_penalty, max_total_tokens=max_total_tokens)


def export_hf(m_or_dir: Model | str, out_dir: str, dtype: str | None = None) -> str:
  """Writes an HF dir (safetensors + config.json + tokenizer files) that transformers loads.

  `dtype` defaults to the dtype of the original checkpoint, so HF -> rsft -> HF is bit-exact.
  """
  m = m_or_dir if isinstance(m_or_dir, Model) else load_model(m_or_dir)
  return convert.export(m.config, m.params, os.fspath(out_dir), m.hf_config, m.path, dtype)
