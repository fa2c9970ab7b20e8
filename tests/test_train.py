"""Loss aggregation, packing equivalence, sharded training, non-finite skips, resume and preemption."""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import rsft
from rsft import sharding
from rsft.models import ModelConfig, forward
from rsft.train import loop, optim
from rsft.train.loss import token_scales
from rsft.train.step import StepConfig, train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = ModelConfig(
  model_type="qwen3",
  vocab_size=128,
  hidden_size=32,
  intermediate_size=48,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=8,
  rope_theta=1e6,
  qk_norm=True,
)


def random_batch(rows=8, length=24, seed=0):
  rng = np.random.default_rng(seed)
  weights = (rng.random((rows, length)) < 0.6).astype(np.float32)
  weights[:, -3:] = 0  # padding tail
  return dict(
    inputs=rng.integers(0, 128, (rows, length)).astype(np.int32),
    targets=rng.integers(0, 128, (rows, length)).astype(np.int32),
    weights=weights,
    segment_ids=np.where(np.arange(length) < length - 3, 1, 0)[None].repeat(rows, 0).astype(np.int32),
    positions=np.arange(length)[None].repeat(rows, 0).astype(np.int32),
  )


def test_verl_aggregation_matches_a_hand_computed_reference():
  """8 rows, 2 ranks, 2 rows per micro-batch: rank r holds rows r, r+2, ...; micro-batch j its rows [2j, 2j+2)."""
  w = random_batch()["weights"]
  nll = np.random.default_rng(1).random(w.shape).astype(np.float32)
  ranks, m = 2, 2
  want = 0.0
  for r in range(ranks):
    local = list(range(r, 8, ranks))
    for j in range(len(local) // m):
      rows = local[j * m : (j + 1) * m]
      want += (nll[rows] * w[rows]).sum() / w[rows].sum()
  want /= ranks  # gradients summed over micro-batches, averaged over ranks
  got = float((nll * token_scales(jnp.asarray(w), "verl", ranks, m)).sum())
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(float((nll * token_scales(jnp.asarray(w))).sum()), (nll * w).sum() / w.sum(), rtol=1e-6)


def test_packed_loss_equals_unpacked_loss():
  m = rsft.init_model(CFG, seed=0)
  rng = np.random.default_rng(0)
  examples = [rng.integers(0, 128, n).astype(np.int32) for n in (9, 13, 6)]
  weights = [(rng.random(len(e)) < 0.7).astype(np.float32) for e in examples]

  def row(parts, length=32):
    b = {k: np.zeros(length, np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    b["weights"] = np.zeros(length, np.float32)
    at = 0
    for s, (e, w) in enumerate(parts, 1):
      n = len(e) - 1
      b["inputs"][at : at + n], b["targets"][at : at + n], b["weights"][at : at + n] = e[:-1], e[1:], w[1:]
      b["segment_ids"][at : at + n], b["positions"][at : at + n] = s, np.arange(n)
      at += n
    return {k: v[None] for k, v in b.items()}

  def nll(batch):
    lp = forward.logprobs(
      m.graphdef, m.params, batch["inputs"], batch["positions"], batch["segment_ids"], batch["targets"], 8
    )
    return -float((lp * batch["weights"]).sum())

  packed = nll(row(list(zip(examples, weights))))
  separate = sum(nll(row([(e, w)])) for e, w in zip(examples, weights))
  np.testing.assert_allclose(packed, separate, rtol=1e-5)


def optimizer(total=10, lr=1e-2):
  tc = ml_collections.ConfigDict(
    dict(
      lr=lr,
      warmup_ratio=0.0,
      schedule="constant",
      max_grad_norm=1.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.01,
      weight_decay_mask="kernels",
    )
  )
  return optim.make_optimizer(tc, total)[0]


def run_steps(mesh, steps=3, micro_batches=2):
  m = rsft.init_model(CFG, seed=0, mesh=mesh)
  tx = optimizer()
  step = jax.jit(functools.partial(train_step, m.graphdef, tx, StepConfig(micro_batches=micro_batches, loss_chunk=8)))
  params, opt_state, losses = m.params, jax.jit(tx.init)(m.params), []
  place = sharding.batch_sharding(sharding.Rules(mesh), (8, 24))
  for _ in range(steps):
    batch = {k: jax.device_put(v, place) for k, v in random_batch(seed=0).items()}
    params, opt_state, out = step(params, opt_state, batch)
    losses.append(float(out["loss"]))
  return losses, params


def test_sharded_training_equals_single_device():
  ref_losses, ref_params = run_steps(None)
  assert ref_losses[-1] < ref_losses[0]
  for shape in [(1, 4, 2), (2, 2, 2)]:
    losses, params = run_steps(sharding.make_mesh(*shape))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_adam_moments_are_laid_out_like_the_params():
  """Found by the TPU fit check: left to XLA's propagation, mu and nu were replicated on every device."""
  from rsft import config as rconfig

  c = rconfig.base_config()
  c.data.max_length, c.train.global_batch_size, c.train.micro_batch_size = 32, 8, 4
  parts = loop.build_step(CFG, loop.ModelSetup.of(c), c.train, c.data.max_length, sharding.make_mesh(1, 4, 2), 10)
  params = {jax.tree_util.keystr(k): v.sharding for k, v in jax.tree_util.tree_leaves_with_path(parts.abstract_params)}
  key = jax.tree_util.keystr
  moments = [
    (k, v) for k, v in jax.tree_util.tree_leaves_with_path(parts.abstract_opt) if ".mu" in key(k) or ".nu" in key(k)
  ]
  assert len(moments) == 2 * len(params)
  for path, leaf in moments:
    name = jax.tree_util.keystr(path).split(".mu", 1)[-1].split(".nu", 1)[-1]
    assert leaf.sharding == params[name], name
  assert sum(leaf.sharding.spec != jax.sharding.PartitionSpec() for _, leaf in moments) >= len(moments) // 2
  compiled = parts.jitted.lower(parts.abstract_params, parts.abstract_opt, parts.abstract_batch()).compile()
  assert [s.spec for s in jax.tree.leaves(compiled.output_shardings[1])] == [
    a.sharding.spec for a in jax.tree.leaves(parts.abstract_opt)
  ]  # the step hands the layout back unchanged


def test_micro_batching_does_not_change_the_step():
  a, pa = run_steps(None, steps=2, micro_batches=1)
  b, pb = run_steps(None, steps=2, micro_batches=4)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)  # summation order only


def test_non_finite_gradients_skip_the_update():
  m = rsft.init_model(CFG, seed=0)
  m.params["norm"]["scale"][...] = m.params["norm"]["scale"][...].at[0].set(jnp.inf)
  tx = optimizer()
  before = np.asarray(m.params["layers"]["mlp"]["up_proj"]["kernel"][...])
  step = jax.jit(functools.partial(train_step, m.graphdef, tx, StepConfig(loss_chunk=8)))
  params, _, out = step(m.params, tx.init(m.params), random_batch())
  assert int(out["skipped"]) == 1
  np.testing.assert_array_equal(np.asarray(params["layers"]["mlp"]["up_proj"]["kernel"][...]), before)


def tiny_run_config(workdir_rows=96):
  from configs import countdown_tiny

  c = countdown_tiny.get_config()
  c.model.arch.update(hidden_size=32, intermediate_size=64, num_layers=1, head_dim=8)
  c.pretrain.generate = ()  # SFT from a fresh init: the made base has its own test
  c.data.generate_rows = workdir_rows
  c.data.max_length = 448  # packed rows (the demo's layout)
  c.data.shuffle = True
  c.train.global_batch_size = 8
  c.train.micro_batch_size = 4
  c.train.num_epochs = 1
  c.train.log_every = 1
  c.checkpoint.save_steps = (3,)
  c.checkpoint.async_save = False
  return c


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
  """N steps straight == 3 steps, restart (params, optimizer, step, packed data order restored), N - 3 more."""
  full = loop.run(tiny_run_config(), str(tmp_path / "a"))
  losses_a = [r["loss"] for r in loop.read_metrics(str(tmp_path / "a"))]
  last = full["step"]
  assert len(losses_a) == last > 5
  # Simulate a kill right after step 3: drop later checkpoints and the metrics written after it.
  b = tmp_path / "b"
  shutil.copytree(tmp_path / "a", b)
  shutil.rmtree(b / "checkpoints" / str(last))
  (b / "metrics.jsonl").write_text("".join(open(b / "metrics.jsonl").readlines()[:3]))
  loop.run(tiny_run_config(), str(b))
  losses_b = [r["loss"] for r in loop.read_metrics(str(b))]
  assert losses_b == losses_a  # bit-identical on CPU, including the data order after the restart
  exported = rsft.export_hf(str(b / "checkpoints" / str(last)), str(tmp_path / "hf"))
  assert os.path.exists(os.path.join(exported, "model.safetensors"))


def test_sigterm_saves_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  cmd = [
    sys.executable,
    os.path.join(ROOT, "train.py"),
    f"--config={ROOT}/configs/countdown_tiny.py",
    f"--workdir={workdir}",
    "--config.model.arch.num_layers=1",
    "--config.data.generate_rows=400",
    "--config.pretrain.generate=()",
    "--config.checkpoint.save_steps=(1000,)",
    "--config.train.log_every=1",
  ]
  proc = subprocess.Popen(
    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}
  )
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0
  steps = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
  last = json.loads(metrics.read_text().splitlines()[-1])["step"]
  assert steps == [last] and last >= 2


def test_schedule_is_verls_cosine_with_warmup():
  """640 steps, warmup int(0.1 * 640) = 64: lr(0) = 0 (the study's first update), peak at 64, 0 at 640."""
  import math

  sched = optim.schedule(5e-5, 640, 0.1, "cosine")
  for step in (0, 10, 32, 64, 100, 352, 639, 640):
    want = 5e-5 * (step / 64 if step < 64 else 0.5 * (1 + math.cos(math.pi * (step - 64) / (640 - 64))))
    np.testing.assert_allclose(float(sched(step)), want, rtol=1e-5, atol=1e-12)
  const = optim.schedule(1e-4, 1280, 0.1, "constant")
  assert float(const(0)) == 0 and float(const(64)) == pytest.approx(5e-5) and float(const(1000)) == pytest.approx(1e-4)
  assert float(optim.schedule(1e-4, 100, 0.0, "constant")(0)) == pytest.approx(1e-4)


def test_wsd_holds_the_peak_then_decays_linearly_over_the_last_share():
  wsd = optim.schedule(1e-3, 100, 0.05, "wsd", decay_ratio=0.2)  # warmup 5, stable to 80, 0 at 100
  want = {0: 0.0, 2: 4e-4, 5: 1e-3, 50: 1e-3, 80: 1e-3, 90: 5e-4, 99: 5e-5, 100: 0.0}
  for step, lr in want.items():
    assert float(wsd(step)) == pytest.approx(lr, abs=1e-9), step
  assert float(optim.schedule(1e-3, 100, 0.0, "wsd", decay_ratio=1.0)(50)) == pytest.approx(5e-4)
  with pytest.raises(ValueError, match="train.decay_ratio=0"):
    optim.schedule(1e-3, 100, 0.0, "wsd", decay_ratio=0)
  with pytest.raises(ValueError, match="use 'cosine', 'constant' or 'wsd'"):
    optim.schedule(1e-3, 100, 0.0, "linear")


def test_mfu_flops_estimate_matches_a_hand_count():
  from rsft.train.metrics import flops_per_token, param_count

  # Qwen3-14B: 40 layers, d 5120, 40/8 heads of 128, mlp 17408, untied 151936 vocab -> 14.8B parameters.
  cfg = ModelConfig(
    model_type="qwen3",
    vocab_size=151936,
    hidden_size=5120,
    intermediate_size=17408,
    num_layers=40,
    num_heads=40,
    num_kv_heads=8,
    head_dim=128,
    rope_theta=1e6,
    qk_norm=True,
  )
  assert abs(param_count(cfg) / 1e9 - 14.77) < 0.05
  assert flops_per_token(cfg, 20000) == 6 * param_count(cfg) + 6 * 40 * 40 * 128 * 20000
  from rsft.train.metrics import chip_peak_flops  # device kinds as jax reports them; v5p says "TPU v5"

  assert [chip_peak_flops(k) for k in ("TPU v5", "TPU v5 lite", "TPU v6 lite", "NVIDIA H100 80GB HBM3", "cpu")] == [
    459e12,
    197e12,
    918e12,
    989e12,
    None,
  ]


def test_keep_policy_never_deletes_a_listed_step(tmp_path):
  from rsft.train import checkpoint

  m = rsft.init_model(CFG)
  mngr = checkpoint.manager(str(tmp_path), save_steps=(2,), keep=1, async_save=False)
  for step in range(1, 6):
    checkpoint.save(mngr, step, m.params, {}, None, {"step": step})
  mngr.wait_until_finished()
  assert sorted(mngr.all_steps()) == [2, 5]


def test_verl_loss_does_not_move_with_micro_batch_size():
  """The study's grouping (4 rows per rank micro-batch, 8 ranks) is its own setting: a micro_batch_size chosen to
  fit memory (32, 16 or 8 rows per accumulation step) gives the same loss and the same gradient (plain SGD, so the
  update is the gradient: Adam's first step would turn rounding in near-zero gradients into whole steps)."""
  from rsft import config as rconfig

  m = rsft.init_model(CFG, seed=0)
  batch = random_batch(rows=32, length=16, seed=4)
  batch["weights"][::3, :10] = 0  # uneven supervised counts, so the grouping matters
  c = rconfig.base_config()
  c.train.update(global_batch_size=32, loss_aggregation="verl", verl_ranks=8, verl_rows_per_micro=4, loss_chunk=8)
  sgd = optax.apply_if_finite(optax.sgd(1.0), 1)

  def one_step(cfg):
    params, _, out = jax.jit(functools.partial(train_step, m.graphdef, sgd, cfg))(m.params, sgd.init(m.params), batch)
    return float(out["objective"]), jax.tree.map(lambda new, old: np.asarray(old - new), params, m.params)

  outs = []
  for micro in (32, 16, 8):
    c.train.micro_batch_size = micro
    cfg = loop.step_config(c.train)
    assert cfg.verl_rows_per_micro == 4 and cfg.micro_batches == 32 // micro
    outs.append(one_step(cfg))
  for objective, grads in outs[1:]:
    assert objective == pytest.approx(outs[0][0], rel=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(outs[0][1])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  w = jnp.asarray(batch["weights"])  # the grouping itself does change the loss: 2-row groups scale differently
  assert not np.allclose(token_scales(w, "verl", 8, 2), token_scales(w, "verl", 8, 4))


def test_micro_batch_zero_is_one_row_per_data_parallel_device():
  from rsft import config as rconfig

  c = rconfig.base_config()
  c.train.global_batch_size, c.train.micro_batch_size = 8, 0
  assert sharding.micro_batch_rows(8, 0, sharding.make_mesh(2, 2, 2)) == 4  # data x fsdp; tensor shares a row
  assert loop.step_config(c.train, sharding.make_mesh(1, 8, 1)).micro_batches == 1
  c.train.global_batch_size = 6
  with pytest.raises(ValueError, match=r"not a multiple of the micro-batch \(4 rows = data x fsdp devices\)"):
    sharding.micro_batch_rows(6, 0, sharding.make_mesh(2, 2, 2))


def test_a_made_base_is_step_0_and_sft_starts_from_it(tmp_path):
  """config.pretrain: the base trains in WORKDIR/base on the short-answer rows, SFT starts from its last step and
  saves it as checkpoint 0 (what eval.py evaluates as the base); a restart trains neither again."""
  from rsft.evals import checkpoints

  c = tiny_run_config(48)
  c.pretrain.update(generate=("arithmetic", "sorting"), rows=64, num_epochs=1, max_length=64, global_batch_size=4)
  c.checkpoint.save_steps = ()
  work = str(tmp_path / "run")
  loop.run(c, work)
  base_steps = checkpoints.list_steps(os.path.join(work, "base"))
  assert len(base_steps) == 1 and base_steps[0] == len(loop.read_metrics(os.path.join(work, "base")))
  base_rows = [json.loads(line) for line in open(os.path.join(work, "data", "base.jsonl"))]
  assert len(base_rows) == 64 and {r["data_source"] for r in base_rows} == {"arithmetic", "sorting"}
  steps = checkpoints.list_steps(work)
  assert steps[0] == 0 and len(steps) == 2
  base = rsft.load_model(os.path.join(work, "base", "checkpoints", str(base_steps[0])))
  step0 = rsft.load_model(checkpoints.step_dir(work, 0))
  for x, y in zip(jax.tree.leaves(base.params), jax.tree.leaves(step0.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  before = os.path.getmtime(os.path.join(work, "base", "metrics.jsonl"))
  loop.run(c, work)  # finished: nothing retrains
  assert os.path.getmtime(os.path.join(work, "base", "metrics.jsonl")) == before
  c.model.path = os.path.join(work, "base")
  with pytest.raises(ValueError, match="model.path is set"):
    loop.run(c, str(tmp_path / "other"))


def test_the_forgetting_probe_logs_every_k_steps_and_resumes_with_the_base_answers(tmp_path):
  """train.probe_every: the base's greedy answers on the probe sets are made once (step 0) and scored teacher-forced
  every K steps and at the last; drift starts at 0 (the base scores its own answers), grows as SFT moves away,
  and a resumed run reuses the answers. A finished run records its final step (follow mode's end)."""
  from rsft import workdir as workdir_lib
  from rsft.analysis.probe import Probe

  c = tiny_run_config()
  c.train.update(probe_every=2, probe_sets=("arithmetic", "sorting"), probe_items=4, probe_tokens=12)
  work = str(tmp_path / "run")
  last = loop.run(c, work, probe=Probe(c, work))["step"]
  rows = [r for r in loop.read_metrics(work) if "probe/arithmetic/logprob" in r]
  assert [r["step"] for r in rows] == sorted({0, *range(2, last + 1, 2), last})
  assert abs(rows[0]["probe/arithmetic/drift"]) < 1e-4 and rows[-1]["probe/arithmetic/drift"] > 0.1
  assert all(np.isfinite(r["probe/sorting/entropy"]) for r in rows)
  answers = [json.loads(line) for line in open(os.path.join(work, "probe", "answers.jsonl"))]
  assert len(answers) == 8 and {a["set"] for a in answers} == {"arithmetic", "sorting"}
  assert workdir_lib.finished_step(work) == last
  loop.run(c, work, probe=Probe(c, work))  # rerun of a finished run: its last probe row is logged again, once
  assert [r["step"] for r in loop.read_metrics(work) if "probe/arithmetic/logprob" in r] == [r["step"] for r in rows]
  b = tmp_path / "b"  # resume after step 3's checkpoint: the probe answers are the base's, not step 3's
  shutil.copytree(work, b)
  shutil.rmtree(b / "checkpoints" / str(last))
  (b / "metrics.jsonl").write_text("".join(line for line in open(b / "metrics.jsonl") if json.loads(line)["step"] <= 3))
  loop.run(c, str(b), probe=Probe(c, str(b)))
  again = [r for r in loop.read_metrics(str(b)) if "probe/arithmetic/logprob" in r]
  assert [r["step"] for r in again] == [r["step"] for r in rows]
  np.testing.assert_allclose(
    [r["probe/arithmetic/logprob"] for r in again], [r["probe/arithmetic/logprob"] for r in rows], atol=1e-5
  )
  c.train.probe_sets = ("no_such_benchmark",)
  with pytest.raises(ValueError, match="no_such_benchmark"):
    Probe(c, work)


def test_a_mixed_run_logs_its_realised_mixture_and_resumes_at_the_row(tmp_path):
  """data.mix over two files: every logged row has each source's share of the examples since the last row, and a
  restart after step 3 continues with the same batches (the mixture's position is in the checkpoint)."""
  c = tiny_run_config()
  c.train.num_steps = 1
  loop.run(c, str(tmp_path / "gen"))  # the generated Countdown rows and tokenizer
  rows = open(tmp_path / "gen" / "data" / "countdown3.jsonl").readlines()
  (tmp_path / "easy.jsonl").write_text("".join(rows[:48]))
  (tmp_path / "hard.jsonl").write_text("".join(rows[48:]))
  c = tiny_run_config()
  c.data.update(generate=None, train_files=f"{tmp_path / 'easy.jsonl'},{tmp_path / 'hard.jsonl'}", mix="easy=3,hard=1")
  c.model.tokenizer = str(tmp_path / "gen" / "tokenizer")
  c.train.num_steps = 6
  loop.run(c, str(tmp_path / "a"))
  logged = loop.read_metrics(str(tmp_path / "a"))
  shares = [(r["mix/easy"], r["mix/hard"]) for r in logged]
  assert len(shares) == 6 and all(abs(e + h - 1) < 1e-9 for e, h in shares)
  easy = sum(e for e, _ in shares) / 6
  assert 0.6 < easy < 0.9  # 3:1 by examples (packed rows hold whole examples, so a row's share is not exact)
  b = tmp_path / "b"
  shutil.copytree(tmp_path / "a", b)
  shutil.rmtree(b / "checkpoints" / "6")
  (b / "metrics.jsonl").write_text("".join(open(b / "metrics.jsonl").readlines()[:3]))
  loop.run(c, str(b))
  assert [r["loss"] for r in loop.read_metrics(str(b))] == [r["loss"] for r in logged]
  c.train.num_steps = None
  with pytest.raises(ValueError, match=r"data.mix='easy=3,hard=1' samples its sources without end: set train"):
    loop.run(c, str(tmp_path / "c"))
