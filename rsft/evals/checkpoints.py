"""Which checkpoints of a run to evaluate: `eval.checkpoints` = "all" | "last" | "5,10,40" | "0,last" (or a tuple of
steps)."""

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
  wanted = []
  for part in spec.split(",") if isinstance(spec, str) else spec:
    part = str(part).strip()
    if part == "last":  # the run's last step, whatever its number (e.g. "0,last": base and final model)
      wanted.append(steps[-1])
    elif part.isdigit():
      wanted.append(int(part))
    else:
      raise ValueError(
        f"eval.checkpoints={spec!r}: {part!r} is not a step; expected all, last or steps like 5,10,last."
      )
  missing = sorted(set(wanted) - set(steps))
  if missing:
    raise ValueError(f"eval.checkpoints asks for steps {missing}, which are not saved; saved steps: {steps}.")
  return sorted(set(wanted))


def step_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, "checkpoints", str(step))
