"""One run view: scalars by step into the run's TensorBoard (always: WORKDIR/tensorboard, where training writes and
where follow-mode evaluation adds its scores) and, with `tracking.backend`, into Weights & Biases or MLflow.

Neither of those is a dependency: a backend whose package is missing stops the job up front with the pip line.
W&B runs offline unless WANDB_MODE says otherwise (`wandb sync` uploads later); MLflow logs to WORKDIR/mlruns
unless MLFLOW_TRACKING_URI is set. The run id is derived from the workdir, so training and its follow-mode
evaluation (separate processes) log into the same run, and a restart resumes it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from typing import Any

BACKENDS = ("tensorboard", "wandb", "mlflow")
STEP = "trainer/step"  # W&B's x-axis for every rsft scalar


def run_id(workdir: str) -> str:
  return hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]


def check(backend: str) -> None:
  """Up front: the backend is known and its package importable."""
  if backend not in BACKENDS:
    raise ValueError(f"tracking.backend={backend!r}; choose one of {', '.join(BACKENDS)}.")
  if backend != "tensorboard":
    try:
      importlib.import_module(backend)
    except ImportError:
      raise RuntimeError(
        f"tracking.backend={backend}: the {backend} package is not installed; `pip install "
        f"{backend}` (it is not part of rsft's lock), or use tracking.backend=tensorboard."
      ) from None


class Tracker:
  """Scalars by step. `log` takes {tag: value}; tags are "train/loss", "eval/<benchmark>/<metric>", "probe/..."."""

  def __init__(self, workdir: str, backend: str = "tensorboard", project: str = "rsft", name: str | None = None):
    check(backend)
    from tensorboardX import SummaryWriter

    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self.backend, self.run = backend, None
    name = name or os.path.basename(os.path.normpath(workdir))
    if backend == "wandb":
      import wandb

      os.environ.setdefault("WANDB_MODE", "offline")
      self.run = wandb.init(project=project, name=name, id=run_id(workdir), resume="allow", dir=workdir)
      # Scores of step 10 arrive after training logged step 600: an explicit x-axis instead of W&B's own step, which
      # must only grow.
      self.run.define_metric(STEP)
      self.run.define_metric("*", step_metric=STEP)
    elif backend == "mlflow":
      import mlflow

      if "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.set_tracking_uri("file://" + os.path.join(os.path.abspath(workdir), "mlruns"))
      mlflow.set_experiment(project)
      self.run = mlflow.start_run(
        run_name=name, tags={"rsft_run_id": run_id(workdir)}, run_id=_mlflow_run(mlflow, project, run_id(workdir))
      )

  def log(self, step: int, scalars: dict[str, float]) -> None:
    scalars = {tag.replace("@", "_"): float(value) for tag, value in scalars.items()}  # "avg@2" -> "avg_2": a tag
    for tag, value in scalars.items():  # every backend accepts
      self.tb.add_scalar(tag, value, step)
    self.tb.flush()
    if self.backend == "wandb":
      self.run.log({**scalars, STEP: step})
    elif self.backend == "mlflow":
      import mlflow

      mlflow.log_metrics(scalars, step=step)

  def close(self) -> None:
    self.tb.close()
    if self.backend == "wandb":
      self.run.finish()
    elif self.backend == "mlflow":
      import mlflow

      mlflow.end_run()


def _mlflow_run(mlflow: Any, project: str, rsft_id: str) -> str | None:
  """The MLflow run this workdir logged to before (training, then its evaluation), to resume; None: a new one."""
  found = mlflow.search_runs(
    experiment_names=[project], filter_string=f"tags.rsft_run_id = '{rsft_id}'", output_format="list"
  )
  return found[0].info.run_id if found else None
