"""Which checkpoints of a run to evaluate: `eval.checkpoints` = "all" | "last" | "5,10,40" (or a tuple of steps)."""

from __future__ import annotations

import os
from typing import Any

from rsft.convert.step_dir import finished_steps


def list_steps(workdir: str) -> list[int]:
  """Finished checkpoint steps under WORKDIR/checkpoints."""
  return finished_steps(os.path.join(workdir, "checkpoints"))


def select(spec: Any, steps: list[int]) -> list[int]:
  if not steps:
    raise ValueError("no checkpoints to evaluate: WORKDIR/checkpoints has no finished step.")
  if spec in (None, "", "all"):
    return list(steps)
  if spec == "last":
    return [steps[-1]]
  wanted = [int(s) for s in (spec.split(",") if isinstance(spec, str) else spec)]
  missing = sorted(set(wanted) - set(steps))
  if missing:
    raise ValueError(f"eval.checkpoints asks for steps {missing}, which are not saved; saved steps: {steps}.")
  return sorted(set(wanted))


def step_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, "checkpoints", str(step))
