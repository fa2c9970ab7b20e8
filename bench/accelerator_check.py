"""One short script for a lent GPU/TPU: what the CPU suite cannot show.

  python bench/accelerator_check.py [--skip-1b]
  python bench/accelerator_check.py --smoke     # every check at tiny size (parity: qwen3 only), on whatever device
                                                # jax has (CPU too)

1. float32 parity with transformers (torch on CPU, float32, no TF32) of token_logprobs for the three tiny families,
   run on the accelerator, under JAX's default matmul precision and under "highest".
2. bf16 against float32 on the accelerator: per-token KL over the full vocabulary and max |logprob diff|.
3. Loading the synthetic 1.1B Qwen3 checkpoint of bench/load.py onto the accelerator: rsft vs
   transformers(.to(device)), wall-time ratio, both in this process, the second of two rounds (the first warms
   compilation caches and the page cache for both).
A failed check is reported and the rest still run (device time is scarce); the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def parity(tmp: str, smoke: bool) -> None:
  import jax

  import rsft
  from rsft.tools import tiny_models

  length, pad = (40, 5) if smoke else (300, 37)
  for kind in ("qwen3",) if smoke else tiny_models.CONFIGS:  # smoke: one family (bf16_vs_f32 reads its checkpoint)
    hf = tiny_models.build(kind, os.path.join(tmp, kind))
    ids, mask = tiny_models.left_padded_batch(length=length, pad=pad)
    want = tiny_models.hf_logprobs(hf, ids, mask)
    m = rsft.load_model(os.path.join(tmp, kind))
    for precision in ("default", "highest"):
      with jax.default_matmul_precision(precision):
        got = np.asarray(rsft.token_logprobs(m, ids, mask))
      print(
        f"parity {kind:6s} precision={precision:8s} max|rsft - transformers|={np.abs(got - want).max():.2e}", flush=True
      )


def bf16_vs_f32(tmp: str, smoke: bool) -> None:
  import jax
  import jax.numpy as jnp
  from flax import nnx

  import rsft
  from rsft.models.decoder import positions_from_mask
  from rsft.tools import tiny_models

  path = os.path.join(tmp, "qwen3")
  ids, mask = tiny_models.left_padded_batch(length=32 if smoke else 512, pad=4 if smoke else 40)
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
  print(
    f"bf16 vs f32: mean KL={float(kl[real].mean()):.2e} max KL={float(kl[real].max()):.2e} "
    f"max|dlogp|={float(jnp.abs(p32 - p16).max(-1)[real].max()):.3f}",
    flush=True,
  )


def load(tmp: str, smoke: bool) -> None:
  import jax
  import torch
  import transformers

  import rsft
  from rsft.tools import synthetic

  path = os.path.join(tmp if smoke else tempfile.gettempdir(), "qwen3_tiny" if smoke else "qwen3_1b")
  if not os.path.exists(os.path.join(path, "config.json")):
    synthetic.write_checkpoint(path, synthetic.QWEN3_TINY if smoke else synthetic.QWEN3_1B)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  times = {}
  for _ in range(2):  # the first round warms compilation caches and the page cache
    start = time.perf_counter()
    m = rsft.load_model(path, dtype="bfloat16")
    jax.block_until_ready(m.params)
    times["rsft"] = time.perf_counter() - start
    del m
    start = time.perf_counter()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(device)
    sync()
    times["transformers"] = time.perf_counter() - start
    del hf
  print(
    f"{'tiny' if smoke else '1.1B'} load: rsft onto {jax.devices()[0].device_kind} {times['rsft']:.2f}s, "
    f"transformers+.to({device}) {times['transformers']:.2f}s, ratio rsft / transformers "
    f"{times['rsft'] / times['transformers']:.2f}",
    flush=True,
  )


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--skip-1b", action="store_true", help="skip the 1.1B load check")
  parser.add_argument("--smoke", action="store_true", help="every check at tiny size (a tiny checkpoint to load)")
  args = parser.parse_args()
  import jax

  print("jax", jax.__version__, jax.devices(), flush=True)
  steps = [parity, bf16_vs_f32] + ([] if args.skip_1b and not args.smoke else [load])
  failed = []
  with tempfile.TemporaryDirectory() as tmp:
    for step in steps:
      try:
        step(tmp, args.smoke)
      except Exception as e:  # noqa: BLE001 - report and go on: device time is scarce
        print(f"{step.__name__} FAILED: {type(e).__name__}: {e}", flush=True)
        failed.append(step.__name__)
  if failed:
    raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
  main()
