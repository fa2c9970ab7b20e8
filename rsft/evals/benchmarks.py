"""The benchmarks as declarative entries, under two protocols.

`study` (the default) reproduces the study's released harness (Nebularaid2000/rethink_sft_generalization,
`evaluation/`): each entry names the harness file it follows and states its prompt builder, thinking policy
(rsft/evals/extract.py), extractor, metric and decoding, quirks included. `rsft` applies the deviations in
`RSFT_DEVIATIONS`, each defended in docs/eval_protocol.md. Adding a benchmark = one `Benchmark(...)` here, or
`register(Benchmark(...))` from any module, with its grader registered in rsft/evals/grading.py.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

from rsft.evals import items as it
from rsft.evals.items import Item, stable_seed  # noqa: F401  (re-exported: graders and tests use them from here)

PROTOCOLS = ("study", "rsft")


@dataclasses.dataclass(frozen=True)
class Decoding:
  n: int = 1  # samples per item (the study's avg@n)
  temperature: float = 0.6
  top_p: float = 0.95
  top_k: int = 0  # 0 = off (vLLM's -1)
  presence_penalty: float = 0.0
  frequency_penalty: float = 0.0
  seed: int = 0
  max_new_tokens: int = 32768
  max_total_tokens: int = 32768  # prompt + output (vLLM's max_model_len); -1 = the model's context length
  skip_special_tokens: bool = True  # lm-eval / evalchemy decode with False


@dataclasses.dataclass(frozen=True)
class Benchmark:
  name: str
  domain: str  # math | code | science | knowledge | instruction | chat | hallucination | ...
  file: str | None  # data file under eval.data_dir (None: items are generated)
  fields: tuple[str, ...]  # required fields of a row ("a|b": either one)
  make_item: Callable[[dict[str, Any], int], Item]
  grader: str  # math | choice | code | ifeval | halueval | reward | truthfulqa | harm_judge ...
  decoding: Decoding
  think: str = "raw"  # thinking policy (rsft.evals.extract.THINK)
  extractor: str = ""  # named answer extractor, where the grader has several
  metric: str = "avg@n"  # the headline, as the study reports it
  higher_is_better: bool = True  # HEx-PHI's ASR: lower is better
  harness: str = ""  # the study's file this entry follows ("" = not in the study)
  generate_items: Callable[[int], list[dict[str, Any]]] | None = None  # file-less benchmarks

  @property
  def n(self) -> int:
    return self.decoding.n


_LM_EVAL = Decoding(top_p=1.0, skip_special_tokens=False)  # T 0.6 from the group / task yaml, top_p off
_EVALCHEMY = Decoding(n=3, top_p=0.95, seed=0, skip_special_tokens=False)
_MATH = dict(
  domain="math", fields=("problem|question", "answer|solution"), grader="math", think="raw", extractor="math_verify"
)
_MATH_DECODING = dict(seed=1234, max_total_tokens=-1)  # LLM() without max_model_len: the model's own limit
_MATH_HARNESS = "evaluation/math_eval/math_eval_budget.py, utils/utils.py, scripts/run_math.sh"
_LCB = "evaluation/evalchemy/eval/chat_benchmarks/LiveCodeBench/{eval_instruct.py,livecodebench_utils.py}"
_HALU = "evaluation/lm-evaluation-harness/lm_eval/tasks/halueval/{utils.py,halueval*.yaml}"
_HARM = dict(
  grader="harm_judge",
  think="after_last",
  extractor="thescore_study",
  metric="ASR",
  higher_is_better=False,
  decoding=Decoding(top_p=1.0, max_new_tokens=16384, max_total_tokens=16384),
)

STUDY: dict[str, Benchmark] = {
  b.name: b
  for b in [
    Benchmark(
      "math500",
      file="math500.jsonl",
      make_item=it.math("solution"),
      decoding=Decoding(n=3, **_MATH_DECODING),
      metric="avg@3",
      harness=_MATH_HARNESS,
      **_MATH,
    ),
    Benchmark(
      "aime24",
      file="aime24.jsonl",
      make_item=it.math("answer"),
      decoding=Decoding(n=10, **_MATH_DECODING),
      metric="avg@10",
      harness=_MATH_HARNESS,
      **_MATH,
    ),
    Benchmark(
      "aime25",
      file="aime25.jsonl",
      make_item=it.math("answer"),
      decoding=Decoding(n=10, **_MATH_DECODING),
      metric="avg@10",
      **_MATH,
    ),
    Benchmark(
      "amc23",
      file="amc23.jsonl",
      make_item=it.math("answer"),
      decoding=Decoding(n=10, **_MATH_DECODING),
      metric="avg@10",
      **_MATH,
    ),
    Benchmark(
      "gpqa_diamond",
      "science",
      "gpqa_diamond.jsonl",
      ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"),
      it.gpqa_study,
      "choice",
      _EVALCHEMY,
      think="raw",
      extractor="gpqa_study",
      metric="avg@3",
      harness="evaluation/evalchemy/eval/chat_benchmarks/GPQADiamond/{eval_instruct.py,testing_utils.py}",
    ),
    Benchmark(
      "mmlu_pro",
      "knowledge",
      "mmlu_pro_study1k.jsonl",
      ("question_id", "question", "options", "answer"),
      it.mmlu_pro_study,
      "choice",
      _LM_EVAL,
      think="raw",
      extractor="mmlu_pro_study",
      metric="exact_match",
      harness="evaluation/lm-evaluation-harness/lm_eval/tasks/mmlu_pro/{utils.py,_default_template_yaml}",
    ),
    Benchmark(
      "livecodebench",
      "code",
      "livecodebench.jsonl",
      ("question_content", "public_test_cases"),
      it.livecodebench(study=True),
      "code",
      _EVALCHEMY,
      think="raw",
      extractor="lcb_study",
      metric="avg@3",
      harness=_LCB,
    ),  # release_v2; not in ../shared/benchmarks (its tests are large): supply it
    Benchmark(
      "humaneval",
      "code",
      "humaneval.jsonl",
      ("task_id", "prompt", "test", "entry_point"),
      it.humaneval,
      "code",
      Decoding(),
      think="committed",
      extractor="humaneval",
      metric="pass@1",
    ),
    Benchmark(
      "ifeval",
      "instruction",
      "ifeval.jsonl",
      ("prompt", "instruction_id_list", "kwargs"),
      it.ifeval,
      "ifeval",
      _LM_EVAL,
      think="lm_eval",
      metric="prompt_level_strict_acc",
      harness="evaluation/lm-evaluation-harness/lm_eval/tasks/ifeval/{ifeval.yaml,utils.py}",
    ),
    *[
      Benchmark(
        f"halueval_{kind}",
        "hallucination",
        f"halueval_{kind}_samples.jsonl",
        it.HALUEVAL_FIELDS[kind],
        it.halueval(kind),
        "halueval",
        _LM_EVAL,
        think="lm_eval",
        extractor="halueval_study",
        metric="acc",
        harness=_HALU,
      )
      for kind in ("qa", "dialogue", "summarization")
    ],
    Benchmark(
      "alpaca_eval",
      "chat",
      "alpaca_eval.jsonl",
      ("instruction",),
      it.alpaca_eval,
      "reward",
      Decoding(
        temperature=0.7,
        top_p=0.9,
        top_k=50,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        seed=42,
        max_new_tokens=16384,
        max_total_tokens=-1,
      ),
      think="after_last",
      metric="mean reward",
      harness="evaluation/alpaca_eval/code/{generate_alpaca.py,evaluate_reward.py}",
    ),
    Benchmark(
      "truthfulqa",
      "truthfulness",
      "truthfulqa.jsonl",
      ("Question|question",),
      it.truthfulqa,
      "truthfulqa",
      _LM_EVAL,
      think="lm_eval",
      metric="accuracy (truth judge)",
      harness="evaluation/lm-evaluation-harness/lm_eval/tasks/truthfulqa/{truthfulqa_gen.yaml,utils.py}",
    ),
    Benchmark(
      "hexphi",
      "safety",
      "hexphi.jsonl",
      ("Behavior|instruction",),
      it.harmful,  # gated: supply it
      harness="evaluation/harmbench/{generate_completions.py,evaluate_completions_api_parallel_resume.py}",
      **_HARM,
    ),
    Benchmark("harmbench", "safety", "harmbench_behaviors_text_all.jsonl", ("Behavior",), it.harmful, **_HARM),
    *[
      Benchmark(
        level,
        "countdown",
        None,
        ("numbers", "target"),
        it.countdown_item,
        "countdown",
        Decoding(),
        think="committed",
        generate_items=it.countdown_items(level),
      )
      for level in ("countdown", "countdown3")
    ],
    *[
      Benchmark(
        task,
        domain,
        None,
        ("task", "question", "answer"),
        it.short_answer_item,
        "short_answer",
        Decoding(),
        think="committed",
        generate_items=it.short_answer_items(task),
      )
      for task, domain in (("arithmetic", "math"), ("sorting", "algorithmic"))
    ],
  ]
}

# Benchmarks named together; the summary adds the group's score (eval.group_aggregate: mean of members | pooled).
GROUPS: dict[str, tuple[str, ...]] = {"halueval": ("halueval_qa", "halueval_dialogue", "halueval_summarization")}


@dataclasses.dataclass(frozen=True)
class Deviation:
  changes: dict[str, Any]
  why: str


# eval.protocol=rsft: what differs from the study, and why (docs/eval_protocol.md has the same list).
RSFT_DEVIATIONS: dict[str, list[Deviation]] = {
  "math500": [
    Deviation(
      dict(make_item=it.math("answer")),
      "gold from the `answer` column: the harness parses the worked `solution`, where "
      "math-verify reads '\\boxed{10} percent' as 10% (test/prealgebra/1233)",
    )
  ],
  "gpqa_diamond": [
    Deviation(
      dict(think="committed", extractor="letter"),
      "the letter committed after thinking, with `(C)` and `\\text{C}` accepted: the harness "
      "scores those as no answer and reads 'the answer is definitely B' as D",
    )
  ],
  "mmlu_pro": [
    Deviation(
      dict(file="mmlu_pro_subset1000.jsonl"),
      "1,000 distinct questions stratified by category: the study's 1k holds 613 distinct "
      "questions, some up to 7 times, so its score has a wider interval",
    ),
    Deviation(
      dict(think="committed", extractor="letter"),
      "the last committed letter after thinking (the harness takes the first 'answer is' "
      "anywhere, thinking included, case-sensitive)",
    ),
  ],
  "livecodebench": [
    Deviation(
      dict(make_item=it.livecodebench(study=False), extractor="lcb_runner", think="committed"),
      "lcb_runner's prompt with the starter code, public + private tests, any python "
      "fence, `class Solution` answers, numeric tolerance in stdout: the harness fails "
      "correct programs for format reasons (```py fences, Solution classes, sys.exit)",
    )
  ],
  "alpaca_eval": [
    Deviation(
      dict(extractor="reward_and_win_rate"),
      "adds win_rate / soft_win_rate against AlpacaEval 2.0's reference outputs under the "
      "same reward model (extra metrics; the mean reward is unchanged)",
    )
  ],
  "hexphi": [
    Deviation(
      dict(extractor="thescore_lenient"),
      "the judge's score is read through markdown ('**5**', '5.') and must lie in 1-5; the "
      "harness reads those as no score",
    )
  ],
  "harmbench": [Deviation(dict(extractor="thescore_lenient"), "as hexphi")],
  **{
    f"halueval_{kind}": [
      Deviation(
        dict(file=f"halueval_{kind}.jsonl"),
        "HaluEval's raw release (a right and a hallucinated answer per row, local in "
        "../shared/benchmarks) with one answer chosen by a content seed, when "
        "pminervini's *_samples are not at hand",
      )
    ]
    for kind in ("qa", "dialogue", "summarization")
  },
}


def _rsft(name: str, bench: Benchmark) -> Benchmark:
  for deviation in RSFT_DEVIATIONS.get(name, []):
    bench = dataclasses.replace(bench, **deviation.changes)
  return bench


REGISTRY: dict[str, dict[str, Benchmark]] = {
  "study": STUDY,
  "rsft": {name: _rsft(name, b) for name, b in STUDY.items()},
}


def register(bench: Benchmark) -> None:
  """Adds a benchmark under both protocols (the rsft one applies RSFT_DEVIATIONS[name], if any), from any module:
  its `grader` names an entry of rsft.evals.grading.GRADERS (docs/contributing.md, "Add a benchmark")."""
  if bench.name in REGISTRY["study"] or bench.name in GROUPS:
    raise ValueError(f"benchmark {bench.name!r} is already registered")
  REGISTRY["study"][bench.name] = bench
  REGISTRY["rsft"][bench.name] = _rsft(bench.name, bench)


def missing_fields(bench: Benchmark, row: dict[str, Any]) -> list[str]:
  """The bench's required fields a row lacks (empty counts as missing)."""
  return [f for f in bench.fields if all(row.get(name) in (None, "") for name in f.split("|"))]


def member_for(group: str, row: dict[str, Any], protocol: str = "study") -> Benchmark:
  """The member of a group whose fields a row has (grade mode accepts "halueval" for any of its subtasks)."""
  for name in GROUPS[group]:
    bench = get(name, protocol)
    if not missing_fields(bench, row):
      return bench
  raise ValueError(f"a {group} item needs the fields of one of {', '.join(GROUPS[group])}; it has {sorted(row)}")


def expand(names: Any) -> list[str]:
  """Benchmark names with groups replaced by their members (order kept, duplicates dropped)."""
  out: list[str] = []
  for name in [names] if isinstance(names, str) else list(names):
    for member in GROUPS.get(name, (name,)):
      if member not in out:
        out.append(member)
  return out


def get(name: str, protocol: str = "study") -> Benchmark:
  if protocol not in REGISTRY:
    raise ValueError(f"eval.protocol={protocol!r}; choose one of {PROTOCOLS}")
  registry = REGISTRY[protocol]
  if name in GROUPS:
    raise ValueError(
      f"{name!r} is a group of benchmarks ({', '.join(GROUPS[name])}); name one of them here "
      "(eval.benchmarks accepts the group name)"
    )
  if name not in registry:
    close = difflib.get_close_matches(name, list(registry) + list(GROUPS), n=1, cutoff=0.3)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
      f"unknown benchmark {name!r}{hint} (known: {', '.join(sorted(registry))}; groups: {', '.join(sorted(GROUPS))})"
    )
  return registry[name]


def with_gold(bench: Benchmark, column: str) -> Benchmark:
  """A math benchmark graded against another column of its rows (eval.gold_columns, e.g. aime24=solution)."""
  if bench.grader != "math":
    raise ValueError(f"eval.gold_columns: {bench.name} is not a math benchmark; only math golds are columns.")
  return dataclasses.replace(bench, make_item=it.math(column))
