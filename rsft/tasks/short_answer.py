"""Short-answer tasks: the skills the CPU demo's base model learns before long-CoT SFT, and the out-of-domain
benchmarks that watch them afterwards.

The study asks what SFT on long chain-of-thought data does to what a base model could already do. The demo's base
is trained from scratch, so it is given such abilities first: `arithmetic` (one operation on small numbers, the
facts Countdown traces compute with: near transfer) and `sorting` (a few numbers in increasing order, which also
teaches the model to copy numbers from its prompt: far transfer). The base answers directly, with no reasoning, in a
`\\boxed{}`; the SFT data never shows these prompts. Rows use the study's schema (`message`, `response`, `answer`).
"""

from __future__ import annotations

import random
from typing import Any

from rsft.tasks import countdown

TASKS = ("arithmetic", "sorting")
INSTRUCTION = "Put your final answer within \\boxed{}."
MAX_ANSWER_CHARS = 256  # a model's boxed answer longer than any gold: wrong without parsing it


def _arithmetic(rng: random.Random) -> tuple[str, str, str]:
  """One operation as the demo's Countdown traces compute it (level countdown3): on two of the puzzle's numbers,
  or on one of them and the result of a first operation; the result a positive integer, as in the game. A few
  hundred facts, which the base memorises."""
  top = countdown.LEVELS["countdown3"]["max_number"]
  x, y = rng.randint(1, top), rng.randint(1, top)
  if rng.random() < 0.5:  # a first operation's result as one operand
    first = [v for v in (x + y, x * y, abs(x - y), max(x, y) // min(x, y) if max(x, y) % min(x, y) == 0 else 0) if v]
    x, y = rng.choice(first), rng.randint(1, top)
  ops = ["+", "*"] + (["-"] if x != y else []) + (["/"] if max(x, y) % min(x, y) == 0 else [])
  op = rng.choice(ops)
  a, b = (max(x, y), min(x, y)) if op in "-/" else (x, y) if rng.random() < 0.5 else (y, x)
  value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
  return f"What is {a}{op}{b}?", str(value), f"{a}{op}{b}={value}"


def _sorting(rng: random.Random) -> tuple[str, str, str]:
  numbers = [rng.randint(1, 50) for _ in range(rng.randint(3, 5))]
  return f"Sort {', '.join(map(str, numbers))} from smallest to largest.", ", ".join(map(str, sorted(numbers))), ""


MAKERS = {"arithmetic": _arithmetic, "sorting": _sorting}


def questions(task: str, seed: int, count: int) -> list[dict[str, Any]]:
  """`count` questions of one task, deterministic in (task, seed): {"task", "question", "answer", "shown"} (the
  line the base writes before its boxed answer, or "")."""
  if task not in MAKERS:
    raise ValueError(f"unknown short-answer task {task!r}; known: {', '.join(TASKS)}")
  rng = random.Random(f"{task}:{seed}")
  return [dict(zip(("task", "question", "answer", "shown"), (task, *MAKERS[task](rng)))) for _ in range(count)]


def prompt(question: str) -> str:
  return f"{question}\n{INSTRUCTION}"


def response(answer: str, shown: str = "") -> str:
  """The base's answer: direct, no thinking (an arithmetic answer states its equation, `4*6=24`: the form in
  which Countdown's traces compute)."""
  return f"{shown}\n\n\\boxed{{{answer}}}" if shown else f"\\boxed{{{answer}}}"


def normalize(answer: str) -> str:
  """Spaces dropped (`1,2, 3` == `1, 2, 3`): the comparison is of values, not of layout."""
  return "".join(answer.split())


def correct(boxed: str | None, gold: str) -> bool:
  return boxed is not None and len(boxed) <= MAX_ANSWER_CHARS and normalize(boxed) == normalize(gold)


def rows(seed: int, count: int, tasks: tuple[str, ...] = TASKS) -> list[dict[str, Any]]:
  """Training rows, the tasks interleaved (count split evenly)."""
  per_task = [questions(t, seed, -(-count // len(tasks))) for t in tasks]
  mixed = [q for group in zip(*per_task) for q in group][:count]
  return [
    {
      "message": [{"role": "user", "content": prompt(q["question"])}],
      "response": response(q["answer"], q["shown"]),
      "answer": q["answer"],
      "data_source": q["task"],
    }
    for q in mixed
  ]
