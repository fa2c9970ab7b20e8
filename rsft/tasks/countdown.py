"""Countdown: reach a target from 3-4 numbers with + - * /, each number used exactly once.

The study's procedural-transfer arm trains on Countdown long-CoT traces (paper.md §2). This module makes such
data offline: a seeded puzzle generator, an exact solver (depth-first search over pairs, Fractions), a verifier of
`\\boxed{expression}` answers with a small recursive-descent parser (never `eval`), and a trace writer that
narrates the search, including the branches that fail and the backtracking, and checks the answer before boxing
it. Rows use the study's parquet schema: `message` (chat turns), `response`, `answer`.
"""

from __future__ import annotations

import dataclasses
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
  """Every (i, j, op) combination of two remaining items, and the resulting item list."""
  for i in range(len(items)):
    for j in range(len(items)):
      if i == j:
        continue
      for op in OPS:
        if op in "+*" and i > j:
          continue  # commutative: one order is enough
        value = _apply(items[i][0], op, items[j][0])
        if value is None:
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


def generate(seed: int, count: int, min_numbers: int = 3, max_numbers: int = 4, max_number: int = 50,
             max_target: int = 100) -> list[Puzzle]:
  """Solvable puzzles, deterministic in `seed` (targets come from a random expression over the numbers)."""
  rng = random.Random(seed)
  out = []
  while len(out) < count:
    numbers = tuple(rng.randint(1, max_number) for _ in range(rng.randint(min_numbers, max_numbers)))
    items = [Fraction(n) for n in numbers]
    rng.shuffle(items)
    value = items[0]
    for x in items[1:]:
      value = _apply(value, rng.choice(OPS), x) or value + x
    if value.denominator == 1 and 1 <= value <= max_target and solve(Puzzle(numbers, int(value))):
      out.append(Puzzle(numbers, int(value)))
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
      return text[k + 1:j]
  return None


MAX_NESTING = 64          # parentheses; a puzzle of six numbers needs a handful
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
  nums = ", ".join(map(str, p.numbers))
  return (f"Using the numbers [{nums}], create an equation that equals {p.target}. You can use +, -, *, / and "
          f"each number exactly once.\nNumbers: [{nums}]\nTarget: {p.target}\n"
          "Please reason step by step, and put your final answer within \\boxed{}.")


def trace(p: Puzzle, seed: int, max_failed: int = 3) -> str:
  """A long-CoT response: tries first moves in a seeded order, says why failing ones fail, backtracks, then
  follows a move that works to the end, verifies the expression and boxes it."""
  rng = random.Random(seed)
  target = Fraction(p.target)
  items = [(Fraction(n), str(n)) for n in p.numbers]
  moves = list(_moves(items))
  rng.shuffle(moves)
  lines = [f"<think>\nWe need {p.target} from {', '.join(map(str, p.numbers))}, using each number once."]
  failed = 0
  for (a, op, b, value), rest in moves:
    path = _search(rest, target)
    left = ", ".join(_fmt(v) for v, _ in rest)
    lines.append(f"Try {_fmt(a[0])} {op} {_fmt(b[0])} = {_fmt(value)}. Left: {left}.")
    if path is None:
      lines.append(f"From {left} there is no way to reach {p.target}. Backtrack.")
      failed += 1
      if failed > max_failed:  # keep traces bounded: skip ahead to a move that works
        good = [m for m in moves if _search(m[1], target)]
        (a, op, b, value), rest = good[0]
        path = _search(rest, target)
        lines.append(f"Try {_fmt(a[0])} {op} {_fmt(b[0])} = {_fmt(value)}. "
                     f"Left: {', '.join(_fmt(v) for v, _ in rest)}.")
      else:
        continue
    lines += _narrate_path(rest, target)
    expr = _strip_outer(path)
    ok, _ = check_expression(expr, p)
    assert ok, (p, expr)
    lines.append(f"Check: {expr} = {p.target}, and it uses {', '.join(map(str, sorted(p.numbers)))} once each. "
                 "Correct.\n</think>")
    lines.append(f"The equation is {expr} = {p.target}.\n\n\\boxed{{{expr}}}")
    return "\n".join(lines)
  raise ValueError(f"{p} has no solution")


def _narrate_path(items: list[tuple[Fraction, str]], target: Fraction) -> list[str]:
  """The combination steps of one solution from `items`."""
  lines = []
  while len(items) > 1:
    for (a, op, b, value), rest in _moves(items):
      if _search(rest, target):
        left = ", ".join(_fmt(v) for v, _ in rest)
        lines.append(f"Then {_fmt(a[0])} {op} {_fmt(b[0])} = {_fmt(value)}. Left: {left}.")
        items = rest
        break
  lines.append(f"That reaches {_fmt(target)}.")
  return lines


def rows(seed: int, count: int, **kw) -> list[dict]:
  """Training rows in the study's schema."""
  out = []
  for k, p in enumerate(generate(seed, count, **kw)):
    out.append({"message": [{"role": "user", "content": prompt(p)}], "response": trace(p, seed * 1_000_003 + k),
                "answer": {"numbers": list(p.numbers), "target": p.target}, "data_source": "countdown"})
  return out
