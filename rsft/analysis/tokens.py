"""Token-level log-probabilities across checkpoints (our extension: the study reports none, paper.md §5).

A fixed set of responses (the sweep's generations of one benchmark at one step, or training rows) is scored
teacher-forced under the base model and every checkpoint with rsft's scorer (the training forward + chunked
head, so the numbers equal `rsft.token_logprobs`). Summaries: mean log-prob and entropy per checkpoint; the
log-prob of reasoning-marker tokens ("Wait", "But", ...) over training; the tokens whose log-prob moved most
from the first model to the last; and, when rows carry the teacher's per-token log-probs (the study's raw pool
does), the student/teacher probability-ratio histogram per checkpoint. Results are cached in
WORKDIR/analysis/tokens.json so the report can be rebuilt without reloading models.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MARKER_WORDS = ("wait", "but", "alternatively", "hmm", "actually", "check", "verify", "backtrack")


def score_checkpoints(models: Sequence[tuple[str, Callable[[], Any]]], prompts: Sequence[list[int]],
                      completions: Sequence[list[int]], batch_tokens: int = 16384) -> dict[str, list[list[float]]]:
  """label -> per-response lists of per-token log-probs (and label + '/entropy' -> entropies). Each model is
  loaded by its callable, used, and dropped before the next."""
  from rsft.infer import scorer
  out = {}
  for label, load in models:
    m = load()
    scores = scorer.score(m, prompts, completions, batch_tokens=batch_tokens)
    out[label] = [s.logprobs for s in scores]
    out[label + "/entropy"] = [s.entropies for s in scores]
    del m
  return out


def summarize(labels: Sequence[str], table: dict[str, list[list[float]]], token_strings: list[list[str]],
              teacher: list[list[float]] | None = None, top: int = 10, min_count: int = 3) -> dict[str, Any]:
  """Checkpoint curves, marker-token log-probs, the most-moved tokens (first label -> last), ratio histograms."""
  flat = lambda rows: np.asarray([x for row in rows for x in row], np.float64)
  tokens = [t for row in token_strings for t in row]
  words = np.asarray([t.strip().lower() for t in tokens])
  out: dict[str, Any] = {"labels": list(labels), "tokens": len(tokens)}
  out["mean_logprob"] = [float(flat(table[label]).mean()) for label in labels]
  out["mean_entropy"] = [float(flat(table[label + "/entropy"]).mean()) for label in labels]
  markers = {}
  for word in MARKER_WORDS:
    at = words == word
    if at.any():
      markers[word] = {"count": int(at.sum()), "logprob": [float(flat(table[label])[at].mean()) for label in labels]}
  out["markers"] = markers
  first, last = flat(table[labels[0]]), flat(table[labels[-1]])
  by_token = collections.defaultdict(list)
  for token, delta in zip(tokens, last - first):
    by_token[token].append(delta)
  moved = sorted(((float(np.mean(d)), t, len(d)) for t, d in by_token.items() if len(d) >= min_count))
  out["most_down"] = [{"token": t, "delta": d, "count": n} for d, t, n in moved[:top]]
  out["most_up"] = [{"token": t, "delta": d, "count": n} for d, t, n in moved[::-1][:top]]
  if teacher is not None:
    t_flat = flat(teacher)
    edges = np.linspace(0.0, 2.0, 21)
    out["ratio_hist"] = {"edges": edges.tolist(), "counts": {
        label: np.histogram(np.clip(np.exp(flat(table[label]) - t_flat), 0, 2), edges)[0].tolist()
        for label in labels}}
  return out


def save(path: str, summary: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)


def analyze(config: Any, workdir: str, load_model: Callable[[str], Any]) -> dict[str, Any]:
  """Scores `analysis.token_samples` generations of `analysis.token_source` ("benchmark:step", step may be
  "last"; default: the first benchmark at its last step) under the base model and every checkpoint."""
  from rsft.evals import checkpoints
  from rsft.evals.requests import Renderer

  steps = checkpoints.list_steps(workdir)
  source = config.analysis.token_source or f"{config.eval.benchmarks[0]}:last"
  bench, _, at = source.partition(":")
  gen_root = os.path.join(workdir, "eval", "generations")
  evaluated = sorted(int(d.removeprefix("step_")) for d in os.listdir(gen_root)) if os.path.isdir(gen_root) else []
  if not evaluated:
    raise ValueError(f"{workdir}: no cached generations; run the eval sweep before the token analysis.")
  step = evaluated[-1] if at in ("", "last") else int(at)
  path = os.path.join(gen_root, f"step_{step}", f"{bench}.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"analysis.token_source={source}: {path} does not exist")
  with open(path) as f:
    rows = [json.loads(line) for line in f][:config.analysis.token_samples]
  with open(os.path.join(workdir, "eval", "prompts", f"{bench}.jsonl")) as f:
    prompt_rows = [json.loads(line) for line in f]
  models = [(str(s), (lambda s=s: load_model(checkpoints.step_dir(workdir, s)))) for s in steps]
  if config.model.path:
    models.insert(0, ("base", lambda: load_model(config.model.path)))
  first = models[0][1]()
  renderer = Renderer(first.tokenizer, config.eval.chat_template, config.data.strip_default_system)
  pairs = [renderer.pair(dict(prompt_rows[r["index"]], completion_ids=r["token_ids"]) if "token_ids" in r else
                         dict(prompt_rows[r["index"]], completion=r["completion"]), f"{path}:{i + 1}")
           for i, r in enumerate(rows)]
  prompts, completions = [p for p, _ in pairs], [c for _, c in pairs]
  token_strings = [[first.tokenizer.decode([t]) for t in c] for c in completions]
  del first
  table = score_checkpoints(models, prompts, completions, config.eval.score_batch_tokens)
  summary = summarize([label for label, _ in models], table, token_strings)
  summary.update(source=f"{bench}:{step}", responses=len(rows))
  save(os.path.join(workdir, "analysis", "tokens.json"), summary)
  return summary
