"""AdamW with the study's schedule (linear warmup over warmup_ratio, then cosine to 0 or constant), global-norm
clipping, and skipping of steps whose gradients are not finite (as verl does)."""

from __future__ import annotations

from typing import Any

import jax
import optax

from rsft.sharding import path_name


def schedule(lr: float, total_steps: int, warmup_ratio: float, kind: str) -> optax.Schedule:
  """verl's `get_cosine_schedule_with_warmup`: lr(0) = 0, peak after int(total * ratio) steps, 0 at `total`."""
  warmup = int(total_steps * warmup_ratio)
  if kind == "cosine":
    if warmup == 0:
      return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), 0.0)
  if kind == "constant":
    if warmup == 0:
      return optax.constant_schedule(lr)
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  raise ValueError(f"train.schedule={kind!r}; use 'cosine' or 'constant'")


def decay_mask(params: Any, which: str) -> Any:
  """'all' (the study: torch AdamW over every parameter) or 'kernels' (no decay on norms and biases)."""
  if which == "all":
    return jax.tree.map(lambda _: True, params)
  if which == "kernels":
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not (path_name(path).endswith(".bias") or "norm" in path_name(path)), params)
  raise ValueError(f"train.weight_decay_mask={which!r}; use 'all' or 'kernels'")


def make_optimizer(train_cfg: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(train_cfg.lr, total_steps, train_cfg.warmup_ratio, train_cfg.schedule)
  tx = optax.chain(
      optax.clip_by_global_norm(train_cfg.max_grad_norm),
      optax.adamw(lr, b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps, weight_decay=train_cfg.weight_decay,
                  mask=lambda p: decay_mask(p, train_cfg.weight_decay_mask)))
  return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1), lr
