"""Turning a JSONL request row into token ids, the same way for generate and score.

A row gives its prompt as `messages` (chat turns, rendered with the model's chat template and a generation
prompt), `prompt` (a string: one user turn through the chat template when eval.chat_template is on and the
tokenizer has one, the raw text otherwise) or `prompt_ids` (token ids, used as they are). Rendering goes through
rsft.data.chat, so prompts match training exactly (including stripping Qwen2.5's default system prompt).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rsft.data import chat


class Renderer:
  def __init__(self, tokenizer: Any, chat_template: bool = True, strip_default_system: bool = False):
    self.tokenizer = tokenizer
    self.has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    self.chat_template = chat_template
    self.strip_default_system = strip_default_system

  def prompt(self, row: dict[str, Any], where: str) -> list[int]:
    ids, text, special = self._prompt(row, where)
    return ids if text is None else self._encode(text, special)

  def pair(self, row: dict[str, Any], where: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids). A text completion after a text prompt is tokenized jointly and split at the
    prompt's tokens (lm-evaluation-harness), so a merge across the boundary scores as the model would see it.
    Exact generated tokens (generate's `token_ids` with eval.save_logprobs) go in `completion_ids`."""
    ids, text, special = self._prompt(row, where)
    prompt = ids if text is None else self._encode(text, special)
    if "completion_ids" in row:
      return prompt, _ids(row["completion_ids"], f"{where}: completion_ids")
    if not isinstance(row.get("completion"), str):
      raise ValueError(f"{where}: a row needs 'completion' (a string) or 'completion_ids'.")
    if self.tokenizer is None:
      raise ValueError(f"{where}: the model has no tokenizer, so rows need completion_ids.")
    if text is not None:
      whole = self._encode(text + row["completion"], special)
      if whole[: len(prompt)] == prompt:
        return prompt, whole[len(prompt) :]
    return prompt, self._encode(row["completion"], False)

  def _prompt(self, row: dict[str, Any], where: str) -> tuple[list[int] | None, str | None, bool]:
    """(ids, None, _) for prompt_ids, else (None, text, add_special_tokens)."""
    if "prompt_ids" in row:
      return _ids(row["prompt_ids"], f"{where}: prompt_ids"), None, False
    if self.tokenizer is None:
      raise ValueError(f"{where}: the model has no tokenizer, so rows need prompt_ids.")
    if "messages" in row:
      messages = row["messages"]
      if not (
        isinstance(messages, list)
        and messages
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)
      ):
        raise ValueError(f"{where}: messages must be a non-empty list of {{role, content}} objects.")
      if not self.has_template:
        raise ValueError(f"{where}: chat messages need a tokenizer with a chat template.")
      return None, chat.prompt_text(self.tokenizer, messages, self.strip_default_system), False
    if "prompt" in row:
      if not isinstance(row["prompt"], str):
        raise ValueError(f"{where}: prompt must be a string.")
      if self.chat_template and self.has_template:
        messages = [{"role": "user", "content": row["prompt"]}]
        return None, chat.prompt_text(self.tokenizer, messages, self.strip_default_system), False
      return None, row["prompt"], True
    raise ValueError(f"{where}: a row needs one of 'messages', 'prompt' or 'prompt_ids' (keys: {sorted(row)}).")

  def _encode(self, text: str, special: bool) -> list[int]:
    return self.tokenizer(text, add_special_tokens=special)["input_ids"]

  def text(self, row: dict[str, Any], where: str) -> tuple[str | None, bool]:
    """(the exact text a string or messages prompt becomes, whether a chat template made it); None for
    prompt_ids rows. What eval.mode=prompts writes."""
    ids, text, _ = self._prompt(row, where)
    templated = text is not None and ("messages" in row or (self.chat_template and self.has_template))
    return text, templated

  def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
    # vLLM drops special tokens by default; lm-eval and evalchemy ask it to keep them (skip_special_tokens=False).
    # Qwen3's <think> tags are not special tokens and always stay.
    if self.tokenizer is None:
      return ""
    return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def _ids(value: Any, where: str) -> list[int]:
  if not (isinstance(value, list) and all(isinstance(t, int) and t >= 0 for t in value)):
    raise ValueError(f"{where} must be a list of non-negative integers.")
  return value


def fingerprint(ids: list[int]) -> str:
  """Short hash of a prompt's tokens: a rerun whose input file changed under the same index is caught."""
  return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:12]
