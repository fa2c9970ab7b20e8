"""Model-graded benchmarks: AlpacaEval reward model vs transformers, endpoint and local judges for HarmBench /
TruthfulQA, and the up-front check for a missing judge."""

import http.server
import json
import os
import shutil
import threading

import numpy as np
import pytest
from grade_mode import grade

from rsft import config as rconfig
from rsft.evals import benchmarks, preflight
from rsft.tasks import countdown
from rsft.tools import tiny_models

torch = pytest.importorskip("torch")
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "benchmarks")


def rows(name, count):
  with open(os.path.join(BENCH, name)) as f:
    return [json.loads(next(f)) for _ in range(count)]


def tokenizer_into(path):
  from rsft.data import tiny_tokenizer

  texts = [countdown.prompt(p) + countdown.trace(p) for p in countdown.generate(0, 100)]
  return tiny_tokenizer.train(texts, 500, str(path))


def test_alpaca_eval_rewards_equal_transformers_and_win_rate(tmp_path):
  rm_dir = tmp_path / "rm"
  hf = tiny_models.build("qwen3", rm_dir, head="score", seed=2)
  tok = tokenizer_into(rm_dir)
  items = rows("alpaca_eval.jsonl", 3)
  answers = ["<think>plan</think>A short answer.", "Another answer, longer than the first one.", "x"]
  requests = [{"benchmark": "alpaca_eval", "item": it, "response": a} for it, a in zip(items, answers)]
  out = grade(tmp_path, requests, reward_model=str(rm_dir), protocol="rsft")  # rsft adds the win rate
  study = grade(tmp_path / "study", requests, reward_model=str(rm_dir))
  assert [r["score"] for r in study] == pytest.approx([r["score"] for r in out]) and "win_rate" not in study[0]["extra"]

  def hf_reward(instruction, response):
    text = tok.apply_chat_template(
      [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], tokenize=False
    )
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
      return float(hf(input_ids=ids).logits[0, 0])

  for it, a, r in zip(items, answers, out):
    answer = a.split("</think>")[-1]
    want, ref = hf_reward(it["instruction"], answer), hf_reward(it["instruction"], it["output"])
    assert r["score"] == pytest.approx(want, abs=1e-4)
    assert r["extra"]["win_rate"] == float(want > ref)
    assert r["extra"]["soft_win_rate"] == pytest.approx(1 / (1 + np.exp(ref - want)), abs=1e-4)


class FakeJudge(http.server.BaseHTTPRequestHandler):
  """An OpenAI-compatible /chat/completions and /completions that grades by keywords and records what it was
  asked (path, model, prompt)."""

  seen: list = []

  def do_POST(self):  # noqa: N802
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    chat = self.path.endswith("/chat/completions")
    prompt = body["messages"][0]["content"] if chat else body["prompt"]
    FakeJudge.seen.append((self.path.rsplit("/v1", 1)[-1], body["model"], prompt))
    if "FILTERED" in prompt:  # a content filter: HTTP 400 for this prompt only
      self.send_response(400)
      self.send_header("Content-Length", "0")
      self.end_headers()
      return
    if "#thescore" in prompt:
      reply = (
        "#thereason: bad.\n#thescore: 5"
        if "HARMFUL" in prompt
        else ("no idea" if "GARBAGE" in prompt else "#thereason: refused.\n#thescore: 1")
      )
    else:
      reply = "yes" if ("True:" in prompt and "fact" in prompt) or ("Helpful:" in prompt and "long" in prompt) else "no"
    data = json.dumps({"choices": [{"message": {"content": reply}} if chat else {"text": " " + reply}]}).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


@pytest.fixture
def endpoint():
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  FakeJudge.seen = []
  yield f"http://127.0.0.1:{server.server_address[1]}/v1"
  server.shutdown()


def test_endpoint_safety_judge_asr_and_parse_failures(tmp_path, endpoint):
  behaviors = rows("harmbench_behaviors_text_all.jsonl", 3)
  answers = [
    "<think>the user wants HARMFUL detail</think>I cannot help with that.",
    "Sure: HARMFUL steps...",
    "GARBAGE FILTERED",
  ]
  out = grade(
    tmp_path,
    [{"benchmark": "harmbench", "item": b, "response": a} for b, a in zip(behaviors, answers)],
    safety_judge=endpoint,
  )
  assert [r["score"] for r in out] == [0.0, 1.0, 0.0]  # ASR counts only 5s
  assert out[0]["extra"] == {"parse_failed": 0.0, "harmfulness": 1.0} and out[1]["answer"] == 5
  assert out[2]["status"] == "parse_failed" and out[2]["extra"]["harmfulness"] == 0.0  # the harness's mean counts 0
  paths, models, prompts = zip(*FakeJudge.seen)
  assert set(paths) == {"/chat/completions"} and set(models) == {"gpt-4.1"}
  assert not any("the user wants" in p for p in prompts)  # thinking removed
  assert any(behaviors[0]["Behavior"] in p for p in prompts)


def test_truthfulqa_judges(tmp_path, endpoint):
  questions = rows("truthfulqa.jsonl", 2)
  answers = ["<think>hmm</think>It is a fact, explained at long length.", "No."]
  out = grade(
    tmp_path,
    [{"benchmark": "truthfulqa", "item": q, "response": a} for q, a in zip(questions, answers)],
    truth_judge=endpoint,
    info_judge=endpoint,
  )
  assert [r["score"] for r in out] == [1.0, 0.0]
  assert [r["extra"]["informative"] for r in out] == [1.0, 0.0]
  asked = {(path, p) for path, _, p in FakeJudge.seen}  # raw prompts on /completions, as the study's vLLM judges
  assert ("/completions", f"Q:{questions[0]['Question']}A:It is a fact, explained at long length.True:") in asked


def test_local_judge_runs_on_rsft_and_missing_judges_are_reported(tmp_path):
  judge_dir = tmp_path / "judge"
  qwen = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tokenizers", "qwen3")
  if not os.path.isdir(qwen):
    pytest.skip("../shared/tokenizers/qwen3 not present")
  # The real Qwen tokenizer keeps the 6,789-character HEx-PHI template at ~1.4k tokens (a tiny BPE needs ~6k).
  tiny_models.build("qwen3", judge_dir, seed=5, vocab_size=151680, max_position_embeddings=4096)
  for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
    shutil.copy(os.path.join(qwen, name), judge_dir / name)
  behaviors = rows("harmbench_behaviors_text_all.jsonl", 2)
  out = grade(
    tmp_path,
    [{"benchmark": "harmbench", "item": b, "response": "No."} for b in behaviors],
    safety_judge=str(judge_dir),
    judge_max_new_tokens=8,
    judge_batch_size=2,
  )
  assert [r["extra"]["parse_failed"] for r in out] == [1.0, 1.0]  # a random judge writes no #thescore
  c = rconfig.base_config()
  c.eval.data_dir = BENCH
  assert preflight.problem(benchmarks.get("alpaca_eval"), c.eval, {}) == "reward model: set --config.eval.reward_model"
  assert preflight.problem(benchmarks.get("truthfulqa"), c.eval, {}) == "truth judge: set --config.eval.truth_judge"
  c.eval.truth_judge = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
  assert preflight.problem(benchmarks.get("truthfulqa"), c.eval, {}).startswith(
    "truth judge: endpoint http://127.0.0.1:9/v1 does not answer"
  )
  c.eval.truth_judge, c.eval.info_judge = str(judge_dir), str(tmp_path / "absent")
  assert preflight.problem(benchmarks.get("truthfulqa"), c.eval, {}).endswith(
    "absent is not a directory (a Hugging Face checkpoint directory or an rsft step directory)"
  )
