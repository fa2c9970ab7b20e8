"""Code answers: extract the program from a response and run it against the item's tests in the sandbox.

HumanEval (openai human-eval semantics: the item's `check(candidate)` asserts, 3 s per sample). The candidate
program is prompt + completion: for a chat response the completion is the last fenced code block after the
thinking; when that block defines the entry point itself it follows the prompt (which brings the imports and
helpers; the prompt's stub is then redefined), otherwise it is taken as the function body, as for base models.

The verdict cannot be forged. human-eval runs the asserts in the candidate's own process and reads its exit code,
so `os._exit(0)` from an atexit hook, an excepthook or the candidate itself passes. Here the candidate runs in one
sandbox and serves calls; the item's check() runs in another, where the entry point is a stub that forwards each
call through rsft and gets back plain data (rsft.evals.graders.wire). Only the checker says "pass", after check()
returned; the candidate's process can end, print or patch whatever it likes without reaching it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from rsft.evals import sandbox
from rsft.evals.extract import strip_thinking
from rsft.evals.graders import wire

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)


def code_blocks(text: str) -> list[str]:
  """The fenced blocks, python-tagged ones only when there are any."""
  blocks = _FENCE.findall(text)
  python = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
  return python or [code for _, code in blocks]


def last_code_block(text: str) -> str | None:
  """The last fenced block, preferring python-tagged ones; None without a fence."""
  blocks = code_blocks(text)
  return blocks[-1] if blocks else None


def candidate_program(item: dict[str, Any], response: str) -> str | None:
  """prompt + the response's code (module docstring); None when thinking never closed."""
  text = strip_thinking(response)
  if text is None:
    return None
  defines = re.compile(rf"^\s*def\s+{re.escape(item['entry_point'])}\s*\(", re.M)
  blocks = code_blocks(text)
  # The last block that defines the entry point (an "example usage" block after it is not the answer), else the
  # last block, else the text itself as a bare continuation (base-model style).
  code = next((b for b in reversed(blocks) if defines.search(b)), blocks[-1] if blocks else text)
  if defines.search(code):
    return item["prompt"] + "\n" + code
  return item["prompt"] + code


def humaneval_program(item: dict[str, Any], response: str) -> str | None:
  """The whole human-eval check program in one piece (what the reference harness runs; for reading only)."""
  body = candidate_program(item, response)
  return None if body is None else f"{body}\n\n{item['test']}\n\ncheck({item['entry_point']})\n"


# The candidate's side: defines the candidate, then answers one call per input line with plain data.
_SERVER = r"""
import json, os, sys
__WIRE__
CODE, ENTRY = __PAYLOAD__
out, calls = sys.stdout, sys.stdin  # the channel; the candidate's own stdin is empty and its prints go nowhere
sys.stdin, sys.stdout = open(os.devnull), open(os.devnull, "w")
def send(message):  # a leading newline ends whatever the program left unterminated on the channel
    out.write("\n__MARKER__" + json.dumps(message) + "\n")
    out.flush()
namespace = {"__name__": "__main__"}
try:
    exec(compile(CODE, "candidate.py", "exec"), namespace)
    function = namespace[ENTRY]
    send({"ready": True})
except BaseException as e:
    send({"ready": False, "error": type(e).__name__})
    raise SystemExit(0)
for line in calls:
    request = json.loads(line)
    try:
        value = function(*untag(request["args"]), **dict(untag(request["kwargs"])))
        send({"id": request["id"], "value": tagged(value)})
    except Exception as e:
        send({"id": request["id"], "error": type(e).__name__})
"""

# The checker's side: the item's prompt (its helpers) and test, with the entry point forwarding every call.
_CHECKER = r"""
import json, os, sys
__WIRE__
PROMPT, TEST, ENTRY = __PAYLOAD__
out, answers, calls = sys.stdout, sys.stdin, [0]
sys.stdin, sys.stdout = open(os.devnull), open(os.devnull, "w")
def send(message):  # a leading newline ends whatever the program left unterminated on the channel
    out.write("\n__MARKER__" + json.dumps(message) + "\n")
    out.flush()
def candidate(*args, **kwargs):
    calls[0] += 1
    send({"id": calls[0], "args": tagged(list(args)), "kwargs": tagged(kwargs)})
    reply = json.loads(answers.readline() or "{}")
    if "value" not in reply:
        raise RuntimeError("the candidate raised " + str(reply.get("error", "nothing back")))
    return untag(reply["value"])
namespace = {"__name__": "__main__"}
exec(compile(PROMPT, "prompt.py", "exec"), namespace)
namespace[ENTRY] = candidate
exec(compile(TEST, "test.py", "exec"), namespace)
try:
    namespace["check"](candidate)
    send({"done": "pass"})
except BaseException as e:
    send({"done": "fail", "error": type(e).__name__})
"""


def _program(template: str, marker: str, payload: tuple) -> str:
  return template.replace("__MARKER__", marker).replace("__WIRE__", wire.SOURCE).replace("__PAYLOAD__", repr(payload))


def _humaneval_one(item: dict[str, Any], response: str, seconds: float) -> CodeGrade:
  code = candidate_program(item, response)
  if code is None:
    return CodeGrade(0.0, "no_code")
  marker = f"__HE_{secrets.token_hex(8)}__"
  limits = sandbox.Limits(seconds=seconds + 2)  # the checker's own start-up on top of the candidate's budget
  start = time.monotonic()
  deadline = start + seconds + 1
  with (
    sandbox.Process(_program(_SERVER, marker, (code, item["entry_point"])), marker, limits) as server,
    sandbox.Process(
      _program(_CHECKER, marker, (item["prompt"], item["test"], item["entry_point"])), marker, limits
    ) as checker,
  ):
    ready = json.loads(server.receive(deadline) or "{}")
    if not ready.get("ready"):
      return CodeGrade(0.0, "error", time.monotonic() - start)
    while True:
      message = checker.receive(deadline)
      if message is None:
        return CodeGrade(0.0, "timeout" if time.monotonic() >= deadline else "error", time.monotonic() - start)
      message = json.loads(message)
      if "done" in message:
        ok = message["done"] == "pass"
        return CodeGrade(float(ok), "ok" if ok else "failed", time.monotonic() - start)
      reply = server.receive(deadline) if server.send(json.dumps(message)) else None
      checker.send(reply if reply is not None else json.dumps({"id": message.get("id"), "error": "no reply"}))


@dataclasses.dataclass
class CodeGrade:
  score: float
  status: str  # ok | error | timeout | no_code
  seconds: float = 0.0


def run_programs(programs: Sequence[str | None], limits: sandbox.Limits, workers: int | None = None) -> list[CodeGrade]:
  """Runs programs in parallel (threads: each program is its own process); exit 0 scores 1."""

  def one(program: str | None) -> CodeGrade:
    if program is None:
      return CodeGrade(0.0, "no_code")
    result = sandbox.run(program, limits=limits)
    return CodeGrade(float(result.status == "ok"), result.status, result.seconds)

  workers = workers or max(1, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(one, programs))


def grade_humaneval(
  items: Sequence[dict[str, Any]], responses: Sequence[str], seconds: float = 3.0, workers: int | None = None
) -> list[CodeGrade]:
  """Each sample: candidate and checker in two sandboxes, calls relayed here (module docstring)."""

  def one(item: dict[str, Any], response: str) -> CodeGrade:
    try:
      return _humaneval_one(item, response, seconds)
    except sandbox.SandboxUnavailable:
      raise
    except Exception as e:  # noqa: BLE001 - a grader never stops a sweep: this sample fails, with its reason
      return CodeGrade(0.0, f"error: {type(e).__name__}")

  with concurrent.futures.ThreadPoolExecutor(workers or max(1, os.cpu_count() or 1)) as pool:
    return list(pool.map(one, items, responses))
