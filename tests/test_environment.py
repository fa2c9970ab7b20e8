"""What the machine lacks stops the run up front, with the fix and a non-zero exit, before anything is generated or
graded; what one response or row gets wrong stays that item's error row and never stops the sweep."""

import dataclasses
import json
import os
import subprocess
import sys

import grade_mode
import nltk
import pytest

from rsft import config as rconfig
from rsft.evals import errors, grading, run, sandbox
from rsft.evals.graders import ifeval
from rsft.tools import tiny_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")


def ifeval_rows(n):
  with open(os.path.join(BENCH, "ifeval.jsonl")) as f:
    return [json.loads(next(f)) for _ in range(n)]


def test_grade_mode_without_punkt_exits_non_zero_naming_it_and_writes_nothing(tmp_path):
  inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
  inp.write_text(
    "".join(
      json.dumps({"benchmark": "ifeval", "item": row, "response": "Fine. Done."}) + "\n" for row in ifeval_rows(3)
    )
  )
  (tmp_path / "empty").mkdir()
  # An empty NLTK_DATA, no punkt_tab in NLTK's default folders, and no network for nltk.download (a proxy that
  # refuses at once): what a fresh offline machine has.
  env = dict(
    os.environ,
    NLTK_DATA=str(tmp_path / "empty"),
    HOME=str(tmp_path),
    https_proxy="http://127.0.0.1:9",
    http_proxy="http://127.0.0.1:9",
    JAX_PLATFORMS="cpu",
  )
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "eval.py"),
      f"--config={ROOT}/configs/base.py",
      f"--workdir={tmp_path / 'w'}",
      "--config.eval.mode=grade",
      f"--config.eval.input={inp}",
      f"--config.eval.output={out}",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "ifeval: grader: IFEval needs NLTK's punkt_tab model" in proc.stderr and "Traceback" not in proc.stderr
  assert not out.exists()  # not one scored row, not even the output file


def test_sweep_stops_before_loading_a_model_and_lists_every_fix(tmp_path, monkeypatch):
  monkeypatch.setattr(sandbox, "_probe", lambda: (None, "bwrap not found: `apt-get install bubblewrap`"))
  monkeypatch.delenv(sandbox.UNSAFE_ENV, raising=False)
  monkeypatch.setattr(ifeval, "environment_problem", lambda: "IFEval needs NLTK's punkt_tab model")
  monkeypatch.setitem(
    grading.GRADERS, "ifeval", dataclasses.replace(grading.GRADERS["ifeval"], environment=ifeval.environment_problem)
  )
  judge = tmp_path / "rm"
  tiny_models.build("qwen3", judge)
  os.remove(judge / "model.safetensors")  # a download that stopped after the config
  (tmp_path / "data").mkdir()
  os.mkdir(tmp_path / "data" / "math500.jsonl")  # there, but not a readable file
  c = rconfig.base_config()
  c.model.path = str(tmp_path / "never-loaded")  # a load would fail loudly: the stop must come first
  c.eval.update(
    dict(
      benchmarks=("countdown", "ifeval", "humaneval", "alpaca_eval", "math500"),
      data_dir=BENCH,
      reward_model=str(judge),
      files=f"math500={tmp_path / 'data' / 'math500.jsonl'}",
    )
  )
  with pytest.raises(errors.EnvironmentProblem) as e:
    run.run(c, str(tmp_path / "w"))
  message = str(e.value)
  assert message.startswith("4 benchmark(s) cannot run on this machine (nothing was generated or graded)")
  assert "ifeval: grader: IFEval needs NLTK's punkt_tab" in message
  assert "humaneval: grader: bwrap not found" in message and "RSFT_UNSAFE_SANDBOX=1" in message
  assert f"alpaca_eval: reward model: eval.reward_model: {judge}: no *.safetensors weights" in message
  assert "math500: data: " in message and "IsADirectoryError" in message
  assert "countdown" not in message and "skip_unavailable=true" in message
  assert not os.path.exists(tmp_path / "w" / "eval" / "generations")
  c.eval.skip_unavailable = True  # the others run; these are listed as not run (the model path still fails)
  with pytest.raises(FileNotFoundError, match="never-loaded"):
    run.run(c, str(tmp_path / "w"))


def test_grade_mode_keeps_per_item_errors_per_item(tmp_path):
  rows = ifeval_rows(2)
  bad_kwargs = dict(
    rows[1], instruction_id_list=["length_constraints:number_words"], kwargs=[{"relation": "about", "num_words": 3}]
  )  # a relation lm_eval does not know
  responses = [
    {"benchmark": "ifeval", "item": rows[0], "response": "No commas here."},
    {"benchmark": "ifeval", "item": bad_kwargs, "response": "one two three four"},
    {"benchmark": "ifeval", "item": rows[1], "response": "\udcff" * 3 + "<think>" * 10_000},
  ]
  out = grade_mode.grade(tmp_path, responses)
  assert len(out) == 3 and out[1]["status"] == "grader_error: ValueError"
  assert out[0]["status"] == "ok" and out[1]["score"] == 0.0 and out[2]["status"] in ("ok", "no_answer")


@pytest.mark.parametrize(
  "version,refused",
  [("3.9.1", False), ("3.9.2", False), ("3.9.3", True), ("3.10.4", True), ("3.8.1", True), ("3.10.0rc1", True)],
)
def test_ifeval_refuses_an_nltk_whose_tokenizers_moved(monkeypatch, version, refused):
  monkeypatch.setattr(nltk, "__version__", version)
  why = ifeval.environment_problem()
  assert (why is not None) == refused
  if refused:
    assert f"nltk {version} changes" in why and "pip install nltk==3.9.1" in why


def test_the_installed_nltk_is_one_the_grader_agrees_with():
  """The lock's nltk (CI installs it) gives lm_eval 0.4.9.1's verdicts as the study ran it (nltk 3.9.1)."""
  assert ifeval.environment_problem() is None, ifeval.environment_problem()


def test_judge_checkpoints_are_checked_without_loading_them(tmp_path):
  from rsft.convert.model_io import checkpoint_problem

  tiny_models.build("qwen3", tmp_path / "ok")
  assert checkpoint_problem(str(tmp_path / "ok"), need_tokenizer=False) is None
  assert "no tokenizer files" in checkpoint_problem(str(tmp_path / "ok"), need_tokenizer=True)
  (tmp_path / "ok" / "model.safetensors.index.json").write_text(
    json.dumps({"weight_map": {"a": "shard-2.safetensors"}})
  )
  assert "lists shard file(s) that do not exist" in checkpoint_problem(str(tmp_path / "ok"))
  (tmp_path / "ok" / "config.json").write_text("{")
  assert "JSONDecodeError" in checkpoint_problem(str(tmp_path / "ok"))
  assert "no config.json" in checkpoint_problem(str(tmp_path))
