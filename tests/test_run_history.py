"""Runs and files that survive their own history (issue 13): workdir locks, metrics cut back on resume, torn and
undecodable lines, and clear errors for broken inputs."""

import json
import os
import struct
import subprocess
import sys

import pytest

from rsft import workdir
from rsft.data import readers
from rsft.train import metrics


def test_a_second_run_refuses_and_a_dead_runs_lock_is_taken_over(tmp_path):
  with workdir.lock(str(tmp_path), "train"):
    code = (
      "import sys\nfrom rsft import workdir\ntry:\n    with workdir.lock(sys.argv[1], 'train'):\n"
      "        print('got it')\nexcept workdir.WorkdirBusy as e:\n    print('busy:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True).stdout
    assert out.startswith("busy:") and f'"pid": {os.getpid()}' in out
  # A holder killed with -9 leaves its text in the file, but the kernel released its lock.
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time\nfrom rsft import workdir\n"
      "with workdir.lock(sys.argv[1], 'train'):\n    print('held', flush=True)\n"
      "    time.sleep(60)\n",
      str(tmp_path),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == "held"
  holder.kill()
  holder.wait()
  assert str(holder.pid) in open(tmp_path / ".train.lock").read()
  with workdir.lock(str(tmp_path), "train"):
    assert f'"pid": {os.getpid()}' in open(tmp_path / ".train.lock").read()


def test_metrics_are_cut_back_to_the_restored_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
  assert metrics.cut_back(str(path), 5) == 3  # steps 6, 7 and the torn 8
  assert [json.loads(line)["step"] for line in open(path)] == [1, 2, 3, 4, 5]


def test_undecodable_training_rows_name_file_and_row_and_obey_on_error(tmp_path):
  good = json.dumps({"prompt": "hi", "response": "there"})
  path = tmp_path / "train.jsonl"
  path.write_bytes((good + "\n").encode() + b'{"prompt": "\xff", "response": "x"}\n' + (good + "\n").encode())
  with pytest.raises(ValueError, match=r"train.jsonl: row 1: not UTF-8 \(byte 0xff"):
    readers.read(str(path))
  rows, stats = readers.read(str(path), on_error="skip")
  assert len(rows) == 2 and stats.skipped == 1


def test_a_corrupt_safetensors_header_is_a_clear_error(tmp_path):
  from rsft.convert import safetensors_io

  path = tmp_path / "model.safetensors"
  path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
  with pytest.raises(ValueError, match="corrupt safetensors header .it claims 1099511627776 bytes"):
    safetensors_io.read_header(str(path))


def test_a_step_dir_with_empty_params_says_so(tmp_path):
  import rsft

  (tmp_path / "params").mkdir()
  (tmp_path / "meta").mkdir()
  with pytest.raises(ValueError, match="params/ is empty or meta/ missing"):
    rsft.load_model(str(tmp_path))


def test_prompts_that_leave_no_response_token_are_refused(tmp_path):
  import ml_collections

  from rsft.data import pipeline, tiny_tokenizer

  tok = tiny_tokenizer.train(["a b c d e f g h"] * 20, 300, str(tmp_path / "tok"))
  data = tmp_path / "d.jsonl"
  data.write_text("".join(json.dumps({"prompt": "a b c d e f g h " * 20, "response": "a"}) + "\n" for _ in range(4)))
  cfg = ml_collections.ConfigDict(
    dict(
      train_files=str(data),
      format="auto",
      max_length=16,
      truncation="right",
      eos_token=None,
      strip_default_system=False,
      on_error="raise",
      limit_rows=0,
      seed=0,
    )
  )
  with pytest.raises(ValueError, match="no response token survives data.max_length=16"):
    pipeline.prepare(cfg, tok)


def test_a_torn_last_line_of_a_cache_is_left_out_not_fatal(tmp_path):
  from rsft.evals import jsonl

  path = tmp_path / "generations.jsonl"
  path.write_text('{"index": 0}\n{"index": 1}\n{"index": 2, "compl')
  assert [row["index"] for _, row in jsonl.read(str(path))] == [0, 1]
  path.write_text('{"index": 0}\n{"ind\n{"index": 2}\n')  # a broken line in the middle is still an error
  with pytest.raises(ValueError, match="generations.jsonl:2: not valid JSON"):
    list(jsonl.read(str(path)))
