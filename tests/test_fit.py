"""AOT fit check for TPU slices (libtpu's compiler on this CPU machine): slice names, a fitting and an oversized
configuration, and the FLOP counter's scan accounting."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from rsft import config as rconfig
from rsft.tools import fit, flops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(
  model_type="qwen3",
  vocab_size=1024,
  hidden_size=256,
  intermediate_size=512,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=128,
  qk_norm=True,
  rope_theta=1e6,
  tie_word_embeddings=True,
)


def test_slice_names():
  assert fit.parse_slice("v5p-32") == fit.Slice("v5p-32", "v5p", 16, "v5p:2x2x4")  # TensorCores: 2 per chip
  assert fit.parse_slice("v6e-16") == fit.Slice("v6e-16", "v6e", 16, "v6e:4x4")
  assert fit.parse_slice("v5litepod-8").topology == "v5e:2x4" and fit.parse_slice("v4-16").chips == 8
  with pytest.raises(ValueError, match="not a v6e slice shape"):
    fit.parse_slice("v6e-12")
  with pytest.raises(ValueError, match="generation one of"):
    fit.parse_slice("h100-8")


def test_flop_count_applies_scan_trip_counts():
  def f(x, w):
    y, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=7)
    return jax.lax.cond(y.sum() > 0, lambda: (y @ w).sum(), lambda: y.sum())

  x, w = jnp.ones((4, 8)), jnp.ones((8, 8))
  assert flops.of(f, x, w)["dot"] == 8 * 2 * 4 * 8 * 8  # 7 scanned + the larger branch
  assert flops.of(jax.grad(f, argnums=1), x, w)["dot"] == 3 * 8 * 2 * 4 * 8 * 8  # forward + two backward dots
  assert jax.jit(f).lower(x, w).compile().cost_analysis()["flops"] < 8 * 2 * 4 * 8 * 8  # XLA: body once


@pytest.fixture(scope="module")
def libtpu():
  pytest.importorskip("libtpu", reason="install the test extra (jax[tpu]) for TPU AOT compilation")


def small_config():
  c = rconfig.base_config()
  c.model.arch = SMALL
  c.data.max_length = 1024
  c.train.global_batch_size, c.train.micro_batch_size = 8, 4
  c.eval.max_new_tokens, c.sample.max_num_seqs = 512, 8
  return c


@pytest.fixture(scope="module")
def small_plans(libtpu):
  """The small config's train and sample plans on v5e-4, compiled once for the tests that compare against them."""
  return fit.run(small_config(), "v5e-4", prompt_len=256)


def test_small_config_fits_and_counts_its_flops(small_plans):
  [train, sample] = small_plans
  assert train.fits and sample.fits and train.hbm == 15.75 * fit.GIB
  assert 0 < train.total < 1 * fit.GIB and train.arguments > 0 and train.temporaries > 0
  # remat recomputes the forward: counted FLOPs are 4/3 of 6·N·tokens give or take attention and the head
  assert 1.0 < train.flops_per_chip / train.model_flops_per_chip < 2.0
  assert train.xla_flops_per_chip < train.flops_per_chip  # scan bodies counted once
  assert "attention=splash" in train.notes[0] and "data=1 fsdp=4 sequence=1 tensor=1" in train.notes[0]
  # The TPU decode loop writes the paged cache in place: no copy of a layer's pages (loop boundary or layout).
  assert "8 slots" in sample.notes[0] and "copies of a cache layer in the decode loop: none" in sample.notes[0]
  assert "decode attention: Pallas paged-attention kernel" in sample.notes[0]  # bf16, head_dim 128: TPU's kernel


def test_oversized_config_fails_with_a_clear_message(libtpu):
  arch = dict(SMALL, vocab_size=151936, hidden_size=8192, intermediate_size=32768, num_heads=64, num_kv_heads=8)
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "rsft.tools.fit",
      f"--config={ROOT}/configs/base.py",
      "--topology=v5e-4",
      "--what=train",
      f"--config.model.arch={arch}",
      "--config.model.param_dtype=float32",
      "--config.data.max_length=1024",
      "--config.train.global_batch_size=4",
      "--config.train.micro_batch_size=4",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "train step: DOES NOT FIT" in proc.stdout
  assert "does not fit on v5e-4: train step. Try a larger slice" in proc.stderr


def test_offloading_layer_inputs_moves_them_to_host_memory(small_plans):
  full = small_plans[0]
  c = small_config()
  c.model.remat = "offload"
  [offload] = fit.run(c, "v5e-4", what="train")
  saved = 2 * 1 * 1024 * 256 * 2  # layers x rows per chip x tokens x hidden x bf16: the scan's stacked inputs
  assert full.host_temporaries == 0 and offload.host_temporaries >= saved  # (device savings show at scale: docs/fit.md)


def test_one_hardware_table_serves_fit_metrics_and_the_roofline():
  from rsft import hardware
  from rsft.train import metrics

  assert fit.CHIPS["v5e"].hbm_gib == 15.75 and fit.CHIPS["v5p"].cores_per_chip == 2 and fit.CHIPS["v6e"].dims == 2
  # Longest prefix wins: v5e reports "TPU v5 lite", v5p "TPU v5"; the H100 PCIe is not the SXM part.
  assert hardware.chip("TPU v5 lite").family == "v5e" and hardware.chip("TPU v5").family == "v5p"
  assert hardware.peak_flops("NVIDIA H100 PCIe") == 756e12 and hardware.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert (
    hardware.hbm_bandwidth("NVIDIA A100-SXM4-80GB") == 2039e9
    and hardware.hbm_bandwidth("NVIDIA A100-SXM4-40GB") == 1555e9
  )
  assert hardware.chip("cpu") is None and metrics.chip_peak_flops("TPU v6 lite") == 918e12
  for c in hardware.CHIPS:  # usable HBM never exceeds the capacity
    assert c.usable_hbm_bytes is None or c.usable_hbm_bytes < c.hbm_bytes


def test_a_sampling_mesh_larger_than_the_slice_is_refused_with_its_reason(libtpu):
  c = small_config()
  c.sample.mesh.tensor = 8
  [sample] = fit.run(c, "v5e-4", what="sample")
  assert not sample.fits and "does not fit 4 devices" in sample.notes[0] and "sample.mesh.tensor" in sample.notes[0]


def test_a_lora_step_fits_with_less_state_than_full_fine_tuning(small_plans):
  """LoRA (with dropout, so its masks are compiled in): the frozen base in the compute dtype and Adam state for the
  adapters only make the step's arguments a fraction of full fine-tuning's."""
  full = small_plans[0]
  c = small_config()
  c.train.lora.update(rank=8, dropout=0.1)
  [lora] = fit.run(c, "v5e-4", what="train")
  assert lora.fits and lora.arguments < 0.5 * full.arguments
  assert lora.flops_per_chip < full.flops_per_chip  # no weight gradients for the frozen kernels
