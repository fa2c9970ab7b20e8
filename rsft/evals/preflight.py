"""Can each benchmark run here? Asked for every selected benchmark before any model is loaded or sampled.

A benchmark needs its data file, what its grader runs on this machine (NLTK's punkt for IFEval, the bubblewrap
sandbox for code) and, for model-graded ones, its judge (a loadable checkpoint, or a reachable endpoint). Anything
missing is an environment problem: the run stops up front with every benchmark's fix at once and a non-zero exit,
unless eval.skip_unavailable asks to run the rest and list these as "not run" in the summary.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from rsft.convert.model_io import checkpoint_problem
from rsft.evals import grading, loaders
from rsft.evals.benchmarks import Benchmark
from rsft.evals.errors import EnvironmentProblem


def data_problem(bench: Benchmark, eval_cfg: Any, files: dict[str, str]) -> str | None:
  """Why the benchmark's data file cannot be read here (hf: datasets are checked when loaded), or None."""
  path = files.get(bench.name)
  if path is None and bench.file is None:
    return None  # generated items
  if path is None:
    data_dir = loaders.data_dir(eval_cfg)
    path = os.path.join(data_dir, bench.file)
    if not os.path.exists(path):
      return (
        f"data: no {bench.file} in eval.data_dir ({data_dir}); fetch it with `python -m "
        f"rsft.evals.data fetch --benchmarks={bench.name}` or give it with --config.eval.files={bench.name}=PATH"
      )
  elif path.startswith("hf:"):
    return None
  elif not os.path.exists(path):
    return f"data: eval.files gives {path}, which does not exist"
  try:
    with open(path, "rb") as f:
      f.read(1)
  except OSError as e:  # a folder, no read permission, a broken mount
    return f"data: {path} cannot be read ({type(e).__name__}: {e.strerror or e})"
  return None


def judge_problem(key: str, eval_cfg: Any) -> str | None:
  """Why the model grader under config key `key` cannot be used, or None: a local checkpoint's config and weights
  must be there (a partial download is caught here, not after the sampling), an endpoint must answer."""
  target = eval_cfg[key]
  label = key.replace("_", " ")
  if not target:
    return f"{label}: set --config.eval.{key}"
  if target.startswith(("http://", "https://")):
    return _endpoint_problem(label, target)
  why = checkpoint_problem(target, need_tokenizer=key == "reward_model")
  return f"{label}: eval.{key}: {why}" if why else None


def _endpoint_problem(label: str, url: str, timeout: float = 10.0) -> str | None:
  """Any HTTP answer from {url}/models counts (some servers refuse the listing); no answer at all is a problem."""
  try:
    with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=timeout):
      return None
  except urllib.error.HTTPError:
    return None
  except (urllib.error.URLError, OSError) as e:
    return f"{label}: endpoint {url} does not answer ({getattr(e, 'reason', e)})"


def problem(
  bench: Benchmark, eval_cfg: Any, files: dict[str, str], data: bool = True, graders: bool = True
) -> str | None:
  """The first reason this benchmark cannot run here, or None. data: its data file (the sweep, prompts mode);
  graders: what grading needs, its judges included (the sweep, grade mode)."""
  why = data_problem(bench, eval_cfg, files) if data else None
  if why or not graders:
    return why
  grader = grading.grader_for(bench)  # what it runs on this machine, and the model graders it calls
  why = grader.environment() if grader.environment else None
  if why:
    return f"grader: {why}"
  for key in grader.judges:
    why = judge_problem(key, eval_cfg)
    if why:
      return why
  return None


def stop(problems: dict[str, str], skip_hint: bool = True) -> None:
  """Raises EnvironmentProblem naming every benchmark that cannot run and why (called before anything is generated
  or graded); nothing when `problems` is empty."""
  if not problems:
    return
  lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
  hint = (
    "\nFix these, drop them from eval.benchmarks, or set --config.eval.skip_unavailable=true to run the "
    "others and list these as not run."
    if skip_hint
    else ""
  )
  raise EnvironmentProblem(
    f"{len(problems)} benchmark(s) cannot run on this machine (nothing was generated or graded):\n{lines}{hint}"
  )
