"""Reading a run directory: its config, training metrics, sweep results and cached generations."""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import re
from typing import Any

from rsft.analysis.dynamics import Point
from rsft.evals import benchmarks, grading

GENERAL = ("instruction", "chat", "hallucination", "truthfulness")
BUDGET = re.compile(r"(.+)@think(\d+)")  # a benchmark scored under a thinking budget (eval.think_budgets)
REASONING = ("math", "code", "science", "knowledge", "countdown", "algorithmic")


@dataclasses.dataclass
class Run:
  name: str
  workdir: str
  metrics: list[dict[str, Any]]  # metrics.jsonl rows
  results: list[dict[str, Any]]  # eval/results.jsonl rows
  _generations: dict[str, dict[int, list[dict[str, Any]]]] = dataclasses.field(default_factory=dict, repr=False)

  def benchmarks(self) -> list[tuple[str, str]]:
    """(benchmark, domain) in first-seen order; scores under a thinking budget (<name>@think<B>) are think_budgets'."""
    seen = {}
    for r in self.results:
      if BUDGET.fullmatch(r["benchmark"]) is None:
        seen.setdefault(r["benchmark"], r["domain"])
    return list(seen.items())

  def think_budgets(self, benchmark: str) -> dict[int, dict[int, Point]]:
    """budget -> step -> headline score of the benchmark under eval.think_budgets' budget."""
    out = collections.defaultdict(dict)
    for r in self.results:
      match = BUDGET.fullmatch(r["benchmark"])
      if match and match[1] == benchmark and r["metric"] == self.headline(benchmark):
        out[int(match[2])][r["step"]] = Point(r["step"], r["value"], r["ci_low"], r["ci_high"])
    return dict(sorted(out.items()))

  def headline(self, benchmark: str) -> str | None:
    names = {r["metric"] for r in self.results if r["benchmark"] == benchmark}
    avg = sorted(m for m in names if re.fullmatch(r"avg@\d+", m))
    return avg[0] if avg else None

  def direction(self, benchmark: str) -> tuple[bool, bool]:
    """(higher_is_better, bounded) of a benchmark's score, as the sweep recorded it (older results: from the
    benchmark registry; unknown names: higher is better, bounded)."""
    row = next((r for r in self.results if r["benchmark"] == benchmark and "higher_is_better" in r), None)
    if row is not None:
      return bool(row["higher_is_better"]), row.get("scale", "proportion") != "unbounded"
    bench = benchmarks.STUDY.get(benchmark)
    grader = grading.GRADERS.get(bench.grader) if bench else None
    return (bench.higher_is_better, grader is None or grader.scale != "unbounded") if bench else (True, True)

  def curve(self, benchmark: str, metric: str) -> list[Point]:
    return sorted(
      (
        Point(r["step"], r["value"], r["ci_low"], r["ci_high"])
        for r in self.results
        if r["benchmark"] == benchmark and r["metric"] == metric
      ),
      key=lambda p: p.step,
    )

  def generations(self, benchmark: str) -> dict[int, list[dict[str, Any]]]:
    """step -> generation rows (completion, completion_tokens, finish_reason) from the sweep's cache (read once)."""
    if benchmark in self._generations:
      return self._generations[benchmark]
    out = collections.defaultdict(list)
    for path in glob.glob(os.path.join(self.workdir, "eval", "generations", "step_*", f"{benchmark}.jsonl")):
      step = int(os.path.basename(os.path.dirname(path)).removeprefix("step_"))
      with open(path) as f:
        out[step] = [json.loads(line) for line in f if line.strip()]
    self._generations[benchmark] = dict(sorted(out.items()))
    return self._generations[benchmark]


def parameters(workdir: str) -> int | None:
  """The run's model size from WORKDIR/config.json (model.path's config.json, or model.arch); None if unknown."""
  from rsft.models import ModelConfig
  from rsft.train.metrics import param_count

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    model = json.load(f).get("model", {})
  try:
    if model.get("path"):
      return param_count(ModelConfig.from_dir(model["path"])[0])
    if model.get("arch"):
      return param_count(ModelConfig.from_arch(model["arch"]))
  except (OSError, ValueError, KeyError, TypeError):
    return None
  return None


def _jsonl(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def load(workdir: str) -> Run:
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{workdir}: not a run directory")
  return Run(
    os.path.basename(os.path.normpath(workdir)),
    workdir,
    _jsonl(os.path.join(workdir, "metrics.jsonl")),
    _jsonl(os.path.join(workdir, "eval", "results.jsonl")),
  )


def group(domain: str, in_domain: tuple[str, ...]) -> str:
  """The study's grouping: in-domain reasoning / out-of-domain reasoning / general / safety."""
  if domain in in_domain:
    return "in-domain"
  if domain in REASONING:
    return "out-of-domain"
  if domain in GENERAL:
    return "general"
  return "safety" if domain == "safety" else "other"
