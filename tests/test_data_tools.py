"""Data tools: NoCoT derivation, verified filtering by rejection sampling, dataset statistics."""

import json
import subprocess
import sys

import pytest

from rsft.infer import sampler
from rsft.tools import data as tools

ROWS = [
  {
    "message": [{"role": "user", "content": "What is 2+2?"}],
    "response": "<think>\n2+2 is 4. Wait, check: yes.\n</think>\n\nThe answer is \\boxed{4}.",
    "answer": "4",
  },
  {
    "message": [{"role": "user", "content": "What is 2+3?"}],
    "response": "No thinking here: \\boxed{5}.",
    "answer": "5",
  },
  {
    "message": [{"role": "user", "content": "What is 9*9?"}],
    "response": "<think>hmm</think>\\boxed{81}",
    "answer": "81",
  },
]


def test_nocot_strips_only_the_thinking(tmp_path):
  out = tools.nocot_rows(ROWS)
  assert out[0]["response"] == "The answer is \\boxed{4}." and out[1]["response"] == ROWS[1]["response"]
  assert out[0]["message"] == ROWS[0]["message"] and "<think>" in ROWS[0]["response"]  # input untouched
  src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
  src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
  subprocess.run(
    [sys.executable, "-m", "rsft.tools.data", "nocot", str(src), str(dst)], check=True, capture_output=True
  )
  assert [json.loads(line)["response"] for line in dst.read_text().splitlines()][2] == "\\boxed{81}"
  with pytest.raises(ValueError, match="row 0"):
    tools.nocot_rows([{"prompt": "x"}])


def test_stats():
  s = tools.stats(ROWS)
  assert s["rows"] == 3 and s["with_thinking"] == pytest.approx(2 / 3) and s["length"]["max"] == 12
  assert s["markers_per_1k_words"]["backtracking"] > 0


class _Tok:
  """Characters as ids: enough for the filter's render -> sample -> decode -> grade path."""

  chat_template = "x"

  def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
    return messages[-1]["content"]

  def __call__(self, text, add_special_tokens=False):
    return {"input_ids": [ord(c) for c in text]}

  def decode(self, ids, skip_special_tokens=True):
    return "".join(chr(i) for i in ids)


def test_verified_filter_keeps_one_correct_sample_per_query(monkeypatch):
  answers = {
    "What is 2+2?": ["\\boxed{5}", "\\boxed{4}", "so \\boxed{4}"],
    "What is 2+3?": ["\\boxed{6}"] * 3,
    "What is 9*9?": ["\\boxed{81}", "\\boxed{80}", "\\boxed{18}"],
  }

  def fake_generate(model, prompts, max_new, *args, **kwargs):
    texts = [t for p in prompts for t in answers["".join(map(chr, p))]]
    return sampler.GenerateResult(
      [[ord(c) for c in t] for t in texts], [[0.0] * len(t) for t in texts], ["length"] * len(texts)
    )

  monkeypatch.setattr(sampler, "generate", fake_generate)
  model = type("M", (), {"tokenizer": _Tok(), "stop_token_ids": []})()
  kept = tools.verified_filter(model, ROWS, n=3, batch_size=2)
  assert [r["answer"] for r in kept] == ["4", "81"]  # 2+3 had no correct sample
  assert kept[0]["response"] in ("\\boxed{4}", "so \\boxed{4}") and kept[0]["num_correct"] == 2
  assert kept[1]["response"] == "\\boxed{81}" and kept[1]["num_correct"] == 1
