"""A model held functionally: an NNX graphdef (static, hashable; it carries the mesh rules) plus an nnx.State of
sharded parameters. Jitted functions merge the two inside the trace, so there is no per-call Python graph walk
(flax performance guide) and no hidden global mesh. Creating the abstract state, initialising it in its sharded
layout and moving it to another mesh are the model's own business and live here; loading weights from disk is
rsft.convert's.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from rsft import sharding
from rsft.models import lora as lora_lib
from rsft.models.config import ModelConfig
from rsft.models.decoder import Decoder
from rsft.models.lora import LoRA


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


def _decoder(
  cfg: ModelConfig,
  seed: int,
  dtype: Any,
  param_dtype: Any,
  mesh: Mesh | None,
  remat_policy: str,
  attention: str,
  lora: LoRA | None = None,
) -> Decoder:
  return Decoder(
    cfg,
    rngs=nnx.Rngs(seed),
    param_dtype=jnp.dtype(param_dtype or dtype),
    dtype=jnp.dtype(dtype),
    rules=sharding.Rules(mesh),
    remat_policy=remat_policy,
    attention_impl=attention,
    lora=lora,
  )


def abstract_model(
  cfg: ModelConfig,
  dtype: Any = "float32",
  param_dtype: Any = None,
  mesh: Mesh | None = None,
  remat_policy: str = "none",
  attention: str = "auto",
  lora: LoRA | None = None,
) -> tuple[Any, nnx.State, Any]:
  """(graphdef, abstract state, shardings) without allocating anything; validates the mesh layout.
  `attention`: the full-sequence attention implementation (rsft/models/attention.py), part of the graphdef;
  `lora`: low-rank adapters on its targets (rsft/models/lora.py), in the state as nnx.LoRAParam."""
  model = nnx.eval_shape(lambda: _decoder(cfg, 0, dtype, param_dtype, mesh, remat_policy, attention, lora))
  graphdef, state = nnx.split(model)
  return graphdef, state, sharding.state_shardings(state, sharding.Rules(mesh))


def init_model(
  cfg: ModelConfig,
  seed: int = 0,
  dtype: Any = "float32",
  param_dtype: Any = None,
  mesh: Mesh | None = None,
  remat_policy: str = "none",
  attention: str = "auto",
) -> Model:
  """A randomly initialised model, created directly in its sharded layout (from-scratch runs, tests)."""
  graphdef, _, shardings = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention)
  init = jax.jit(
    lambda: nnx.split(_decoder(cfg, seed, dtype, param_dtype, mesh, remat_policy, attention))[1],
    out_shardings=shardings,
  )
  return Model(cfg, init(), graphdef, mesh=mesh)


def init_adapters(
  cfg: ModelConfig,
  lora: LoRA,
  seed: int = 0,
  dtype: Any = "float32",
  param_dtype: Any = None,
  mesh: Mesh | None = None,
  remat_policy: str = "none",
  attention: str = "auto",
) -> tuple[Any, nnx.State]:
  """(the adapted model's graphdef, fresh adapters in their sharded layout): A random, B zero, so the adapted model
  starts as its base. The base weights come from elsewhere (a checkpoint); `nnx.merge_state(base, adapters)` is the
  adapted model's state."""
  graphdef, abstract, _ = abstract_model(cfg, dtype, param_dtype, mesh, remat_policy, attention, lora)
  adapters, _ = lora_lib.split(abstract)
  shardings = sharding.state_shardings(adapters, sharding.Rules(mesh))

  def fresh_adapters() -> nnx.State:
    _, state = nnx.split(_decoder(cfg, seed, dtype, param_dtype, mesh, remat_policy, attention, lora))
    return lora_lib.split(state)[0]

  return graphdef, jax.jit(fresh_adapters, out_shardings=shardings)()


_merge = jax.jit(lora_lib.merge, static_argnums=0)


def merge_adapters(base: Model, lora: LoRA, adapters: nnx.State) -> Model:
  """`base` with the adapters folded into its kernels (W + scale * A B): a plain model that samples at full speed
  and exports as an HF checkpoint."""
  module = base.module()
  param_dtype = jax.tree.leaves(base.params)[0].dtype
  graphdef, _, _ = abstract_model(
    base.config, module.dtype, param_dtype, base.mesh, module.remat_policy, module.attention_impl, lora
  )
  return dataclasses.replace(base, params=_merge(graphdef, nnx.merge_state(base.params, adapters)))


def reshard(m: Model, mesh: Mesh | None, dtype: Any = None) -> Model:
  """The same model on another mesh (training layout -> a data x tensor sampling mesh), without a host round trip.

  `dtype` casts parameters and compute alike (float32 master weights usually sample in bfloat16); None keeps both.
  """
  current = m.module()
  param_dtype = jnp.dtype(dtype) if dtype is not None else jax.tree.leaves(m.params)[0].dtype
  graphdef, _, shardings = abstract_model(
    m.config, dtype or current.dtype, param_dtype, mesh, current.remat_policy, current.attention_impl
  )
  cast = jax.jit(functools.partial(jax.tree.map, lambda x: x.astype(param_dtype)), out_shardings=shardings)
  return dataclasses.replace(m, params=cast(jax.device_put(m.params, shardings)), graphdef=graphdef, mesh=mesh)
