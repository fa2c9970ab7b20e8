"""LiveCodeBench code generation: safe test decoding, the lcb_runner prompt, and grading in the sandbox.

Private tests ship as base64(zlib(pickle(json string))). Unpickling downloaded data can run arbitrary code, so
the decoder's Unpickler refuses every global: only plain literals (a pickled str) can come out. Grading follows
lcb_runner: the last fenced code block; stdin problems compare stripped output lines, then tokens as Decimals;
functional (LeetCode) problems call `Solution().<func_name>(*json args)` and compare with `==` after turning
tuples into lists; a sample passes only if every test passes, tests stop at the first failure, 6 s per test.
All tests of one sample run in one sandboxed process (as lcb_runner), under a global limit of
(per-test + 1) x tests + 5 seconds.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import secrets
import zlib
from collections.abc import Sequence
from typing import Any

from rsft.evals import sandbox
from rsft.evals.extract import strip_thinking
from rsft.evals.graders.code import CodeGrade, last_code_block


class _LiteralsOnly(pickle.Unpickler):
  def find_class(self, module: str, name: str):
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from untrusted test data")


def decode_tests(value: Any) -> list[dict[str, Any]]:
  """Test cases from a list, a JSON string, or LiveCodeBench's base64+zlib+pickle encoding (literals only)."""
  if isinstance(value, list):
    return value
  try:
    return json.loads(value)
  except (TypeError, ValueError):
    pass
  raw = _LiteralsOnly(io.BytesIO(zlib.decompress(base64.b64decode(value)))).load()
  return json.loads(raw) if isinstance(raw, str) else raw


def prompt(question: str, starter_code: str) -> str:
  """lcb_runner's code-generation prompt for instruction-tuned models."""
  text = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
          "generate a correct Python program that matches the specification and passes all tests.\n\n"
          f"Question: {question}\n\n")
  if starter_code:
    text += ("### Format: You will use the following starter code to write the solution to the problem and "
             f"enclose your code within delimiters.\n```python\n{starter_code}\n```\n\n")
  else:
    text += ("### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not "
             "directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
             "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
             "```python\n# YOUR CODE HERE\n```\n\n")
  return text + "### Answer: (use the provided format with backticks)\n\n"


_HARNESS = r'''
import contextlib, decimal, io, json, signal, sys
sys.setrecursionlimit(10000)
sys.set_int_max_str_digits(50000)
CODE, TESTS, FUNC, PER_TEST = __PAYLOAD__
real_stdout = sys.stdout

def alarm(*_):
    raise TimeoutError("test time limit")

signal.signal(signal.SIGALRM, alarm)

def same_stdout(got, want):
    got_lines = [l.strip() for l in got.strip().splitlines()]
    want_lines = [l.strip() for l in want.strip().splitlines()]
    if got_lines == want_lines:
        return True
    if len(got_lines) != len(want_lines):
        return False
    for a, b in zip(got_lines, want_lines):
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb):
            return False
        try:
            if [decimal.Decimal(x) for x in ta] != [decimal.Decimal(x) for x in tb]:
                return False
        except decimal.InvalidOperation:
            if ta != tb:
                return False
    return True

def listify(x):
    if isinstance(x, (list, tuple)):
        return [listify(v) for v in x]
    return x

results = []
for test in TESTS:
    ok = False
    try:
        signal.alarm(PER_TEST)
        if FUNC:
            ns = {"__name__": "solution"}
            exec(compile(CODE, "solution.py", "exec"), ns)
            target = getattr(ns["Solution"](), FUNC) if "Solution" in ns else ns[FUNC]
            args = [json.loads(line) for line in test["input"].split("\n") if line.strip()]
            ok = listify(target(*args)) == listify(json.loads(test["output"]))
        else:
            sys.stdin = io.StringIO(test["input"])
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    exec(compile(CODE, "solution.py", "exec"), {"__name__": "__main__"})
                except SystemExit:
                    pass
            ok = same_stdout(out.getvalue(), test["output"])
    except BaseException:
        ok = False
    finally:
        signal.alarm(0)
    results.append(ok)
    if not ok:
        break
real_stdout.write("\n__MARKER__" + json.dumps(results) + "\n")
'''


def harness(code: str, tests: list[dict[str, Any]], func_name: str | None, per_test: int, marker: str) -> str:
  return _HARNESS.replace("__PAYLOAD__", repr((code, tests, func_name or "", per_test))).replace("__MARKER__",
                                                                                                  marker)


def grade(items: Sequence[dict[str, Any]], responses: Sequence[str], per_test: int = 6,
          workers: int | None = None) -> list[CodeGrade]:
  """items: {"tests": [...], "func_name": str | None}; a sample scores 1 iff every test passes."""
  import concurrent.futures
  import os

  def one(item: dict[str, Any], response: str) -> CodeGrade:
    text = strip_thinking(response)
    code = last_code_block(text) if text else None
    if code is None:
      return CodeGrade(0.0, "no_code")
    limits = sandbox.Limits(seconds=(per_test + 1) * len(item["tests"]) + 5)
    marker = f"__LCB_{secrets.token_hex(8)}__"  # per run, so printed output cannot pose as the results line
    result = sandbox.run(harness(code, item["tests"], item.get("func_name"), per_test, marker), limits=limits)
    at = result.stdout.rfind(marker)
    if result.status == "timeout" or at < 0:
      return CodeGrade(0.0, "timeout" if result.status == "timeout" else "error", result.seconds)
    passed = json.loads(result.stdout[at + len(marker):].strip())
    ok = len(passed) == len(item["tests"]) and all(passed)
    return CodeGrade(float(ok), "ok" if ok else "failed", result.seconds)

  with concurrent.futures.ThreadPoolExecutor(workers or max(1, os.cpu_count() or 1)) as pool:
    return list(pool.map(one, items, responses))
