"""Will this configuration fit that TPU slice? Compiles the real train step and sampler for a TPU topology on a
CPU-only machine (libtpu's compiler, `jax.experimental.topologies`) and reads XLA's per-chip memory plan.

  python -m rsft.tools.fit --config=configs/qwen14b_verified.py --topology=v6e-16
  python -m rsft.tools.fit --config=configs/qwen14b_verified.py --topology=v5p-32 --what=train \
      --config.train.micro_batch_size=16 --config.model.remat=save_dots_no_batch

Prints, per compiled program: arguments, outputs, temporaries and their total per chip against the chip's HBM;
FLOPs per step per chip counted on the jaxpr with scan trip counts (XLA's own cost analysis, printed beside it,
counts each scan body once) against the 6·N·tokens (+ attention) estimate; and the step time that FLOP count
implies at the chip's peak. Exits 1 when a program does not fit, 0 when all do. The architecture comes from
model.path's config.json when that directory exists here, else from a preset named by --arch or by model.path's
directory name (rsft/models/presets.py), so no weights are needed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only TPU devices need no TPU backend
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile beside a job (or test) holding libtpu's lock

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from rsft import config as rconfig  # noqa: E402
from rsft import hardware

GIB = hardware.GIB


@dataclasses.dataclass(frozen=True)
class Chip:
  hbm_gib: float  # usable HBM per chip (the compiler's limit, below the spec sheet's)
  cores_per_chip: int  # the "-N" of a slice name counts TensorCores on v4/v5p, chips on v5e/v6e
  dims: int  # torus dimensions


# From the one hardware table (rsft/hardware.py): usable HBM as libtpu's compiler reports it, measured with this tool.
CHIPS = {f: Chip(c.usable_hbm_bytes / GIB, c.tensorcores, c.torus_dims) for f, c in hardware.TPUS.items()}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6": "v6e"}
_SHAPES_3D = {
  4: "2x2x1",
  8: "2x2x2",
  16: "2x2x4",
  32: "2x4x4",
  64: "4x4x4",
  128: "4x4x8",
  256: "4x8x8",
  512: "8x8x8",
  1024: "8x8x16",
  2048: "8x16x16",
  4096: "16x16x16",
}
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str  # "v6e-16"
  family: str  # "v6e"
  chips: int
  topology: str  # "v6e:4x4", as libtpu names it

  @property
  def chip(self) -> Chip:
    return CHIPS[self.family]


def parse_slice(name: str) -> Slice:
  """'v5p-32' (32 TensorCores = 16 chips), 'v6e-16' / 'v5litepod-16' (16 chips), 'v4-16' (8 chips)."""
  family, _, count = name.lower().partition("-")
  family = _ALIASES.get(family, family)
  if family not in CHIPS or not count.isdigit():
    raise ValueError(
      f"--topology={name!r}: expected <generation>-<size> with generation one of {sorted(CHIPS)} "
      "(e.g. v5p-32, v6e-16, v5e-16, v4-16)"
    )
  chip = CHIPS[family]
  chips = int(count) // chip.cores_per_chip
  shapes = _SHAPES_3D if chip.dims == 3 else _SHAPES_2D
  if chips not in shapes:
    raise ValueError(
      f"--topology={name!r}: {chips} chips is not a {family} slice shape; sizes: "
      + ", ".join(f"{family}-{c * chip.cores_per_chip}" for c in shapes)
    )
  return Slice(f"{family}-{count}", family, chips, f"{family}:{shapes[chips]}")


def topology_devices(s: Slice) -> list[Any]:
  from jax.experimental import topologies

  kwargs = {"chip_config_name": "megacore"} if s.family == "v4" else {}
  if s.chips < 4:  # single-chip slices: libtpu's default host is 2x2
    kwargs["chips_per_host_bounds"] = (1, 1, 1)
  return list(topologies.get_topology_desc(platform="tpu", topology_name=s.topology, **kwargs).devices)


def architecture(config: Any, arch: str | None):
  from rsft.models import resolve

  return resolve.architecture(config.model, preset=arch, allow_preset=True)[0]


@dataclasses.dataclass
class Report:
  program: str
  arguments: float
  outputs: float
  temporaries: float
  aliased: float
  hbm: float
  host_temporaries: float = 0.0  # offloaded activations (remat=offload), in the TPU VM's host memory
  flops_per_chip: float | None = None
  xla_flops_per_chip: float | None = None
  model_flops_per_chip: float | None = None
  ideal_step_s: float | None = None
  notes: tuple[str, ...] = ()

  @property
  def total(self) -> float:
    return self.arguments + self.outputs + self.temporaries - self.aliased

  @property
  def fits(self) -> bool:
    return self.total <= self.hbm

  def seconds_at_mfu(self, mfu: float) -> float:
    """Step time if the model FLOPs (6·N·D + attention) ran at this fraction of the chip's peak."""
    return self.ideal_step_s * self.model_flops_per_chip / self.flops_per_chip / mfu

  def lines(self) -> list[str]:
    g = lambda b: f"{b / GIB:.2f} GiB"
    out = [
      f"{self.program}: {'fits' if self.fits else 'DOES NOT FIT'}: {g(self.total)} of {g(self.hbm)} per chip "
      f"(arguments {g(self.arguments)}, outputs {g(self.outputs)}, temporaries {g(self.temporaries)}, "
      f"aliased -{g(self.aliased)})" + (f"; host memory {g(self.host_temporaries)}" if self.host_temporaries else "")
    ]
    if self.flops_per_chip:
      out.append(
        f"  FLOPs per chip per step: {self.flops_per_chip:.3e} counted on the jaxpr (scan trip counts "
        f"applied); 6·N·tokens + attention: {self.model_flops_per_chip:.3e} "
        f"(ratio {self.flops_per_chip / self.model_flops_per_chip:.2f}, remat recompute included); "
        f"XLA cost analysis: {self.xla_flops_per_chip:.3e} (scan bodies once)"
      )
      out.append(
        f"  step time if every counted FLOP ran at peak: {self.ideal_step_s:.2f} s; at 40% MFU: "
        f"{self.seconds_at_mfu(0.4):.2f} s"
      )
    out += [f"  note: {n}" for n in self.notes]
    return out

  def to_json(self) -> dict[str, Any]:
    return dict(dataclasses.asdict(self), total=self.total, fits=self.fits)


_OOM = re.compile(r"HLO temporaries \(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)")


def _per_chip_bytes(tree: Any) -> float:
  return float(sum(math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(tree)))


def _compile(program: str, lowered: Any, args: Any, hbm: float) -> tuple[Any, Report | None]:
  """(compiled, None), or (None, a failing Report) when libtpu's compiler itself refuses: it stops at the first
  program whose temporaries exceed the chip's HBM and says by how much."""
  try:
    return lowered.compile(), None
  except jax.errors.JaxRuntimeError as e:
    found = _OOM.search(str(e))
    if "RESOURCE_EXHAUSTED" not in str(e) or not found:
      raise
    unit = lambda u: 1024 ** " KMGT".index(u)
    temporaries = float(found.group(1)) * unit(found.group(2))
    report = Report(
      program, _per_chip_bytes(args), 0.0, temporaries, 0.0, hbm, notes=(f"the TPU compiler stopped: {found.group(0)}",)
    )
    return None, report


def _memory(program: str, compiled: Any, hbm: float) -> Report:
  m = compiled.memory_analysis()
  return Report(
    program,
    float(m.argument_size_in_bytes),
    float(m.output_size_in_bytes),
    float(m.temp_size_in_bytes),
    float(m.alias_size_in_bytes),
    hbm,
    float(getattr(m, "host_temp_size_in_bytes", 0)),
  )


def _xla_flops(compiled: Any) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def _for_tpu(config: Any) -> Any:
  """`model.attention=auto` resolved for the target (this process runs on CPU, the program is for a TPU)."""
  from rsft.models import attention

  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.attention = attention.resolve(config.model.attention, config.data.max_length, "tpu")
  return config


def check_train(config: Any, model_cfg: Any, devices: list[Any], s: Slice) -> Report:
  from rsft import sharding
  from rsft.tools import flops
  from rsft.train import loop, metrics

  config = _for_tpu(config)
  mesh = sharding.make_mesh(
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices, sequence=config.mesh.sequence
  )
  setup = loop.ModelSetup.of(config)
  parts = loop.build_step(model_cfg, setup, config.train, config.data.max_length, mesh, total_steps=1000)
  with_dropout = setup.lora is not None and setup.lora.dropout > 0  # the masks' memory counts too
  dropout_key = jax.eval_shape(lambda: jax.random.key(0)) if with_dropout else None
  args = (parts.abstract_params, parts.abstract_opt, parts.abstract_batch(), parts.abstract_frozen, dropout_key)
  compiled, refused = _compile("train step", parts.jitted.lower(*args), args, s.chip.hbm_gib * GIB)
  if refused:
    return refused
  report = _memory("train step", compiled, s.chip.hbm_gib * GIB)
  counted = flops.of(parts.jitted, *args)
  positions = parts.batch_shape[0] * parts.batch_shape[1]
  kernel = counted["kernel"]
  split = mesh.shape["sequence"] > 1  # context parallelism: all-gather or ring attention in XLA, not a kernel
  if config.model.attention == "splash" and not split:  # Pallas calls carry no cost estimate: flash attention
    # is 2·T·N·H forward, 5·T·N·H backward (probabilities recomputed), 2·T·N·H more under remat.
    per_token = (
      (9 if config.model.remat != "none" else 7)
      * parts.batch_shape[1]
      * model_cfg.num_heads
      * model_cfg.head_dim
      * model_cfg.num_layers
    )
    kernel += per_token * positions
  report.flops_per_chip = (counted["dot"] + kernel) / s.chips
  report.model_flops_per_chip = metrics.flops_per_token(model_cfg, config.data.max_length) * positions / s.chips
  report.xla_flops_per_chip = _xla_flops(compiled)
  report.ideal_step_s = report.flops_per_chip / metrics.chip_peak_flops(devices[0].device_kind)
  notes = [
    f"mesh data={mesh.shape['data']} fsdp={mesh.shape['fsdp']} sequence={mesh.shape['sequence']} "
    f"tensor={mesh.shape['tensor']}, "
    f"{parts.batch_shape[0]} rows x {parts.batch_shape[1]} tokens per step in "
    f"{config.train.global_batch_size // sharding.micro_batch_rows(config.train.global_batch_size, config.train.micro_batch_size, mesh)} micro-batches, remat="
    f"{config.model.remat}, attention="
    f"{setup.attention + ' (sequence axis)' if split else config.model.attention}, params "
    f"{config.model.param_dtype}"
  ]
  if config.model.attention == "splash" and not split:
    notes.append("splash attention FLOPs are analytic (9·L·N·H·T per token with remat); matmuls are counted")
  report.notes = tuple(notes)
  return report


_COPY = re.compile(r"= \w+\[([\d,]*)\]\{[^}S]*\} copy\(")


def copied_sizes(hlo_text: str) -> list[int]:
  """Element counts of the `copy` ops in a compiled program whose result stays in device memory (no S(n) in the
  layout: XLA's memory-space assignment may prefetch a small buffer into on-chip memory, S(1), at no HBM cost)."""
  return [math.prod(int(d) for d in dims.split(",") if d) for dims in _COPY.findall(hlo_text)]


def check_sample(config: Any, model_cfg: Any, devices: list[Any], s: Slice, prompt_len: int = 2048) -> Report:
  """The sampler as eval.py runs it on the sampling mesh: slots and KV pages planned from the chip's memory
  (sampler.plan with config.sample's settings), then one prefill group of `prompt_len`-token prompts, its admission
  and one decode chunk of eval.max_new_tokens (else sample.max_new_tokens) compiled. The page pools live through
  prefill, so the peak is the largest of decode, admit, and prefill + pools."""
  import jax.numpy as jnp

  from rsft import sharding
  from rsft.evals import modes
  from rsft.infer import engine, sampler
  from rsft.models.model import abstract_model

  config = _for_tpu(config)
  dtype = config.sample.dtype or config.model.dtype
  data, tensor = config.sample.mesh.data, config.sample.mesh.tensor
  hbm = s.chip.hbm_gib * GIB
  refuse = lambda why: Report("sampler", 0.0, 0.0, float("inf"), 0.0, hbm, notes=(why,))
  try:
    mesh = sharding.make_mesh(data, 1, tensor, devices=devices)
  except ValueError as e:  # e.g. tensor=8 on a 4-chip slice: refused with the reason, not a traceback
    return refuse(
      f"{e} (sample.mesh data={data} tensor={tensor}); set sample.mesh.tensor to a divisor of the "
      f"slice's {len(devices)} chips"
    )
  graphdef, state, _ = abstract_model(model_cfg, dtype, dtype, mesh, "none", config.model.attention)
  params = sharding.abstract_arrays(state, sharding.Rules(mesh))
  prompt = min(b for b in config.sample.prompt_buckets if b >= prompt_len)
  max_new = config.eval.max_new_tokens or config.sample.max_new_tokens
  opts = modes.sampler_options(config.sample, 1)
  try:  # a whole benchmark waiting: the slots are max_num_seqs
    plan = sampler.plan(model_cfg, jnp.dtype(dtype), mesh, 1 << 20, prompt, prompt + max_new, 1, opts, hbm)
  except ValueError as e:
    return refuse(str(e))
  typed = lambda x: jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), *x)
  empty = engine.empty_state.lower(graphdef, params, plan=plan, penalties=False).compile()
  state_abstract = typed((empty.out_info, empty.output_shardings))
  put = lambda shape, dt: jax.ShapeDtypeStruct(shape, dt, sharding=sharding.batch_sharding(sharding.Rules(mesh), shape))
  g = plan.prefill_prompts
  ids = put((g, prompt), jnp.int32)
  prefill, refused = _compile(
    "sampler (prefill)", engine.prefill.lower(graphdef, params, ids, ids, chunk=512), (params, ids), hbm
  )
  if refused:
    return refused
  cache, logits = typed((prefill.out_info, prefill.output_shardings))
  vector = lambda dt, size=g: jax.ShapeDtypeStruct((size,), dt)
  table = jax.ShapeDtypeStruct((plan.slots, plan.pages_per_row), jnp.int32)
  rows = tuple(
    vector(dt) for dt in (jnp.float32, jnp.float32, jnp.int32, jnp.int32, jnp.int32, jnp.float32, jnp.float32)
  )
  admit, refused = _compile(
    "sampler (admit)",
    engine.admit.lower(state_abstract, cache, logits, vector(jnp.int32), vector(jnp.int32), table, rows, n=1),
    (state_abstract, cache),
    hbm,
  )
  if refused:
    return refused
  scalar = lambda dt: jax.ShapeDtypeStruct((), dt)
  lowered = engine.decode.lower(
    graphdef,
    params,
    state_abstract,
    table,
    vector(jnp.int32, plan.slots),
    scalar(jnp.int32),
    scalar(jnp.int32),
    vector(jnp.int32, 2),
    scalar(jnp.uint32),
    scalar(jnp.int32),
    k_cap=config.sample.top_k_cap,
    chunk=config.sample.chunk_steps,
  )
  decode, refused = _compile("sampler (decode)", lowered, (params, state_abstract), hbm)
  if refused:
    return refused
  pools = _per_chip_bytes((state_abstract.k, state_abstract.v))
  pre, adm, dec = _memory("prefill", prefill, hbm), _memory("admit", admit, hbm), _memory("decode", decode, hbm)
  pre.temporaries += pools  # the pools are live while a prefill runs
  worst = max((pre, adm, dec), key=lambda r: r.total)
  worst.program = f"sampler ({worst.program} is the peak)"
  local = state_abstract.k.sharding.shard_shape(state_abstract.k.shape)  # [D, K, L, pages, page, H]
  layer = local[1] * math.prod(local[3:])
  big = [c for c in copied_sizes(decode.as_text()) if c >= layer]
  kernel = "Pallas paged-attention kernel" if "tpu_custom_call" in decode.as_text() else "XLA paged path"
  worst.notes = (
    f"sampling mesh data={mesh.shape['data']} tensor={mesh.shape['tensor']}, {plan.slots} slots, "
    f"{plan.pages_per_shard - 1} KV pages of {plan.page_size} columns per data shard "
    f"({(plan.pages_per_shard - 1) * plan.page_size / (prompt + max_new):.1f} sequences of {prompt} "
    f"prompt + {max_new} new tokens at full length; {pools / GIB:.2f} GiB per chip), {dtype}; prefill "
    f"({g} prompts) {pre.total / GIB:.2f} GiB with the pools, admit {adm.total / GIB:.2f} GiB, decode "
    f"{dec.total / GIB:.2f} GiB; decode attention: {kernel}; copies of a cache layer in the decode loop: "
    f"{len(big) or 'none'}",
  )
  return worst


def run(
  config: Any, topology: str, what: str = "train,sample", arch: str | None = None, prompt_len: int = 2048
) -> list[Report]:
  s = parse_slice(topology)
  model_cfg = architecture(config, arch)
  devices = topology_devices(s)
  checks = {"train": check_train, "sample": lambda *a: check_sample(*a, prompt_len=prompt_len)}
  unknown = set(what.split(",")) - set(checks)
  if unknown:
    raise ValueError(f"--what: unknown {sorted(unknown)}; choose from {sorted(checks)}")
  return [checks[w](config, model_cfg, devices, s) for w in what.split(",")]


def _define_flags() -> None:
  rconfig.define_flags()
  flags.DEFINE_string("topology", None, "TPU slice, e.g. v5p-32, v6e-16, v5e-16, v4-16")
  flags.DEFINE_string("what", "train,sample", "programs to compile: train, sample")
  flags.DEFINE_string("arch", None, "architecture preset when model.path is not a local dir (e.g. qwen3_14b)")
  flags.DEFINE_string("json", None, "also write the reports here")
  flags.DEFINE_integer("prompt_len", 2048, "sampler check: prompt tokens per row")


def main(argv):
  del argv
  config = rconfig.validate(flags.FLAGS.config)
  reports = run(config, flags.FLAGS.topology, flags.FLAGS.what, flags.FLAGS.arch, flags.FLAGS.prompt_len)
  print(f"{flags.FLAGS.topology} ({parse_slice(flags.FLAGS.topology).topology}):")
  for r in reports:
    print("\n".join(r.lines()))
  if flags.FLAGS.json:
    with open(flags.FLAGS.json, "w") as f:
      json.dump([r.to_json() for r in reports], f, indent=1)
  failed = [r.program for r in reports if not r.fits]
  if failed:
    print(
      f"does not fit on {flags.FLAGS.topology}: {', '.join(failed)}. Try a larger slice, a larger "
      "mesh.fsdp / mesh.tensor, a smaller train.micro_batch_size, model.remat=full, or "
      "model.attention=splash.",
      file=sys.stderr,
    )
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["config", "topology"])
  app.run(main)
