"""Training metrics: metrics.jsonl, TensorBoard events and a progress bar with loss, tokens/s and ETA."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
from absl import logging
from tqdm import tqdm

from rsft import hardware
from rsft.models import ModelConfig
from rsft.tracking import Tracker


def param_count(cfg: ModelConfig) -> int:
  d, f, h = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  attn = d * h * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
  embed = cfg.vocab_size * d * (1 if cfg.tie_word_embeddings else 2)
  return cfg.num_layers * (attn + 3 * d * f) + embed


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """6N for the dense matmuls plus causal attention (12 * L * H * Nq * T / 2), forward + backward."""
  return 6 * param_count(cfg) + 6 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len


def chip_peak_flops(device_kind: str) -> float | None:
  """Dense bf16 peak FLOP/s of one chip of this kind (rsft/hardware.py); None: unknown device, no MFU logged."""
  return hardware.peak_flops(device_kind)


def peak_flops() -> float | None:
  """Peak of all devices of this job: the MFU denominator."""
  return hardware.local_peak_flops()


def cut_back(path: str, step: int) -> int:
  """Keeps the rows of metrics.jsonl up to `step` (the checkpoint a resumed run restarts from): the steps a killed
  run logged after its last checkpoint are trained again and must not appear twice, nor the probe row at `step`
  itself, which the restarted run logs again. Returns the rows dropped."""
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  kept, dropped = [], 0
  for raw in lines:
    try:
      row = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
      dropped += bool(raw.strip())  # a torn last line
      continue
    if isinstance(row, dict) and (row.get("step", 0) < step or (row.get("step", 0) == step and "loss" in row)):
      kept.append(raw)
    else:
      dropped += 1
  if dropped:
    with open(path + ".tmp", "wb") as f:
      f.write(b"".join(line + b"\n" for line in kept))
    os.replace(path + ".tmp", path)
  return dropped


class Writer:
  def __init__(
    self,
    workdir: str,
    total_steps: int,
    cfg: ModelConfig,
    seq_len: int,
    global_batch: int,
    start_step: int = 0,
    tracking: Any = None,
  ):
    self.primary = jax.process_index() == 0
    self.total, self.batch_positions = total_steps, seq_len * global_batch
    self.flops_per_token, self.peak = flops_per_token(cfg, seq_len), peak_flops()
    self.last_time, self.last_step = time.perf_counter(), None
    self.bar = tqdm(total=total_steps, desc="train", disable=not self.primary, dynamic_ncols=True)
    if self.primary:
      path = os.path.join(workdir, "metrics.jsonl")
      dropped = cut_back(path, start_step)
      if dropped:
        logging.info(
          "metrics.jsonl: dropped %d rows logged after step %d, which this run trains again", dropped, start_step
        )
      self.jsonl = open(path, "a")
      kw = {} if tracking is None else dict(backend=tracking.backend, project=tracking.project, name=tracking.name)
      self.tracker = Tracker(workdir, **kw)

  def write(
    self, step: int, out: dict[str, Any], lr: float, step_seconds: float, extra: dict[str, float] | None = None
  ) -> dict[str, float]:
    """One row of metrics.jsonl (and the tracker) from the step's outputs; `extra` scalars join it (data.mix's
    realised shares)."""
    now = time.perf_counter()
    steps = step - (self.last_step if self.last_step is not None else step - 1)
    elapsed = now - self.last_time if self.last_step is not None else step_seconds
    self.last_time, self.last_step = now, step
    real = float(out["real_tokens"])
    row = {
      "step": step,
      "loss": float(out["loss"]),
      "objective": float(out["objective"]),
      "lr": lr,
      "grad_norm": float(out["grad_norm"]),
      "entropy": float(out["entropy"]),
      "supervised_tokens": float(out["supervised_tokens"]),
      "skipped_nonfinite": int(out["skipped"]),
      "padding_fraction": 1.0 - real / self.batch_positions,
      "tokens_per_s": real * steps / max(elapsed, 1e-9),
    }
    if self.peak:
      row["mfu"] = row["tokens_per_s"] * self.flops_per_token / self.peak
    row.update(extra or {})
    if self.primary:
      self.jsonl.write(json.dumps(row) + "\n")
      self.jsonl.flush()
      self.tracker.log(step, {f"train/{k}": v for k, v in row.items() if k != "step"})
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
    return row

  def write_extra(self, step: int, scalars: dict[str, float]) -> None:
    """A row of other scalars at `step` (the forgetting probe's), in metrics.jsonl and the tracker."""
    if self.primary and scalars:
      self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
      self.jsonl.flush()
      self.tracker.log(step, scalars)

  def close(self) -> None:
    self.bar.close()
    if self.primary:
      self.jsonl.close()
      self.tracker.close()
