"""Follow mode (eval.follow=True): score each checkpoint as soon as training commits it, on this process's devices.

The watch: every `eval.follow_poll` seconds, list WORKDIR/checkpoints' committed steps (orbax's finalized ones:
never a half-written save), score the new ones oldest first with the sweep's own resumable step (generations and
grades per sequence), and rewrite eval/results.jsonl and the summary from every step scored so far. Each step's
scores also go to the run's tracker (TensorBoard under WORKDIR/tensorboard beside training's curves; W&B / MLflow
with `tracking.backend`), once: eval/follow.json records what was scored, logged and missed. It ends when training
has recorded its final step (rsft.workdir.mark_finished) and that step is scored, or with an error after
`eval.follow_timeout` seconds without a new checkpoint. Killed and rerun, it picks up where the files say: no row
is duplicated or lost.

A checkpoint that training deleted (`checkpoint.keep`) before it was scored, or one that cannot be read, is listed
in eval/follow.json's "missed" with the reason and skipped; everything else that fails stops the run.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from collections.abc import Callable
from typing import Any

from absl import logging

from rsft import distributed
from rsft import workdir as workdir_lib
from rsft.convert.step_dir import finished_steps
from rsft.evals import checkpoints, sweep
from rsft.evals.errors import EnvironmentProblem
from rsft.tracking import Tracker


def state_file(workdir: str) -> str:
  """eval/follow.json: the steps scored, the step x benchmark scores logged to the tracker, the steps missed."""
  return os.path.join(workdir, "eval", "follow.json")


class FollowTimeout(RuntimeError):
  pass


class _Unreadable(Exception):
  pass


@dataclasses.dataclass
class State:
  scored: list[int] = dataclasses.field(default_factory=list)
  logged: list[str] = dataclasses.field(default_factory=list)  # "step:benchmark" whose scores reached the tracker
  missed: dict[str, str] = dataclasses.field(default_factory=dict)  # step -> why it was not scored

  @classmethod
  def load(cls, path: str) -> State:
    if not os.path.exists(path):
      return cls()
    with open(path) as f:
      raw = json.load(f)
    return cls(raw.get("scored", []), raw.get("logged", []), raw.get("missed", {}))

  def save(self, path: str) -> None:
    if distributed.is_primary():
      with open(path + ".tmp", "w") as f:
        json.dump(dataclasses.asdict(self), f, indent=1)
      os.replace(path + ".tmp", path)


def _wanted(spec: Any, step: int, final: int | None) -> bool:
  """eval.checkpoints in follow mode: all, or listed steps ("last" = the final step once training records it)."""
  if spec in (None, "", "all"):
    return True
  parts = [str(p).strip() for p in (spec.split(",") if isinstance(spec, str) else spec)]
  return str(step) in parts or ("last" in parts and step == final)


def follow(
  config: Any,
  workdir: str,
  load_model: Callable[[str], Any],
  renderer_for: Callable[[Any], Any],
  sleep: Callable[[float], None] = time.sleep,
  clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
  """Scores committed checkpoints as they land until training's final step is scored; returns the results rows."""
  sw = sweep.prepare_sweep(config, workdir)
  state_path = state_file(workdir)
  state = State.load(state_path)
  tracker = (
    Tracker(workdir, config.tracking.backend, config.tracking.project, config.tracking.name)
    if distributed.is_primary()
    else None
  )
  timeout, rows = config.eval.follow_timeout, []
  base = [(0, config.model.path)] if config.model.path else []

  def load_policy(path: str) -> Any:
    try:
      return load_model(path)
    except EnvironmentProblem:
      raise  # the machine's problem, the same for every step: it stops the run
    except Exception as e:  # a save training deleted, or one that cannot be read: this step is skipped
      raise _Unreadable(f"{type(e).__name__}: {str(e)[:300]}") from e

  last_new = clock()
  logging.info(
    "follow: watching %s (final step recorded by training ends the watch; timeout %s s)",
    os.path.join(workdir, "checkpoints"),
    timeout or "none",
  )
  try:
    while True:
      final = workdir_lib.finished_step(workdir)
      listed = base + [
        (s, checkpoints.step_dir(workdir, s)) for s in finished_steps(os.path.join(workdir, "checkpoints"))
      ]
      todo = [
        (s, p)
        for s, p in listed
        if s not in state.scored and str(s) not in state.missed and _wanted(config.eval.checkpoints, s, final)
      ]
      for step, path in todo:
        logging.info("follow: scoring step %d", step)
        try:
          sweep.score_step(sw, step, path, load_policy, load_model, renderer_for)
        except _Unreadable as e:
          why = "deleted by training before it was scored" if not os.path.exists(path) else f"could not be read: {e}"
          logging.warning("follow: step %d %s; skipped.", step, why)
          state.missed[str(step)] = why
          state.save(state_path)
          continue
        state.scored = sorted(set(state.scored) | {step})
        state.save(state_path)
        rows = sweep.finish(sw, state.scored)
        log_new(tracker, state, rows, state_path)
      if todo:
        last_new = clock()
      done = {*state.scored, *map(int, state.missed)}
      wanted_final = final is not None and _wanted(config.eval.checkpoints, final, final)
      if (
        final is not None
        and (final in done or not wanted_final)
        and all(s in done for s, _ in listed if _wanted(config.eval.checkpoints, s, final))
      ):
        logging.info("follow: training finished at step %d and every checkpoint is scored.", final)
        break
      if timeout and clock() - last_new > timeout:
        raise FollowTimeout(
          f"follow: no new checkpoint in {os.path.join(workdir, 'checkpoints')} for {timeout:g} s and training has "
          f"not recorded its final step ({workdir_lib.FINISHED}); scored so far: {state.scored or 'none'}. Is "
          "training running and writing to this workdir? Rerun the same command to go on following (nothing "
          "scored is redone), or raise eval.follow_timeout."
        )
      sleep(config.eval.follow_poll)
  except OSError as e:
    if e.errno == errno.ENOSPC:
      raise OSError(
        e.errno,
        f"follow: the disk filled while writing {e.filename or 'eval files'}; free space and "
        "rerun the same command: every row written so far is kept and nothing is redone.",
      ) from e
    raise
  finally:
    if tracker is not None:
      tracker.close()
  return rows or sweep.finish(sw, state.scored)


def log_new(tracker: Tracker | None, state: State, rows: list[dict[str, Any]], state_path: str) -> None:
  """Each step x benchmark's results, once, to the tracker: eval/<benchmark>/<metric> at that step."""
  if tracker is None:
    return
  fresh = {}
  for r in rows:
    if f"{r['step']}:{r['benchmark']}" not in state.logged:
      fresh.setdefault(r["step"], {})[f"eval/{r['benchmark']}/{r['metric']}"] = r["value"]
  for step, scalars in sorted(fresh.items()):
    tracker.log(step, scalars)
  state.logged = sorted(set(state.logged) | {f"{r['step']}:{r['benchmark']}" for r in rows})
  state.save(state_path)


def track(config: Any, workdir: str, rows: list[dict[str, Any]]) -> None:
  """A one-shot sweep's results into the run's tracker, the steps x benchmarks not logged before."""
  if distributed.is_primary():
    tracker = Tracker(workdir, config.tracking.backend, config.tracking.project, config.tracking.name)
    try:
      log_new(tracker, State.load(state_file(workdir)), rows, state_file(workdir))
    finally:
      tracker.close()
