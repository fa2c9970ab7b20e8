"""One short script for a lent GPU/TPU: what the CPU suite cannot show.

  python bench/accelerator_check.py [--skip-1b]

1. float32 parity with transformers (torch on CPU, float32, no TF32) of token_logprobs for the three tiny families,
   run on the accelerator, under JAX's default matmul precision and under "highest".
2. bf16 against float32 on the accelerator: per-token KL over the full vocabulary and max |logprob diff|.
3. Loading the synthetic 1.1B Qwen3 checkpoint of bench/load.py onto the accelerator: rsft vs
   transformers(.to("cuda")), wall-time ratio, both in this process, the second of two rounds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, HERE)


def parity(tmp: str) -> None:
  import jax
  import rsft
  import tiny_models

  for kind in tiny_models.CONFIGS:
    hf = tiny_models.build(kind, os.path.join(tmp, kind))
    ids, mask = tiny_models.left_padded_batch(length=300, pad=37)
    want = tiny_models.hf_logprobs(hf, ids, mask)
    m = rsft.load_model(os.path.join(tmp, kind))
    for precision in ("default", "highest"):
      with jax.default_matmul_precision(precision):
        got = np.asarray(rsft.token_logprobs(m, ids, mask))
      print(f"parity {kind:6s} precision={precision:8s} max|diff|={np.abs(got - want).max():.2e}", flush=True)


def bf16_vs_f32(tmp: str) -> None:
  import jax
  import jax.numpy as jnp
  from flax import nnx
  import rsft
  from rsft.api import positions_from_mask
  import tiny_models

  path = os.path.join(tmp, "qwen3")
  ids, mask = tiny_models.left_padded_batch(length=512, pad=40)
  ids, mask = jnp.asarray(ids), jnp.asarray(mask)
  out = {}
  for dtype in ("float32", "bfloat16"):
    m = rsft.load_model(path, dtype=dtype)
    model = nnx.merge(m.graphdef, m.params)
    with jax.default_matmul_precision("highest"):
      hidden = model(ids, positions_from_mask(mask), mask)
      logits = jnp.einsum("BTD,DV->BTV", hidden, model.head_kernel(), preferred_element_type=jnp.float32)
    out[dtype] = jax.nn.log_softmax(logits, -1)
  p32, p16 = out["float32"], out["bfloat16"]
  kl = (jnp.exp(p32) * (p32 - p16)).sum(-1)
  real = np.asarray(mask) > 0
  print(f"bf16 vs f32: mean KL={float(kl[real].mean()):.2e} max KL={float(kl[real].max()):.2e} "
        f"max|dlogp|={float(jnp.abs(p32 - p16).max(-1)[real].max()):.3f}", flush=True)


def load_1b() -> None:
  import jax
  import torch
  import transformers
  import rsft
  import load as load_bench

  path = os.path.join(tempfile.gettempdir(), "qwen3_1b")
  if not os.path.exists(os.path.join(path, "config.json")):
    load_bench.build_checkpoint(path)
  times = {}
  for _ in range(2):  # the first round warms compilation caches and the page cache
    start = time.perf_counter()
    m = rsft.load_model(path, dtype="bfloat16")
    jax.block_until_ready(m.params)
    times["rsft"] = time.perf_counter() - start
    del m
    start = time.perf_counter()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to("cuda")
    torch.cuda.synchronize()
    times["transformers"] = time.perf_counter() - start
    del hf
  print(f"1.1B load onto {jax.devices()[0].device_kind}: rsft {times['rsft']:.1f}s, transformers+.to(cuda) "
        f"{times['transformers']:.1f}s, ratio rsft/transformers {times['rsft'] / times['transformers']:.2f}",
        flush=True)


def main() -> None:
  import jax

  print("jax", jax.__version__, jax.devices(), flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    for step in (parity, bf16_vs_f32):
      try:
        step(tmp)
      except Exception as e:  # noqa: BLE001 - report and go on: device time is scarce
        print(f"{step.__name__} FAILED: {type(e).__name__}: {e}", flush=True)
  if "--skip-1b" not in sys.argv:
    try:
      load_1b()
    except Exception as e:  # noqa: BLE001
      print(f"load_1b FAILED: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
  main()
