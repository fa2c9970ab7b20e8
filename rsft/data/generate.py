"""Offline data for the CPU demo: Countdown long-CoT rows and a small tokenizer trained on them.

A config with data.generate="countdown" gets WORKDIR/data/countdown.jsonl (data.generate_rows rows) and, unless
model.tokenizer is set, WORKDIR/tokenizer; both are made once and reused on restart.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rsft.data import tiny_tokenizer
from rsft.tasks import countdown


def maybe_generate(config: Any, workdir: str) -> None:
  if config.data.generate in (None, "", "none"):
    return
  if config.data.generate != "countdown":
    raise ValueError(f"data.generate={config.data.generate!r}; only 'countdown' is known")
  data_file = os.path.join(workdir, "data", "countdown.jsonl")
  if not os.path.exists(data_file):
    os.makedirs(os.path.dirname(data_file), exist_ok=True)
    rows = countdown.rows(config.data.seed, config.data.generate_rows)
    with open(data_file + ".tmp", "w") as f:
      for row in rows:
        f.write(json.dumps(row) + "\n")
    os.replace(data_file + ".tmp", data_file)
  with config.unlocked():
    config.data.train_files = data_file
  if not config.model.tokenizer and not config.model.path:
    tok_dir = os.path.join(workdir, "tokenizer")
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
      with open(data_file) as f:
        rows = [json.loads(line) for line in f]
      tiny_tokenizer.train((r["message"][0]["content"] + r["response"] for r in rows),
                           config.model.arch.vocab_size, tok_dir)
    with config.unlocked():
      config.model.tokenizer = tok_dir
