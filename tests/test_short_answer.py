"""The demo base model's short-answer tasks: data, held-out benchmarks, and a grader that reads model text safely."""

import re

import pytest

from rsft.evals import benchmarks, grading, loaders
from rsft.tasks import countdown
from rsft.tasks import short_answer as sa


def test_rows_interleave_the_tasks_and_answer_directly():
  rows = sa.rows(0, 6)
  assert [r["data_source"] for r in rows] == ["arithmetic", "sorting"] * 3
  assert all(r["response"].endswith(f"\\boxed{{{r['answer']}}}") and "<think>" not in r["response"] for r in rows)
  assert (
    rows[0]["response"] == f"{rows[0]['message'][0]['content'].split('?')[0].removeprefix('What is ')}="
    f"{rows[0]['answer']}\n\n\\boxed{{{rows[0]['answer']}}}"
  )  # the equation, then the box
  assert sa.rows(0, 6) == rows and sa.rows(1, 6) != rows
  for q in sa.questions("arithmetic", 3, 200):
    a, op, b = re.fullmatch(r"What is (\d+)([-+*/])(\d+)\?", q["question"]).groups()
    assert int(q["answer"]) == eval(f"{int(a)} {op} {int(b)}") >= 0  # noqa: S307 (our own generated digits)
  for q in sa.questions("sorting", 3, 50):
    numbers = [int(x) for x in q["question"].removeprefix("Sort ").split(" from")[0].split(", ")]
    assert q["answer"] == ", ".join(map(str, sorted(numbers)))
  with pytest.raises(ValueError, match="unknown short-answer task 'spelling'"):
    sa.questions("spelling", 0, 1)


def test_arithmetic_is_the_arithmetic_countdown_traces_do():
  """Near transfer needs the same facts: every equation a countdown3 trace writes is one the base is taught."""
  taught = {q["shown"] for q in sa.questions("arithmetic", 0, 100_000)}
  written = {
    m.group(0)
    for r in countdown.rows(0, 300, "countdown3")
    for m in re.finditer(r"(?<![\d)])\d+[-+*/]\d+=\d+", r["response"])
  }
  assert len(written) > 100 and written <= taught


@pytest.mark.parametrize(
  "response,score,status",
  [
    ("\\boxed{3, 5, 12}", 1.0, "ok"),
    ("<think>\nSort them.\n</think>\nSo \\boxed{3,5,12}", 1.0, "ok"),  # thinking first, committed answer
    ("<think>\n\\boxed{3, 5, 12} and on and on", 0.0, "no_answer"),  # never closed: nothing committed
    ("\\boxed{12, 5, 3}", 0.0, "ok"),
    ("\\boxed{" + "1, " * 5000 + "}", 0.0, "ok"),  # hostile length: wrong, not slow
    ("no box at all", 0.0, "no_answer"),
  ],
)
def test_grader_reads_the_committed_boxed_answer(response, score, status):
  bench = benchmarks.get("sorting")
  item = bench.make_item(
    {"task": "sorting", "question": "Sort 12, 3, 5 from smallest to largest.", "answer": "3, 5, 12"}, 0
  )
  g = grading.grade(bench, [item], [response])[0]
  assert (g["score"], g["status"]) == (score, status)


def test_benchmarks_are_generated_and_held_out_by_seed():
  for name in sa.TASKS:
    items = loaders.load_items(benchmarks.get(name), "", limit=20)
    assert len(items) == 20 and items[0].prompt.endswith(sa.INSTRUCTION)
    assert [i.prompt for i in items] != [sa.prompt(q["question"]) for q in sa.questions(name, 0, 20)]
