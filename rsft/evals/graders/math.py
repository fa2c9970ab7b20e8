"""Math answers: math-verify (gold first) in a process pool whose workers are killed on a wall-clock timeout.

math-verify's own timeouts use signal.alarm, which breaks outside the main thread, and with them off a
pathological sympy simplification hangs forever (verl PR #5839, opencompass PR #2478). So each comparison runs
in a pebble worker with the inner timeouts disabled and an outer timeout: a timeout kills the worker, scores 0
and is counted, and never stalls the run. As in the study, the response is parsed whole (math-verify takes the
rightmost \\boxed{}); a gold answer is parsed as it is when it holds "boxed" and inside \\boxed{} otherwise
(math_eval/utils: the study's rule, which also makes every short gold parse).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class MathGrade:
  score: float  # 1.0 correct, 0.0 otherwise (timeouts included)
  answer: str | None  # the extracted answer as math-verify printed it (for maj@k)
  timed_out: bool = False


def _anchored(gold: str) -> str:
  gold = str(gold)
  return gold if "boxed" in gold else f"\\boxed{{{gold}}}"


def grade_one(gold: str, response: str) -> tuple[float, str | None]:
  """In-process comparison (no timeout): use `grade` for untrusted input."""
  import logging

  import math_verify  # local: sympy + antlr are heavy, only workers need them

  logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" warnings: the pool times out

  gold_parsed = math_verify.parse(_anchored(gold), parsing_timeout=None)
  pred = math_verify.parse(response, parsing_timeout=None)
  answer = str(pred[0]) if pred else None  # the sympy form, so 0.5 and 1/2 vote together in maj@k
  if not gold_parsed or not pred:
    return 0.0, answer
  return float(math_verify.verify(gold_parsed, pred, timeout_seconds=None)), answer


def _grade_chunk(pairs: list[tuple[str, str]]) -> list[tuple[float, str | None]]:
  return [grade_one(g, r) for g, r in pairs]


_POOLS: dict[int, Any] = {}


def _pool(workers: int):
  """One spawn-started pool per size, kept for the process (worker start-up imports sympy: ~1 s)."""
  import pebble

  pool = _POOLS.get(workers)
  if pool is None or not pool.active:
    # spawn, not fork: the caller is a multithreaded JAX process, and forking it can deadlock.
    pool = _POOLS[workers] = pebble.ProcessPool(max_workers=workers, context=multiprocessing.get_context("spawn"))
    atexit.register(pool.stop)
  return pool


def grade(
  golds: Sequence[str], responses: Sequence[str], timeout: float = 10.0, workers: int | None = None
) -> list[MathGrade]:
  """Grades pairs in parallel, one task per pair, so a pathological pair costs at most `timeout` seconds of wall
  clock (its worker is killed then) and never holds up the pairs sent with it."""
  if len(golds) != len(responses):
    raise ValueError(f"{len(golds)} gold answers but {len(responses)} responses")
  pairs = [(str(g), r) for g, r in zip(golds, responses)]
  if not pairs:
    return []
  workers = workers or max(1, min(len(pairs), os.cpu_count() or 1))
  pool = _pool(workers)
  futures = [pool.schedule(_grade_chunk, ([p],), timeout=timeout) for p in pairs]
  out: list[MathGrade] = []
  for future in futures:
    try:
      out.append(MathGrade(*future.result()[0]))
    except concurrent.futures.TimeoutError:
      out.append(MathGrade(0.0, None, timed_out=True))
    except Exception:  # noqa: BLE001 - a crash in sympy on one response scores that response 0
      out.append(MathGrade(0.0, None))
  return out
