"""Rendering a conversation to token ids with per-token loss weights, exactly as the study's trainer does.

The prompt is the tokenizer's own chat template applied to the prompt turns with the generation prompt (even for
base models); the response is tokenized separately (no special tokens added) and the EOS id appended. Prompt
tokens get weight 0; response tokens and the EOS get 1. `<think>` content is part of the response and kept.
Weights are explicit per token, never derived from token ids (masking by id drops the EOS when pad == eos).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Qwen2.5's template injects this when no system turn is given; the study strips it ("no-sys-prompt" copies).
_DEFAULT_SYSTEM = re.compile(r"^<\|im_start\|>system\n.*?<\|im_end\|>\n", re.DOTALL)


def prompt_text(tokenizer: Any, messages: list[dict[str, str]], strip_default_system: bool = False) -> str:
  text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  if strip_default_system and messages[0]["role"] != "system":
    text = _DEFAULT_SYSTEM.sub("", text, count=1)
  return text


def eos_id(tokenizer: Any, eos_token: str | None) -> int:
  token = eos_token or tokenizer.eos_token
  ids = tokenizer.convert_tokens_to_ids(token)
  if ids is None or ids == tokenizer.unk_token_id:
    raise ValueError(f"data.eos_token={token!r} is not a token of this tokenizer")
  return int(ids)


def render(
  tokenizer: Any, messages: list[dict[str, str]], response: str, eos: int, strip_default_system: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [n], weights uint8 [n]) for one example."""
  prompt_ids = tokenizer(prompt_text(tokenizer, messages, strip_default_system), add_special_tokens=False)["input_ids"]
  response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
  tokens = np.asarray(prompt_ids + response_ids, np.int32)
  weights = np.concatenate([np.zeros(len(prompt_ids), np.uint8), np.ones(len(response_ids), np.uint8)])
  return tokens, weights
