"""Context parallelism (mesh.sequence): rows split over a `sequence` mesh axis in zigzag order, attention by
all-gather of keys and values or by ring; loss and gradients equal the single-device step."""

import jax
import numpy as np
import pytest

import rsft
from rsft import config as rconfig
from rsft import sharding
from rsft.models import ModelConfig
from rsft.train import step as step_lib
from rsft.train.loss import token_scales

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


def packed_batch(rows=4, length=48, seed=0):
  """Documents of 5-29 tokens packed end to end (each its own segment, positions from 0), a padding tail: most
  documents cross the boundaries of the 2 x sequence chunks."""
  rng = np.random.default_rng(seed)
  seg, pos = np.zeros((rows, length), np.int32), np.zeros((rows, length), np.int32)
  for r in range(rows):
    at, doc = 0, 1
    while at < length - 3:
      n = min(int(rng.integers(5, 30)), length - 3 - at)
      seg[r, at : at + n], pos[r, at : at + n] = doc, np.arange(n)
      at, doc = at + n, doc + 1
  weights = ((rng.random((rows, length)) < 0.7) & (seg > 0)).astype(np.float32)
  return dict(
    inputs=rng.integers(0, 128, (rows, length)).astype(np.int32),
    targets=rng.integers(0, 128, (rows, length)).astype(np.int32),
    weights=weights,
    segment_ids=seg,
    positions=pos,
  )


def loss_and_grads(mesh, sequence, aggregation="token_mean", attention="allgather", cfg=CFG):
  m = rsft.init_model(cfg, seed=0, mesh=mesh, attention=attention)
  cfg = step_lib.StepConfig(
    aggregation=aggregation, verl_ranks=2, verl_rows_per_micro=2, loss_chunk=8, sequence=sequence
  )

  @jax.jit
  def run(params, batch):
    batch = dict(batch, scale=token_scales(batch["weights"], cfg.aggregation, cfg.verl_ranks, cfg.verl_rows_per_micro))
    if sequence > 1:
      order = step_lib.zigzag(batch["inputs"].shape[1], sequence)
      batch = {k: v[:, order] for k, v in batch.items()}
    (loss, sums), grads = jax.value_and_grad(step_lib._micro_loss, has_aux=True)(params, m.graphdef, batch, 8)
    return loss, sums["nll"], grads

  place = sharding.batch_sharding(sharding.Rules(mesh), (4, 48))
  return run(m.params, {k: jax.device_put(v, place) for k, v in packed_batch().items()})


def mesh(data=1, fsdp=1, sequence=1, tensor=1):
  return sharding.make_mesh(
    data, fsdp, tensor, sequence=sequence, devices=jax.devices()[: data * fsdp * sequence * tensor]
  )


SHAPES = (
  dict(sequence=2),
  dict(sequence=4),
  dict(sequence=8),
  dict(fsdp=2, sequence=2, tensor=2),
  dict(data=2, sequence=4),
)


@pytest.mark.parametrize(
  "aggregation,attention,shapes",
  [
    ("token_mean", "allgather", SHAPES),
    ("verl", "allgather", SHAPES),
    ("token_mean", "ring", SHAPES),
    ("verl", "ring", (dict(data=2, sequence=4),)),
    ("token_mean", "ring", (dict(sequence=2, tensor=4),)),
  ],
)  # 2 KV heads on tensor 4: replicated, repeated
def test_loss_and_gradients_equal_the_single_device_step(aggregation, attention, shapes):
  ref_loss, ref_nll, ref_grads = loss_and_grads(None, 1, aggregation)
  for shape in shapes:
    loss, nll, grads = loss_and_grads(mesh(**shape), shape["sequence"], aggregation, attention)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5, err_msg=str(shape))
    np.testing.assert_allclose(float(nll), float(ref_nll), rtol=1e-5, err_msg=str(shape))
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      g, r = np.asarray(g), np.asarray(r)
      assert np.abs(g - r).max() <= 1e-5 * np.abs(r).max(), shape


def test_zigzag_gives_each_shard_an_early_and_a_late_chunk():
  order = np.asarray(step_lib.zigzag(16, 4))  # 8 chunks of 2: shard i holds chunks i and 7 - i
  assert order.reshape(4, 4).tolist() == [[0, 1, 14, 15], [2, 3, 12, 13], [4, 5, 10, 11], [6, 7, 8, 9]]
  assert sorted(order.tolist()) == list(range(16))
  with pytest.raises(ValueError, match="2 x mesh.sequence = 8"):
    step_lib.zigzag(20, 4)


def test_bad_lengths_and_meshes_are_refused_naming_the_setting():
  c = rconfig.base_config()
  c.mesh.update(sequence=4, fsdp=-1)
  c.data.max_length = 20002
  with pytest.raises(
    ValueError,
    match=r"data.max_length=20002 must be a multiple of 2 x mesh.sequence = 8.*"
    r"use data.max_length=20008",
  ):
    rconfig.validate(c)
  c.data.max_length = 20000
  rconfig.validate(c)
  with pytest.raises(ValueError, match=r"does not fit 8 devices: change mesh.sequence=3 so that"):
    sharding.make_mesh(1, -1, 1, sequence=3)
  with pytest.raises(ValueError, match=r"uses 4 devices but 8 are present; set one axis to -1"):
    sharding.make_mesh(1, 1, 1, sequence=4)


def test_training_runs_and_resumes_bit_identically_on_a_sequence_mesh(tmp_path):
  """The whole loop on data 4 x sequence 2 with ring attention: a run killed after step 3 and resumed logs the
  losses of the uninterrupted one."""
  import json
  import os
  import shutil

  from configs import countdown_tiny
  from rsft.train import loop

  c = countdown_tiny.get_config()
  c.model.arch.update(hidden_size=32, intermediate_size=64, num_layers=1, head_dim=8)
  c.pretrain.generate = ()
  c.data.update(generate_rows=120, max_length=448, shuffle=True)
  c.train.update(global_batch_size=8, micro_batch_size=8, num_epochs=1, log_every=1, probe_every=0)
  c.checkpoint.update(save_steps=(3,), async_save=False)
  c.mesh.update(data=-1, fsdp=1, sequence=2, sequence_attention="ring")
  last = loop.run(c, str(tmp_path / "a"))["step"]
  losses = [r["loss"] for r in loop.read_metrics(str(tmp_path / "a"))]
  assert last > 3 and len(losses) == last
  b = tmp_path / "b"
  shutil.copytree(tmp_path / "a", b)
  shutil.rmtree(b / "checkpoints" / str(last))
  (b / "metrics.jsonl").write_text("".join(line for line in open(b / "metrics.jsonl") if json.loads(line)["step"] <= 3))
  os.remove(b / "train_finished.json")
  loop.run(c, str(b))
  assert [r["loss"] for r in loop.read_metrics(str(b))] == losses


def test_gathered_attention_in_query_blocks_equals_one_pass():
  """Shards' query slices longer than the block run block by block (block j of every shard at once): the same
  output as one pass, and as the reference attention of the unsplit row."""
  from rsft.models import attention, context_parallel

  rng = np.random.default_rng(1)
  b, t, n, kv, h = 2, 64, 4, 2, 8
  q, k, v = (rng.normal(size=(b, t, heads, h)).astype(np.float32) for heads in (n, kv, kv))
  batch = packed_batch(rows=b, length=t)
  seg, pos = batch["segment_ids"], batch["positions"]
  want = attention.dot_product_attention(q, k, v, attention.segment_mask(seg, seg))
  order = np.asarray(step_lib.zigzag(t, 4))
  rules = sharding.Rules(mesh(sequence=4, data=2))
  run = jax.jit(lambda *a, chunk: context_parallel.gathered(*a, rules, chunk=chunk), static_argnames="chunk")
  for chunk in (4, 1024):  # 16 local queries: 4 blocks of 4, or one pass
    got = run(q[:, order], k[:, order], v[:, order], seg[:, order], pos[:, order], chunk=chunk)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want)[:, order], atol=1e-5)


@pytest.mark.parametrize(
  "shape,chunk,window",
  [(dict(sequence=4, data=2), 4, None), (dict(sequence=8), 2, None), (dict(sequence=2, tensor=2, fsdp=2), 1024, 5)],
)
def test_ring_attention_equals_the_reference_with_its_gradients(shape, chunk, window):
  """Outputs and dQ, dK, dV of the ring (in block pairs or one pass, with a sliding window) against the reference
  attention of the unsplit row, for every real token (padding queries give zeros; the reference averages)."""
  from rsft.models import attention, context_parallel

  rng = np.random.default_rng(2)
  b, t, n, kv, h = 2, 64, 4, 2, 8
  q, k, v, w = (rng.normal(size=(b, t, heads, h)).astype(np.float32) for heads in (n, kv, kv, n))
  batch = packed_batch(rows=b, length=t)
  seg, pos = batch["segment_ids"], batch["positions"]
  real = (seg > 0)[:, :, None, None]
  w = w * real
  ref = lambda q, k, v: attention.dot_product_attention(q, k, v, attention.segment_mask(seg, seg, window=window))
  order = np.asarray(step_lib.zigzag(t, shape["sequence"]))
  rules = sharding.Rules(mesh(**shape))
  ring = lambda q, k, v: context_parallel.ring(q, k, v, seg[:, order], pos[:, order], rules, window, chunk)
  got = jax.jit(ring)(q[:, order], k[:, order], v[:, order])
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref(q, k, v) * real)[:, order], atol=1e-5)
  want = jax.grad(lambda *a: (ref(*a) * w).sum(), argnums=(0, 1, 2))(q, k, v)
  grads = jax.jit(jax.grad(lambda *a: (ring(*a) * w[:, order]).sum(), argnums=(0, 1, 2)))(
    q[:, order], k[:, order], v[:, order]
  )
  for g, r in zip(grads, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r)[:, order], atol=1e-5 * np.abs(r).max())


def test_parameters_are_sharded_over_the_sequence_axis_too():
  """ZeRO-3 over fsdp x sequence: a sequence axis leaves every chip the same share of the state as pure fsdp."""
  state = rsft.init_model(CFG, mesh=mesh(fsdp=2, sequence=4)).params
  specs = sharding.param_specs(state, sharding.Rules(mesh(fsdp=2, sequence=4)))
  assert specs["embed_tokens.embedding"] == jax.sharding.PartitionSpec(None, ("fsdp", "sequence"))
  leaf = sharding.flatten_state(state)["embed_tokens.embedding"][...]
  assert leaf.addressable_shards[0].data.size == leaf.size // 8


def test_the_sequence_attention_setting_reaches_the_training_model():
  from configs import countdown_tiny

  c = countdown_tiny.get_config()
  assert rconfig.train_attention(c) == c.model.attention  # no sequence axis: the kernel
  c.mesh.update(sequence=2, sequence_attention="ring")
  assert rconfig.train_attention(c) == "ring"
  c.mesh.sequence_attention = "flash"
  with pytest.raises(ValueError, match="mesh.sequence_attention='flash'; choose one of allgather, ring"):
    rconfig.validate(c)


@pytest.mark.parametrize("attention", ["allgather", "ring"])
def test_a_training_model_on_a_sequence_mesh_samples_like_one_without(attention):
  """The training loop's probe samples with the training model: its whole-prompt prefill on the sequence mesh
  (positions passed, rows in natural order) gives the tokens of a model without the axis."""
  prompts = [[int(x) for x in np.random.default_rng(r).integers(1, 128, n)] for r, n in enumerate((5, 17, 32, 9))]
  want = rsft.generate(rsft.init_model(CFG, seed=3), prompts, 8, stop_token_ids=[]).tokens
  m = rsft.init_model(CFG, seed=3, mesh=mesh(data=2, sequence=2, fsdp=2), attention=attention)
  assert rsft.generate(m, prompts, 8, stop_token_ids=[]).tokens == want


def _count(jaxpr, name):
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  from rsft.tools.flops import _sub_jaxprs

  return sum((e.primitive.name == name) + sum(_count(s, name) for s in _sub_jaxprs(e.params)) for e in jaxpr.eqns)


def test_ring_backward_under_save_names_does_not_rerun_the_ring():
  """remat=save_names keeps the ring's output and softmax sums: the backward pass passes K/V round once (the
  forward's hops plus its own), as without remat; under full remat the forward's hops come back."""
  from rsft.models import context_parallel, layers

  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 32, h, 8)).astype(np.float32) for h in (4, 2, 2))
  batch = packed_batch(rows=2, length=32)
  rules = sharding.Rules(mesh(sequence=4, data=2))
  ring = lambda q, k, v: context_parallel.ring(q, k, v, batch["segment_ids"], batch["positions"], rules).sum()
  hops = {
    policy: _count(jax.make_jaxpr(jax.grad(layers.remat(ring, policy) if policy else ring))(q, k, v), "ppermute")
    for policy in (None, "save_names", "full")
  }
  assert hops[None] == hops["save_names"] < hops["full"]


def test_ring_blocks_follow_the_zigzag_halves():
  from rsft.models.context_parallel import _ring_block

  assert [_ring_block(t, c) for t, c in ((16384, 1024), (1024, 1024), (16, 4), (10, 4), (1021, 1024))] == [
    1024,
    512,
    4,
    10,
    1021,
  ]  # a half at most; never a straddling block; tiny divisors: one block


def test_flops_count_a_shard_map_body_on_every_device():
  from jax.sharding import PartitionSpec as P

  from rsft.tools import flops

  m = mesh(sequence=4, data=2)
  f = jax.shard_map(
    lambda x: x @ x.T, mesh=m, in_specs=P(("data", "sequence")), out_specs=P(("data", "sequence")), check_vma=False
  )
  assert flops.of(f, np.ones((16, 4), np.float32))["dot"] == 2 * 16 * 2 * 4  # 8 devices x [2, 4] @ [4, 2]


def test_ring_memory_inside_a_layer_scan_is_linear_in_the_row():
  """The backward of a scan over layers calling the ring: temporaries less than double when the row doubles. (JAX
  used to hoist every block pair's mask, which depends only on the loop-constant positions, out of the loop.)"""
  from rsft.models import context_parallel

  rules = sharding.Rules(mesh(sequence=2))
  temp = []
  for length in (2048, 4096):
    batch = packed_batch(rows=1, length=length)
    ring = lambda x, k, v: context_parallel.ring(x, k, v, batch["segment_ids"], batch["positions"], rules, chunk=128)
    f = lambda q, k, v: jax.lax.scan(lambda x, _: (ring(x, k, v) + x, None), q, None, length=2)[0].sum()
    shapes = [jax.ShapeDtypeStruct((1, length, h, 8), np.float32) for h in (4, 2, 2)]
    temp.append(jax.jit(jax.grad(f, argnums=(0, 1, 2))).lower(*shapes).compile().memory_analysis().temp_size_in_bytes)
  assert temp[1] < 2 * temp[0], temp
