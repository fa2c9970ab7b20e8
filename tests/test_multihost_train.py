"""Two processes train one model (jax.distributed on CPU, 2 fake devices each): each tokenizes only its share of
the data and packs it, so their batch counts differ; the step count (and with it the LR schedule) must be agreed,
or one process runs out of batches while the other waits in a collective."""

import json
import os
import sys

import transformers
import two_processes

from rsft import config as rconfig
from rsft.data import pipeline
from rsft.models import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = """
from configs import countdown_tiny

def get_config():
  c = countdown_tiny.get_config()
  c.model.arch.update(hidden_size=32, intermediate_size=64, num_layers=1, head_dim=8)
  c.pretrain.generate = ()
  c.data.generate_rows = 130
  c.data.max_length = 448
  c.train.global_batch_size = 4
  c.train.micro_batch_size = 2
  c.train.num_epochs = 1
  c.train.log_every = 1
  c.checkpoint.save_steps = ()
  c.checkpoint.async_save = False
  return c
"""


def test_two_processes_agree_on_the_step_count(tmp_path):
  cfg_file, work = tmp_path / "multihost.py", str(tmp_path / "run")
  cfg_file.write_text(CONFIG)
  (rc0, out0), (rc1, out1) = two_processes.run(
    [sys.executable, f"{ROOT}/train.py", f"--config={cfg_file}", f"--workdir={work}"], 2, cwd=ROOT
  )
  assert (rc0, rc1) == (0, 0), out0[-3000:] + out1[-3000:]

  # Each process's own count of packed batches, from the files the run left: they differ for this data.
  config = rconfig.with_values(
    rconfig.load_config_file(str(cfg_file)),
    {"data.train_files": f"{work}/data/countdown3.jsonl", "model.tokenizer": f"{work}/tokenizer"},
  )
  tokenizer = transformers.AutoTokenizer.from_pretrained(resolve.tokenizer_dir(config.model))
  counts = [
    pipeline.steps_per_run(
      pipeline.prepare(config.data, tokenizer, process_index=i, process_count=2),
      num_epochs=1,
      seq_len=448,
      per_host_batch=2,
      packing=True,
      shuffle=config.data.shuffle,
      seed=config.data.seed,
    )
    for i in range(2)
  ]
  assert counts[0] != counts[1], counts  # otherwise this test does not exercise the agreement
  steps = [row["step"] for row in map(json.loads, open(f"{work}/metrics.jsonl")) if "loss" in row]  # no probe rows
  assert steps == list(range(1, min(counts) + 1))
