"""The config system: base config, absl overrides, unknown keys named with the closest valid key, JSON dump."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

from rsft import config as rconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "base.py")


def parse(argv):
  from ml_collections import config_flags

  argv = ["prog", f"--config={BASE}", *argv]
  fv = flags.FlagValues()  # overrides are discovered from sys_argv when --config is defined, as in a real main
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_base_config_has_every_section_and_validates():
  c = rconfig.validate(rconfig.base_config())
  assert set(c.keys()) == {
    "model",
    "mesh",
    "data",
    "pretrain",
    "train",
    "checkpoint",
    "sample",
    "eval",
    "tracking",
    "analysis",
  }
  assert (c.mesh.data, c.mesh.fsdp, c.mesh.tensor) == (1, -1, 1)


def test_command_line_overrides_apply():
  c = parse(
    [
      "--config.train.lr=1e-5",
      "--config.mesh.fsdp=4",
      "--config.model.path=/ckpt/Qwen3-14B-Base",
      "--config.checkpoint.save_steps=(5, 10)",
    ]
  )
  assert c.train.lr == 1e-5 and c.mesh.fsdp == 4 and c.model.path == "/ckpt/Qwen3-14B-Base"
  assert tuple(c.checkpoint.save_steps) == (5, 10)


def test_unknown_override_names_closest_key():
  with pytest.raises(Exception, match='Did you mean "fsdp"'):
    parse(["--config.mesh.fzdp=4"])


def test_unknown_key_in_a_config_file_names_closest_key():
  c = rconfig.base_config()
  c.train.lrr = 1e-5  # a typo in a config file is not caught by locking (files build unlocked dicts)
  with pytest.raises(ValueError, match="unknown config key 'train.lrr'; did you mean 'train.lr'"):
    rconfig.check_keys(c)
  c = rconfig.base_config()
  c.model.arch.hidden_size = 64  # model.arch is open: validated by ModelConfig.from_arch
  rconfig.check_keys(c)


def test_validate_rejects_bad_mesh_and_dtype():
  c = rconfig.base_config()
  c.mesh.data = -1
  with pytest.raises(ValueError, match="at most one -1"):
    rconfig.validate(c)
  c = rconfig.base_config()
  c.model.dtype = "fp8"
  with pytest.raises(ValueError, match="model.dtype='fp8'"):
    rconfig.validate(c)


def test_cli_dumps_resolved_config(tmp_path):
  out = subprocess.run(
    [sys.executable, "-m", "rsft.config", f"--config={BASE}", "--config.train.lr=2e-5", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  )
  on_disk = json.loads((tmp_path / "config.json").read_text())
  assert on_disk == json.loads(out.stdout)
  assert on_disk["train"]["lr"] == 2e-5


def test_mesh_comes_from_the_config():
  from rsft import sharding

  c = rconfig.base_config()
  assert dict(sharding.mesh_from_config(c.mesh).shape) == {"data": 1, "fsdp": 8, "sequence": 1, "tensor": 1}
  c.mesh.tensor = 2
  assert dict(sharding.mesh_from_config(c.mesh).shape) == {"data": 1, "fsdp": 4, "sequence": 1, "tensor": 2}
  c.mesh.sequence = 2
  assert dict(sharding.mesh_from_config(c.mesh).shape) == {"data": 1, "fsdp": 2, "sequence": 2, "tensor": 2}


def test_paper_config_evaluates_the_studys_ten_and_reports_what_is_missing(tmp_path):
  from rsft.evals import errors, sweep

  c = rconfig.load_config_file(os.path.join(ROOT, "configs", "paper.py"), f"judges={tmp_path}")
  assert c.eval.protocol == "study" and len(c.eval.benchmarks) == 10
  c.eval.data_dir = os.path.join(ROOT, "..", "shared", "benchmarks")
  c.eval.limit = 1
  with pytest.raises(errors.EnvironmentProblem, match=r"(?s)7 benchmark\(s\) cannot run.*alpaca_eval: reward model"):
    sweep.prepare(c)
  c.eval.skip_unavailable = True
  benches, _, not_run = sweep.prepare(c)
  assert [b.name for b in benches] == ["math500", "aime24", "gpqa_diamond", "mmlu_pro", "ifeval"]
  assert set(not_run) == {
    "livecodebench",
    "alpaca_eval",
    "halueval_qa",
    "halueval_dialogue",
    "halueval_summarization",
    "truthfulqa",
    "hexphi",
  }
  assert not_run["alpaca_eval"] == (
    f"reward model: eval.reward_model: {tmp_path}/Llama-3.1-8B-Instruct-RM-RB2 is not "
    "a directory (a Hugging Face checkpoint directory or an rsft step directory)"
  )


def test_paper_run_matrix_rows_match_the_study():
  """paper.md §3: 20,480 rows, 80 steps/epoch at batch 256, warmup 10%, clip 1.0, wd 0.01, max length 20000."""
  default = rconfig.load_config_file(os.path.join(ROOT, "configs", "qwen14b_verified.py"))
  rconfig.validate(default)
  assert default.model.path.endswith("Qwen3-14B-Base") and default.data.train_files == "hf:jasonrqh/Math-CoT-20k"
  assert (default.train.lr, default.train.num_epochs, default.train.global_batch_size) == (5e-5, 8, 256)
  assert (default.data.max_length, default.data.truncation, default.data.packing, default.data.shuffle) == (
    20000,
    "right",
    False,
    False,
  )
  assert (default.train.warmup_ratio, default.train.max_grad_norm, default.train.weight_decay) == (0.1, 1.0, 0.01)
  assert default.train.schedule == "cosine" and default.data.eos_token == "<|endoftext|>"
  assert tuple(default.checkpoint.save_steps) == (10, 20, 40, 80, 160, 320, 480, 640)
  assert default.train.loss_aggregation == "verl" and default.model.param_dtype == "bfloat16"

  paper = os.path.join(ROOT, "configs", "paper.py")
  stress = rconfig.load_config_file(paper, "model=qwen3_14b,data=math_cot,lr=1e-4,epochs=16,schedule=constant")
  assert (stress.train.lr, stress.train.schedule, stress.train.warmup_ratio) == (1e-4, "constant", 0.1)
  assert tuple(stress.checkpoint.save_steps)[-4:] == (800, 960, 1120, 1280)
  small = rconfig.load_config_file(paper, "model=qwen3_14b,data=math_cot_2.5k,batch=32")
  assert (small.data.limit_rows, small.train.global_batch_size, small.checkpoint.save_steps[-1]) == (2560, 32, 640)
  q25 = rconfig.load_config_file(paper, "model=qwen2.5_7b,data=numina,faithful=0")
  assert q25.data.strip_default_system and q25.model.path.endswith("Qwen2.5-7B")
  assert (q25.train.loss_aggregation, q25.model.param_dtype) == ("token_mean", "float32")
  with pytest.raises(ValueError, match="model='qwen3_32b'"):
    rconfig.load_config_file(paper, "model=qwen3_32b")


@pytest.mark.parametrize(
  "key,value",
  [
    ("data.truncation", "left"),
    ("train.loss_aggregation", "sum"),
    ("model.remat", "sometimes"),
    ("eval.protocol", "lm_eval"),
    ("train.schedule", "linear"),
  ],
)
def test_every_enumerated_value_is_checked_at_start_up_with_its_choices(key, value):
  c = rconfig.base_config()
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=rf"{key}='{value}'; choose one of "):
    rconfig.validate(c)
