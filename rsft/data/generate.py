"""Offline data for the CPU demo: Countdown long-CoT rows and a small tokenizer trained on them.

A config with data.generate="countdown" gets WORKDIR/data/countdown.jsonl (data.generate_rows rows) and, unless
model.tokenizer is set, WORKDIR/tokenizer; both are made once and reused on restart. The caller gets the config
values that point at them and applies them to its own copy (rsft.config.with_values): the config it was given is
never edited.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rsft import distributed
from rsft.data import tiny_tokenizer
from rsft.tasks import countdown


def prepare(data: Any, model: Any, workdir: str) -> dict[str, str]:
  """Makes the generated files (once) and returns {dotted config key: value} that use them; {} for real data."""
  if data.generate in (None, "", "none"):
    return {}
  if data.generate != "countdown":
    raise ValueError(f"data.generate={data.generate!r}; only 'countdown' is known")
  data_file = os.path.join(workdir, "data", "countdown.jsonl")
  tok_dir = os.path.join(workdir, "tokenizer")
  values = {"data.train_files": data_file}
  if not model.tokenizer and not model.path:
    values["model.tokenizer"] = tok_dir
  if distributed.is_primary():  # one writer; the other processes of a pod wait for the files
    _write(data, model, data_file, tok_dir if "model.tokenizer" in values else None)
  distributed.sync("rsft.data.generate")
  return values


def _write(data: Any, model: Any, data_file: str, tok_dir: str | None) -> None:
  if not os.path.exists(data_file):
    os.makedirs(os.path.dirname(data_file), exist_ok=True)
    rows = countdown.rows(data.seed, data.generate_rows)
    with open(data_file + ".tmp", "w") as f:
      for row in rows:
        f.write(json.dumps(row) + "\n")
    os.replace(data_file + ".tmp", data_file)
  if tok_dir and not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
    with open(data_file) as f:
      rows = [json.loads(line) for line in f]
    tiny_tokenizer.train((r["message"][0]["content"] + r["response"] for r in rows), model.arch.vocab_size, tok_dir)
