"""Grading throughput: math-verify in the killable process pool vs serial in-process, and the code sandbox's
per-program overhead vs a bare `python -c` subprocess, in one run.

  python bench/grading_throughput.py [--items=200] [--programs=40] [--workers=N]
  python bench/grading_throughput.py --smoke     # 4 math items, 2 programs: the whole path in seconds

Math: MATH500 gold answers against correct boxed responses (every comparison runs the full math-verify path).
Both sides grade the same two items untimed first: the pool starts its workers (reported as start-up, once per
process), the serial side imports math-verify and sympy. Code: HumanEval canonical solutions, sandboxed
(namespaces + rlimits + fresh interpreter) vs `python -I -c`, each after one untimed program.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--items", type=int, default=200, help="MATH500 items")
  parser.add_argument("--programs", type=int, default=40, help="HumanEval programs")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--smoke", action="store_true", help="4 math items, 2 programs")
  args = parser.parse_args()
  if args.smoke:
    args.items, args.programs = 4, 2
  missing = [n for n in ("math500.jsonl", "humaneval.jsonl") if not os.path.exists(os.path.join(BENCH, n))]
  if missing:
    print(f"skipped: bench/grading_throughput.py reads {', '.join(missing)} from {os.path.abspath(BENCH)}")
    return
  from rsft.evals import sandbox
  from rsft.evals.graders import code
  from rsft.evals.graders import math as math_grader

  rows = [json.loads(line) for line in open(os.path.join(BENCH, "math500.jsonl"))][: args.items]
  golds = [str(r["answer"]) for r in rows]
  responses = [f"Reasoning...\nSo the answer is $\\boxed{{{g}}}$." for g in golds]
  start = time.perf_counter()
  math_grader.grade(golds[:2], responses[:2], workers=args.workers)  # starts the (persistent) pool
  startup_s = time.perf_counter() - start
  [math_grader.grade_one(g, r) for g, r in zip(golds[:2], responses[:2])]  # imports math-verify here too
  start = time.perf_counter()
  pooled = math_grader.grade(golds, responses, workers=args.workers)
  pool_s = time.perf_counter() - start
  start = time.perf_counter()
  serial = [math_grader.grade_one(g, r)[0] for g, r in zip(golds, responses)]
  serial_s = time.perf_counter() - start
  assert [g.score for g in pooled] == serial
  print(
    f"math-verify, {len(golds)} MATH500 items: pool ({args.workers} workers) {len(golds) / pool_s:.1f} items/s, "
    f"serial in-process {len(golds) / serial_s:.1f} items/s, ratio pool / serial {serial_s / pool_s:.2f}; pool "
    f"start-up (once per process) {startup_s:.1f} s; all correct: {sum(serial) == len(golds)}"
  )

  items = [json.loads(line) for line in open(os.path.join(BENCH, "humaneval.jsonl"))][: args.programs]
  programs = [
    it["prompt"] + it["canonical_solution"] + "\n" + it["test"] + f"\ncheck({it['entry_point']})\n" for it in items
  ]
  limits = sandbox.Limits(seconds=10)
  sandbox.run(programs[0], limits=limits)
  start = time.perf_counter()
  results = [sandbox.run(p, limits=limits) for p in programs]
  boxed_s = (time.perf_counter() - start) / len(programs)
  bare = lambda p: subprocess.run([sys.executable, "-I", "-c", p], capture_output=True, timeout=30)
  bare(programs[0])
  start = time.perf_counter()
  for p in programs:
    bare(p)
  bare_s = (time.perf_counter() - start) / len(programs)
  print(
    f"code sandbox, {len(programs)} HumanEval programs one at a time: {1e3 * boxed_s:.0f} ms/program sandboxed "
    f"(contained: {results[0].contained}), {1e3 * bare_s:.0f} ms bare `python -I -c`, overhead "
    f"{1e3 * (boxed_s - bare_s):.0f} ms, ratio sandboxed / bare {boxed_s / bare_s:.2f}; passed "
    f"{sum(r.status == 'ok' for r in results)}/{len(programs)}"
  )
  start = time.perf_counter()
  graded = code.run_programs(programs * 4, limits, workers=args.workers)
  print(f"  parallel ({args.workers} workers): {len(graded) / (time.perf_counter() - start):.1f} programs/s")
  # HumanEval as graded: candidate and checker in two sandboxes, every call relayed (unforgeable verdicts).
  responses = [f"```python\n{it['prompt']}{it['canonical_solution']}```" for it in items]
  start = time.perf_counter()
  he = code.grade_humaneval(items, responses, workers=1)
  one_s = (time.perf_counter() - start) / len(items)
  start = time.perf_counter()
  code.grade_humaneval(items * 2, responses * 2, workers=args.workers)
  print(
    f"HumanEval grading (two sandboxes, calls relayed): {1e3 * one_s:.0f} ms/sample one at a time, "
    f"{2 * len(items) / (time.perf_counter() - start):.1f} samples/s with {args.workers} workers; passed "
    f"{sum(g.score for g in he):.0f}/{len(items)}"
  )


if __name__ == "__main__":
  main()
