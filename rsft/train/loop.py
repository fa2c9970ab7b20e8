"""The training loop: config -> data -> model -> jitted step -> metrics and checkpoints; resumes by itself.

Restarting the same command continues from the latest checkpoint in WORKDIR/checkpoints with params, optimizer
state, step and data iterator restored, so a preempted run and an uninterrupted one see the same batches.
SIGTERM (preemption) finishes the current step, saves, and exits cleanly. A run that reaches its last step records
it (rsft.workdir.mark_finished), which ends follow-mode evaluation. `probe` (train.py passes
rsft.analysis.probe.Probe when train.probe_every is set) is called with the model every probe_every steps and at
the start; its scalars go to metrics.jsonl and the tracker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from absl import logging

from rsft import config as rconfig
from rsft import distributed, sharding, tracking
from rsft import workdir as workdir_lib
from rsft.convert import fingerprint
from rsft.convert.model_io import load_model, load_tokenizer
from rsft.convert.step_dir import finished_steps
from rsft.data import generate, pipeline
from rsft.models import ModelConfig, resolve
from rsft.models import lora as lora_lib
from rsft.models.lora import LoRA
from rsft.models.model import Model, abstract_model, init_adapters, init_model, merge_adapters
from rsft.train import checkpoint, optim
from rsft.train import metrics as metrics_lib
from rsft.train.step import StepConfig, train_step


@dataclasses.dataclass
class Preemption:
  requested: bool = False

  def install(self) -> None:
    signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))


def _tokenizer(model: Any):
  tokenizer = load_tokenizer(resolve.tokenizer_dir(model))
  if tokenizer is None:
    raise ValueError(
      f"no tokenizer in {resolve.tokenizer_dir(model)!r}: set model.tokenizer (or model.path to an HF "
      "dir with tokenizer files)."
    )
  return tokenizer


@dataclasses.dataclass(frozen=True)
class ModelSetup:
  """How the training model is built: the `model` section's dtypes and remat policy, the attention the mesh asks
  for (rsft.config.train_attention) and the adapters `train.lora` asks for (None: full fine-tuning), decided once
  for the whole run."""

  dtype: str
  param_dtype: str
  remat: str
  attention: str
  lora: LoRA | None = None

  @classmethod
  def of(cls, config: Any) -> ModelSetup:
    return cls(
      config.model.dtype,
      config.model.param_dtype,
      config.model.remat,
      rconfig.train_attention(config),
      lora_lib.from_config(config.train.lora),
    )

  def load(self, path: str, mesh: jax.sharding.Mesh | None, **kw) -> Model:
    """The model at `path` built for training; with LoRA the frozen base, held in the compute dtype."""
    param_dtype = self.dtype if self.lora else self.param_dtype
    return load_model(path, self.dtype, mesh, self.remat, param_dtype, self.attention, **kw)


def _initial_params(
  path: str | None, setup: ModelSetup, model_cfg: ModelConfig, seed: int, mesh: jax.sharding.Mesh | None
) -> Any:
  """What trains at step 0: fresh adapters (LoRA), the weights at `path` (model.path, or the made base's last step
  dir), or a fresh init."""
  if setup.lora is not None:
    return init_adapters(
      model_cfg, setup.lora, seed, setup.dtype, setup.param_dtype, mesh, setup.remat, setup.attention
    )[1]
  if path:
    return setup.load(path, mesh).params
  return init_model(model_cfg, seed, setup.dtype, setup.param_dtype, mesh, setup.remat, setup.attention).params


def _lora_base(
  setup: ModelSetup, model_cfg: ModelConfig, path: str | None, mesh: jax.sharding.Mesh | None
) -> tuple[Model, dict[str, Any]]:
  """LoRA's frozen base and what the checkpoints record of it (settings, path, fingerprint); the settings are
  checked before any weight is read."""
  setup.lora.check(model_cfg)
  if not path:
    raise ValueError(
      "train.lora.rank > 0 adapts a base model: set model.path (or pretrain.* to make one), or train.lora.rank=0."
    )
  record = lora_lib.to_record(setup.lora, os.path.abspath(path), fingerprint.of(path))
  return setup.load(path, mesh), record


def base_config(config: Any) -> Any:
  """The run that makes the base model (config.pretrain): the same model and mesh, the short-answer data and the
  pretrain section's schedule, only its last step saved."""
  p = config.pretrain
  return rconfig.with_values(
    config,
    {
      "data.train_files": p.train_files,
      "data.generate": None,
      "data.max_length": p.max_length,
      "data.packing": True,
      "data.shuffle": True,
      "train.num_steps": None,
      "train.num_epochs": p.num_epochs,
      "train.lr": p.lr,
      "train.global_batch_size": p.global_batch_size,
      "train.micro_batch_size": p.global_batch_size,
      "checkpoint.save_steps": (),
      "checkpoint.every_steps": 0,
      "pretrain.generate": (),
      "pretrain.train_files": None,
      "train.lora.rank": 0,  # the base is trained whole; the run's LoRA, if any, adapts it afterwards
    },
  )


def _made_base_step(config: Any, workdir: str) -> str | None:
  """On a resume: the made base's last step dir (already trained; LoRA adapts it), None without config.pretrain."""
  steps = finished_steps(os.path.join(workdir, "base", "checkpoints")) if config.pretrain.train_files else []
  return os.path.join(workdir, "base", "checkpoints", str(steps[-1])) if steps else None


def _make_base(config: Any, workdir: str) -> str | None:
  """Trains the base model in WORKDIR/base when config.pretrain asks for one (resumable like any run) and returns
  its last step dir; None for runs that start from model.path or from scratch."""
  if not config.pretrain.train_files:
    return None
  if config.model.path:
    raise ValueError(
      f"pretrain.generate / pretrain.train_files make a base model from scratch, but model.path is "
      f"set ({config.model.path}): unset one of them."
    )
  base_dir = os.path.join(workdir, "base")
  logging.info("training the base model in %s (config.pretrain)", base_dir)
  _train(base_config(config), base_dir)
  return os.path.join(base_dir, "checkpoints", str(finished_steps(os.path.join(base_dir, "checkpoints"))[-1]))


@dataclasses.dataclass
class StepParts:
  graphdef: Any
  abstract_params: Any  # what trains (the model, or the adapters), as ShapeDtypeStructs with their shardings
  abstract_frozen: Any  # LoRA's base weights in the compute dtype; None for full fine-tuning
  abstract_opt: Any
  init_opt: Any  # jitted optimizer.init into the pinned layout
  lr_schedule: Any
  jitted: Any  # jitted train_step(params, opt_state, batch, frozen, dropout_key), state donated
  batch_sharding: Any
  batch_shape: tuple[int, int]

  def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch the data pipeline yields (pipeline.make_dataset), as shapes for AOT compilation."""
    dtypes = dict(inputs="int32", targets="int32", weights="float32", segment_ids="int32", positions="int32")
    return {k: jax.ShapeDtypeStruct(self.batch_shape, d, sharding=self.batch_sharding) for k, d in dtypes.items()}


def step_config(train: Any, mesh: jax.sharding.Mesh | None = None) -> StepConfig:
  """The step's static settings from the `train` section. The verl grouping (rows per rank micro-batch) is the
  study's own setting: changing micro_batch_size to fit memory never changes the loss."""
  return StepConfig(
    micro_batches=train.global_batch_size
    // sharding.micro_batch_rows(train.global_batch_size, train.micro_batch_size, mesh),
    aggregation=train.loss_aggregation,
    verl_ranks=train.verl_ranks,
    verl_rows_per_micro=train.verl_rows_per_micro,
    loss_chunk=train.loss_chunk,
    sequence=sharding.sequence_shards(mesh),
  )


def build_step(
  model_cfg: ModelConfig,
  setup: ModelSetup,
  train: Any,
  max_length: int,
  mesh: jax.sharding.Mesh | None,
  total_steps: int,
) -> StepParts:
  """The jitted train step and the abstract state it runs on, without allocating anything: train.py runs it,
  rsft.tools.fit compiles it for a TPU topology ahead of time.

  Args:
    model_cfg: the architecture.
    setup: dtypes, remat, attention and adapters (ModelSetup.of(config)).
    train: the config's `train` section (batch sizes, optimizer, schedule, loss aggregation).
    max_length: tokens per row (data.max_length).
    mesh: the device mesh, or None for one device.
    total_steps: the schedule's length.

  Returns:
    The StepParts: graphdef, abstract (sharded) trainable and frozen params and optimizer state, the jitted
    optimizer init and step, the learning-rate schedule, the batch's sharding and shape.
  """
  graphdef, abstract_state, _ = abstract_model(
    model_cfg, setup.dtype, setup.param_dtype, mesh, setup.remat, setup.attention, setup.lora
  )
  abstract_params = sharding.abstract_arrays(abstract_state, sharding.Rules(mesh))
  abstract_frozen = None
  if setup.lora is not None:
    abstract_params, base = lora_lib.split(abstract_params)
    abstract_frozen = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, setup.dtype, sharding=a.sharding), base)
  optimizer, lr_schedule = optim.make_optimizer(train, total_steps)
  # Optimizer state: every params-shaped part (Adam's mu, nu) laid out exactly as the params, the rest (counters)
  # replicated on the mesh. Leaving this to XLA's propagation replicated mu and nu on every chip (found by
  # rsft.tools.fit: 16 B/param per chip instead of 16/chips), and constants landed on one device (tunix's
  # `_fix_sharding` problem).
  replicated = (
    (lambda _: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())) if mesh is not None else (lambda _: None)
  )
  abstract_opt_tree = jax.eval_shape(optimizer.init, abstract_params)
  opt_shardings = optax.tree_map_params(
    optimizer, lambda _, p: p.sharding, abstract_opt_tree, abstract_params, transform_non_params=replicated
  )
  init_opt = jax.jit(optimizer.init, out_shardings=opt_shardings)
  abstract_opt = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_opt_tree, opt_shardings
  )
  step_cfg = step_config(train, mesh)
  state_out = (jax.tree.map(lambda a: a.sharding, abstract_params), opt_shardings, None) if mesh is not None else None
  jitted = jax.jit(
    functools.partial(train_step, graphdef, optimizer, step_cfg), donate_argnums=(0, 1), out_shardings=state_out
  )  # the state keeps its layout step after step
  shape = (train.global_batch_size, max_length)
  return StepParts(
    graphdef,
    abstract_params,
    abstract_frozen,
    abstract_opt,
    init_opt,
    lr_schedule,
    jitted,
    sharding.batch_sharding(sharding.Rules(mesh), shape),
    shape,
  )


Probe = Callable[[int, Model], dict[str, float]]


def run(config: Any, workdir: str, probe: Probe | None = None) -> dict[str, float]:
  """Trains; returns the last logged metrics. One training run per workdir at a time (rsft.workdir.lock)."""
  rconfig.validate(config)  # every enumerated value, loss_aggregation included
  tracking.check(config.tracking.backend)
  distributed.maybe_initialize()
  with workdir_lib.lock(workdir, "train"):
    return _train(config, workdir, probe)


def _train(config: Any, workdir: str, probe: Probe | None = None) -> dict[str, float]:
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.clear_finished(workdir)
  config = rconfig.with_values(config, generate.prepare(config, workdir))  # generated data
  # A made base trains first, before this run builds anything (grain's prefetch threads would compete with it).
  resuming = bool(finished_steps(os.path.join(workdir, "checkpoints")))
  base = _made_base_step(config, workdir) if resuming else _make_base(config, workdir)
  if jax.process_index() == 0:
    rconfig.dump(config, workdir)
  setup, meta_config = ModelSetup.of(config), config.to_dict()
  # From here on each stage gets the section it reads, never the whole config.
  model, data, train, ckpt_cfg = config.model, config.data, config.train, config.checkpoint
  mesh = sharding.mesh_from_config(config.mesh)
  sharding.micro_batch_rows(train.global_batch_size, train.micro_batch_size, mesh)  # checked before data is read
  tokenizer = _tokenizer(model)
  stream = pipeline.training_stream(
    data,
    tokenizer,
    global_batch=train.global_batch_size,
    num_steps=train.num_steps,
    num_epochs=train.num_epochs,
    cache_dir=os.path.join(workdir, "data"),
  )  # this host's share only
  data_iter, total_steps = stream.iterator, stream.total_steps
  model_cfg, hf_config = resolve.architecture(model)
  meta = dict(
    model_config=dataclasses.asdict(model_cfg),
    hf_config=hf_config,
    tokenizer=os.path.abspath(resolve.tokenizer_dir(model)),
    config=meta_config,
  )
  base_model = None  # LoRA: the frozen weights the adapters add to
  if setup.lora is not None:
    base_model, meta["lora"] = _lora_base(setup, model_cfg, model.path or base, mesh)
  frozen = None if base_model is None else base_model.params
  parts = build_step(model_cfg, setup, train, data.max_length, mesh, total_steps)
  mngr = checkpoint.manager(
    os.path.join(workdir, "checkpoints"), tuple(ckpt_cfg.save_steps), ckpt_cfg.keep, ckpt_cfg.async_save
  )
  step = 0
  if mngr.latest_step() is not None:  # resume: nothing is loaded from model.path, all comes from the checkpoint
    # but LoRA's base, which must be the one the adapters were trained on, with the same settings
    lora_lib.check_resume(checkpoint.read_meta(mngr, mngr.latest_step()).get("lora"), meta.get("lora"))
    params, train_state = checkpoint.restore(
      mngr, mngr.latest_step(), parts.abstract_params, {"opt_state": parts.abstract_opt, "step": 0}, data_iter
    )
    opt_state, step = train_state["opt_state"], int(train_state["step"])
    logging.info("resumed from step %d", step)
  else:
    params = _initial_params(model.path or base, setup, model_cfg, train.seed, mesh)
    opt_state = parts.init_opt(params)
    if base:  # the made base is the run's step 0, evaluated as a real run's model.path is
      checkpoint.save(mngr, 0, params, opt_state, data_iter, meta)

  writer = metrics_lib.Writer(
    workdir, total_steps, model_cfg, data.max_length, train.global_batch_size, start_step=step, tracking=config.tracking
  )
  every = train.probe_every if probe is not None else 0
  as_model = lambda p: (
    Model(model_cfg, p, parts.graphdef, tokenizer, mesh)
    if base_model is None
    else merge_adapters(base_model, setup.lora, p)
  )
  probe_now = lambda s, p: writer.write_extra(s, probe(s, as_model(p)))
  if every and (step % every == 0 or step == total_steps):  # as below: metrics.cut_back dropped this row
    probe_now(step, params)  # the baseline (step 0: the model before any update)
  preempt = Preemption()
  preempt.install()
  should_save = lambda s: (
    s in set(ckpt_cfg.save_steps) or (ckpt_cfg.every_steps and s % ckpt_cfg.every_steps == 0) or s == total_steps
  )
  last = {}
  mixed = np.zeros(len(stream.sources or ()), np.int64)  # examples per source since the last logged step
  dropout_key = jax.random.key(train.seed) if setup.lora is not None and setup.lora.dropout > 0 else None
  try:
    while step < total_steps:
      t0 = time.perf_counter()
      host = next(data_iter)
      if stream.sources:  # data.mix: count this host's examples per source; the step never sees "sources"
        mixed += pipeline.mixture_counts(host, len(stream.sources))
        del host["sources"]
      key = None if dropout_key is None else jax.random.fold_in(dropout_key, step)  # a resumed step draws alike
      params, opt_state, out = parts.jitted(
        params, opt_state, pipeline.to_global(host, parts.batch_sharding), frozen, key
      )
      step += 1
      every_process_logs = step % train.log_every == 0 or step == total_steps or should_save(step)
      if every_process_logs or preempt.requested:
        # The shares are summed over processes, so only on steps every process logs: SIGTERM reaches each alone.
        extra = {}
        if every_process_logs:
          extra, mixed = _mixture_shares(stream.sources, mixed), np.zeros_like(mixed)
        seconds = time.perf_counter() - t0
        last = writer.write(step, jax.device_get(out), float(parts.lr_schedule(step - 1)), seconds, extra)
      if every and (step % every == 0 or step == total_steps):
        probe_now(step, params)
      if should_save(step) or preempt.requested:
        checkpoint.save(mngr, step, params, opt_state, data_iter, meta)
      if preempt.requested:
        logging.warning("SIGTERM: saved step %d, exiting.", step)
        break
    else:
      mngr.wait_until_finished()
      workdir_lib.mark_finished(workdir, step)
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return last


def _mixture_shares(sources: list[str] | None, counts: Any) -> dict[str, float]:
  """The realised mixture since the last logged row, as each source's share of the examples (all processes)."""
  if not sources:
    return {}
  total = distributed.sum_over_processes(counts)
  return {f"mix/{name}": float(n) / max(float(total.sum()), 1.0) for name, n in zip(sources, total)}


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
