"""eval.py's file modes: `generate` (prompts -> sampled completions) and `score` (prompt + completion -> per-token
log-probs), JSONL in and out, resumable (rsft.evals.jsonl): generate hands every row still to do to one
continuous-batching sampler call and writes each sequence as it finishes; score writes batch by batch.

Sample j of input row i always draws its randomness from (seed, i * n + j), so a resumed run, which admits the
remaining rows in another order, samples what the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tqdm
from absl import logging

from rsft.evals import jsonl
from rsft.evals.requests import Renderer, fingerprint
from rsft.infer import sampler, scorer

_ROW_PARAMS = {
  "temperature": float,
  "top_p": float,
  "top_k": int,
  "presence_penalty": float,
  "frequency_penalty": float,
}


@dataclasses.dataclass
class Request:
  index: int  # 0-based among the input's non-blank lines (the output key)
  id: Any  # the row's own "id", passed through
  prompt: list[int]
  sha: str
  params: dict[str, float]
  completion: list[int] | None = None


def read_requests(path: str, renderer: Renderer, defaults: dict[str, Any], completions: bool) -> list[Request]:
  out = []
  for number, row in jsonl.read(path):
    where = f"{path}:{number}"
    prompt, completion = renderer.pair(row, where) if completions else (renderer.prompt(row, where), None)
    if not prompt:
      raise ValueError(f"{where}: the prompt renders to no tokens.")
    params = {}
    for key, cast in _ROW_PARAMS.items():
      try:
        params[key] = cast(row.get(key, defaults[key]))
      except (TypeError, ValueError):
        raise ValueError(f"{where}: {key}={row[key]!r} is not a number.") from None
    out.append(Request(len(out), row.get("id"), prompt, fingerprint(prompt), params, completion))
  if not out:
    raise ValueError(f"{path}: no rows.")
  return out


def _check_same_input(writer: jsonl.ResumableWriter, requests: list[Request], key) -> None:
  for r in requests:
    for k in key(r):
      if k in writer.done and writer.done[k] != r.sha:
        raise ValueError(
          f"{writer.path}: row {r.index} was written for a different prompt than the input's row "
          f"{r.index} now renders to; the input changed, so choose another eval.output."
        )


def sampler_options(sample_cfg: Any, n: int) -> sampler.Options:
  """The engine settings of config.sample (plus a benchmark's n and top_k cap) as sampler Options."""
  return sampler.Options(
    n=n,
    top_k_cap=sample_cfg.top_k_cap,
    prompt_buckets=tuple(sample_cfg.prompt_buckets),
    chunk_steps=sample_cfg.chunk_steps,
    max_num_seqs=sample_cfg.max_num_seqs,
    page_size=sample_cfg.page_size,
    kv_pages=sample_cfg.kv_pages,
    memory_utilization=sample_cfg.memory_utilization,
    prefix_cache=sample_cfg.prefix_cache,
    chunked_prefill=sample_cfg.chunked_prefill,
  )


def generate_file(
  m: Any,
  sample_cfg: Any,
  eval_cfg: Any,
  input_path: str,
  output_path: str,
  settings: dict[str, Any],
  renderer: Renderer,
) -> dict[str, int]:
  """Writes n completions per input row; returns counts of rows written now and found done. A row some of whose
  samples were written before a kill is sampled again whole (its n samples share one prefill) and only the
  missing samples are written: the same tokens, as sample j's randomness is (seed, row, j)."""
  n = sample_cfg.n
  defaults = {k: sample_cfg[k] for k in _ROW_PARAMS}
  requests = read_requests(input_path, renderer, defaults, completions=False)
  max_total = _max_total(m, sample_cfg)
  skip_special = sample_cfg.skip_special_tokens
  save_ids = eval_cfg.save_logprobs or bool(eval_cfg.think_budgets)  # budgets cut the trace by its token ids
  settings = dict(
    settings,
    mode="generate",
    input=input_path,
    n=n,
    max_new_tokens=sample_cfg.max_new_tokens,
    seed=sample_cfg.seed,
    defaults=defaults,
    stop_token_ids=list(m.stop_token_ids),
    chat_template=eval_cfg.chat_template,
    max_total_tokens=max_total,
    skip_special_tokens=skip_special,
  )
  if sample_cfg.think_budget:  # recorded only when on: outputs written before budgets existed resume
    settings.update(think_budget=sample_cfg.think_budget, answer_budget=sample_cfg.answer_budget)
  keys = lambda r: [(r.index, j) for j in range(n)]
  with jsonl.ResumableWriter(output_path, lambda row: (row["index"], row["sample"]), settings) as writer:
    _check_same_input(writer, requests, keys)
    todo = [r for r in requests if any(k not in writer.done for k in keys(r))]
    todo.sort(key=lambda r: len(r.prompt))  # admitted in this order: similar lengths share a prefill bucket
    logging.info(
      "generate: %d rows, %d already in %s, %d to do (n=%d)",
      len(requests),
      len(requests) - len(todo),
      output_path,
      len(todo),
      n,
    )
    written = 0
    if todo:
      column = lambda k: np.asarray([r.params[k] for r in todo])

      def write(finished):  # each sequence as it ends: a killed run resumes at sequence granularity
        nonlocal written
        rows = []
        for row, tokens, lps, reason in finished:
          r, j = todo[row // n], row % n
          if (r.index, j) not in writer.done:
            rows.append(_generation_row(r, j, tokens, lps, reason, renderer, m.stop_token_ids, save_ids, skip_special))
        writer.write(rows)
        written += len(rows)

      sampler.generate(
        m,
        [r.prompt for r in todo],
        sample_cfg.max_new_tokens,
        column("temperature"),
        column("top_p"),
        column("top_k"),
        sample_cfg.seed,
        m.stop_token_ids,
        sampler_options(sample_cfg, n),
        prompt_ids=[r.index for r in todo],
        presence_penalty=column("presence_penalty"),
        frequency_penalty=column("frequency_penalty"),
        max_total_tokens=max_total,
        on_finished=write,
        think_budget=sample_cfg.think_budget,
        answer_budget=sample_cfg.answer_budget,
      )
  return {"written": written, "done_before": len(writer.done), "rows": len(requests) * n}


def _max_total(m: Any, sample_cfg: Any) -> int | None:
  """The prompt + output cap: < 0 means the model's context length (vLLM without max_model_len), and no cap goes
  past that length either (vLLM refuses a max_model_len beyond the model's): a prompt longer than the model's
  positions gets an empty output with finish_reason "length" and a warning, never a silent run past its RoPE."""
  context = getattr(m.config, "max_position_embeddings", 0) or 0
  max_total = sample_cfg.max_total_tokens if sample_cfg.max_total_tokens >= 0 else context
  return min(x for x in (max_total, context) if x) if (max_total or context) else None


def budget_file(
  m: Any,
  sample_cfg: Any,
  eval_cfg: Any,
  input_path: str,
  generations_path: str,
  output_path: str,
  budget: int,
  settings: dict[str, Any],
  renderer: Renderer,
) -> dict[str, int]:
  """The completions a run with sample.think_budget=budget would give, from a full generation (generate_file's
  output, with token ids): a row that thought past the budget is cut where `</think>` would have been forced,
  closed, and its answer decoded on from that step with the row's own random stream (sampler.over_budget); other
  rows are copied. Without presence / frequency penalties these are the tokens the budgeted run samples, at the
  cost of the answers alone. Resumable like generate_file; rows gain think_budget and forced."""
  n = sample_cfg.n
  requests = read_requests(input_path, renderer, {k: sample_cfg[k] for k in _ROW_PARAMS}, completions=False)
  start, end = sampler.think_token_ids(m, f"eval.think_budgets ({budget})")
  generations = {(g["index"], g["sample"]): (number, g) for number, g in jsonl.read(generations_path)}
  settings = dict(settings, mode="think_budget", think_budget=budget, generations=generations_path)
  skip_special = sample_cfg.skip_special_tokens
  with jsonl.ResumableWriter(output_path, lambda row: (row["index"], row["sample"]), settings) as writer:
    copied, cut = [], []  # cut: (request, sample, its kept tokens ending in </think>, their log-probs)
    for key, (number, g) in sorted(generations.items()):
      if key in writer.done:
        continue
      if "token_ids" not in g:
        raise ValueError(
          f"{generations_path}:{number}: no token_ids; it was generated before eval.think_budgets "
          "was set. Move the generations away to sample them again with their ids."
        )
      r = requests[g["index"]]
      at = sampler.over_budget(r.prompt, g["token_ids"], budget, start, end)
      if at is None or (g["token_ids"][at] == end and not sample_cfg.answer_budget):  # closed right at the budget
        copied.append(dict(g, think_budget=budget, forced=False))
      else:
        cut.append((r, g["sample"], g["token_ids"][:at] + [end], g["logprobs"][:at]))
    # A cut at the cap's last token leaves no room: the budgeted run ends right after its forced </think>.
    full = [c for c in cut if len(c[2]) >= sample_cfg.max_new_tokens]
    cut = [c for c in cut if len(c[2]) < sample_cfg.max_new_tokens]
    for r, j, kept, kept_lps in full:
      row = _generation_row(r, j, kept, kept_lps + [0.0], "length", renderer, m.stop_token_ids, True, skip_special)
      copied.append(
        dict(row, logprob_sum=float(np.sum(kept_lps)), logprobs=kept_lps + [None], think_budget=budget, forced=True)
      )
    writer.write(copied)
    if cut:
      column = lambda k: np.asarray([r.params[k] for r, *_ in cut])
      room = [
        min(sample_cfg.max_new_tokens - len(kept), sample_cfg.answer_budget or sample_cfg.max_new_tokens)
        for _, _, kept, _ in cut
      ]

      def write(finished):
        rows = []
        for row, tokens, lps, reason in finished:
          r, j, kept, kept_lps = cut[row]
          done = _generation_row(
            r, j, kept + tokens, kept_lps + [0.0] + lps, reason, renderer, m.stop_token_ids, True, skip_special
          )
          # The forced </think> has no sampled log-prob here: the row's sum and per-token list leave it out.
          done.update(
            logprob_sum=float(np.sum(kept_lps) + np.sum(lps)),
            logprobs=kept_lps + [None] + lps,
            think_budget=budget,
            forced=True,
          )
          rows.append(done)
        writer.write(rows)

      sampler.generate(
        m,
        [r.prompt + kept for r, _, kept, _ in cut],
        room,
        column("temperature"),
        column("top_p"),
        column("top_k"),
        sample_cfg.seed,
        m.stop_token_ids,
        sampler_options(sample_cfg, 1),
        prompt_ids=[r.index * n + j for r, j, _, _ in cut],
        presence_penalty=column("presence_penalty"),
        frequency_penalty=column("frequency_penalty"),
        max_total_tokens=_max_total(m, sample_cfg),
        on_finished=write,
        think_budget=budget,
        answer_budget=sample_cfg.answer_budget,
        start_steps=[len(kept) for _, _, kept, _ in cut],
      )
  return {"copied": len(copied) - len(full), "cut": len(cut) + len(full), "done_before": len(writer.done)}


def _generation_row(
  r: Request,
  sample: int,
  tokens: list[int],
  lps: list[float],
  reason: str,
  renderer: Renderer,
  stops: list[int],
  save_logprobs: bool,
  skip_special: bool = True,
) -> dict[str, Any]:
  text_ids = tokens[:-1] if reason == "stop" and tokens and tokens[-1] in stops else tokens
  row = {
    "index": r.index,
    "sample": sample,
    "id": r.id,
    "prompt_sha": r.sha,
    "prompt_tokens": len(r.prompt),
    "completion": renderer.decode(text_ids, skip_special),
    "completion_tokens": len(tokens),
    "finish_reason": reason,
    "logprob_sum": float(np.sum(lps)),
  }
  if r.id is None:
    del row["id"]
  if save_logprobs:
    row.update(token_ids=tokens, logprobs=lps)
  return row


def score_file(
  m: Any,
  eval_cfg: Any,
  input_path: str,
  output_path: str,
  settings: dict[str, Any],
  renderer: Renderer,
  rows_per_write: int = 256,
) -> dict[str, int]:
  """Writes per-token log-probs, entropies, sum, mean and is_greedy of each row's completion."""
  greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
  requests = read_requests(input_path, renderer, greedy, completions=True)
  settings = dict(settings, mode="score", input=input_path, chat_template=eval_cfg.chat_template)
  with jsonl.ResumableWriter(output_path, lambda row: (row["index"],), settings) as writer:
    _check_same_input(writer, requests, lambda r: [(r.index,)])
    todo = sorted((r for r in requests if (r.index,) not in writer.done), key=lambda r: len(r.prompt + r.completion))
    logging.info("score: %d rows, %d to do", len(requests), len(todo))
    written = 0
    with tqdm.tqdm(total=len(todo), desc="score", unit="row") as progress:
      for start in range(0, len(todo), rows_per_write):
        batch = todo[start : start + rows_per_write]
        scores = scorer.score(
          m, [r.prompt for r in batch], [r.completion for r in batch], batch_tokens=eval_cfg.score_batch_tokens
        )
        writer.write([_score_row(r, s) for r, s in zip(batch, scores)])
        written += len(batch)
        progress.update(len(batch))
  return {"written": written, "done_before": len(writer.done), "rows": len(requests)}


def _score_row(r: Request, s: scorer.Score) -> dict[str, Any]:
  row = {
    "index": r.index,
    "id": r.id,
    "prompt_sha": r.sha,
    "prompt_tokens": len(r.prompt),
    "completion_tokens": len(r.completion),
    "sum": s.sum,
    "mean": s.mean,
    "is_greedy": s.is_greedy,
    "logprobs": s.logprobs,
    "entropies": s.entropies,
  }
  if r.id is None:
    del row["id"]
  return row
