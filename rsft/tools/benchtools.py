"""What bench/ scripts share: a warmed-up timer and transformers' generate over left-padded static batches (the
reference every decode figure is compared with)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def timed(fn: Callable[[], Any], warm: bool = True) -> tuple[Any, float]:
  """(result, seconds) of a call; with `warm`, the second of two calls (the first compiles and is not timed)."""
  if warm:
    fn()
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def hf_generate(hf: Any, prompts: Sequence[Sequence[int]], batch: int, **kwargs: Any) -> list[list[int]]:
  """transformers `generate` over `batch` prompts at a time, left-padded with id 0 (its KV cache, its defaults
  unless kwargs say otherwise); the generated ids of each prompt, padding after a stop included."""
  import torch

  out = []
  for i in range(0, len(prompts), batch):
    rows = prompts[i:i + batch]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(rows):
      ids[r, width - len(p):], mask[r, width - len(p):] = torch.tensor(list(p)), 1
    with torch.no_grad():
      out += hf.generate(input_ids=ids, attention_mask=mask, **{"pad_token_id": 0, **kwargs})[:, width:].tolist()
  return out
