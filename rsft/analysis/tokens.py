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

from rsft.analysis import patterns


def score_checkpoints(
  models: Sequence[tuple[str, Callable[[], Any]]],
  prompts: Sequence[list[int]],
  completions: Sequence[list[int]],
  batch_tokens: int = 16384,
) -> dict[str, list[list[float]]]:
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


def align_teacher(teacher: Sequence[float] | None, n_completion: int) -> list[float] | None:
  """The row's teacher log-probs, one per completion token (NaN where there is none), or None if they cannot be
  matched. rsft re-tokenizes the response text and appends the base model's EOS; the teacher's values cover its
  own generated tokens, with or without its end-of-turn token (which is not the base EOS, so it is not compared).
  A length that differs otherwise means the re-tokenization diverged, and position-wise ratios would be wrong."""
  if teacher is None:
    return None
  values = [float(v) for v in (teacher.tolist() if hasattr(teacher, "tolist") else teacher)]
  if len(values) in (n_completion - 1, n_completion):
    return values[: n_completion - 1] + [float("nan")]
  return None


def summarize(
  labels: Sequence[str],
  table: dict[str, list[list[float]]],
  token_strings: list[list[str]],
  teacher: Sequence[list[float] | None] | None = None,
  top: int = 10,
  min_count: int = 3,
  lexicon: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
  """Checkpoint curves, marker-token log-probs (tokens whose word is a marker of the patterns lexicon), the most-moved tokens (first label -> last), and, with teacher
  log-probs (rows of None or NaN are skipped), the student/teacher ratio exp(logp_s - logp_t) per checkpoint: its
  mean (the study's train/ratio/mean) and histogram (train/ratio/dist)."""
  flat = lambda rows: np.asarray([x for row in rows for x in row], np.float64)
  tokens = [t for row in token_strings for t in row]
  words = np.asarray([t.strip().lower() for t in tokens])
  out: dict[str, Any] = {"labels": list(labels), "tokens": len(tokens)}
  out["mean_logprob"] = [float(flat(table[label]).mean()) for label in labels]
  out["mean_entropy"] = [float(flat(table[label + "/entropy"]).mean()) for label in labels]
  markers = {}
  for word in sorted(set(words)):
    if patterns.word_category(word, lexicon) is None:
      continue
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
  if teacher is not None and any(t is not None for t in teacher):
    t_flat = flat([t if t is not None else [float("nan")] * len(s) for t, s in zip(teacher, token_strings)])
    known = np.isfinite(t_flat)
    ratios = {label: np.exp(flat(table[label])[known] - t_flat[known]) for label in labels}
    edges = np.linspace(0.0, 2.0, 21)
    out["teacher"] = {
      "rows": sum(t is not None for t in teacher),
      "rows_unmatched": sum(t is None for t in teacher),
      "tokens": int(known.sum()),
      "mean_logprob": float(t_flat[known].mean()),
    }
    out["ratio_mean"] = [float(ratios[label].mean()) for label in labels]
    out["ratio_hist"] = {
      "edges": edges.tolist(),
      "counts": {label: np.histogram(np.clip(ratios[label], 0, 2), edges)[0].tolist() for label in labels},
    }
  return out


def save(path: str, summary: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)


def analyze(config: Any, workdir: str, load_model: Callable[[str], Any]) -> dict[str, Any]:
  """Scores `analysis.token_samples` responses under the base model and every checkpoint. `analysis.token_source`:
  "benchmark:step" (step may be "last"; default: the first benchmark at its last step) for the sweep's cached
  generations, or "data" for the first training rows, rendered exactly as the trainer does, with the teacher's
  per-token log-probs when the rows carry a `logprob` column (the study's raw pool and Math-CoT parquet)."""
  from rsft.evals import checkpoints

  source = config.analysis.token_source or f"{config.eval.benchmarks[0]}:last"
  if source != "data":
    path, step = _generation_file(workdir, source)
  models = [
    (str(s), (lambda s=s: load_model(checkpoints.step_dir(workdir, s)))) for s in checkpoints.list_steps(workdir)
  ]
  if config.model.path:
    models.insert(0, ("base", lambda: load_model(config.model.path)))
  if not models:
    raise ValueError(f"{workdir}: no checkpoints and no model.path to score under")
  held = [models[0][1]()]  # loaded once: its tokenizer renders the rows, then it is the first model scored
  tokenizer = held[0].tokenizer
  models[0] = (models[0][0], held.pop)
  if source == "data":
    prompts, completions, teacher, described = _training_rows(config, workdir, tokenizer)
  else:
    prompts, completions = _generated_rows(config, workdir, path, tokenizer)
    teacher, described = None, f"{source.partition(':')[0]}:{step}"
  token_strings = [[tokenizer.decode([t]) for t in c] for c in completions]
  table = score_checkpoints(models, prompts, completions, config.eval.score_batch_tokens)
  summary = summarize(
    [label for label, _ in models],
    table,
    token_strings,
    teacher,
    lexicon=patterns.parse_lexicon(config.analysis.markers),
  )
  summary.update(source=described, responses=len(completions))
  save(os.path.join(workdir, "analysis", "tokens.json"), summary)
  return summary


def _generation_file(workdir: str, source: str) -> tuple[str, int]:
  bench, _, at = source.partition(":")
  gen_root = os.path.join(workdir, "eval", "generations")
  evaluated = sorted(int(d.removeprefix("step_")) for d in os.listdir(gen_root)) if os.path.isdir(gen_root) else []
  if not evaluated:
    raise ValueError(f"{workdir}: no cached generations; run the eval sweep before the token analysis.")
  step = evaluated[-1] if at in ("", "last") else int(at)
  path = os.path.join(gen_root, f"step_{step}", f"{bench}.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"analysis.token_source={source}: {path} does not exist")
  return path, step


def _generated_rows(config: Any, workdir: str, path: str, tokenizer: Any) -> tuple[list[list[int]], list[list[int]]]:
  """Prompt and completion ids of the sweep's generations, re-rendered as the sweep scored them."""
  from rsft.evals.requests import Renderer

  with open(path) as f:
    rows = [json.loads(line) for line in f][: config.analysis.token_samples]
  bench = os.path.basename(path).removesuffix(".jsonl")
  with open(os.path.join(workdir, "eval", "prompts", f"{bench}.jsonl")) as f:
    prompt_rows = [json.loads(line) for line in f]
  renderer = Renderer(tokenizer, config.eval.chat_template, config.data.strip_default_system)
  pairs = [
    renderer.pair(
      dict(prompt_rows[r["index"]], completion_ids=r["token_ids"])
      if "token_ids" in r
      else dict(prompt_rows[r["index"]], completion=r["completion"]),
      f"{path}:{i + 1}",
    )
    for i, r in enumerate(rows)
  ]
  return [p for p, _ in pairs], [c for _, c in pairs]


def _training_rows(config: Any, workdir: str, tokenizer: Any):
  """The first `analysis.token_samples` training rows as (prompts, completions, teacher log-probs, description)."""
  from rsft import config as rconfig
  from rsft.data import chat, generate, readers

  if not config.data.train_files and config.data.generate:
    config = rconfig.with_values(config, generate.prepare(config, workdir))
  eos = chat.eos_id(tokenizer, config.data.eos_token)
  prompts, completions, teacher = [], [], []
  files = readers.resolve_files(config.data.train_files)
  for path in files:
    for i, row in readers.raw_rows(path, config.data.format):
      if len(prompts) == config.analysis.token_samples:
        break
      if isinstance(row, Exception):
        raise row
      ex = readers.normalize(row, path, i)
      tokens, weights = chat.render(tokenizer, ex.messages, ex.response, eos, config.data.strip_default_system)
      n_prompt = int((weights == 0).sum())
      values = align_teacher(row.get("logprob"), len(tokens) - n_prompt)
      tokens = tokens[: config.data.max_length]  # cut as the trainer cuts
      if len(tokens) <= n_prompt:
        continue  # the prompt alone fills max_length: nothing of the response is trained on
      prompts.append(tokens[:n_prompt].tolist())
      completions.append(tokens[n_prompt:].tolist())
      teacher.append(values[: len(completions[-1])] if values is not None else None)
  if not prompts:
    raise ValueError(f"analysis.token_source=data: no rows in {files}")
  return prompts, completions, (teacher if any(t is not None for t in teacher) else None), f"data:{files[0]}"
