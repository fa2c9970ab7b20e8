"""Scores (0-1) and extracted answers for a benchmark's responses, by the benchmark's grader name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rsft.evals.benchmarks import Benchmark, Item
from rsft.evals.extract import choice_letter, strip_thinking
from rsft.evals.graders import code, ifeval
from rsft.evals.graders import math as math_grader
from rsft.tasks import countdown


def yes_no(response: str) -> str | None:
  """The last standalone Yes / No after the thinking (HaluEval)."""
  text = strip_thinking(response)
  found = re.findall(r"\b(yes|no)\b", text or "", flags=re.I)
  return found[-1].capitalize() if found else None


def grade(bench: Benchmark, items: Sequence[Item], responses: Sequence[str], *, math_timeout: float = 10.0,
          code_seconds: float = 3.0) -> list[dict[str, Any]]:
  """One {"score", "answer", "status"[, "extra"]} per (item, response) pair."""
  if len(items) != len(responses):
    raise ValueError(f"{len(items)} items but {len(responses)} responses")
  if bench.grader == "math":
    grades = math_grader.grade([it.gold for it in items], responses, timeout=math_timeout)
    return [dict(score=g.score, answer=g.answer, status="timeout" if g.timed_out else "ok") for g in grades]
  if bench.grader == "choice":
    letters = [choice_letter(r, it.extra["letters"]) for it, r in zip(items, responses)]
    return [dict(score=float(a == it.gold), answer=a, status="ok" if a else "no_answer")
            for it, a in zip(items, letters)]
  if bench.grader == "humaneval":
    grades = code.grade_humaneval([it.extra for it in items], responses, seconds=code_seconds)
    return [dict(score=g.score, answer=None, status=g.status) for g in grades]
  if bench.grader == "ifeval":
    out = []
    for it, r in zip(items, responses):
      text = strip_thinking(r)  # an unclosed think block leaves no answer: every instruction fails
      g = ifeval.grade(it.extra["instruction_ids"], it.extra["kwargs"], text or "")
      out.append(dict(score=g.pop("prompt_strict"), answer=None, status="ok" if text else "no_answer", extra=g))
    return out
  if bench.grader == "yes_no":
    answers = [yes_no(r) for r in responses]
    return [dict(score=float(a == it.gold), answer=a, status="ok" if a else "no_answer")
            for it, a in zip(items, answers)]
  if bench.grader == "countdown":
    out = []
    for it, r in zip(items, responses):
      puzzle = countdown.Puzzle(tuple(it.extra["numbers"]), it.extra["target"])
      text = strip_thinking(r)
      answer = countdown.last_boxed(text) if text else None
      out.append(dict(score=float(bool(text) and countdown.verify(text, puzzle)), answer=answer,
                      status="ok" if answer else "no_answer"))
    return out
  raise ValueError(f"benchmark {bench.name}: unknown grader {bench.grader!r}")
