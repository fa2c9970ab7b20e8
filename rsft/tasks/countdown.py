"""Countdown: reach a target from 3-4 numbers with + - * /, each number used exactly once, every intermediate
result a positive integer (the game's rules).

The study's procedural-transfer arm trains on Countdown long-CoT traces (paper.md §2). This module makes such
data offline: a seeded puzzle generator, an exact solver (depth-first search over pairs, Fractions), a verifier of
`\\boxed{expression}` answers with a small recursive-descent parser (never `eval`), and a trace writer that
narrates the search, including the branches that fail and the backtracking, and checks the answer before boxing
it. Rows use the study's parquet schema: `message` (chat turns), `response`, `answer`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections import Counter
from fractions import Fraction

OPS = ("+", "-", "*", "/")


@dataclasses.dataclass(frozen=True)
class Puzzle:
  numbers: tuple[int, ...]
  target: int


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
  if op == "+":
    return a + b
  if op == "-":
    return a - b
  if op == "*":
    return a * b
  return None if b == 0 else a / b


def _fmt(x: Fraction) -> str:
  text = str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
  return f"({text})" if x < 0 else text


def _moves(items: list[tuple[Fraction, str]]):
  """Every move of the game's rules on two remaining items (the result a positive integer; commutative and
  equal-operand duplicates once), in canonical order, with the resulting item list."""
  for i in range(len(items)):
    for j in range(len(items)):
      if i == j:
        continue
      for op in OPS:
        if i > j and (op in "+*" or items[i][0] == items[j][0]):
          continue  # one order is enough
        value = _apply(items[i][0], op, items[j][0])
        if value is None or value.denominator != 1 or value <= 0:
          continue
        expr = f"({items[i][1]} {op} {items[j][1]})"
        rest = [items[k] for k in range(len(items)) if k not in (i, j)]
        yield (items[i], op, items[j], value), rest + [(value, expr)]


def _search(items: list[tuple[Fraction, str]], target: Fraction) -> str | None:
  if len(items) == 1:
    return items[0][1] if items[0][0] == target else None
  for _, nxt in _moves(items):
    found = _search(nxt, target)
    if found:
      return found
  return None


def _strip_outer(expr: str) -> str:
  if expr.startswith("(") and expr.endswith(")"):
    depth = 0
    for k, ch in enumerate(expr):
      depth += ch == "("
      depth -= ch == ")"
      if depth == 0 and k < len(expr) - 1:
        return expr
    return expr[1:-1]
  return expr


def solve(p: Puzzle) -> str | None:
  """An expression using every number exactly once that evaluates to the target, or None."""
  found = _search([(Fraction(n), str(n)) for n in p.numbers], Fraction(p.target))
  return _strip_outer(found) if found else None


# Named difficulty levels: the generator's ranges. `countdown` is the study's shape (3-4 numbers, targets to 100);
# `countdown3` (three numbers 1-9) is what a tiny model learns on 2 CPU cores in minutes (the demo).
LEVELS = {
  "countdown": dict(min_numbers=3, max_numbers=4, max_number=50, max_target=100),
  "countdown3": dict(min_numbers=3, max_numbers=3, max_number=6, max_target=30),
}


def held_out(p: Puzzle) -> bool:
  """One puzzle in ten (by a hash of its sorted numbers and target) is reserved for evaluation: training rows never
  hold one, whatever their seed, so a small level's held-out score is never a memorised answer."""
  key = f"{sorted(p.numbers)}:{p.target}".encode()
  return hashlib.sha256(key).digest()[0] % 10 == 0


def generate(
  seed: int,
  count: int,
  min_numbers: int = 3,
  max_numbers: int = 4,
  max_number: int = 50,
  max_target: int = 100,
  split: str = "any",
) -> list[Puzzle]:
  """Solvable puzzles, deterministic in `seed` (targets come from a random expression over the numbers); `split`
  "train" skips held-out puzzles, "test" keeps only those (each once: they are benchmark items), "any" both."""
  if split not in ("any", "train", "test"):
    raise ValueError(f"split={split!r}; expected any, train or test")
  rng = random.Random(seed)
  out, seen = [], set()
  for _ in range(1000 * count + 100_000):  # bounded: a small level has few distinct held-out puzzles
    if len(out) == count:
      return out
    numbers = tuple(rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers)))
    items = [Fraction(n) for n in numbers]
    rng.shuffle(items)
    value = items[0]
    for x in items[1:]:
      value = _apply(value, rng.choice(OPS), x) or value + x
    if value.denominator != 1 or not 1 <= value <= max_target:
      continue
    p = Puzzle(numbers, int(value))
    if (split == "any" or held_out(p) == (split == "test")) and not (split == "test" and p in seen) and solve(p):
      out.append(p)
      seen.add(p)
  if len(out) < count:
    raise ValueError(f"found {len(out)} of the {count} puzzles asked for (split {split}): the level has too few")
  return out


# ---------------------------------------------------------------------------------------------- verifier

_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


class _Parser:
  """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := INT | '(' expr ')'."""

  def __init__(self, text: str):
    self.tokens, pos = [], 0
    text = text.replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/").replace("×", "*")
    while pos < len(text.rstrip()):
      m = _TOKEN.match(text, pos)
      if not m:
        raise ValueError(f"unexpected character {text[pos:].strip()[:1]!r}")
      self.tokens.append(m.group(1))
      pos = m.end()
    self.pos, self.numbers, self.depth = 0, [], 0

  def parse(self) -> Fraction:
    value = self.expr()
    if self.pos != len(self.tokens):
      raise ValueError(f"trailing {self.tokens[self.pos]!r}")
    return value

  def peek(self) -> str | None:
    return self.tokens[self.pos] if self.pos < len(self.tokens) else None

  def take(self) -> str:
    if self.pos >= len(self.tokens):
      raise ValueError("unexpected end")
    self.pos += 1
    return self.tokens[self.pos - 1]

  def expr(self) -> Fraction:
    value = self.term()
    while self.peek() in ("+", "-"):
      op = self.take()
      value = _apply(value, op, self.term())
    return value

  def term(self) -> Fraction:
    value = self.factor()
    while self.peek() in ("*", "/"):
      op = self.take()
      value = _apply(value, op, self.factor())
      if value is None:
        raise ZeroDivisionError("division by zero")
    return value

  def factor(self) -> Fraction:
    tok = self.take()
    if tok == "(":
      self.depth += 1
      if self.depth > MAX_NESTING:  # model text: bounded recursion, never a RecursionError
        raise ValueError(f"parentheses nested deeper than {MAX_NESTING}")
      value = self.expr()
      if self.take() != ")":
        raise ValueError("missing )")
      self.depth -= 1
      return value
    if tok.isdigit():
      self.numbers.append(int(tok))
      return Fraction(int(tok))
    raise ValueError(f"unexpected {tok!r}")


def last_boxed(text: str) -> str | None:
  """Content of the last \\boxed{...}, with nested braces."""
  start = text.rfind("\\boxed{")
  if start < 0:
    return None
  depth, k = 0, start + len("\\boxed")
  for j in range(k, len(text)):
    depth += text[j] == "{"
    depth -= text[j] == "}"
    if depth == 0:
      return text[k + 1 : j]
  return None


MAX_NESTING = 64  # parentheses; a puzzle of six numbers needs a handful
MAX_EXPRESSION_CHARS = 2000


def check_expression(expr: str, p: Puzzle) -> tuple[bool, str]:
  """(ok, reason): the expression parses, uses exactly the puzzle's numbers and equals the target."""
  expr = expr.split("=")[0]  # "3 + 5 = 8" style answers: judge the left side
  if len(expr) > MAX_EXPRESSION_CHARS:
    return False, f"malformed: longer than {MAX_EXPRESSION_CHARS} characters"
  try:
    parser = _Parser(expr)
    value = parser.parse()
  except (ValueError, ZeroDivisionError) as e:
    return False, f"malformed: {e}"
  if Counter(parser.numbers) != Counter(p.numbers):
    return False, f"uses {sorted(parser.numbers)}, puzzle numbers are {sorted(p.numbers)}"
  if value != p.target:
    return False, f"evaluates to {_fmt(value)}, target is {p.target}"
  return True, "ok"


def verify(response: str, p: Puzzle) -> bool:
  """True iff the response's last \\boxed{} holds a correct expression."""
  boxed = last_boxed(response)
  return boxed is not None and check_expression(boxed, p)[0]


# ---------------------------------------------------------------------------------------------- traces


def prompt(p: Puzzle) -> str:
  """Short on purpose: the demo pays for every prompt token in each training row and gets no loss from it."""
  nums = ", ".join(map(str, p.numbers))
  return (
    f"Using the numbers [{nums}], make {p.target} with +, -, *, / and each number once.\n"
    "Put your final answer within \\boxed{}."
  )


def trace(p: Puzzle, max_failed: int = 3) -> str:
  """A long-CoT response: tries first moves in canonical order; with two numbers left, computes every move on them
  and compares each result with the target out loud (`4+7=11 vs 18 no`), backtracking when none hits. With more
  numbers left it judges the rest at once and, after `max_failed` failures, skips ahead to a move that works. Ends
  by verifying and boxing.

  Compact (`4+7=11`, no spaces) because a tiny model learns from decisions, not filler: ~30% fewer tokens than
  `4 + 7 = 11`-style prose. The explicit `vs T` puts the target next to each result, so stopping is a comparison of
  neighbouring tokens rather than a search back to the prompt (bench/countdown_probe.py measures whether a
  checkpoint makes it)."""
  target = Fraction(p.target)
  lines = [f"<think>\nNeed {p.target} from {', '.join(map(str, p.numbers))}."]
  failed = 0
  moves = list(_moves([(Fraction(n), str(n)) for n in p.numbers]))
  for (a, op, b, value), rest in moves:
    head = f"{_step(a, op, b, value)}, left {_fmt_items(rest)}"
    path = _search(rest, target)
    if len(rest) > 2 and path is None:
      lines.append(f"{head}: no way to {p.target}. Backtrack.")
      failed += 1
      if failed <= max_failed:
        continue
      (a, op, b, value), rest = next(m for m in moves if _search(m[1], target))  # keep traces bounded
      path = _search(rest, target)
      head = f"{_step(a, op, b, value)}, left {_fmt_items(rest)}"
    while len(rest) > 2:
      lines.append(head + ".")
      (a, op, b, value), rest = next(m for m in _moves(rest) if _search(m[1], target))
      head = f"{_step(a, op, b, value)}, left {_fmt_items(rest)}"
    lines.append(f"{head}: {_last_pair(rest, target)}")
    if path is None:
      continue
    expr = _strip_outer(path).replace(" ", "")
    ok, _ = check_expression(expr, p)
    assert ok, (p, expr)
    lines.append(f"Check: {expr}={p.target} uses {', '.join(map(str, sorted(p.numbers)))}. Correct.\n</think>")
    lines.append(f"\\boxed{{{expr}}}")
    return "\n".join(lines)
  raise ValueError(f"{p} has no solution")


def _step(a: tuple[Fraction, str], op: str, b: tuple[Fraction, str], value: Fraction) -> str:
  return f"{_fmt(a[0])}{op}{_fmt(b[0])}={_fmt(value)}"


def _fmt_items(items: list[tuple[Fraction, str]]) -> str:
  return ", ".join(_fmt(v) for v, _ in items)


def _last_pair(items: list[tuple[Fraction, str]], target: Fraction) -> str:
  """Every move on the last two numbers up to the one that hits the target, each compared with the target."""
  done = []
  for (a, op, b, value), _ in _moves(items):
    hit = value == target
    done.append(f"{_step(a, op, b, value)} vs {_fmt(target)} {'yes' if hit else 'no'}")
    if hit:
      return f"{', '.join(done)}. Found."
  return f"{', '.join(done)}. Backtrack."


def rows(seed: int, count: int, level: str = "countdown") -> list[dict]:
  """Training rows of a level in the study's schema."""
  out = []
  for p in generate(seed, count, **LEVELS[level], split="train"):
    out.append(
      {
        "message": [{"role": "user", "content": prompt(p)}],
        "response": trace(p),
        "answer": {"numbers": list(p.numbers), "target": p.target},
        "data_source": level,
      }
    )
  return out
