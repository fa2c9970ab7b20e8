"""eval.py: run the chosen `eval.mode` (sweep | generate | score | grade | prompts) with models on the sampling
mesh (prompts mode loads no model: only the tokenizer)."""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from rsft import config as rconfig
from rsft import distributed, sharding, tracking
from rsft import workdir as workdir_lib
from rsft.convert.model_io import default_stop_ids, load_model, load_tokenizer
from rsft.evals import checkpoints, follow, modes, prompt_dump, sweep
from rsft.evals.judges import Judges
from rsft.evals.requests import Renderer
from rsft.models.model import Model

MODES = rconfig.CHOICES["eval.mode"]


def sampling_mesh(config: Any):
  """The data x tensor mesh for inference (fsdp = 1: decoding wants whole weights per tensor group)."""
  return sharding.make_mesh(config.sample.mesh.data, 1, config.sample.mesh.tensor)


def model_to_evaluate(config: Any, workdir: str) -> tuple[str, str]:
  """(path, label) of the one model a file mode runs: a saved step of this run, or model.path (step 0 or no run)."""
  steps = checkpoints.list_steps(workdir)
  spec = config.eval.checkpoints
  if (spec in ("0", 0, (0,)) and config.model.path) or not steps:  # a made base (config.pretrain) is step 0 itself
    if not config.model.path:
      raise ValueError(f"nothing to evaluate: {workdir}/checkpoints has no steps and model.path is not set.")
    return config.model.path, "base"
  chosen = checkpoints.select(spec, steps)
  if len(chosen) != 1:
    raise ValueError(
      f"eval.mode={config.eval.mode} runs one model, but eval.checkpoints={spec!r} selects steps "
      f"{chosen}; set --config.eval.checkpoints=last or one step (0 = model.path)."
    )
  return checkpoints.step_dir(workdir, chosen[0]), f"step {chosen[0]}"


def load(config: Any, path: str) -> Model:
  dtype = config.sample.dtype or config.model.dtype
  m = load_model(path, dtype=dtype, mesh=sampling_mesh(config), attention=config.model.attention)
  if m.tokenizer is None and config.model.tokenizer:  # an HF dir without tokenizer files
    m.tokenizer = load_tokenizer(config.model.tokenizer)
    if m.tokenizer is None:
      raise FileNotFoundError(f"model.tokenizer={config.model.tokenizer}: no tokenizer files there.")
    m.stop_token_ids = m.stop_token_ids or default_stop_ids(None, m.tokenizer)
  return m


def run(config: Any, workdir: str) -> dict[str, Any]:
  rconfig.validate(config)
  distributed.maybe_initialize()
  mode = config.eval.mode
  if mode not in MODES:
    raise ValueError(f"eval.mode={mode!r}; choose one of {MODES}.")
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  if distributed.is_primary():
    rconfig.dump(config, os.path.join(workdir, "eval"))  # eval's own resolved config; train's stays untouched
  if mode == "sweep":
    renderer_for = lambda m: Renderer(m.tokenizer, config.eval.chat_template, config.data.strip_default_system)
    run_it = follow.follow if config.eval.follow else sweep.run_sweep
    tracking.check(config.tracking.backend)
    with workdir_lib.lock(os.path.join(workdir, "eval"), "sweep"):  # one sweep writes eval/ at a time
      rows = run_it(config, workdir, lambda path: load(config, path), renderer_for)
      if not config.eval.follow:
        follow.track(config, workdir, rows)  # the scores beside training's curves (follow mode logs as it goes)
    return {"results": len(rows), "output": os.path.join(workdir, "eval", "results.jsonl")}
  if mode == "prompts":
    output = config.eval.output or os.path.join(workdir, "eval", "prompts.jsonl")
    return dict(prompt_dump.write(config, output, prompt_dump.load_tokenizer(config)), output=output)
  if not config.eval.input:
    raise ValueError(f"eval.mode={mode} needs --config.eval.input=<file.jsonl>.")
  if not os.path.exists(config.eval.input):
    raise FileNotFoundError(f"eval.input={config.eval.input}: no such file.")
  output = config.eval.output or os.path.join(workdir, "eval", f"{mode}.jsonl")
  if mode == "grade":
    judges = Judges(config.eval, lambda path: load(config, path))
    try:
      counts = sweep.grade_file(config.eval.input, output, judges, config.eval.protocol, config.eval)
    finally:
      judges.close()
    logging.info("eval grade: wrote %d rows to %s", counts["written"], output)
    return dict(counts, output=output)
  path, label = model_to_evaluate(config, workdir)
  logging.info("eval %s: %s (%s) -> %s", mode, path, label, output)
  m = load(config, path)
  renderer = Renderer(m.tokenizer, config.eval.chat_template, config.data.strip_default_system)
  settings = dict(model=os.path.abspath(path), dtype=config.sample.dtype or config.model.dtype)
  if mode == "generate":
    counts = modes.generate_file(m, config.sample, config.eval, config.eval.input, output, settings, renderer)
  else:
    counts = modes.score_file(m, config.eval, config.eval.input, output, settings, renderer)
  logging.info(
    "eval %s: wrote %d rows to %s (%d were already there)", mode, counts["written"], output, counts["done_before"]
  )
  return dict(counts, output=output)
