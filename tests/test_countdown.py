"""Countdown: solver outputs verify; wrong, malformed and number-breaking answers are rejected; traces backtrack."""

import pytest

from rsft.tasks import countdown as cd


def test_generator_is_seeded_and_solvable():
  a, b = cd.generate(7, 50), cd.generate(7, 50)
  assert a == b and a != cd.generate(8, 50)
  assert all(3 <= len(p.numbers) <= 4 and 1 <= p.target <= 100 for p in a)


def test_verifier_accepts_every_solver_output():
  for p in cd.generate(0, 300):
    expr = cd.solve(p)
    assert cd.check_expression(expr, p) == (True, "ok"), (p, expr)
    assert cd.verify(f"<think>...</think> so \\boxed{{{expr}}}", p)


P = cd.Puzzle((3, 5, 7, 9), 24)


@pytest.mark.parametrize(
  "answer,reason",
  [
    ("3 * 5 + 7 - 9", "evaluates to 13"),  # wrong value
    ("(9 - 7) * (5 + 3) + 1", "uses"),  # extra number
    ("9 + 7 + 5 + 3 + 3", "uses"),  # number reused
    ("9 + 7 + 5", "uses"),  # number missing
    ("(3 + 5", "malformed"),
    ("3 + * 5 7 9", "malformed"),
    ("9 / (5 - 5) + 3 + 7", "malformed"),  # division by zero (and 5 reused)
    ("__import__('os').system('true')", "malformed"),
    ("3.5 + 7 + 9 + 5", "malformed"),
  ],
)
def test_verifier_rejects_with_a_reason(answer, reason):
  ok, why = cd.check_expression(answer, P)
  assert not ok and why.startswith(reason), why


def test_verifier_reads_the_last_box_and_latex_operators():
  good = "(9 + 3) \\times (7 - 5)"
  assert cd.verify(f"\\boxed{{3+5}} no wait \\boxed{{{good}}}", P)
  assert not cd.verify("the answer is 24", P)
  assert cd.last_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


def test_traces_backtrack_verify_and_box_a_correct_answer():
  rows = cd.rows(3, 60) + cd.rows(3, 60, "countdown3")
  assert any("Backtrack." in r["response"] for r in rows)
  for r in rows:
    p = cd.Puzzle(tuple(r["answer"]["numbers"]), r["answer"]["target"])
    assert r["response"].startswith("<think>\n") and "</think>" in r["response"]
    assert "Check:" in r["response"] and cd.verify(r["response"], p)
    assert f"[{', '.join(map(str, p.numbers))}], make {p.target} " in r["message"][0]["content"]


@pytest.mark.parametrize("level", sorted(cd.LEVELS))
def test_every_step_a_trace_states_is_true_arithmetic(level):
  """The traces teach arithmetic: each `a+b=v` they write holds, every intermediate a positive integer,
  and each comparison with the target (`v vs T yes|no`) is right."""
  import re

  steps = 0
  for r in cd.rows(5, 80, level):
    for a, op, b, v in re.findall(r"(?<![\d)])(\d+)([-+*/])(\d+)=(\d+)\b", r["response"].split("Check:")[0]):
      steps += 1
      assert cd._apply(cd.Fraction(int(a)), op, cd.Fraction(int(b))) == int(v), (a, op, b, v, r["response"])
    for v, t, verdict in re.findall(r"=(\d+) vs (\d+) (yes|no)", r["response"]):
      assert int(t) == r["answer"]["target"] and (v == t) == (verdict == "yes"), r["response"]
  assert steps > 400


def test_countdown3_checks_the_last_pair_out_loud():
  puzzles = cd.generate(0, 200, **cd.LEVELS["countdown3"])
  assert all(len(p.numbers) == 3 and max(p.numbers) <= 6 and 1 <= p.target <= 30 for p in puzzles)
  train = [cd.Puzzle(tuple(r["answer"]["numbers"]), r["answer"]["target"]) for r in cd.rows(0, 1500, "countdown3")]
  test = cd.generate(1, 150, **cd.LEVELS["countdown3"], split="test")
  assert len(set(test)) == 150 and not set(train) & set(test)  # distinct benchmark items, never trained on
  assert all(cd.held_out(p) for p in test) and not any(cd.held_out(p) for p in train)
  text = cd.trace(cd.Puzzle((6, 10, 4), 56))
  assert (
    "6+10=16, left 4, 16: 4+16=20 vs 56 no, 4*16=64 vs 56 no, 16-4=12 vs 56 no, 16/4=4 vs 56 no. Backtrack.\n"
    "6*10=60, left 4, 60: 4+60=64 vs 56 no, 4*60=240 vs 56 no, 60-4=56 vs 56 yes. Found.\n"
  ) in text
  assert cd.verify(text, cd.Puzzle((6, 10, 4), 56))
