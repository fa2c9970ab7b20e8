"""rsft.tracking: TensorBoard always, W&B / MLflow when chosen (fakes here: neither is in the lock)."""

import sys
import types

import pytest

from rsft import tracking


class _Recorder(types.ModuleType):
  def __init__(self, name):
    super().__init__(name)
    self.calls = []

  def __getattr__(self, attr):
    if attr.startswith("__"):
      raise AttributeError(attr)
    return lambda *a, **k: self.calls.append((attr, a, k)) or self


def test_wandb_and_mlflow_get_every_scalar_with_its_step_and_one_run_per_workdir(tmp_path, monkeypatch):
  wandb, mlflow = _Recorder("wandb"), _Recorder("mlflow")
  mlflow.search_runs = lambda **k: mlflow.calls.append(("search_runs", (), k)) or []
  monkeypatch.setitem(sys.modules, "wandb", wandb)
  monkeypatch.setitem(sys.modules, "mlflow", mlflow)
  monkeypatch.delenv("WANDB_MODE", raising=False)
  for backend, module in (("wandb", wandb), ("mlflow", mlflow)):
    t = tracking.Tracker(str(tmp_path / "run"), backend)
    t.log(20, {"eval/math500/avg@3": 0.5})
    t.log(10, {"train/loss": 1.25})
    t.close()
    names = [c[0] for c in module.calls]
    assert names[-1] in ("finish", "end_run")
  init = next(c for c in wandb.calls if c[0] == "init")[2]
  assert init["id"] == tracking.run_id(str(tmp_path / "run")) and init["resume"] == "allow"
  assert ("define_metric", ("*",), {"step_metric": tracking.STEP}) in wandb.calls
  logs = [c[1][0] for c in wandb.calls if c[0] == "log"]
  assert logs == [{"eval/math500/avg_3": 0.5, tracking.STEP: 20}, {"train/loss": 1.25, tracking.STEP: 10}]
  assert [(c[1][0], c[2]["step"]) for c in mlflow.calls if c[0] == "log_metrics"] == [
    ({"eval/math500/avg_3": 0.5}, 20),
    ({"train/loss": 1.25}, 10),
  ]
  assert any(c[0] == "set_tracking_uri" and c[1][0].endswith("run/mlruns") for c in mlflow.calls)
  import os

  assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "run" / "tensorboard"))
  assert os.environ["WANDB_MODE"] == "offline"


def test_a_backend_that_is_not_installed_stops_up_front(monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
  with pytest.raises(RuntimeError, match=r"pip install wandb"):
    tracking.check("wandb")
  with pytest.raises(ValueError, match="tracking.backend='neptune'"):
    tracking.check("neptune")
