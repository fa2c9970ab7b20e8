"""Offline data for the CPU demo: Countdown long-CoT rows, the base model's short-answer rows, and a small
tokenizer trained on both.

`data.generate` names a Countdown level (rsft.tasks.countdown.LEVELS): WORKDIR/data/<level>.jsonl gets
data.generate_rows SFT rows. `pretrain.generate` names short-answer tasks (rsft.tasks.short_answer): WORKDIR/data/
base.jsonl gets pretrain.rows rows the from-scratch base model learns before SFT. Unless model.tokenizer is set,
WORKDIR/tokenizer is trained on both. Everything is made once and reused on restart. The caller gets the config
values that point at the files and applies them to its own copy (rsft.config.with_values): the config it was given
is never edited.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rsft import distributed
from rsft.data import tiny_tokenizer
from rsft.tasks import countdown, short_answer

BASE_FILE = "base.jsonl"


def prepare(config: Any, workdir: str) -> dict[str, str]:
  """Makes the generated files (once) and returns {dotted config key: value} that use them; {} for real data."""
  level, tasks = config.data.generate, tuple(config.pretrain.generate or ())
  if level in (None, "", "none") and not tasks:
    return {}
  files = {}  # config key -> (path, rows maker)
  if level not in (None, "", "none"):
    if level not in countdown.LEVELS:
      raise ValueError(f"data.generate={level!r}; known: {', '.join(countdown.LEVELS)}")
    files["data.train_files"] = (
      os.path.join(workdir, "data", f"{level}.jsonl"),
      lambda: countdown.rows(config.data.seed, config.data.generate_rows, level),
    )
  if tasks:
    files["pretrain.train_files"] = (
      os.path.join(workdir, "data", BASE_FILE),
      lambda: short_answer.rows(config.data.seed, config.pretrain.rows, tasks),
    )
  values = {key: path for key, (path, _) in files.items()}
  tok_dir = None
  if not config.model.tokenizer and not config.model.path:
    tok_dir = values["model.tokenizer"] = os.path.join(workdir, "tokenizer")
  if distributed.is_primary():  # one writer; the other processes of a pod wait for the files
    for path, make in files.values():
      _write_rows(path, make)
    if tok_dir and not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
      rows = [row for path, _ in files.values() for row in _read_rows(path)]
      tiny_tokenizer.train(
        (r["message"][0]["content"] + r["response"] for r in rows), config.model.arch.vocab_size, tok_dir
      )
  distributed.sync("rsft.data.generate")
  return values


def _write_rows(path: str, make: Any) -> None:
  if os.path.exists(path):
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    for row in make():
      f.write(json.dumps(row) + "\n")
  os.replace(path + ".tmp", path)


def _read_rows(path: str) -> list[dict[str, Any]]:
  with open(path) as f:
    return [json.loads(line) for line in f]
