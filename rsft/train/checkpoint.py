"""Orbax checkpoints of the whole training state: params, optimizer state, step, data iterator, metadata.

Items per step directory: `params`, `train` (optimizer state and step; evaluation never reads it), `data` (grain
iterator state, one file per process), `meta` (JSON: model architecture, source config.json, tokenizer dir, resolved run config), so any
step directory is self-describing (`rsft.load_model` and `rsft.export_hf` accept it; rsft.convert.step_dir reads it). Listed save steps are never
deleted; `keep` > 0 keeps that many of the other, most recent ones. Restores land directly in the given shardings.
"""

from __future__ import annotations

import logging as py_logging
import os
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as cm

from rsft.convert.step_dir import META, PARAMS


class _QuietOrbax(py_logging.Filter):
  """Orbax logs a dozen INFO lines per save; keep its warnings and errors only."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


logging.get_absl_logger().addFilter(_QuietOrbax())


def manager(
  directory: str, save_steps: tuple[int, ...] = (), keep: int = 0, async_save: bool = True, read_only: bool = False
) -> ocp.CheckpointManager:
  preserve = cm.AnyPreservationPolicy([cm.CustomSteps(list(save_steps)), cm.LatestN(keep)]) if keep else None
  options = ocp.CheckpointManagerOptions(
    enable_async_checkpointing=async_save,
    preservation_policy=preserve,
    create=not read_only,
    read_only=read_only,
    cleanup_tmp_directories=not read_only,
    save_interval_steps=0 if read_only else 1,
  )
  handlers = {
    PARAMS: ocp.StandardCheckpointHandler(),
    "train": ocp.StandardCheckpointHandler(),
    "data": grain.checkpoint.CheckpointHandler(),
    META: ocp.JsonCheckpointHandler(),
  }
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def save(
  mngr: ocp.CheckpointManager, step: int, params: Any, opt_state: Any, data_iter: Any, meta: dict[str, Any]
) -> None:
  args = {
    PARAMS: ocp.args.StandardSave(params),
    META: ocp.args.JsonSave(meta),
    "train": ocp.args.StandardSave({"opt_state": opt_state, "step": step}),
  }
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**args), force=True)


def restore(
  mngr: ocp.CheckpointManager, step: int, abstract_params: Any, abstract_train: dict[str, Any], data_iter: Any = None
) -> tuple[Any, dict[str, Any]]:
  """(params, {'opt_state', 'step'}) restored into the abstract trees' shardings; data_iter is set in place."""
  args = {PARAMS: ocp.args.StandardRestore(abstract_params), "train": ocp.args.StandardRestore(abstract_train)}
  if data_iter is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
  out = mngr.restore(step, args=ocp.args.Composite(**args))
  return out[PARAMS], out["train"]


def read_meta(mngr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """A saved step's `meta` item alone."""
  return mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
