"""eval.py: load the model to evaluate onto the sampling mesh and run the chosen `eval.mode`."""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from rsft import api, sharding
from rsft import config as rconfig
from rsft.evals import checkpoints, modes
from rsft.evals.requests import Renderer

FILE_MODES = ("generate", "score")


def sampling_mesh(config: Any):
  """The data x tensor mesh for inference (fsdp = 1: decoding wants whole weights per tensor group)."""
  return sharding.make_mesh(config.sample.mesh.data, 1, config.sample.mesh.tensor)


def model_to_evaluate(config: Any, workdir: str) -> tuple[str, str]:
  """(path, label) of the one model a file mode runs: a saved step of this run, or model.path (step 0 or no run)."""
  steps = checkpoints.list_steps(workdir)
  spec = config.eval.checkpoints
  if spec in ("0", 0, (0,)) or not steps:
    if not config.model.path:
      raise ValueError(f"nothing to evaluate: {workdir}/checkpoints has no steps and model.path is not set.")
    return config.model.path, "base"
  chosen = checkpoints.select(spec, steps)
  if len(chosen) != 1:
    raise ValueError(f"eval.mode={config.eval.mode} runs one model, but eval.checkpoints={spec!r} selects steps "
                     f"{chosen}; set --config.eval.checkpoints=last or one step (0 = model.path).")
  return checkpoints.step_dir(workdir, chosen[0]), f"step {chosen[0]}"


def load(config: Any, path: str) -> api.Model:
  dtype = config.sample.dtype or config.model.dtype
  m = api.load_model(path, dtype=dtype, mesh=sampling_mesh(config))
  if m.tokenizer is None and config.model.tokenizer:  # an HF dir without tokenizer files
    import transformers
    m.tokenizer = transformers.AutoTokenizer.from_pretrained(config.model.tokenizer)
    m.stop_token_ids = m.stop_token_ids or api.default_stop_ids(None, m.tokenizer)
  return m


def run(config: Any, workdir: str) -> dict[str, Any]:
  rconfig.validate(config)
  mode = config.eval.mode
  if mode not in FILE_MODES:
    raise ValueError(f"eval.mode={mode!r} is not available yet; available modes: {FILE_MODES} "
                     "(the benchmark sweep and grading come with the benchmark registry).")
  if not config.eval.input:
    raise ValueError(f"eval.mode={mode} needs --config.eval.input=<file.jsonl>.")
  if not os.path.exists(config.eval.input):
    raise FileNotFoundError(f"eval.input={config.eval.input}: no such file.")
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  rconfig.dump(config, os.path.join(workdir, "eval"))  # eval's own resolved config; train's stays untouched
  output = config.eval.output or os.path.join(workdir, "eval", f"{mode}.jsonl")
  path, label = model_to_evaluate(config, workdir)
  logging.info("eval %s: %s (%s) -> %s", mode, path, label, output)
  m = load(config, path)
  renderer = Renderer(m.tokenizer, config.eval.chat_template, config.data.strip_default_system)
  settings = dict(model=os.path.abspath(path), dtype=config.sample.dtype or config.model.dtype)
  if mode == "generate":
    counts = modes.generate_file(m, config.sample, config.eval, config.eval.input, output, settings, renderer)
  else:
    counts = modes.score_file(m, config.eval, config.eval.input, output, settings, renderer)
  logging.info("eval %s: wrote %d rows to %s (%d were already there)", mode, counts["written"], output,
               counts["done_before"])
  return dict(counts, output=output)
