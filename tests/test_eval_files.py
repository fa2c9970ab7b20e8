"""eval.py generate / score modes: JSONL in and out, rendering, resume after a kill without duplicates or losses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cpu_env
import numpy as np
import pytest

from rsft import config as rconfig
from rsft.evals import checkpoints, jsonl, run
from rsft.tasks import countdown
from rsft.tools import tiny_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  from rsft.data import tiny_tokenizer

  path = tmp_path_factory.mktemp("tiny_chat")
  puzzles = countdown.generate(0, 200)
  tiny_tokenizer.train([countdown.prompt(p) + countdown.trace(p) for p in puzzles], 500, str(path))
  tiny_models.build("qwen3", path, seed=1, vocab_size=512)
  return str(path)


def write_input(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  return str(path)


def requests(count=7):
  rows = [{"id": f"q{i}", "prompt": countdown.prompt(p)} for i, p in enumerate(countdown.generate(5, count))]
  rows[1] = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."}]}
  rows[2] = {"prompt_ids": [5, 6, 7, 8], "temperature": 0.0}
  rows[3]["top_k"] = 3
  return rows


def make_config(model_dir, mode, input_path, output, **sample):
  c = rconfig.base_config()
  c.model.path = model_dir
  c.model.dtype = "float32"
  c.eval.mode, c.eval.input, c.eval.output, c.eval.save_logprobs = mode, input_path, output, True
  c.sample.update(
    dict(
      dict(
        max_new_tokens=12,
        n=2,
        max_num_seqs=3,
        temperature=1.0,
        top_p=0.9,
        top_k=0,
        seed=3,
        chunk_steps=5,
        prompt_buckets=(32, 64, 128),
      ),
      **sample,
    )
  )
  c.sample.mesh.data = 2  # 2 x 4 sampling mesh on the 8 fake devices
  c.sample.mesh.tensor = 4
  return c


def read_rows(path):
  return sorted((r for _, r in jsonl.read(path)), key=lambda r: (r["index"], r.get("sample", 0)))


@pytest.fixture(scope="module")
def full_run(model_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("full")
  inp = write_input(tmp / "in.jsonl", requests())
  out = str(tmp / "out.jsonl")
  counts = run.run(make_config(model_dir, "generate", inp, out), str(tmp / "work"))
  return inp, out, counts


def test_generate_writes_every_sample_with_counts_and_reasons(model_dir, full_run):
  import transformers

  inp, out, counts = full_run
  rows = read_rows(out)
  assert counts["written"] == len(rows) == 14 and counts["done_before"] == 0
  assert [(r["index"], r["sample"]) for r in rows] == [(i, j) for i in range(7) for j in range(2)]
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  stops = {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}
  for r in rows:
    assert r["completion_tokens"] == len(r["token_ids"]) == len(r["logprobs"]) <= 12
    assert r["finish_reason"] == ("stop" if r["token_ids"][-1] in stops else "length")
    assert r["logprob_sum"] == pytest.approx(sum(r["logprobs"]), abs=1e-4)
    assert all(t < len(tok) for t in r["token_ids"])
  assert rows[0]["id"] == "q0" and "id" not in rows[2]
  chat = tok.apply_chat_template(requests()[1]["messages"], add_generation_prompt=True, tokenize=False)
  assert rows[2]["prompt_tokens"] == len(tok(chat, add_special_tokens=False)["input_ids"])
  assert rows[4]["prompt_tokens"] == 4 and rows[4]["token_ids"] == rows[5]["token_ids"]  # temperature 0: greedy
  assert rows[0]["token_ids"] != rows[1]["token_ids"]


def test_killed_generate_run_resumes_without_duplicates_or_losses(model_dir, full_run, tmp_path):
  inp, full_out, _ = full_run
  out = str(tmp_path / "out.jsonl")
  flags = [
    f"--config={ROOT}/configs/base.py",
    f"--workdir={tmp_path}/work",
    f"--config.model.path={model_dir}",
    "--config.model.dtype=float32",
    "--config.eval.mode=generate",
    f"--config.eval.input={inp}",
    f"--config.eval.output={out}",
    "--config.eval.save_logprobs=True",
    "--config.sample.max_new_tokens=12",
    "--config.sample.n=2",
    "--config.sample.max_num_seqs=1",
    "--config.sample.temperature=1.0",
    "--config.sample.top_p=0.9",
    "--config.sample.top_k=0",
    "--config.sample.seed=3",
    "--config.sample.chunk_steps=5",
    "--config.sample.prompt_buckets=(32,64,128)",
    "--config.sample.mesh.data=2",
    "--config.sample.mesh.tensor=4",
  ]
  env = cpu_env.env(8)
  proc = subprocess.Popen(
    [sys.executable, f"{ROOT}/eval.py"] + flags, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(out) and sum(1 for _ in open(out)) >= 4:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_with = sum(1 for _ in open(out))
  assert 4 <= killed_with < 14, "the kill should land mid-run"
  with open(out, "a") as f:
    f.write('{"index": 6, "sample": 0, "comple')  # and a torn last line, as a kill during a write leaves
  # max_num_seqs differs from the full run, so admission differs too: rows must not depend on their slot-mates.
  counts = run.run(make_config(model_dir, "generate", inp, out, max_num_seqs=1), str(tmp_path / "work"))
  assert counts["written"] == 14 - killed_with and counts["done_before"] == killed_with
  got, want = read_rows(out), read_rows(full_out)
  assert [(r["index"], r["sample"]) for r in got] == [(r["index"], r["sample"]) for r in want]
  assert [r["token_ids"] for r in got] == [r["token_ids"] for r in want]
  again = run.run(make_config(model_dir, "generate", inp, out, max_num_seqs=1), str(tmp_path / "work"))
  assert again["written"] == 0 and len(read_rows(out)) == 14


def test_rerun_with_other_settings_or_changed_input_is_an_error(model_dir, full_run, tmp_path):
  inp, full_out, _ = full_run
  out = str(tmp_path / "out.jsonl")
  shutil.copy(full_out, out)
  shutil.copy(full_out + ".meta.json", out + ".meta.json")
  with pytest.raises(ValueError, match="other settings.*seed"):
    run.run(make_config(model_dir, "generate", inp, out, seed=4), str(tmp_path / "work"))
  changed = requests()
  changed[5]["prompt"] += " Hurry."
  inp2 = write_input(tmp_path / "in.jsonl", changed)
  shutil.copy(full_out + ".meta.json", out + ".meta.json")
  meta = json.load(open(out + ".meta.json"))
  meta["input"] = inp2
  json.dump(meta, open(out + ".meta.json", "w"))
  with pytest.raises(ValueError, match="row 5 was written for a different prompt"):
    run.run(make_config(model_dir, "generate", inp2, out), str(tmp_path / "work"))


def test_score_mode_reproduces_the_sampler_log_probs(model_dir, full_run, tmp_path):
  inp, full_out, _ = full_run
  source = {i: r for i, r in enumerate(requests())}
  gen = read_rows(full_out)
  rows = [dict(source[r["index"]], completion_ids=r["token_ids"]) for r in gen]
  rows = [{k: v for k, v in r.items() if k not in ("temperature", "top_k")} for r in rows]
  rows.append({"prompt": "Say hi.", "completion": " hi there"})
  score_in = write_input(tmp_path / "score.jsonl", rows)
  out = str(tmp_path / "scores.jsonl")
  counts = run.run(make_config(model_dir, "score", score_in, out), str(tmp_path / "work"))
  scores = read_rows(out)
  assert counts["written"] == len(scores) == len(gen) + 1
  for g, s in zip(gen, scores):
    assert s["completion_tokens"] == g["completion_tokens"] and s["prompt_tokens"] == g["prompt_tokens"]
    np.testing.assert_allclose(s["logprobs"], g["logprobs"], atol=2e-5)
    assert s["sum"] == pytest.approx(g["logprob_sum"], abs=2e-4)
  assert scores[-1]["completion_tokens"] > 0 and len(scores[-1]["entropies"]) == scores[-1]["completion_tokens"]


def test_bad_rows_name_file_and_line(model_dir, tmp_path):
  inp = tmp_path / "in.jsonl"
  inp.write_text('{"prompt": "fine"}\n\n{"prompt": 3}\n')
  with pytest.raises(ValueError, match=r"in.jsonl:3: prompt must be a string"):
    run.run(make_config(model_dir, "generate", str(inp), str(tmp_path / "o.jsonl")), str(tmp_path / "w"))
  inp.write_text('{"prompt": "fine"}\n{"prompt": "x"\n')
  with pytest.raises(ValueError, match=r"in.jsonl:2: not valid JSON"):
    run.run(make_config(model_dir, "generate", str(inp), str(tmp_path / "o.jsonl")), str(tmp_path / "w"))
  inp.write_text('{"text": "no prompt"}\n')
  with pytest.raises(ValueError, match=r"in.jsonl:1: a row needs one of 'messages', 'prompt' or 'prompt_ids'"):
    run.run(make_config(model_dir, "generate", str(inp), str(tmp_path / "o.jsonl")), str(tmp_path / "w"))
  with pytest.raises(ValueError, match="completion"):
    run.run(
      make_config(
        model_dir, "score", str(write_input(tmp_path / "s.jsonl", [{"prompt": "a"}])), str(tmp_path / "s_out.jsonl")
      ),
      str(tmp_path / "w"),
    )


def test_checkpoint_selection():
  assert checkpoints.select("all", [5, 10, 20]) == [5, 10, 20]
  assert checkpoints.select("last", [5, 10, 20]) == [20]
  assert checkpoints.select("20,5", [5, 10, 20]) == [5, 20]
  assert checkpoints.select((10,), [5, 10, 20]) == [10]
  assert checkpoints.select("5, last", [5, 10, 20]) == [5, 20] == checkpoints.select("last,5,20", [5, 10, 20])
  with pytest.raises(ValueError, match=r"'first' is not a step"):
    checkpoints.select("5,first", [5, 10, 20])
  with pytest.raises(ValueError, match=r"steps \[7\].*saved steps: \[5, 10, 20\]"):
    checkpoints.select("5,7", [5, 10, 20])
