"""Checkpoint loading: rsft.load_model vs transformers on the same synthetic ~1B-parameter Qwen3 directory, on CPU.

  python bench/load.py                      # builds bench/out/qwen3_1b (2.2 GB, bf16, 2 shards) once, then measures
  python bench/load.py --dir=/path/to/hf    # any local HF checkpoint
  python bench/load.py --smoke              # a tiny checkpoint in a temp dir: the whole path in seconds

Each library loads in a fresh subprocess (JAX_PLATFORMS=cpu); we report wall time and the peak host RSS above the
post-import baseline (ru_maxrss - RSS after imports), as a ratio to the checkpoint size on disk. Both sides import
their model code before the clock starts (rsft: the XLA client; transformers: the Qwen3 modeling module), and the
checkpoint's files are read once beforehand, so neither pays for a cold page cache. On CPU the loaded weights
themselves live in host memory, so ~1.0x is the floor; the contract is < 1.3x (no full host copy).
transformers keeps safetensors memory-mapped and lazily paged in, so it is reported twice: as loaded, and after
then reading every parameter once ("+touch": load + touch time, the peak after touching; what its first forward
pass costs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU benchmark: the checkpoint writer needs no accelerator either
HERE = os.path.dirname(os.path.abspath(__file__))
LOADERS = ("rsft", "transformers", "transformers+touch")


def worker(which: str, path: str) -> None:
  """Prints {loader: {seconds, peak_rss, baseline_rss}} for rsft, or for transformers and transformers+touch."""
  import psutil

  if which == "rsft":
    import jax

    import rsft

    jax.jit(lambda x: x + 1)(1).block_until_ready()  # start the XLA client before the baseline
  else:
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    model_class = transformers.AutoModelForCausalLM._model_mapping[type(config)]  # imports the modeling module
  peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # monotonic: touching comes after
  base = psutil.Process().memory_info().rss
  start = time.perf_counter()
  if which == "rsft":
    jax.block_until_ready(rsft.load_model(path, dtype="bfloat16").params)
    print(json.dumps({"rsft": {"seconds": time.perf_counter() - start, "peak_rss": peak(), "baseline_rss": base}}))
    return
  model = model_class.from_pretrained(path, dtype=torch.bfloat16)
  out = {"transformers": {"seconds": time.perf_counter() - start, "peak_rss": peak(), "baseline_rss": base}}
  with torch.no_grad():  # its tensors are memory-mapped: read every page, as a first forward does
    sum(float(p.float().sum()) for p in model.parameters())
  out["transformers+touch"] = {"seconds": time.perf_counter() - start, "peak_rss": peak(), "baseline_rss": base}
  print(json.dumps(out))


def measure(which: str, path: str) -> dict:
  out = subprocess.run(
    [sys.executable, __file__, f"--worker={which}", f"--dir={path}"],
    check=True,
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--dir", default=None, help="HF checkpoint dir (default bench/out/qwen3_1b, built once)")
  parser.add_argument("--worker", choices=LOADERS[:2])
  parser.add_argument("--smoke", action="store_true", help="tiny checkpoint in a temp dir; no RSS contract")
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.dir)
  from rsft.tools import synthetic

  tmp = tempfile.TemporaryDirectory() if args.smoke else None
  path = args.dir or (os.path.join(tmp.name, "qwen3_tiny") if tmp else os.path.join(HERE, "out", "qwen3_1b"))
  if not os.path.exists(os.path.join(path, "config.json")):
    print(f"building synthetic checkpoint in {path} ...", flush=True)
    synthetic.write_checkpoint(path, synthetic.QWEN3_TINY if args.smoke else synthetic.QWEN3_1B)
  files = [os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors")]
  for name in files:  # warm the page cache: the first loader must not pay for the disk alone
    with open(name, "rb") as f:
      while f.read(1 << 24):
        pass
  size = sum(os.path.getsize(f) for f in files)
  rows = {**measure("rsft", path), **measure("transformers", path)}
  print(f"checkpoint: {path}  {size / 2**30:.3f} GiB on disk; loaded on CPU in bf16, each library in a fresh process")
  print(f"{'loader':<20}{'wall s':>9}{'peak RSS - baseline':>22}{'x ckpt':>9}")
  for name, r in rows.items():
    extra = r["peak_rss"] - r["baseline_rss"]
    print(f"{name:<20}{r['seconds']:>9.2f}{extra / 2**30:>18.2f} GiB{extra / size:>9.2f}")
  for ref in LOADERS[1:]:
    print(f"rsft / {ref} wall-time ratio: {rows['rsft']['seconds'] / rows[ref]['seconds']:.2f}")
  rsft_ratio = (rows["rsft"]["peak_rss"] - rows["rsft"]["baseline_rss"]) / size
  verdict = (
    "not checked: the checkpoint is smaller than the RSS noise" if args.smoke else "OK" if rsft_ratio < 1.3 else "FAIL"
  )
  print(f"rsft peak RSS / checkpoint size: {rsft_ratio:.2f} (contract: < 1.3) -> {verdict}")
  if tmp:
    tmp.cleanup()


if __name__ == "__main__":
  main()
