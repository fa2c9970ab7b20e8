"""AdamW with the study's schedule (linear warmup over warmup_ratio, then cosine to 0, constant or wsd), global-norm
clipping, and skipping of steps whose gradients are not finite (as verl does)."""

from __future__ import annotations

from typing import Any

import jax
import optax

from rsft.sharding import path_name


def schedule(
  lr: float, total_steps: int, warmup_ratio: float, kind: str, decay_ratio: float | None = None
) -> optax.Schedule:
  """verl's `get_cosine_schedule_with_warmup`: lr(0) = 0, peak after int(total * ratio) steps, 0 at `total`.
  `constant` holds the peak; `wsd` (warmup-stable-decay) holds it, then falls linearly to 0 over the last
  `decay_ratio` of the steps: a short run keeps its full rate while it learns and still ends annealed."""
  warmup = int(total_steps * warmup_ratio)
  if kind == "cosine":
    if warmup == 0:
      return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), 0.0)
  if kind in ("constant", "wsd"):
    head, bounds = ([optax.linear_schedule(0.0, lr, warmup)], [warmup]) if warmup else ([], [])
    if kind == "constant":
      return optax.join_schedules(head + [optax.constant_schedule(lr)], bounds)
    if decay_ratio is None or not 0.0 < decay_ratio <= 1.0:
      raise ValueError(f"train.decay_ratio={decay_ratio}; expected a share of the steps in (0, 1]")
    decay_start = max(warmup, total_steps - int(total_steps * decay_ratio))
    stable = optax.constant_schedule(lr)
    decay = optax.linear_schedule(lr, 0.0, max(total_steps - decay_start, 1))
    return optax.join_schedules(head + [stable, decay], bounds + [decay_start])
  raise ValueError(f"train.schedule={kind!r}; use 'cosine', 'constant' or 'wsd'")


def decay_mask(params: Any, which: str) -> Any:
  """'all' (the study: torch AdamW over every parameter) or 'kernels' (no decay on norms and biases)."""
  if which == "all":
    return jax.tree.map(lambda _: True, params)
  if which == "kernels":
    return jax.tree_util.tree_map_with_path(
      lambda path, _: not (path_name(path).endswith(".bias") or "norm" in path_name(path)), params
    )
  raise ValueError(f"train.weight_decay_mask={which!r}; use 'all' or 'kernels'")


def make_optimizer(train_cfg: Any, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  decay = {"decay_ratio": train_cfg.decay_ratio} if train_cfg.schedule == "wsd" else {}  # configs/base.py: 0.2
  lr = schedule(train_cfg.lr, total_steps, train_cfg.warmup_ratio, train_cfg.schedule, **decay)
  tx = optax.chain(
    optax.clip_by_global_norm(train_cfg.max_grad_norm),
    optax.adamw(
      lr,
      b1=train_cfg.b1,
      b2=train_cfg.b2,
      eps=train_cfg.eps,
      weight_decay=train_cfg.weight_decay,
      mask=lambda p: decay_mask(p, train_cfg.weight_decay_mask),
    ),
  )
  return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1), lr
