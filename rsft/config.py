"""Config helpers shared by every entry point: flags, key validation, the resolved-config dump.

One ml_collections.ConfigDict drives train, eval and analyze. Config files start from configs/base.py; absl
overrides (`--config.train.lr=1e-5`) go through a locked config, and a typo anywhere, in a file or on the command
line, is an error naming the closest valid key.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import os
import sys
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from rsft.models.attention import IMPLEMENTATIONS, SEQUENCE_IMPLEMENTATIONS
from rsft.models.layers import REMAT_POLICIES

# Sections whose keys are free-form (validated by their consumers).
OPEN_SECTIONS = ("model.arch",)
_BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "base.py")


def define_flags() -> None:
  """--config (a config file, locked so unknown override keys fail) and --workdir; call at import in a main."""
  config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).", lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory shared by train, eval and analyze (local or gs://).")


def _register_config_package(path: str) -> None:
  """A config file that imports its siblings (`from configs import paper`) loads from any working directory: its
  folder, when it is a package nothing else provides, is registered under its name."""
  folder = os.path.dirname(os.path.abspath(path))
  name = os.path.basename(folder)
  init = os.path.join(folder, "__init__.py")
  if name in sys.modules or not os.path.exists(init) or importlib.util.find_spec(name) is not None:
    return
  spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
  sys.modules[name] = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sys.modules[name])


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports a config file and calls its get_config(arg) (for code and tests; scripts use the flag)."""
  _register_config_package(path)
  spec = importlib.util.spec_from_file_location("rsft_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def base_config() -> ml_collections.ConfigDict:
  return load_config_file(_BASE)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in d.items():
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)) and name not in OPEN_SECTIONS:
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict | None = None) -> None:
  """Raises on any key that configs/base.py does not define, naming the closest valid one."""
  valid = _flatten((reference or base_config()).to_dict())
  for key in _flatten(config.to_dict()):
    if key in valid or any(key.startswith(s + ".") for s in OPEN_SECTIONS):
      continue
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown config key {key!r}{hint}")


# Every enumerated value, checked at start-up with the valid choices in the message (the model's own choices,
# remat policies and attention kernels, come from rsft.models).
CHOICES: dict[str, tuple[str, ...]] = {
  "data.format": ("auto", "jsonl", "json", "parquet", "csv"),
  "data.truncation": ("right", "drop"),
  "data.on_error": ("raise", "skip"),
  "train.schedule": ("cosine", "constant", "wsd"),
  "train.loss_aggregation": ("token_mean", "verl"),
  "train.weight_decay_mask": ("all", "kernels"),
  "eval.mode": ("sweep", "generate", "score", "grade", "prompts"),
  "eval.protocol": ("study", "rsft"),
  "eval.group_aggregate": ("mean", "pooled"),
  "tracking.backend": ("tensorboard", "wandb", "mlflow"),
  "mesh.sequence_attention": SEQUENCE_IMPLEMENTATIONS,
}


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Key check plus the cheap structural checks that need no model (mesh sizes, dtypes, lengths, choices)."""
  check_keys(config)
  for key, choices in {**CHOICES, "model.remat": tuple(REMAT_POLICIES)}.items():
    value = _get(config, key)
    if value not in choices:
      raise ValueError(f"{key}={value!r}; choose one of {', '.join(choices)}.")
  sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.sequence, config.mesh.tensor]
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh (data, fsdp, sequence, tensor) = {tuple(sizes)}: sizes must be positive, at most one -1.")
  if config.mesh.sequence == -1:
    raise ValueError("mesh.sequence=-1: give context parallelism an explicit size (it must divide the row length).")
  chunks, length = 2 * config.mesh.sequence, config.data.max_length
  if config.mesh.sequence > 1 and length % chunks:
    raise ValueError(
      f"data.max_length={length} must be a multiple of 2 x mesh.sequence = {chunks} (zigzag context "
      f"parallelism gives each device two equal chunks); use data.max_length={length + -length % chunks}"
      " or another mesh.sequence."
    )
  dtypes = {
    "model.dtype": config.model.dtype,
    "model.param_dtype": config.model.param_dtype,
    "sample.dtype": config.sample.dtype or config.model.dtype,
  }
  for key, value in dtypes.items():
    if value not in ("float32", "bfloat16", "float16"):
      raise ValueError(f"{key}={value!r}; expected float32, bfloat16 or float16.")
  if [config.sample.mesh.data, config.sample.mesh.tensor].count(-1) > 1:
    raise ValueError("sample.mesh: at most one of data, tensor may be -1.")
  train = config.train
  if train.micro_batch_size < 0:
    raise ValueError(
      f"train.micro_batch_size={train.micro_batch_size}: rows per accumulation step, or 0 for one row "
      "per data-parallel device."
    )
  if train.loss_aggregation == "verl" and train.global_batch_size % (train.verl_ranks * train.verl_rows_per_micro):
    raise ValueError(
      f"train.global_batch_size={train.global_batch_size} is not a multiple of train.verl_ranks="
      f"{train.verl_ranks} x train.verl_rows_per_micro={train.verl_rows_per_micro} (the verl groups)."
    )
  if config.data.max_length <= 1:
    raise ValueError(f"data.max_length={config.data.max_length} must be > 1.")
  if config.model.attention not in IMPLEMENTATIONS:
    raise ValueError(f"model.attention={config.model.attention!r}; choose one of {IMPLEMENTATIONS}.")
  return config


def train_attention(config: ml_collections.ConfigDict) -> str:
  """The attention the training model is built with: on a sequence mesh the context-parallel one
  (mesh.sequence_attention), otherwise model.attention's kernel."""
  return config.mesh.sequence_attention if config.mesh.sequence > 1 else config.model.attention


def with_values(config: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted keys set: a stage that derives values (generated data files) works on its own
  copy and never edits the config it was handed."""
  out = copy.deepcopy(config)
  with out.unlocked():
    for dotted, value in values.items():
      *parents, leaf = dotted.split(".")
      node = out
      for part in parents:
        node = node[part]
      node[leaf] = value
  return out


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def dump(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes WORKDIR/config.json (local path or gs://) and returns its path."""
  from etils import epath  # local: pulls in filesystem backends for gs:// only when used.

  path = epath.Path(workdir) / "config.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(to_json(config) + "\n")
  return os.fspath(path)


def main(argv: list[str]) -> None:
  """`python -m rsft.config --config=configs/X.py [--config.a.b=v] [--workdir=W]`: print (and dump) the config."""
  del argv
  config = validate(flags.FLAGS.config)
  if flags.FLAGS.workdir:
    dump(config, flags.FLAGS.workdir)
  print(to_json(config))


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
