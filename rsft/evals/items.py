"""Benchmark items (the user turn + the gold), one builder per benchmark and protocol.

The `study` builders reproduce, character for character, the prompts of the study's released harness
(Nebularaid2000/rethink_sft_generalization, `evaluation/`); each names its file. The chat template is applied
later, by the caller, with no system prompt. `rsft` builders are the defended deviations listed in
docs/eval_protocol.md.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import random
import string
from collections.abc import Callable
from typing import Any

from rsft.tasks import countdown, short_answer


@dataclasses.dataclass
class Item:
  id: str
  prompt: str  # the user turn
  gold: Any  # what the grader compares with
  category: str | None = None  # for per-category breakdowns
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # grader inputs (letters, tests, ...)


def stable_seed(*parts: Any) -> int:
  """A seed from the item's content: the same in every process."""
  return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")


# ---- math (math_eval/math_eval_budget.py, utils/utils.py) -------------------------------------------------------

MATH_SUFFIX = "\n Please reason step by step, and put your final answer within \\boxed{}."  # sic: space after \n


def math(gold_column: str):
  """The study parses the `solution` column (MATH500: the worked solution, whose last box math-verify reads);
  `answer` is the short final answer."""

  def build(row: dict[str, Any], index: int) -> Item:
    problem = row.get("problem") or row.get("question")
    gold = row.get(gold_column)
    if isinstance(gold, list):  # the harness takes a list-valued gold's first element
      gold = gold[0] if gold else None
    if gold in (None, ""):  # aime25 / amc23 ship no solution column, grade-mode items may carry either
      gold = row.get("answer") if row.get("answer") not in (None, "") else row.get("solution")
    return Item(
      str(row.get("unique_id") or row.get("id") or index), problem + MATH_SUFFIX, str(gold), row.get("subject")
    )

  return build


# ---- multiple choice --------------------------------------------------------------------------------------------


def _letters(k: int) -> str:
  return string.ascii_uppercase[:k]


def _gpqa_order(question: str) -> list[int]:
  """The harness shuffles [correct, wrong1, wrong2, wrong3] with random.Random(42 + hash(Question) % 10000).
  Python salts str hashes per process, so the harness's order changes from run to run; with PYTHONHASHSEED set
  to a number (here and there) Python's own hash is used and the orders agree; otherwise a SHA-256 stand-in."""
  seed_env = os.environ.get("PYTHONHASHSEED", "random")
  h = hash(question) if seed_env.isdigit() else stable_seed("gpqa", question)
  order = list(range(4))
  random.Random(42 + h % 10000).shuffle(order)
  return order


def gpqa_study(row: dict[str, Any], index: int) -> Item:
  """evalchemy GPQADiamond/eval_instruct.py: raw CSV text (nothing stripped), `L) text` joined by ", "."""
  options = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
  order = _gpqa_order(row["Question"])
  listed = ", ".join(f"{letter}) {options[j]}" for letter, j in zip("ABCD", order))
  prompt = (
    f"Problem: {row['Question']}\nOptions: {listed}\nPlease reason step by step and return your final "
    "answer within \\boxed{}. Only include the letter choice (A, B, C, or D) as your final answer."
  )
  return Item(
    str(row.get("Record ID") or index),
    prompt,
    "ABCD"[order.index(0)],
    row.get("High-level domain"),
    {"letters": "ABCD"},
  )


def _options(value: Any) -> list[str]:
  """MMLU-Pro options: a list, or its Python-literal string (parquet -> JSONL); literal_eval never runs code."""
  return list(value) if isinstance(value, list) else list(ast.literal_eval(value))


def mmlu_pro_study(row: dict[str, Any], index: int) -> Item:
  """lm-eval mmlu_pro/utils.py format_cot_example(including_answer=False): the letter list is always A-J."""
  options = _options(row["options"])
  listed = "".join(f"{letter}. {o}\n" for letter, o in zip(string.ascii_uppercase, options))
  prompt = (
    f"Question:\n{row['question']}\nOptions:\n{listed}Please reason step by step and return your final "
    "answer within \\boxed{}. Only include the letter choice (A, B, C, D, E, F, G, H, I or J) as your final "
    "answer."
  )
  return Item(str(row["question_id"]), prompt, row["answer"], row.get("category"), {"letters": _letters(len(options))})


# ---- instruction following, hallucination, truthfulness, chat, safety (lm-eval tasks, alpaca_eval, harmbench) ---


def ifeval(row: dict[str, Any], index: int) -> Item:
  """lm-eval ifeval.yaml doc_to_text: "Question: " + prompt + "\\nAnswer:"."""
  literal = lambda v: ast.literal_eval(v) if isinstance(v, str) else v  # CSV/parquet exports stringify lists
  ids, kwargs = list(literal(row["instruction_id_list"])), list(literal(row["kwargs"]))
  if len(ids) != len(kwargs):
    raise ValueError(f"IFEval row {index}: {len(ids)} instruction ids but {len(kwargs)} kwargs")
  return Item(
    str(row.get("key", index)),
    f"Question: {row['prompt']}\nAnswer:",
    None,
    None,
    {"instruction_ids": ids, "kwargs": kwargs},
  )


# lm-eval halueval/utils.py: the short judge instructions (no in-context examples; the doubled quote is theirs).
_HALUEVAL_TAIL = (
  "You SHOULD give your judgement based on the following hallucination types and the world knowledge.\n"
  "You should try your best to determine if the {x} contains non-factual or hallucinated information. "
  'The answer you give MUST be "Yes" or "No"".'
)
HALUEVAL_INSTRUCTIONS = {
  kind: (
    f"I want you act as {article} {x} judge. Given {given}, your objective is to determine if the provided {x} "
    f"contains non-factual or hallucinated information. " + _HALUEVAL_TAIL.format(x=x)
  )
  for kind, article, x, given in (
    ("qa", "an", "answer", "a question and an answer"),
    ("dialogue", "a", "response", "a dialogue history and a response"),
    ("summarization", "a", "summary", "a document and a summary"),
  )
}
_HALUEVAL_RAW = {  # HaluEval's raw release (one right and one hallucinated answer per row), rsft's local fallback
  "qa": ("right_answer", "hallucinated_answer", "answer"),
  "dialogue": ("right_response", "hallucinated_response", "response"),
  "summarization": ("right_summary", "hallucinated_summary", "summary"),
}


def halueval(kind: str):
  """pminervini/HaluEval `{kind}_samples` rows (field `hallucination` = "yes"/"no"). A row of the raw release
  instead gets one of its two answers by a content seed (rsft's fallback when the samples are not supplied)."""
  right, wrong, field = _HALUEVAL_RAW[kind]

  def build(row: dict[str, Any], index: int) -> Item:
    if "hallucination" not in row:
      hallucinated = stable_seed("halueval", json.dumps(row, sort_keys=True)) % 2 == 1
      row = dict(
        row, **{field: row[wrong] if hallucinated else row[right]}, hallucination="yes" if hallucinated else "no"
      )
    head = HALUEVAL_INSTRUCTIONS[kind] + "\n\n"
    if kind == "qa":
      body = (
        f"#Knowledge: {row['knowledge']}\n#Question#: {row['question']}\n#Answer#: {row['answer']}\n#Your Judgement#:"
      )
    elif kind == "dialogue":
      body = (
        f"#Knowledge: {row['knowledge']}\n#Dialogue History#: {row['dialogue_history']}\n#Response#: "
        f"{row['response']}\n#Your Judgement#:"
      )
    else:
      body = f"#Document#: {row['document']}\n#Summary#: {row['summary']}\n#Your Judgement#:"
    return Item(str(row.get("id", index)), head + body, row["hallucination"])

  return build


HALUEVAL_FIELDS = {
  "qa": ("knowledge", "question", "answer|right_answer"),
  "dialogue": ("knowledge", "dialogue_history", "response|right_response"),
  "summarization": ("document", "summary|right_summary"),
}


def truthfulqa(row: dict[str, Any], index: int) -> Item:
  """lm-eval truthfulqa_gen.yaml: "\\n\\nQ: " + question, the question stripped by process_docs_gen."""
  question = (row.get("question") or row["Question"]).strip()
  return Item(
    str(index), f"\n\nQ: {question}", None, row.get("Category") or row.get("category"), {"question": question}
  )


def alpaca_eval(row: dict[str, Any], index: int) -> Item:
  """alpaca_eval/code/generate_alpaca.py: the instruction as the only user turn. `output` (AlpacaEval 2.0's
  gpt4_turbo reference) feeds rsft's win-rate extra."""
  return Item(
    str(index),
    row["instruction"],
    None,
    row.get("dataset"),
    {"instruction": row["instruction"], "reference": row.get("output")},
  )


def harmful(row: dict[str, Any], index: int) -> Item:
  """HEx-PHI / HarmBench DirectRequest: the raw behavior as the only user turn (HarmBench's contextual rows put
  their context first)."""
  request = row.get("Behavior") or row.get("instruction")
  context = row.get("ContextString")
  prompt = f"{context}\n\n---\n\n{request}" if context else request
  category = row.get("SemanticCategory") or row.get("category")
  return Item(str(row.get("BehaviorID") or index), prompt, None, category, {"instruction": prompt})


# ---- code -------------------------------------------------------------------------------------------------------


def humaneval(row: dict[str, Any], index: int) -> Item:
  prompt = (
    "Complete the following Python function. Reply with the whole function in one ```python code "
    f"block.\n\n```python\n{row['prompt']}```"
  )
  return Item(row["task_id"], prompt, None, None, {k: row[k] for k in ("prompt", "test", "entry_point")})


def livecodebench(study: bool):
  """Study (evalchemy LiveCodeBench/eval_instruct.py): fixed prefix + question + suffix, no separator, no
  starter code, private tests only; rsft: lcb_runner's prompt with the starter code, public + private tests."""

  def build(row: dict[str, Any], index: int) -> Item:
    from rsft.evals.graders import livecodebench as lcb

    public = lcb.decode_tests(row["public_test_cases"])
    private = lcb.decode_tests(row["private_test_cases"]) if row.get("private_test_cases") else []
    metadata = row.get("metadata") or {}
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    if study:
      is_stdin = any(t.get("testtype") == "stdin" for t in public)
      prompt = lcb.STUDY_PREFIX + row["question_content"] + (lcb.STUDY_STDIN if is_stdin else lcb.STUDY_FUNCTIONAL)
      extra = {"tests": private, "is_stdin": is_stdin}
    else:
      tests = public + private
      functional = bool(tests) and tests[0].get("testtype") == "functional"
      prompt = lcb.prompt(row["question_content"], row.get("starter_code") or "")
      extra = {"tests": tests, "func_name": metadata.get("func_name") if functional else None}
    return Item(str(row.get("question_id", index)), prompt, None, row.get("difficulty"), extra)

  return build


# ---- countdown (rsft's demo task) -------------------------------------------------------------------------------


def countdown_item(row: dict[str, Any], index: int) -> Item:
  puzzle = countdown.Puzzle(tuple(row["numbers"]), int(row["target"]))
  return Item(
    f"countdown/{index}",
    countdown.prompt(puzzle),
    None,
    f"{len(puzzle.numbers)} numbers",
    {"numbers": list(puzzle.numbers), "target": puzzle.target},
  )


def countdown_items(level: str) -> Callable[[int], list[dict[str, Any]]]:
  def make(count: int) -> list[dict[str, Any]]:
    # The held-out split (countdown.held_out), which training rows never contain.
    return [
      {"numbers": list(p.numbers), "target": p.target}
      for p in countdown.generate(1_000_003, count, **countdown.LEVELS[level], split="test")
    ]

  return make


# ---- short-answer tasks (the demo base model's skills) -----------------------------------------------------------


def short_answer_item(row: dict[str, Any], index: int) -> Item:
  return Item(f"{row['task']}/{index}", short_answer.prompt(row["question"]), row["answer"], row["task"])


def short_answer_items(task: str) -> Callable[[int], list[dict[str, Any]]]:
  # Held out by seed; with small numbers some questions also occur in training, as facts do in pretraining.
  return lambda count: short_answer.questions(task, 1_000_003, count)
