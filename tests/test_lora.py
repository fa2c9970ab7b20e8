"""LoRA: adapters on every family equal their merge, bad settings are named, and a LoRA run on a real (exported)
base trains only its adapters, resumes bit-identically, refuses another base, and exports a checkpoint transformers
loads with the adapted model's numbers."""

import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy
from flax import nnx

import rsft
from rsft.convert import step_dir
from rsft.models import ModelConfig, forward, lora
from rsft.models.model import abstract_model, init_adapters, init_model
from rsft.train import loop

sys.path.insert(0, os.path.dirname(__file__))
from test_train import tiny_run_config  # noqa: E402

FAMILIES = {
  "qwen2": dict(qkv_bias=True),
  "qwen3": dict(qk_norm=True, qkv_bias=True, o_bias=True),
  "llama": dict(rope_llama3=(8.0, 1.0, 4.0, 16)),
  "mistral": dict(sliding_window=5),
  "internlm2": dict(qkv_bias=True, o_bias=True, rope_dynamic=2.0, max_position_embeddings=8),
}


def _config(model_type: str) -> ModelConfig:
  return ModelConfig(model_type, 97, 32, 64, 2, 4, 2, 8, 1e4, **FAMILIES[model_type])


def _logprobs(graphdef, state, ids=(0, 97), length=12):
  """Teacher-forced log-probs of 2 random rows of `length` tokens drawn from range(*ids)."""
  ids = jnp.asarray(np.random.default_rng(0).integers(*ids, (2, length)))
  positions = jnp.broadcast_to(jnp.arange(length), (2, length))
  return forward.logprobs(graphdef, state, ids, positions, jnp.ones((2, length), jnp.int32), jnp.roll(ids, -1, 1), 8)


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_the_adapted_forward_equals_the_merged_forward(model_type):
  cfg, settings = _config(model_type), lora.LoRA(4, 8.0)
  base = init_model(cfg, seed=0)
  graphdef, adapters = init_adapters(cfg, settings, seed=1)
  adapters = jax.tree.map(lambda x: x + 0.05, adapters)  # B is zero at init; move it so the adapters count
  adapted = _logprobs(graphdef, nnx.merge_state(base.params, adapters))
  merged = _logprobs(base.graphdef, lora.merge(graphdef, nnx.merge_state(base.params, adapters)))
  np.testing.assert_allclose(np.asarray(merged), np.asarray(adapted), atol=1e-5, rtol=0)
  assert float(jnp.abs(adapted - _logprobs(base.graphdef, base.params)).max()) > 1e-2


def test_fresh_adapters_leave_the_base_unchanged():
  cfg = _config("qwen3")
  base = init_model(cfg, seed=0)
  graphdef, adapters = init_adapters(cfg, lora.LoRA(8, 16.0, ("q_proj", "down_proj")), seed=1)
  assert sorted(lora.split(nnx.merge_state(base.params, adapters))[0]["layers"]["self_attn"]) == ["q_proj"]
  np.testing.assert_array_equal(
    np.asarray(_logprobs(graphdef, nnx.merge_state(base.params, adapters))),
    np.asarray(_logprobs(base.graphdef, base.params)),
  )


@pytest.mark.parametrize(
  "settings, message",
  [
    (lora.LoRA(4, 8.0, ("q_proj", "qkv")), r"train.lora.targets: unknown module\(s\) \['qkv'\]"),
    (lora.LoRA(17, 8.0, ("k_proj",)), r"train.lora.rank=17 is larger than k_proj's width \(32 -> 16\)"),
    (lora.LoRA(-1, 8.0), r"train.lora.rank=-1: must be a positive integer"),
  ],
)
def test_bad_settings_are_named(settings, message):
  with pytest.raises(ValueError, match=message):
    abstract_model(_config("qwen3"), lora=settings)


def test_a_recorded_base_that_differs_is_refused():
  saved = dict(rank=4, base="/a", base_fingerprint="0" * 64)
  with pytest.raises(ValueError, match=r"model.path=/b: its weights \(fingerprint 111111111111\) are not the base"):
    lora.check_base(saved, dict(saved, base="/b", base_fingerprint="1" * 64), "model.path")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A 3-step full fine-tune exported as the HF base, then 6 LoRA steps on it (step 3 saved)."""
  root = tmp_path_factory.mktemp("lora")
  c = tiny_run_config()
  c.train.num_steps, c.checkpoint.save_steps = 3, ()
  loop.run(c, str(root / "pre"))
  base = rsft.export_hf(str(root / "pre" / "checkpoints" / "3"), str(root / "base"))
  loop.run(lora_config(base), str(root / "run"))
  return root, base


def lora_config(base):
  c = tiny_run_config()
  c.model.path = base
  c.train.update(num_steps=6, lr=1e-3)
  c.train.lora.update(rank=4, alpha=8.0)
  return c


def test_checkpoints_hold_the_adapters_and_the_base_they_belong_to(runs):
  root, base = runs
  step = str(root / "run" / "checkpoints" / "6")
  names = {jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(_saved_tree(step))}
  assert names and all(n.endswith(("['lora_a']['value']", "['lora_b']['value']")) for n in names)
  record = step_dir.read_meta(step)["lora"]
  assert (record["rank"], record["alpha"], record["base"]) == (4, 8.0, os.path.abspath(base))


def _saved_tree(step):
  return ocp.StandardCheckpointer().metadata(os.path.join(step, "params")).item_metadata.tree


def test_a_lora_step_loads_as_its_merged_model_and_matches_the_adapted_forward(runs):
  root, base = runs
  step = str(root / "run" / "checkpoints" / "6")
  merged = rsft.load_model(step)
  m = rsft.load_model(base)
  settings = lora.LoRA(4, 8.0)
  graphdef, state, _ = abstract_model(m.config, lora=settings)
  adapters = step_dir.restore_params(
    step, lora.split(rsft.sharding.abstract_arrays(state, rsft.sharding.Rules(None)))[0]
  )
  vocab = dict(ids=(3, 60), length=20)  # tokens of the Countdown tokenizer
  adapted = _logprobs(graphdef, nnx.merge_state(m.params, adapters), **vocab)
  np.testing.assert_allclose(
    np.asarray(_logprobs(merged.graphdef, merged.params, **vocab)), np.asarray(adapted), atol=1e-5
  )
  assert float(jnp.abs(adapted - _logprobs(m.graphdef, m.params, **vocab)).max()) > 1e-4  # the adapters trained


def test_a_lora_run_resumes_bit_identically(runs, tmp_path):
  root, base = runs
  want = [r["loss"] for r in loop.read_metrics(str(root / "run"))]
  shutil.copytree(root / "run", tmp_path / "run")
  shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")
  metrics = tmp_path / "run" / "metrics.jsonl"
  metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:3]))
  loop.run(lora_config(base), str(tmp_path / "run"))
  assert [r["loss"] for r in loop.read_metrics(str(tmp_path / "run"))] == want


def _other_base(base, out):
  """The same architecture with one tensor nudged: a different model the fingerprint must tell apart."""
  shutil.copytree(base, out)
  weights = safetensors.numpy.load_file(os.path.join(out, "model.safetensors"))
  key = next(k for k in sorted(weights) if k.endswith("q_proj.weight"))
  weights[key] = weights[key] + np.float32(1e-3)
  safetensors.numpy.save_file(weights, os.path.join(out, "model.safetensors"))
  return str(out)


def test_resuming_on_another_base_is_refused(runs, tmp_path):
  root, base = runs
  shutil.copytree(root / "run", tmp_path / "run")
  shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")
  with pytest.raises(ValueError, match=r"model.path=.*are not the base these adapters were trained on"):
    loop.run(lora_config(_other_base(base, tmp_path / "other")), str(tmp_path / "run"))


def test_loading_adapters_on_a_changed_base_is_refused(runs, tmp_path):
  root, base = runs
  step = tmp_path / "checkpoints" / "6"
  shutil.copytree(root / "run" / "checkpoints" / "6", step)
  shutil.move(base, str(tmp_path / "kept"))
  try:
    _other_base(str(tmp_path / "kept"), base)
    with pytest.raises(ValueError, match="are not the base these adapters were trained on"):
      rsft.load_model(str(step))
  finally:
    shutil.rmtree(base)
    shutil.move(str(tmp_path / "kept"), base)


def test_lora_without_a_base_model_is_refused(tmp_path):
  c = tiny_run_config()
  c.train.lora.rank = 4
  with pytest.raises(ValueError, match=r"train.lora.rank > 0 adapts a base model: set model.path"):
    loop.run(c, str(tmp_path / "run"))


def test_an_exported_lora_step_is_a_full_checkpoint_transformers_loads(runs, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from rsft.tools import tiny_models

  root, _ = runs
  merged = rsft.load_model(str(root / "run" / "checkpoints" / "6"))
  out = rsft.export_hf(str(root / "run" / "checkpoints" / "6"), str(tmp_path / "hf"))
  hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
  ids = np.random.default_rng(0).integers(3, 60, (2, 20)).astype(np.int32)
  mask = np.ones_like(ids)
  np.testing.assert_allclose(
    np.asarray(rsft.token_logprobs(merged, ids, mask)), tiny_models.hf_logprobs(hf, ids, mask), atol=1e-4, rtol=0
  )


def test_the_sweep_evaluates_lora_checkpoints(runs, tmp_path):
  import json

  from rsft.evals import run

  root, base = runs
  work = tmp_path / "run"
  shutil.copytree(root / "run", work)
  c = lora_config(base)
  c.eval.update(dict(benchmarks=("arithmetic",), limit=4, n=1, max_new_tokens=8, checkpoints="all"))
  c.sample.update(max_num_seqs=4, chunk_steps=4, prompt_buckets=(64,))
  run.run(c, str(work))
  rows = [json.loads(line) for line in open(work / "eval" / "results.jsonl")]
  assert {r["step"] for r in rows if r["benchmark"] == "arithmetic"} == {0, 3, 6}  # 0: the base (model.path)


def test_a_lora_step_exports_as_a_peft_adapter_that_peft_loads(runs, tmp_path):
  """peft.PeftModel on the transformers base with rsft's adapter folder gives the merged model's log-probs."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  peft = pytest.importorskip("peft")
  from rsft.tools import tiny_models

  root, base = runs
  step = str(root / "run" / "checkpoints" / "6")
  folder = rsft.export_lora(step, str(tmp_path / "adapter"))
  hf = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
  adapted = peft.PeftModel.from_pretrained(hf, folder).eval()
  ids = np.random.default_rng(0).integers(3, 60, (2, 20)).astype(np.int32)
  mask = np.ones_like(ids)
  want = np.asarray(rsft.token_logprobs(rsft.load_model(step), ids, mask))
  np.testing.assert_allclose(tiny_models.hf_logprobs(adapted, ids, mask), want, atol=1e-4, rtol=0)


def test_a_full_fine_tuning_step_is_not_a_peft_adapter(runs, tmp_path):
  root, _ = runs
  with pytest.raises(ValueError, match=r"not a LoRA step \(train.lora.rank was 0\); rsft.export_hf"):
    rsft.export_lora(str(root / "pre" / "checkpoints" / "3"), str(tmp_path / "x"))


def test_a_fused_target_cannot_be_a_peft_module():
  from rsft.convert.peft_export import hf_modules

  assert hf_modules(_config("qwen3"), ("q_proj", "down_proj")) == {
    "q_proj": "model.layers.{i}.self_attn.q_proj",
    "down_proj": "model.layers.{i}.mlp.down_proj",
  }
  assert hf_modules(_config("internlm2"), ("o_proj", "up_proj")) == {
    "o_proj": "model.layers.{i}.attention.wo",
    "up_proj": "model.layers.{i}.feed_forward.w3",
  }
  with pytest.raises(ValueError, match=r"q_proj is part of model.layers.\{i\}.attention.wqkv.weight in internlm2"):
    hf_modules(_config("internlm2"), ("q_proj",))


def test_dropout_draws_from_its_key_and_only_in_training():
  cfg = _config("qwen3")
  base = init_model(cfg, seed=0)
  graphdef, adapters = init_adapters(cfg, lora.LoRA(4, 8.0, dropout=0.5), seed=1)
  state = nnx.merge_state(base.params, jax.tree.map(lambda x: x + 0.05, adapters))
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 97, (2, 12)))
  args = (ids, jnp.broadcast_to(jnp.arange(12), (2, 12)), jnp.ones((2, 12), jnp.int32), jnp.roll(ids, -1, 1), 8)
  run = lambda key: np.asarray(forward.logprobs(graphdef, state, *args, dropout_key=key))
  one, other = jax.random.key(1), jax.random.key(2)
  np.testing.assert_array_equal(run(one), run(one))  # a key is a draw: the same key, the same masks
  assert np.abs(run(one) - run(other)).max() > 1e-3 and np.abs(run(one) - run(None)).max() > 1e-3
  merged = lora.merge(graphdef, state)  # without a key (sampling, scoring, the merge) nothing is dropped
  np.testing.assert_allclose(run(None), np.asarray(forward.logprobs(base.graphdef, merged, *args)), atol=1e-5)
  with pytest.raises(ValueError, match=r"train.lora.dropout=1.0: a rate in \[0, 1\)"):
    abstract_model(cfg, lora=lora.LoRA(4, 8.0, dropout=1.0))


def test_a_run_with_lora_dropout_resumes_bit_identically(runs, tmp_path):
  """The step's dropout key is derived from the step number, so a restart draws the same masks."""
  root, base = runs
  c = lora_config(base)
  c.train.num_steps, c.train.lora.dropout, c.checkpoint.save_steps = 4, 0.1, (2,)
  loop.run(c, str(tmp_path / "a"))
  want = [r["loss"] for r in loop.read_metrics(str(tmp_path / "a"))]
  assert want[1:] != [r["loss"] for r in loop.read_metrics(str(root / "run"))][1:4]  # dropout is on
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
  metrics = tmp_path / "b" / "metrics.jsonl"
  metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:2]))
  loop.run(c, str(tmp_path / "b"))
  assert [r["loss"] for r in loop.read_metrics(str(tmp_path / "b"))] == want


def _lora_steps(mesh, steps=3):
  """Three LoRA steps through the real train path (build_step): remat, the verl loss, 2 micro-batches, dropout."""
  from test_train import CFG, random_batch

  from rsft import config as rconfig

  train = rconfig.base_config().train
  train.update(global_batch_size=8, micro_batch_size=4, lr=1e-2, warmup_ratio=0.0, schedule="constant")
  train.update(loss_aggregation="verl", verl_ranks=2, verl_rows_per_micro=2, loss_chunk=8)
  settings = lora.LoRA(4, 8.0, dropout=0.1)
  setup = loop.ModelSetup("float32", "float32", "full", "xla", settings)
  parts = loop.build_step(CFG, setup, train, 24, mesh, steps)
  frozen = init_model(CFG, seed=0, mesh=mesh).params
  params = init_adapters(CFG, settings, seed=1, mesh=mesh)[1]
  opt_state, losses = parts.init_opt(params), []
  for step in range(steps):
    batch = {k: jax.device_put(v, parts.batch_sharding) for k, v in random_batch(seed=0).items()}
    params, opt_state, out = parts.jitted(params, opt_state, batch, frozen, jax.random.key(step))
    losses.append(float(out["loss"]))
  return losses, params


def test_sharded_lora_training_equals_single_device():
  from rsft import sharding

  want, adapters = _lora_steps(None)
  assert want[-1] < want[0]
  for shape in [(1, 4, 2), (2, 2, 2)]:
    losses, params = _lora_steps(sharding.make_mesh(*shape))
    np.testing.assert_allclose(losses, want, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(adapters)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert any(leaf.sharding.spec != jax.sharding.PartitionSpec() for leaf in jax.tree.leaves(params))


def test_resuming_with_other_lora_settings_is_refused(runs, tmp_path):
  root, base = runs
  shutil.copytree(root / "run", tmp_path / "run")
  shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")
  c = lora_config(base)
  c.train.lora.rank = 8
  with pytest.raises(ValueError, match=r"train.lora.rank=8: this run's checkpoints were trained with 4"):
    loop.run(c, str(tmp_path / "run"))
  c.train.lora.rank = 0
  with pytest.raises(ValueError, match=r"train.lora.rank=0: this run's checkpoints hold LoRA adapters \(train"):
    loop.run(c, str(tmp_path / "run"))


def test_lora_adapts_a_made_base_and_resumes(tmp_path):
  """config.pretrain makes the base (trained whole), LoRA adapts its last step; a restart finds that base again."""
  c = tiny_run_config(48)
  c.pretrain.update(generate=("arithmetic",), rows=32, num_epochs=1, max_length=64, global_batch_size=4)
  c.train.update(num_steps=4, lr=1e-3)
  c.train.lora.rank = 4
  c.checkpoint.save_steps = (2,)
  work = tmp_path / "run"
  loop.run(c, str(work))
  want = [r["loss"] for r in loop.read_metrics(str(work))]
  assert step_dir.read_meta(str(work / "checkpoints" / "4"))["lora"]["base"].startswith(str(work / "base"))
  shutil.rmtree(work / "checkpoints" / "4")
  (work / "metrics.jsonl").write_text("".join((work / "metrics.jsonl").read_text().splitlines(keepends=True)[:2]))
  loop.run(c, str(work))
  assert [r["loss"] for r in loop.read_metrics(str(work))] == want
