"""Multi-process start-up: jax.distributed only when the environment says the job spans several processes.

Three ways a job learns its peers, checked in this order:
  explicit   JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID): any cluster, and the tests;
  SLURM      SLURM_JOB_NODELIST / SLURM_NTASKS / SLURM_PROCID (launch/slurm.py, one task per node): the first
             node of the list is the coordinator, on port RSFT_COORDINATOR_PORT (default 12355);
  TPU pod    TPU_WORKER_HOSTNAMES lists several workers: jax finds the rest from the TPU metadata itself.
A single process (one host, one GPU box, the CPU demo) never calls jax.distributed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
from absl import logging

DEFAULT_PORT = 12355


def expand_nodelist(nodelist: str) -> list[str]:
  """SLURM's compressed host list ("gpu[001-003,007],login1") as host names, in order."""
  hosts = []
  for name, ranges in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?,?", nodelist):
    if not ranges:
      hosts.append(name)
      continue
    for part in ranges.split(","):
      lo, _, hi = part.partition("-")
      for i in range(int(lo), int(hi or lo) + 1):
        hosts.append(f"{name}{i:0{len(lo)}d}")
  return hosts


def coordinator_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
  """jax.distributed.initialize arguments from the environment, {} for a TPU pod (jax detects it), None for a
  single-process job."""
  if env.get("JAX_COORDINATOR_ADDRESS"):
    out: dict[str, Any] = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"]}
    for key, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
      if env.get(key):
        out[arg] = int(env[key])
    return out
  nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
  if nodelist and int(env.get("SLURM_NTASKS", "1")) > 1:
    hosts = expand_nodelist(nodelist)
    port = int(env.get("RSFT_COORDINATOR_PORT", DEFAULT_PORT))
    return {
      "coordinator_address": f"{hosts[0]}:{port}",
      "num_processes": int(env["SLURM_NTASKS"]),
      "process_id": int(env.get("SLURM_PROCID", "0")),
    }
  if "," in env.get("TPU_WORKER_HOSTNAMES", "") or env.get("RSFT_DISTRIBUTED") == "1":
    return {}
  return None


def maybe_initialize(timeout_s: int = 300) -> None:
  """Idempotent; call before the first jax computation of train.py / eval.py."""
  kwargs = coordinator_from_env(os.environ)
  if kwargs is None or jax.distributed.is_initialized():
    return
  logging.info("jax.distributed.initialize(%s)", kwargs or "auto-detected")
  jax.distributed.initialize(**kwargs, initialization_timeout=timeout_s)
  logging.info(
    "process %d/%d, %d local / %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def sync(name: str) -> None:
  """A barrier across processes (no-op for one): used where process 0 writes files the others then read."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def min_over_processes(value: int) -> int:
  """The smallest of every process's `value` (all processes call it): a count they must agree on, such as the
  number of training steps when each host packs its own share of the data."""
  if jax.process_count() == 1:
    return int(value)
  import numpy as np
  from jax.experimental import multihost_utils

  return int(np.min(multihost_utils.process_allgather(np.asarray(value, np.int64))))


def sum_over_processes(counts: Any) -> Any:
  """Every process's integer `counts` (same shape) summed, on every process (all processes call it)."""
  import numpy as np

  counts = np.asarray(counts, np.int64)
  if jax.process_count() == 1:
    return counts
  from jax.experimental import multihost_utils

  return np.sum(multihost_utils.process_allgather(counts), axis=0)


def is_primary() -> bool:
  return jax.process_index() == 0
