"""Multi-process start-up: jax.distributed only when the environment says the job spans several processes."""

from __future__ import annotations

import os

import jax
from absl import logging


def is_multi_process() -> bool:
  """An explicit coordinator (GPU clusters, our launch scripts) or a multi-host TPU slice."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("RSFT_DISTRIBUTED") == "1":
    return True
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def maybe_initialize(timeout_s: int = 300) -> None:
  if not is_multi_process() or jax.distributed.is_initialized():
    return
  jax.distributed.initialize(initialization_timeout=timeout_s)
  logging.info("process %d/%d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
