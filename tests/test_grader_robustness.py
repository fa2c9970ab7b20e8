"""Graders on hostile model text (issue 13): bounded time, no recursion, no crash; an error is a scored 0."""

import os
import time

import pytest

from rsft.evals import benchmarks, grading, loaders
from rsft.evals.graders import math as math_grader
from rsft.tasks import countdown

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "benchmarks")

HOSTILE = [
  "",
  "\x00\xff\ud800",
  "<think>" * 100_000,
  "\\boxed{" * 50_000,
  "}" * 50_000 + "\\boxed{A}",
  ("\\boxed{" + "x" * 10 + "\n") * 20_000,
  "answer" + " " * 200_000 + "is (A)",
  "Yes " * 100_000,
  "(" * 10_000 + "1" + ")" * 10_000,
  "\\boxed{" + "(" * 5_000 + "1+2+3" + ")" * 5_000 + "}",
  "```python\n" * 20_000,
  "<think>" + "a" * 500_000,
]


@pytest.mark.parametrize(
  "name,protocol",
  [
    ("gpqa_diamond", "study"),
    ("gpqa_diamond", "rsft"),
    ("mmlu_pro", "study"),
    ("mmlu_pro", "rsft"),
    ("ifeval", "study"),
    ("halueval_qa", "rsft"),
    ("countdown", "study"),
  ],
)
def test_hostile_responses_grade_fast_and_never_raise(name, protocol):
  bench = benchmarks.get(name, protocol)
  item = loaders.load_items(bench, BENCH, limit=1)[0]
  start = time.monotonic()
  grades = grading.grade(bench, [item] * len(HOSTILE), HOSTILE)
  assert time.monotonic() - start < 20
  assert all(g["score"] in (0.0, 1.0) and isinstance(g["status"], str) for g in grades)
  assert not any(g["status"].startswith("grader_error") for g in grades)  # handled, not merely caught


def test_countdown_nesting_is_refused_not_recursed():
  p = countdown.Puzzle((1, 2, 3), 6)
  assert countdown.check_expression("(" * 400 + "1+2+3" + ")" * 400, p) == (
    False,
    "malformed: parentheses nested deeper than 64",
  )
  assert countdown.check_expression("((1+2))+3", p) == (True, "ok")


def test_a_grader_error_is_a_scored_zero_with_its_reason(monkeypatch):
  bench = benchmarks.get("countdown")
  item = loaders.load_items(bench, BENCH, limit=1)[0]
  monkeypatch.setattr(countdown, "verify", lambda *a: 1 / 0)
  got = grading.grade(bench, [item], ["\\boxed{1+2}"])
  assert got[0]["score"] == 0.0 and got[0]["status"] == "grader_error: ZeroDivisionError"


def test_a_pathological_math_pair_costs_its_timeout_only():
  math_grader.grade(["1"], ["\\boxed{1}"], timeout=5)  # the pool is up
  golds = ["1"] * 8
  responses = ["\\boxed{1}"] * 6 + ["\\boxed{9^{9^{9^{9}}}}"] * 2
  start = time.monotonic()
  grades = math_grader.grade(golds, responses, timeout=3)
  # Never a hang: the two slow pairs cost their timeouts (side by side on 2 workers, or one after the other) plus
  # the start of fresh workers for the killed ones, with room for a loaded machine.
  assert time.monotonic() - start < 3 * 2 + 8
  assert [g.timed_out for g in grades] == [False] * 6 + [True] * 2 and [g.score for g in grades[:6]] == [1.0] * 6


def test_grader_errors_are_counted_in_the_summary():
  from rsft.evals import metrics

  samples = {0: [{"score": 0.0, "status": "grader_error: ValueError"}], 1: [{"score": 1.0, "status": "ok"}]}
  assert metrics.summarize(samples)["grader_error_rate"]["value"] == 0.5
  assert "grader_error_rate" not in metrics.summarize({1: [{"score": 1.0, "status": "ok"}]})
