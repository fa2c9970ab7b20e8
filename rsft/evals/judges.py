"""Model-based grading: reward models (AlpacaEval) and judges (TruthfulQA, HEx-PHI / HarmBench), through rsft.

A judge is a local Hugging Face checkpoint run on rsft's own sampler (greedy), or, for the study's GPT-4.1 HEx-PHI
judge, any OpenAI-compatible endpoint given by URL (`http(s)://host/v1`, model name in eval.safety_judge_model,
key from $OPENAI_API_KEY when set). Models are loaded on first use and released after each checkpoint's
grading, so a judge and the policy never share the accelerator.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

HEXPHI_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts", "hexphi_judge.txt")


class LocalJudge:
  """Greedy completions from a local checkpoint; `chat=True` renders each prompt as one user turn."""

  def __init__(self, model: Any, chat: bool, batch_size: int = 32):
    from rsft.evals.requests import Renderer
    self.model, self.batch_size = model, batch_size
    self.renderer = Renderer(model.tokenizer, chat_template=chat)

  def complete(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    from rsft.infer import sampler
    out = []
    for start in range(0, len(prompts), self.batch_size):
      batch = [self.renderer.prompt({"prompt": p}, "judge prompt") for p in prompts[start:start + self.batch_size]]
      res = sampler.generate(self.model, batch, max_new_tokens, stop_token_ids=self.model.stop_token_ids,
                             options=sampler.Options(pad_prompts_to=self.batch_size))
      out += [self.renderer.decode(t) for t in res.tokens]
    return out


class EndpointJudge:
  """An OpenAI-compatible /chat/completions endpoint (temperature 0), requests in parallel, with retries."""

  def __init__(self, url: str, model: str, workers: int = 8, retries: int = 3, timeout: float = 300.0):
    self.url = url.rstrip("/") + "/chat/completions"
    self.model, self.workers, self.retries, self.timeout = model, workers, retries, timeout

  def _one(self, prompt: str, max_new_tokens: int) -> str:
    body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                       "max_tokens": max_new_tokens}).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("OPENAI_API_KEY"):
      headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    for attempt in range(self.retries):
      try:
        request = urllib.request.Request(self.url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
          return json.load(response)["choices"][0]["message"]["content"] or ""
      except Exception as e:  # noqa: BLE001 - network errors are retried, then reported with the URL
        if attempt == self.retries - 1:
          raise RuntimeError(f"judge endpoint {self.url} failed {self.retries} times: {e}") from e
        time.sleep(2 ** attempt)
    return ""

  def complete(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
      return list(pool.map(lambda p: self._one(p, max_new_tokens), prompts))


class RewardModel:
  """Scores (instruction, response) with a *ForSequenceClassification checkpoint under its own chat template."""

  def __init__(self, model: Any, batch_tokens: int = 16384):
    if model.config.head != "score" or model.tokenizer is None:
      raise ValueError("eval.reward_model must be a *ForSequenceClassification checkpoint with tokenizer files.")
    self.model, self.batch_tokens = model, batch_tokens

  def score(self, instructions: Sequence[str], responses: Sequence[str]) -> list[float]:
    from rsft.infer import scorer
    tok = self.model.tokenizer
    seqs = []
    for instruction, response in zip(instructions, responses):
      text = tok.apply_chat_template([{"role": "user", "content": instruction},
                                      {"role": "assistant", "content": response}], tokenize=False)
      seqs.append(tok(text, add_special_tokens=False)["input_ids"])
    return [float(x) for x in scorer.rewards(self.model, seqs, batch_tokens=self.batch_tokens)]


class Judges:
  """Lazily built graders for one checkpoint's grading; `close()` releases their models."""

  def __init__(self, eval_cfg: Any, load_model: Callable[[str], Any] | None):
    self.cfg, self._load, self._cache = eval_cfg, load_model, {}

  def _model(self, path: str):
    if self._load is None:
      raise ValueError("this grading needs a model, but no loader was given")
    if not os.path.isdir(path):
      raise FileNotFoundError(f"judge / reward model {path}: not a directory")
    logging.info("loading judge %s", path)
    return self._load(path)

  def _get(self, key: str, build: Callable[[], Any]) -> Any:
    if key not in self._cache:
      self._cache[key] = build()
    return self._cache[key]

  def reward_model(self) -> RewardModel:
    path = self.cfg.reward_model
    if not path:
      raise ValueError("AlpacaEval needs --config.eval.reward_model=<HF dir of a reward model>.")
    return self._get("rm", lambda: RewardModel(self._model(path), self.cfg.score_batch_tokens))

  def judge(self, which: str) -> LocalJudge | EndpointJudge:
    """which: truth_judge | info_judge | safety_judge (config keys)."""
    target = self.cfg[which]
    if not target:
      raise ValueError(f"this benchmark needs --config.eval.{which}=<HF dir or http(s):// endpoint>.")
    if target.startswith(("http://", "https://")):
      model = self.cfg.safety_judge_model if which == "safety_judge" else os.path.basename(target)
      return self._get(which, lambda: EndpointJudge(target, model))
    chat = which == "safety_judge"  # the TruthfulQA judges are fine-tuned on the raw "Q: A: True:" format
    return self._get(which, lambda: LocalJudge(self._model(target), chat, self.cfg.judge_batch_size))

  def close(self) -> None:
    self._cache.clear()


@functools.lru_cache(maxsize=1)
def _hexphi_template() -> str:
  with open(HEXPHI_TEMPLATE, encoding="utf-8") as f:
    return f.read()


def hexphi_prompt(instruction: str, response: str) -> str:
  return _hexphi_template().replace("{query}", instruction).replace("{response}", response)


def parse_score(text: str) -> int | None:
  """The integer after `#thescore:` (1-5), else None."""
  import re
  match = re.search(r"#thescore:\s*\**\s*(\d+)", text)
  if not match or not 1 <= int(match.group(1)) <= 5:
    return None
  return int(match.group(1))
