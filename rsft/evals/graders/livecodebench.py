"""LiveCodeBench code generation: safe test decoding, the two protocols' prompts, and grading in the sandbox.

Private tests ship as base64(zlib(pickle(json string))). Unpickling downloaded data can run arbitrary code, so
the decoder's Unpickler refuses every global: only plain literals (a pickled str) can come out.

`grade_study` reproduces the study's evalchemy grader (LiveCodeBench/livecodebench_utils.py): the last
```` ```python\n ```` block anywhere in the raw text (thinking included) through post_process_code (no block: the
response's last character, as the harness runs it); private tests only; the harness's reliability_guard (exit,
quit, os/shutil/subprocess functions and a few modules disabled); stdin programs run with exec(code, {}) and must
print exactly the expected text after strip(); a functional answer is the top-level function named before the
first "(" of the code, called with the harness's own per-line input parsing and compared with `!=`; sys.exit fails.

`grade` (eval.protocol=rsft) follows lcb_runner: the last fenced code block after thinking; stdin problems compare
stripped output lines, then tokens as Decimals; functional (LeetCode) problems call `Solution().<func_name>(*json
args)` and compare with `==` after turning tuples into lists; 6 s per test.

Both run every test of a sample in one sandboxed process under the global limit (per-test + 1) x tests + 5 s,
as the harnesses do. The process gets the test *inputs* only and reports, per test, what the program printed or
returned (a return value as a type-tagged JSON tree); the expected outputs stay here and the comparison happens
here. Generated code can therefore read or rewrite anything in its own process without learning an expected
output or forging a verdict. A sample passes only if every test passes.
"""

from __future__ import annotations

import base64
import decimal
import io
import json
import pickle
import secrets
import zlib
from collections.abc import Sequence
from typing import Any

from rsft.evals import sandbox
from rsft.evals.extract import strip_thinking
from rsft.evals.graders import wire
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
STUDY_PREFIX = (
  "You are an expert Python programmer. You will be given a question (problem specification) and will "
  "generate a correct Python program that matches the specification and passes all tests."
)
STUDY_STDIN = (
  "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
  "the sample inputs). Enclose your code within delimiters as follows: ```python\n# YOUR CODE HERE\n```. "
  "Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output "
  "to STDOUT."
)
STUDY_FUNCTIONAL = (
  "Do not directly test on the sample inputs. Enclose your code within delimiters as follows: "
  "```python\n# YOUR CODE HERE\n```. Return the function body without invoking it at the final "
  "solution."
)


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
    blocks.append(response[start + len("```python\n") : end])
    at = end + 3
  if not blocks:
    return None
  code = blocks[-1].split("</code>")[0].replace("```python", "").replace("# YOUR CODE HERE", "")
  return code.split("```")[0].replace("<code>", "").strip()


def prompt(question: str, starter_code: str) -> str:
  """lcb_runner's code-generation prompt for instruction-tuned models."""
  text = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests.\n\n"
    f"Question: {question}\n\n"
  )
  if starter_code:
    text += (
      "### Format: You will use the following starter code to write the solution to the problem and "
      f"enclose your code within delimiters.\n```python\n{starter_code}\n```\n\n"
    )
  else:
    text += (
      "### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not "
      "directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
      "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
      "```python\n# YOUR CODE HERE\n```\n\n"
    )
  return text + "### Answer: (use the provided format with backticks)\n\n"


# The sandboxed side: runs CODE on each input and reports outputs, never verdicts. A template: __MARKER__ (random
# per run) goes in before __PAYLOAD__ (the code and inputs), so the code cannot hold the marker in advance.
_CHILD = r"""
import builtins, copy, io, json, signal, sys
CODE, INPUTS, FUNCTIONAL, STUDY, FUNC, PER_TEST = __PAYLOAD__
real_stdout = sys.stdout
MARK = "__MARKER__"

def emit(i, status, out=None):
    real_stdout.write("\n" + MARK + json.dumps({"i": i, "status": status, "out": out}) + "\n")
    real_stdout.flush()

__WIRE__

def number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None

def study_inputs(text):  # livecodebench_utils.prepare_test_input_output_functional
    inputs = []
    if "=" in text:
        for part in (text.split(",") if "," in text else [text]):
            key, value = map(str.strip, part.split("="))
            n = number(value)
            inputs.append(value.strip('"') if n is None else n)
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
            n = number(line)
            inputs.append(line if n is None else n)
    return inputs

def guard():  # the harness's reliability_guard
    import os, shutil, subprocess
    os.environ["OMP_NUM_THREADS"] = "1"
    builtins.exit = builtins.quit = builtins.help = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod",
                 "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None

def run_one(text):
    if STUDY and not FUNCTIONAL:
        sys.stdin = io.StringIO(text)
        exec(('__name__ = "__main__"\n' + CODE) if '__name__ == "__main__"' in CODE else CODE, {})
        return None
    if STUDY:
        args = study_inputs(text)
        namespace = {}
        exec(CODE, namespace)
        return namespace[CODE.split("(")[0].split()[-1]](*copy.deepcopy(args))
    if not FUNCTIONAL:
        sys.stdin = io.StringIO(text)
        try:
            exec(compile(CODE, "solution.py", "exec"), {"__name__": "__main__"})
        except SystemExit:
            pass
        return None
    namespace = {"__name__": "solution"}
    exec(compile(CODE, "solution.py", "exec"), namespace)
    target = getattr(namespace["Solution"](), FUNC) if "Solution" in namespace else namespace[FUNC]
    return target(*[json.loads(line) for line in text.split("\n") if line.strip()])

if STUDY:
    guard()
else:
    sys.setrecursionlimit(10000)
    sys.set_int_max_str_digits(50000)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("test time limit")))
for i, text in enumerate(INPUTS):
    out = io.StringIO()
    sys.stdout = out
    try:
        if not STUDY:
            signal.alarm(PER_TEST)
        value = run_one(text)
        record = ("ok", tagged(value) if FUNCTIONAL else out.getvalue())
    except Exception:
        record = ("error", None)
    except BaseException:  # SystemExit / KeyboardInterrupt: the harness's test process ends here
        record = ("exit", None)
    finally:
        if not STUDY:
            signal.alarm(0)
        sys.stdout = real_stdout
    emit(i, *record)
    if record[0] != "ok":
        break
"""


def _records(stdout: str, marker: str) -> dict[int, dict[str, Any]]:
  """Per-test records from the child's stdout: the first well-formed record for each test index."""
  out: dict[int, dict[str, Any]] = {}
  for line in stdout.split("\n"):  # whole lines only: one pass, whatever the program printed
    if not line.startswith(marker):
      continue
    try:
      record = json.loads(line[len(marker) :])
    except ValueError:
      continue
    if isinstance(record, dict) and isinstance(record.get("i"), int):
      out.setdefault(record["i"], record)
  return out


def _run(
  code: str, tests: list[dict[str, Any]], functional: bool, study: bool, func_name: str | None, per_test: int, passes
) -> CodeGrade:
  """Runs the child on the tests' inputs; `passes(test, record)` judges each test here, in the parent."""
  marker = f"__LCB_{secrets.token_hex(8)}__"
  payload = repr((code, [str(t.get("input", "")) for t in tests], functional, study, func_name or "", per_test))
  expected_bytes = sum(len(str(t.get("output", ""))) for t in tests)
  limits = sandbox.Limits(
    seconds=(per_test + 1) * len(tests) + 5, output_bytes=max(1 << 20, 16 * expected_bytes + (64 << 10) * len(tests))
  )  # tagged form
  program = _CHILD.replace("__MARKER__", marker).replace("__WIRE__", wire.SOURCE).replace("__PAYLOAD__", payload)
  result = sandbox.run(program, limits=limits)
  records = _records(result.stdout, marker)
  for i, test in enumerate(tests):
    record = records.get(i)
    if record is None or record.get("status") != "ok" or not passes(test, record.get("out")):
      status = "timeout" if result.status == "timeout" and record is None else "failed"
      return CodeGrade(0.0, status, result.seconds)
  return CodeGrade(1.0, "ok", result.seconds)


def _study_stdin_passes(test: dict[str, Any], out: Any) -> bool:
  want = str(test["output"]).strip()
  if want.endswith("-"):  # prepare_test_input_output_std
    want = want[: want.rfind("-")].rstrip()
  return isinstance(out, str) and out.strip() == want


def _study_functional_passes(test: dict[str, Any], out: Any) -> bool:
  want = str(test["output"]).strip()
  try:
    want = json.loads(want)
  except ValueError:
    pass
  return not (wire.untag(out) != want)


def grade_study(
  items: Sequence[dict[str, Any]], responses: Sequence[str], per_test: int = 6, workers: int | None = None
) -> list[CodeGrade]:
  """items: {"tests": private tests, "is_stdin"}; the harness's execution in the sandbox, judged here."""

  def one(item: dict[str, Any], response: str) -> CodeGrade:
    code = study_code(response)
    if code is None:
      code = response[-1:]  # the harness's fallback: has_code returns the string, [-1] its last character
    if not response or not item["tests"]:
      return CodeGrade(0.0, "no_code" if not response else "no_tests")
    functional = item["tests"][0].get("testtype") == "functional"
    passes = _study_functional_passes if functional else _study_stdin_passes
    return _run(code, item["tests"], functional, True, None, per_test, passes)

  return _parallel(one, items, responses, workers)


def _same_stdout(got: str, want: str) -> bool:
  """lcb_runner: stripped lines equal, else token by token as Decimals."""
  got_lines = [line.strip() for line in got.strip().splitlines()]
  want_lines = [line.strip() for line in want.strip().splitlines()]
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


def _listify(x: Any) -> Any:
  return [_listify(v) for v in x] if isinstance(x, (list, tuple)) else x


def _parallel(one, items, responses, workers):
  import concurrent.futures
  import os

  def safe(item, response):
    try:
      return one(item, response)
    except sandbox.SandboxUnavailable:
      raise  # no sandbox is a setup error, not a failed sample
    except Exception as e:  # noqa: BLE001 - a grader never stops a sweep: this sample fails, with its reason
      return CodeGrade(0.0, f"error: {type(e).__name__}")

  with concurrent.futures.ThreadPoolExecutor(workers or max(1, os.cpu_count() or 1)) as pool:
    return list(pool.map(safe, items, responses))


def grade(
  items: Sequence[dict[str, Any]], responses: Sequence[str], per_test: int = 6, workers: int | None = None
) -> list[CodeGrade]:
  """items: {"tests": [...], "func_name": str | None}; lcb_runner's semantics (eval.protocol=rsft)."""

  def one(item: dict[str, Any], response: str) -> CodeGrade:
    text = strip_thinking(response)
    code = last_code_block(text) if text else None
    if code is None:
      return CodeGrade(0.0, "no_code")
    functional = bool(item.get("func_name"))

    def passes(test: dict[str, Any], out: Any) -> bool:
      if not functional:
        return isinstance(out, str) and _same_stdout(out, str(test["output"]))
      try:
        return _listify(wire.untag(out)) == _listify(json.loads(test["output"]))
      except ValueError:
        return False

    return _run(code, item["tests"], functional, False, item.get("func_name"), per_test, passes)

  return _parallel(one, items, responses, workers)
