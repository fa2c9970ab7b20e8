"""The jitted train step: gradient accumulation as a scan over micro-batches, then one optimizer update.

Pure function of (params, opt_state, batch, frozen); the caller jits it with explicit shardings and donates the
state. `params` are what trains: the whole model, or with LoRA the adapters alone, `frozen` then holding the base
weights, which get no gradient and no optimizer state (rsft/models/lora.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rsft.models import forward
from rsft.train.loss import token_scales


@dataclasses.dataclass(frozen=True)
class StepConfig:
  micro_batches: int = 1
  aggregation: str = "token_mean"
  verl_ranks: int = 1
  verl_rows_per_micro: int = 1
  loss_chunk: int = 1024
  sequence: int = 1  # context-parallel shards (mesh.sequence): rows are laid out zigzag


def zigzag(length: int, shards: int) -> jax.Array:
  """The column order that gives each of `shards` sequence shards chunks i and 2S-1-i of 2S equal chunks, so
  causal attention costs every device the same (MaxText's load-balanced context parallelism)."""
  if length % (2 * shards):
    raise ValueError(f"a row of {length} tokens does not split into 2 x mesh.sequence = {2 * shards} chunks.")
  chunks = jnp.arange(length).reshape(2 * shards, length // (2 * shards))
  return jnp.concatenate([jnp.concatenate([chunks[i], chunks[2 * shards - 1 - i]]) for i in range(shards)])


def _micro_loss(params, graphdef, mb, chunk, frozen=None, dropout_key=None):
  state = params if frozen is None else nnx.merge_state(frozen, params)
  lp, entropy, _ = forward.logprobs(
    graphdef, state, mb["inputs"], mb["positions"], mb["segment_ids"], mb["targets"], chunk, True, dropout_key
  )
  w = mb["weights"]
  sums = dict(nll=-(lp * w).sum(), tokens=w.sum(), entropy=(entropy * w).sum())
  return -(lp * mb["scale"]).sum(), sums


def train_step(
  graphdef: Any,
  optimizer: optax.GradientTransformation,
  cfg: StepConfig,
  params: Any,
  opt_state: Any,
  batch: dict[str, jax.Array],
  frozen: Any = None,
  dropout_key: jax.Array | None = None,
) -> tuple[Any, Any, dict[str, jax.Array]]:
  """One optimizer step over `batch` ([rows, T] arrays) in cfg.micro_batches accumulation steps. `frozen`: LoRA's
  base weights; `dropout_key`: this step's LoRA dropout key (each micro-batch folds in its index)."""
  batch = dict(batch, scale=token_scales(batch["weights"], cfg.aggregation, cfg.verl_ranks, cfg.verl_rows_per_micro))
  if cfg.sequence > 1:  # every [B, T] array in zigzag order: the loss is a sum over tokens, attention masks by
    order = zigzag(batch["inputs"].shape[1], cfg.sequence)  # position and segment, so nothing else changes
    batch = {k: v[:, order] for k, v in batch.items()}
  rows = batch["inputs"].shape[0]
  if rows % cfg.micro_batches:
    raise ValueError(f"global batch {rows} is not a multiple of {cfg.micro_batches} micro-batches")
  micro = jax.tree.map(lambda x: x.reshape(cfg.micro_batches, rows // cfg.micro_batches, *x.shape[1:]), batch)
  grad_fn = jax.value_and_grad(_micro_loss, has_aux=True)

  def accumulate(carry, xs):
    grads, objective, sums = carry
    mb, index = xs
    key = None if dropout_key is None else jax.random.fold_in(dropout_key, index)
    (obj, s), g = grad_fn(params, graphdef, mb, cfg.loss_chunk, frozen, key)
    grads = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), grads, g)
    return (grads, objective + obj, jax.tree.map(jnp.add, sums, s)), None

  if cfg.micro_batches == 1:  # no accumulator: a zeroed float32 copy of the model and an add per step saved
    key = None if dropout_key is None else jax.random.fold_in(dropout_key, 0)
    first = jax.tree.map(lambda x: x[0], micro)
    (objective, sums), grads = grad_fn(params, graphdef, first, cfg.loss_chunk, frozen, key)
  else:
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    zero_sums = {k: jnp.zeros(()) for k in ("nll", "tokens", "entropy")}
    init = (zeros, jnp.zeros(()), zero_sums)
    (grads, objective, sums), _ = jax.lax.scan(accumulate, init, (micro, jnp.arange(cfg.micro_batches)))
  grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  tokens = jnp.maximum(sums["tokens"], 1.0)
  metrics = dict(
    loss=sums["nll"] / tokens,
    objective=objective,
    grad_norm=optax.tree.norm(grads),
    entropy=sums["entropy"] / tokens,
    supervised_tokens=sums["tokens"],
    real_tokens=(batch["segment_ids"] > 0).sum(),
    skipped=1 - opt_state.last_finite.astype(jnp.int32),
  )
  return params, opt_state, metrics
