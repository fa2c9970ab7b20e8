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


def reference_model(which: str, **tiny_shape: Any) -> tuple[Any, str, str]:
  """(transformers model in float32, its local HF dir, a label): "smollm2" is the real SmolLM2-135M-Instruct
  (rsft.tools.models.fetch), anything else a tiny random Qwen3 of `tiny_shape` written to a temporary dir."""
  import tempfile

  import torch
  import transformers

  if which == "smollm2":
    from rsft.tools import models

    path = models.fetch("smollm2-135m-instruct")
    return (
      transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
      path,
      "SmolLM2-135M-Instruct",
    )
  from rsft.tools import tiny_models

  path = tempfile.mkdtemp()
  return tiny_models.build("qwen3", path, **tiny_shape).eval(), path, "tiny Qwen3"


def hf_generate(hf: Any, prompts: Sequence[Sequence[int]], batch: int, **kwargs: Any) -> list[list[int]]:
  """transformers `generate` over `batch` prompts at a time, left-padded with id 0 (its KV cache, its defaults
  unless kwargs say otherwise); the generated ids of each prompt, padding after a stop included."""
  import torch

  out = []
  for i in range(0, len(prompts), batch):
    rows = prompts[i : i + batch]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(rows):
      ids[r, width - len(p) :], mask[r, width - len(p) :] = torch.tensor(list(p)), 1
    with torch.no_grad():
      out += hf.generate(input_ids=ids, attention_mask=mask, **{"pad_token_id": 0, **kwargs})[:, width:].tolist()
  return out
