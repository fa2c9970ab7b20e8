"""Reading an rsft training checkpoint step dir (WORKDIR/checkpoints/<step>) as a model: its `meta` item
(architecture, source config.json, tokenizer dir) and its `params` item, restored straight into the target
shardings. The optimizer state and data iterator beside them are never read here; rsft.train.checkpoint writes
all four items under these names.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

PARAMS, META = "params", "meta"


def finished_steps(directory: str) -> list[int]:
  """Steps saved in a checkpoints directory (local or gs://) that orbax has committed: its in-progress tmp dirs are
  not numbers, and on an object store a step dir counts once its commit marker is written (never half-written)."""
  from etils import epath

  root = epath.Path(directory)
  if not root.exists():
    return []
  return sorted(
    int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / PARAMS).exists() and ocp.step.is_path_finalized(p)
  )


def is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, PARAMS)) or os.path.isdir(os.path.join(path, META))


def _reader(step_dir: str) -> tuple[ocp.CheckpointManager, int]:
  directory = os.path.dirname(os.path.abspath(step_dir))
  params, meta = os.path.join(step_dir, PARAMS), os.path.join(step_dir, META)
  if not (os.path.isdir(params) and os.listdir(params) and os.path.isdir(meta)):
    raise ValueError(
      f"{step_dir}: an rsft checkpoint step whose {PARAMS}/ is empty or {META}/ missing (a save that "
      "was interrupted?); load another step."
    )
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, enable_async_checkpointing=False)
  handlers = {PARAMS: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers), int(
    os.path.basename(os.path.normpath(step_dir))
  )


def _restore(step_dir: str, item: str, args: Any) -> Any:
  mngr, step = _reader(step_dir)
  try:
    return mngr.restore(step, args=ocp.args.Composite(**{item: args}))[item]
  finally:
    mngr.close()


def read_meta(step_dir: str) -> dict[str, Any]:
  return _restore(step_dir, META, ocp.args.JsonRestore())


def restore_params(step_dir: str, abstract_params: Any) -> Any:
  """Only the params item, into the shardings carried by `abstract_params` (ShapeDtypeStructs)."""
  return _restore(step_dir, PARAMS, ocp.args.StandardRestore(abstract_params))
