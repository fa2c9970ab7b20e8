"""LiveCodeBench code generation: safe test decoding, the two protocols' prompts, and grading in the sandbox.

Private tests ship as base64(zlib(pickle(json string))). Unpickling downloaded data can run arbitrary code, so
the decoder's Unpickler refuses every global: only plain literals (a pickled str) can come out.

`grade_study` reproduces the study's evalchemy grader (LiveCodeBench/livecodebench_utils.py): the last
```` ```python\n ```` block anywhere in the raw text (thinking included) through post_process_code; private
tests only; stdin programs run with exec(code, {}) and must print exactly the expected text after strip(); a
functional answer is the top-level function named before the first "(" of the code, called with the harness's
own per-line input parsing and compared with `!=`; exit()/quit() are unavailable and sys.exit fails the test.

`grade` (eval.protocol=rsft) follows lcb_runner: the last fenced code block; stdin problems compare stripped output lines, then tokens as Decimals;
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


# evalchemy LiveCodeBench/eval_instruct.py: prefix + question + suffix, concatenated with no separator.
STUDY_PREFIX = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
                "generate a correct Python program that matches the specification and passes all tests.")
STUDY_STDIN = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
               "the sample inputs). Enclose your code within delimiters as follows: ```python\n# YOUR CODE HERE\n```. "
               "Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output "
               "to STDOUT.")
STUDY_FUNCTIONAL = ("Do not directly test on the sample inputs. Enclose your code within delimiters as follows: "
                    "```python\n# YOUR CODE HERE\n```. Return the function body without invoking it at the final "
                    "solution.")


def study_code(response: str) -> str | None:
  """The last ```python\n...``` block (non-greedy, anywhere), through post_process_code; None without one
  (the harness then runs the response's last character, which cannot pass)."""
  blocks, at = [], 0
  while True:
    start = response.find("```python\n", at)
    if start < 0:
      break
    end = response.find("```", start + len("```python\n"))
    if end < 0:
      break
    blocks.append(response[start + len("```python\n"):end])
    at = end + 3
  if not blocks:
    return None
  code = blocks[-1].split("</code>")[0].replace("```python", "").replace("# YOUR CODE HERE", "")
  return code.split("```")[0].replace("<code>", "").strip()


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


_STUDY_HARNESS = r'''
import builtins, copy, io, json, sys
sys.setrecursionlimit(10000)
CODE, TESTS, IS_STDIN = __PAYLOAD__
real_stdout = sys.stdout
builtins.exit = builtins.quit = None   # the harness's reliability_guard

def parse_value(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None

def functional_inputs(text):
    inputs = []
    if "=" in text:
        for part in (text.split(",") if "," in text else [text]):
            key, value = map(str.strip, part.split("="))
            number = parse_value(value)
            inputs.append(value.strip('"') if number is None else number)
        return inputs
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line.startswith('"') and line.endswith('"'):
            inputs.append(line.strip('"'))
        elif line.startswith("[") and line.endswith("]"):
            inputs.append(json.loads(line))
        else:
            number = parse_value(line)
            inputs.append(line if number is None else number)
    return inputs

def run_stdin(test):
    want = test["output"].strip()
    if want.endswith("-"):
        want = want[:want.rfind("-")].rstrip()
    out = io.StringIO()
    sys.stdout, sys.stdin = out, io.StringIO(test["input"])
    try:
        exec(('__name__ = "__main__"\n' + CODE) if '__name__ == "__main__"' in CODE else CODE, {})
        return out.getvalue().strip() == want
    finally:
        sys.stdout = real_stdout

def run_functional(test):
    args = functional_inputs(test["input"])
    want = test["output"].strip()
    try:
        want = json.loads(want)
    except ValueError:
        pass
    namespace = {}
    exec(CODE, namespace)
    name = CODE.split("(")[0].split()[-1]
    sys.stdout = io.StringIO()
    try:
        return not (namespace[name](*copy.deepcopy(args)) != want)
    except Exception:
        return False
    finally:
        sys.stdout = real_stdout

results = []
functional = bool(TESTS) and TESTS[0].get("testtype") == "functional"
for test in TESTS:
    try:
        ok = bool(run_functional(test) if functional else run_stdin(test))
    except Exception:
        ok = False
    except BaseException:   # SystemExit ends the harness's test process: this test and the rest fail
        sys.stdout = real_stdout
        results.append(False)
        break
    results.append(ok)
    if not ok:
        break
real_stdout.write("\n__MARKER__" + json.dumps(results) + "\n")
'''


def grade_study(items: Sequence[dict[str, Any]], responses: Sequence[str], per_test: int = 6,
                workers: int | None = None) -> list[CodeGrade]:
  """items: {"tests": private tests, "is_stdin"}; one sandboxed process per sample with the harness's global
  limit (per_test + 1) x tests + 5 seconds; a sample passes iff it has tests and passes all of them."""
  def one(item: dict[str, Any], response: str) -> CodeGrade:
    code = study_code(response)
    if not code or not item["tests"]:
      return CodeGrade(0.0, "no_code" if not code else "no_tests")
    return _run(_STUDY_HARNESS, repr((code, item["tests"], item.get("is_stdin", True))), len(item["tests"]),
                per_test)

  return _parallel(one, items, responses, workers)


def _run(template: str, payload: str, tests: int, per_test: int) -> CodeGrade:
  """Runs a harness template that prints MARKER + a JSON list of per-test results; all must pass. The marker is
  random per run and goes into the template before the payload, so the model's code can neither read it from
  its own source nor print a results line of its own."""
  marker = f"__LCB_{secrets.token_hex(8)}__"
  limits = sandbox.Limits(seconds=(per_test + 1) * tests + 5)
  result = sandbox.run(template.replace("__MARKER__", marker).replace("__PAYLOAD__", payload), limits=limits)
  at = result.stdout.rfind(marker)
  if result.status == "timeout" or at < 0:
    return CodeGrade(0.0, "timeout" if result.status == "timeout" else "error", result.seconds)
  passed = json.loads(result.stdout[at + len(marker):].strip())
  ok = len(passed) == tests and all(passed)
  return CodeGrade(float(ok), "ok" if ok else "failed", result.seconds)


def _parallel(one, items, responses, workers):
  import concurrent.futures
  import os
  with concurrent.futures.ThreadPoolExecutor(workers or max(1, os.cpu_count() or 1)) as pool:
    return list(pool.map(one, items, responses))


def grade(items: Sequence[dict[str, Any]], responses: Sequence[str], per_test: int = 6,
          workers: int | None = None) -> list[CodeGrade]:
  """items: {"tests": [...], "func_name": str | None}; a sample scores 1 iff every test passes."""
  def one(item: dict[str, Any], response: str) -> CodeGrade:
    text = strip_thinking(response)
    code = last_code_block(text) if text else None
    if code is None:
      return CodeGrade(0.0, "no_code")
    return _run(_HARNESS, repr((code, item["tests"], item.get("func_name") or "", per_test)), len(item["tests"]),
                per_test)

  return _parallel(one, items, responses, workers)
