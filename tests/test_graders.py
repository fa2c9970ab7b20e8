"""Graders on real benchmark items, math equivalence, answer extraction, the code sandbox and the metrics."""

import itertools
import json
import math
import os
import time

import numpy as np
import pytest

from rsft.evals import extract, metrics, sandbox
from rsft.evals.graders import code
from rsft.evals.graders import math as math_grader

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "benchmarks")


def read(name):
  with open(os.path.join(BENCH, name)) as f:
    return [json.loads(line) for line in f]


EQUIVALENT = [
  ("\\frac{1}{2}", "The answer is $\\boxed{0.5}$."),
  ("\\frac{1}{2}", "\\boxed{\\dfrac12}"),
  ("\\frac{1}{2}", "\\boxed{1/2}"),
  ("3", "\\boxed{3.0}"),
  ("(3,4]", "\\boxed{(3, 4]}"),
  ("\\{1,2,3\\}", "\\boxed{\\{3,2,1\\}}"),
  ("x^3+3x-6", "\\boxed{3x+x^3-6}"),
  ("\\sqrt{51}", "\\boxed{\\sqrt{51}}"),
  ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}"),
  ("\\pi", "\\boxed{\\pi}"),
  ("10", "\\boxed{10\\text{ cm}}"),
  ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}"),
  ("-\\frac{\\pi}{6}", "\\boxed{-\\pi/6}"),
  ("(-2,1)", "first \\boxed{7}. Finally \\boxed{(-2,1)}"),
  ("90^\\circ", "\\boxed{90}"),
]
NOT_EQUIVALENT = [
  ("\\frac{1}{2}", "\\boxed{0.25}"),
  ("3", "\\boxed{4}"),
  ("(3,4]", "\\boxed{[3,4]}"),
  ("\\{1,2\\}", "\\boxed{\\{1,3\\}}"),
  ("x^3+3x-6", "\\boxed{x^3+3x+6}"),
  ("(-2,1)", "\\boxed{(1,-2)}"),
  ("5", "I think it is 5 but \\boxed{6}"),
  ("2", "no answer here"),
]


def test_math_equivalence_table_and_pathological_timeout():
  pairs = EQUIVALENT + NOT_EQUIVALENT + [("1", "\\boxed{9^{9^{9^{9}}}}")]
  start = time.monotonic()
  grades = math_grader.grade([g for g, _ in pairs], [r for _, r in pairs], timeout=4)
  assert time.monotonic() - start < 30  # the tower of powers is cut off, never hangs
  got = [g.score for g in grades]
  assert got[: len(EQUIVALENT)] == [1.0] * len(EQUIVALENT), [p for p, s in zip(EQUIVALENT, got) if s < 1]
  assert got[len(EQUIVALENT) : -1] == [0.0] * len(NOT_EQUIVALENT)
  assert grades[-1].timed_out and grades[-1].score == 0.0
  assert not any(g.timed_out for g in grades[:-1])


def test_math_on_real_items():
  items = read("math500.jsonl")[:40] + read("aime24.jsonl")[:5] + read("amc23.jsonl")[:5]
  golds = [str(it["answer"]) for it in items]
  right = [f"<think>Let me work.</think>Step by step... so the result is $\\boxed{{{g}}}$." for g in golds]
  others = [golds[(i + 7) % len(golds)] for i in range(len(golds))]  # another item's answer
  wrong = [f"<think>hmm</think>The result is $\\boxed{{{o}}}$." for g, o in zip(golds, others) if o != g]
  wrong_golds = [g for g, o in zip(golds, others) if o != g]
  grades = math_grader.grade(golds + wrong_golds, right + wrong, timeout=10)
  assert [g.score for g in grades[: len(golds)]] == [1.0] * len(golds)
  assert len(wrong) > 40 and sum(g.score for g in grades[len(golds) :]) == 0


def test_choice_letter_takes_the_last_answer_after_thinking():
  letters = "ABCD"
  assert extract.choice_letter("<think>Answer: B? no wait</think>So the answer is \\boxed{C}.", letters) == "C"
  assert extract.choice_letter("<think>a long thought that never closes, Answer: A", letters) is None
  assert extract.choice_letter("This is a tricky one. Answer: (D)", letters) == "D"
  assert extract.choice_letter("I pick a. Final answer: \\boxed{\\text{B}}", letters) == "B"
  assert extract.choice_letter("It is a hard question.", letters) is None  # the article "a" is not an answer
  assert extract.choice_letter("Answer: E", letters) is None  # not one of the item's letters
  assert extract.choice_letter("the answer is (H). Let me recheck... the answer is (J)", "ABCDEFGHIJ") == "J"
  assert extract.choice_letter("Reasoning...\nB", letters) == "B"
  assert extract.last_boxed("\\boxed{\\frac{1}{2}} then \\boxed{x^{2}}") == "x^{2}"
  assert extract.strip_thinking("<think>x</think>\nfinal") == "\nfinal"


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail():
  items = read("humaneval.jsonl")
  assert len(items) == 164
  chat = [f"<think>easy</think>Here you go:\n```python\n{it['prompt']}{it['canonical_solution']}```" for it in items]
  good = code.grade_humaneval(items, chat)
  assert sum(g.score for g in good) == 164, [it["task_id"] for it, g in zip(items, good) if g.score < 1]
  body_only = code.grade_humaneval(items[:10], [it["canonical_solution"] for it in items[:10]])
  assert sum(g.score for g in body_only) == 10  # base-model style continuation
  some = items[::4]  # every 4th task: a broken body must fail (41 tasks suffice; each costs two sandboxes)
  broken = code.grade_humaneval(some, [f"```python\n{it['prompt']}    return None\n```" for it in some])
  assert sum(g.score for g in broken) == 0
  assert code.grade_humaneval(items[:1], ["<think>never closes"])[0].status == "no_code"


@pytest.mark.parametrize(
  "name,program,expect,needs_namespaces",
  [
    ("network", "import socket\ns = socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 80))", "error", True),
    ("write outside cwd", "open('/tmp/rsft_sandbox_escape', 'w').write('x')", None, True),  # a private /tmp
    ("memory hog", "x = bytearray(8 << 30)", "error", False),
    ("infinite loop", "while True: pass", "timeout", False),
    ("fork bomb", "import os\nwhile True: os.fork()", "error", True),  # fork fails at the process cap
    ("kill the parent", "import os\nos.kill(os.getppid(), 9)\nos.kill(-1, 9)", None, True),
    ("big file", "open('f', 'w').write('x' * (32 << 20))", "error", False),
  ],
)
def test_sandbox_contains_escape_attempts(name, program, expect, needs_namespaces):
  if needs_namespaces and not sandbox.run("pass").contained:
    pytest.skip("bubblewrap (the sandbox) is unavailable on this machine")
  result = sandbox.run(program, limits=sandbox.Limits(seconds=2, memory_bytes=1 << 30))
  if expect:
    assert result.status == expect, (result.status, result.stderr[-300:])
  assert not os.path.exists("/tmp/rsft_sandbox_escape")
  assert sandbox.run("print(6 * 7)").stdout == "42\n"  # and this process is still alive


def test_pass_at_k_matches_the_closed_form_and_enumeration():
  for n, c, k in [(10, 3, 1), (10, 3, 5), (5, 0, 2), (5, 5, 3), (16, 4, 8)]:
    closed = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)
    hits = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(hits, k))
    assert metrics.pass_at_k(n, c, k) == pytest.approx(np.mean([any(s) for s in subsets]), abs=1e-12)


def test_summary_metrics():
  samples = {
    i: [{"score": float(j < i), "answer": str(j < i), "tokens": 10 * j, "truncated": j == 2} for j in range(3)]
    for i in range(4)
  }
  out = metrics.summarize(samples, ks=(1, 2))
  assert out["avg@3"]["value"] == pytest.approx(np.mean([0, 1 / 3, 2 / 3, 1]))
  assert out["maj@3"]["value"] == pytest.approx(0.5)  # items 2 and 3 have a correct majority
  assert out["pass@2"]["value"] == pytest.approx(np.mean([0, metrics.pass_at_k(3, 1, 2), 1, 1]))
  assert out["truncation_rate"]["value"] == pytest.approx(1 / 3)
  assert out["avg@3"]["ci_low"] <= out["avg@3"]["value"] <= out["avg@3"]["ci_high"]
  assert out["response_tokens"]["value"] == pytest.approx(10)


def test_extra_metrics_average_floats_and_pool_lists():
  samples = {
    0: [{"score": 1.0, "extra": {"loose": 1.0, "inst": [1.0, 1.0, 1.0]}}],
    1: [{"score": 0.0, "extra": {"loose": 0.0, "inst": [0.0]}}],
  }
  out = metrics.summarize(samples)
  assert out["loose"]["value"] == pytest.approx(0.5)
  assert out["inst"]["value"] == pytest.approx(0.75)  # 3 of 4 instructions, pooled (not the mean of 1 and 0)
  assert out["inst"]["ci_low"] <= 0.75 <= out["inst"]["ci_high"]


@pytest.mark.parametrize("protocol", ["study", "rsft"])
@pytest.mark.parametrize("name", ["gpqa_diamond", "mmlu_pro", "halueval_qa"])
def test_choice_and_yes_no_graders_on_real_items(name, protocol):
  from rsft.evals import benchmarks, grading, loaders

  if name == "halueval_qa":
    protocol = "rsft"  # the raw release is local; the study's *_samples are not
  bench = benchmarks.get(name, protocol)
  items = loaders.load_items(bench, BENCH, limit=20)
  if name == "halueval_qa":
    right = [f"<think>Maybe yes? Let me check.</think>{it.gold.capitalize()}" for it in items]
    wrong = [f"<think>{it.gold}</think>{'No' if it.gold == 'yes' else 'Yes'}." for it in items]
  else:
    right = [f"<think>Answer: Z</think>The answer is \\boxed{{{it.gold}}}." for it in items]
    other = lambda it: it.extra["letters"][(it.extra["letters"].index(it.gold) + 1) % len(it.extra["letters"])]
    wrong = [f"<think>It is {it.gold}.</think>Answer: ({other(it)})" for it in items]
  assert [g["score"] for g in grading.grade(bench, items, right)] == [1.0] * len(items)
  assert [g["score"] for g in grading.grade(bench, items, wrong)] == [0.0] * len(items)
