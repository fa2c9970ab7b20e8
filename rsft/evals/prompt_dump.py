"""eval.mode=prompts: the exact text every item sends to the model, with its decoding, without model weights.

This is how a user checks rsft against another harness: each row holds the user turn, the text after the chat
template of model.tokenizer (or model.path's tokenizer files), whether a template was applied, the token count,
and the decoding, thinking policy, extractor, metric and harness file of the benchmark's protocol entry. A
benchmark without its data gets one row saying what is missing.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging

from rsft.convert import model_io
from rsft.evals import sweep
from rsft.evals.requests import Renderer
from rsft.models import resolve


def load_tokenizer(config: Any) -> Any:
  """model.tokenizer, else model.path's tokenizer files; None when neither is set (prompts stay untemplated)."""
  path = resolve.tokenizer_dir(config.model)
  if not path:
    return None
  try:
    tokenizer = model_io.load_tokenizer(path)
  except (OSError, ValueError) as e:
    raise ValueError(
      f"eval.mode=prompts: no tokenizer could be read from {path} (model.tokenizer or model.path): {e}"
    ) from e
  if tokenizer is None:
    raise ValueError(f"eval.mode=prompts: {path} (model.tokenizer or model.path) has no tokenizer files.")
  return tokenizer


def _context_length(config: Any) -> int | None:
  """max_position_embeddings from model.path's config.json (what a -1 prompt + output cap resolves to)."""
  if not config.model.path or not os.path.exists(os.path.join(config.model.path, "config.json")):
    return None
  return resolve.architecture(config.model)[0].max_position_embeddings


def write(config: Any, output: str, tokenizer: Any) -> dict[str, int]:
  """One JSONL row per item (and one per benchmark that cannot run); returns the counts."""
  benches, items, not_run = sweep.prepare(config, graders=False)
  context = _context_length(config)
  renderer = Renderer(tokenizer, config.eval.chat_template, config.data.strip_default_system)
  rows = []
  for b in benches:
    d = sweep.decoding(config, b)
    dec = {
      k: d[k]
      for k in (
        "n",
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "max_new_tokens",
        "max_total_tokens",
        "skip_special_tokens",
      )
    }
    if dec["max_total_tokens"] < 0 and context:  # -1: the model's own context length
      dec["max_total_tokens"] = context
    entry = dict(
      protocol=config.eval.protocol,
      harness=b.harness,
      think=b.think,
      extractor=b.extractor or b.grader,
      metric=b.metric,
      higher_is_better=b.higher_is_better,
    )
    for index, item in enumerate(items[b.name]):
      where = f"benchmark {b.name} item {index}"
      text, templated = renderer.text({"prompt": item.prompt}, where) if tokenizer is not None else (item.prompt, False)
      row = dict(
        benchmark=b.name,
        index=index,
        id=item.id,
        prompt=item.prompt,
        text=text,
        chat_template=templated,
        decoding=dec,
        **entry,
      )
      if tokenizer is not None:
        row["prompt_tokens"] = len(renderer.prompt({"prompt": item.prompt}, where))
      rows.append(row)
  rows += [dict(benchmark=name, not_run=why) for name, why in not_run.items()]
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output + ".tmp", "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  os.replace(output + ".tmp", output)
  logging.info(
    "eval prompts: %d prompts of %d benchmarks to %s (%d not run)",
    len(rows) - len(not_run),
    len(benches),
    output,
    len(not_run),
  )
  return {"written": len(rows) - len(not_run), "benchmarks": len(benches), "not_run": len(not_run)}
