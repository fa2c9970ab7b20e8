"""Dataset tools for the study's data variants: the NoCoT derivation, verified filtering by rejection sampling,
and dataset statistics.

  python -m rsft.tools.data nocot  IN OUT          # strip <think>...</think> from every response
  python -m rsft.tools.data stats  IN              # rows, response-length percentiles, marker rates

NoCoT keeps the query and the final solution and drops the thinking block (paper.md §3: Math-NoCoT shares the
queries and solutions of Math-CoT). Verified filtering samples N responses per query with rsft's sampler,
grades them with the benchmark graders against the row's reference answer, and keeps one correct response per
query chosen with a seeded RNG (how the study built Math-CoT-20k from Qwen3-32B samples with math-verify).
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsft.analysis import patterns
from rsft.data.readers import raw_rows
from rsft.evals.benchmarks import REGISTRY, Item
from rsft.evals.grading import grade
from rsft.evals.requests import Renderer
from rsft.infer import sampler

_THINK = re.compile(r"<think>.*?</think>\s*", re.S)


def strip_cot(response: str) -> str:
  """The response without its thinking block(s); unchanged when it has none."""
  return _THINK.sub("", response).lstrip()


def nocot_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Study-schema rows (`message` + `response`, or `messages` ending in an assistant turn) with CoT removed."""
  out = []
  for i, row in enumerate(rows):
    row = json.loads(json.dumps(row))  # deep copy
    if "response" in row:
      row["response"] = strip_cot(row["response"])
    elif row.get("messages") and row["messages"][-1].get("role") == "assistant":
      row["messages"][-1]["content"] = strip_cot(row["messages"][-1]["content"])
    else:
      raise ValueError(f"row {i}: no 'response' or assistant turn to strip")
    out.append(row)
  return out


def verified_filter(
  model: Any,
  rows: Sequence[dict[str, Any]],
  *,
  n: int = 8,
  max_new_tokens: int = 16384,
  temperature: float = 0.6,
  top_p: float = 0.95,
  top_k: int = 20,
  seed: int = 0,
  answer_field: str = "answer",
  batch_size: int = 16,
  grader: str = "math",
) -> list[dict[str, Any]]:
  """One verified response per query: rows with `message` (or `prompt`) and a reference answer. Queries with no
  correct sample are dropped; each kept row gets `response` and `num_correct` (of n). batch_size: queries decoding
  at once (x n sequences, one continuous-batching call)."""
  bench = next(b for b in REGISTRY["study"].values() if b.grader == grader)
  renderer = Renderer(model.tokenizer)
  rng = random.Random(seed)
  prompts = []
  for i, row in enumerate(rows):
    messages = row.get("message") or row.get("messages") or [{"role": "user", "content": row["prompt"]}]
    prompts.append(renderer.prompt({"messages": messages}, f"row {i}"))
  res = sampler.generate(
    model,
    prompts,
    max_new_tokens,
    temperature,
    top_p,
    top_k,
    seed,
    model.stop_token_ids,
    sampler.Options(n=n, max_num_seqs=batch_size * n),
  )
  texts = [renderer.decode(t[:-1] if r == "stop" else t) for t, r in zip(res.tokens, res.finish_reason)]
  items = [Item(str(i), "", str(row[answer_field])) for i, row in enumerate(rows) for _ in range(n)]
  scores = [g["score"] for g in grade(bench, items, texts)]
  kept = []
  for i, row in enumerate(rows):
    correct = [texts[i * n + j] for j in range(n) if scores[i * n + j] >= 1.0]
    if correct:
      kept.append(dict(row, response=rng.choice(correct), num_correct=len(correct)))
  return kept


def stats(rows: Sequence[dict[str, Any]], tokenizer: Any = None) -> dict[str, Any]:
  """Rows, response length percentiles (tokens with a tokenizer, else whitespace words), thinking share,
  marker rates per 1k words."""
  responses = [r.get("response") or r["messages"][-1]["content"] for r in rows]
  length = (
    (lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"])) if tokenizer else (lambda t: len(t.split()))
  )
  lengths = np.asarray([length(t) for t in responses])
  p = np.percentile(lengths, [10, 50, 90, 99]) if len(lengths) else [0] * 4
  return {
    "rows": len(rows),
    "unit": "tokens" if tokenizer else "words",
    "length": dict(
      zip(("p10", "p50", "p90", "p99"), map(float, p)),
      mean=float(lengths.mean()) if len(lengths) else 0.0,
      max=int(lengths.max()) if len(lengths) else 0,
    ),
    "with_thinking": float(np.mean(["</think>" in t for t in responses])) if responses else 0.0,
    "markers_per_1k_words": {k: v["per_1k_tokens"] for k, v in patterns.rates(responses).items()},
  }


def _read(path: str) -> list[dict[str, Any]]:
  return [row for _, row in raw_rows(path)]


def main(argv: Sequence[str]) -> None:
  if len(argv) >= 3 and argv[0] == "nocot":
    rows = nocot_rows(_read(argv[1]))
    with open(argv[2], "w") as f:
      for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {argv[2]}")
  elif len(argv) >= 2 and argv[0] == "stats":
    print(json.dumps(stats(_read(argv[1])), indent=1))
  else:
    raise SystemExit(__doc__)


if __name__ == "__main__":
  main(sys.argv[1:])
