"""Defaults for every stage; other configs start from this one and override.

Usage: --config=configs/base.py, overrides like --config.train.lr=1e-5 --config.mesh.fsdp=-1.
Architecture comes from the checkpoint's config.json (model.path); model.arch is only for from-scratch models.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()

  c.model = dict(
      path=config_dict.placeholder(str),  # HF checkpoint dir (or None with model.arch)
      arch=ml_collections.ConfigDict(),   # ModelConfig fields for from-scratch models
      dtype="bfloat16",                   # compute dtype
      param_dtype="float32",              # master weights (SFT at lr ~1e-5 needs fp32)
      remat="full",                       # none | full | save_dots_no_batch | save_names
  )
  c.mesh = dict(data=1, fsdp=-1, tensor=1)  # -1 = all remaining devices

  c.data = dict(
      train_files=config_dict.placeholder(str),
      format="jsonl",
      max_length=16384,
      packing=True,
      shuffle=True,
      seed=0,
  )
  c.train = dict(
      num_steps=config_dict.placeholder(int),
      num_epochs=8,
      global_batch_size=256,
      micro_batch_size=4,
      lr=5e-5,
      schedule="cosine",
      warmup_ratio=0.1,
      weight_decay=0.0,
      max_grad_norm=1.0,
      loss_aggregation="token_mean",
      seed=0,
  )
  c.checkpoint = dict(
      save_steps=(10, 20, 40, 80, 160, 320, 480, 640),  # tuples: overridable as --config.x="(1, 2)"
      every_steps=0,  # 0 = only save_steps (plus the last step)
      keep=0,         # 0 = keep all
  )
  c.sample = dict(temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=32768, n=1, seed=0)
  c.eval = dict(
      benchmarks=("math500", "aime24", "aime25", "amc23", "gpqa_diamond", "mmlu_pro", "humaneval", "ifeval",
                  "halueval", "truthfulqa", "alpaca_eval", "harmbench"),
      checkpoints="all",  # all | last | comma-separated steps
      data_dir="../shared/benchmarks",
      mode="sweep",       # sweep | generate | score | grade
      input=config_dict.placeholder(str),
      output=config_dict.placeholder(str),
  )
  c.analysis = dict(dip_threshold=0.02)
  return c
