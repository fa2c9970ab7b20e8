"""Grading throughput: math-verify in the killable process pool vs serial in-process, and the code sandbox's
per-program overhead vs a bare `python -c` subprocess, in one run.

  python bench/grading_throughput.py [--items=200] [--workers=N]

Math: MATH500 gold answers against correct boxed responses (every comparison runs the full math-verify path).
Code: HumanEval canonical solutions, sandboxed (namespaces + rlimits + fresh interpreter) vs `python -I -c`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--items", type=int, default=200)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  args = parser.parse_args()
  from rsft.evals import sandbox
  from rsft.evals.graders import code
  from rsft.evals.graders import math as math_grader

  rows = [json.loads(line) for line in open(os.path.join(BENCH, "math500.jsonl"))][:args.items]
  golds = [str(r["answer"]) for r in rows]
  responses = [f"Reasoning...\nSo the answer is $\\boxed{{{g}}}$." for g in golds]
  start = time.perf_counter()
  math_grader.grade(golds[:2], responses[:2], workers=args.workers)  # starts the (persistent) pool
  startup_s = time.perf_counter() - start
  start = time.perf_counter()
  pooled = math_grader.grade(golds, responses, workers=args.workers)
  pool_s = time.perf_counter() - start
  start = time.perf_counter()
  serial = [math_grader.grade_one(g, r)[0] for g, r in zip(golds, responses)]
  serial_s = time.perf_counter() - start
  assert [g.score for g in pooled] == serial
  print(f"math-verify, {len(golds)} MATH500 items: pool ({args.workers} workers) {len(golds) / pool_s:.1f} items/s, "
        f"serial in-process {len(golds) / serial_s:.1f} items/s, ratio {serial_s / pool_s:.2f}; pool start-up "
        f"(once per process) {startup_s:.1f} s; all correct: {sum(serial) == len(golds)}")

  items = [json.loads(line) for line in open(os.path.join(BENCH, "humaneval.jsonl"))][:40]
  programs = [it["prompt"] + it["canonical_solution"] + "\n" + it["test"] + f"\ncheck({it['entry_point']})\n"
              for it in items]
  start = time.perf_counter()
  results = [sandbox.run(p, limits=sandbox.Limits(seconds=10)) for p in programs]
  boxed_s = (time.perf_counter() - start) / len(programs)
  start = time.perf_counter()
  for p in programs:
    subprocess.run([sys.executable, "-I", "-c", p], capture_output=True, timeout=30)
  bare_s = (time.perf_counter() - start) / len(programs)
  print(f"code sandbox, {len(programs)} HumanEval programs one at a time: {1e3 * boxed_s:.0f} ms/program sandboxed "
        f"(contained: {results[0].contained}), {1e3 * bare_s:.0f} ms bare `python -I -c`, overhead "
        f"{1e3 * (boxed_s - bare_s):.0f} ms ({boxed_s / bare_s:.2f}x); passed {sum(r.status == 'ok' for r in results)}"
        f"/{len(programs)}")
  start = time.perf_counter()
  graded = code.run_programs(programs * 4, sandbox.Limits(seconds=10), workers=args.workers)
  print(f"  parallel ({args.workers} workers): {len(graded) / (time.perf_counter() - start):.1f} programs/s")
  # HumanEval as graded: candidate and checker in two sandboxes, every call relayed (unforgeable verdicts).
  responses = [f"```python\n{it['prompt']}{it['canonical_solution']}```" for it in items]
  start = time.perf_counter()
  he = code.grade_humaneval(items, responses, workers=1)
  one_s = (time.perf_counter() - start) / len(items)
  start = time.perf_counter()
  code.grade_humaneval(items * 2, responses * 2, workers=args.workers)
  print(f"HumanEval grading (two sandboxes, calls relayed): {1e3 * one_s:.0f} ms/sample one at a time, "
        f"{2 * len(items) / (time.perf_counter() - start):.1f} samples/s with {args.workers} workers; passed "
        f"{sum(g.score for g in he):.0f}/{len(items)}")


if __name__ == "__main__":
  main()
