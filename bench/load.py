"""Checkpoint loading: rsft.load_model vs transformers on the same synthetic ~1B-parameter Qwen3 directory.

  python bench/load.py                      # builds bench/out/qwen3_1b (2.2 GB, bf16, 2 shards) once, then measures
  python bench/load.py --dir=/path/to/hf    # any local HF checkpoint

Each loader runs in a fresh subprocess; we report wall time and the peak host RSS above the post-import
baseline (ru_maxrss - RSS after imports), as a ratio to the checkpoint size on disk. On CPU the loaded weights
themselves live in host memory, so ~1.0x is the floor; the contract is < 1.3x (no full host copy).
transformers keeps safetensors memory-mapped and lazily paged in, so it is measured twice: as loaded, and
after reading every parameter once ("+touch", what its first forward pass costs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Qwen3 layout at ~1.1B parameters: real vocab, head_dim 128, GQA 2:1, tied embeddings (like Qwen3-1.7B, fewer layers).
ARCH = dict(model_type="qwen3", vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_layers=16,
            num_heads=16, num_kv_heads=8, head_dim=128, rope_theta=1e6, qk_norm=True, tie_word_embeddings=True,
            checkpoint_dtype="bfloat16")


def build_checkpoint(path: str) -> None:
  """Writes random bf16 weights shard by shard (never the whole model in memory) + config.json + index."""
  import ml_dtypes

  from rsft.convert import mappings
  from rsft.convert.safetensors_io import write_file
  from rsft.api import abstract_model
  from rsft.models import ModelConfig
  from rsft.sharding import flatten_state

  cfg = ModelConfig(**ARCH)
  _, state, _ = abstract_model(cfg, "bfloat16")
  shapes = {name: tuple(v.shape) for name, v in flatten_state(state).items()}
  specs = []
  for row in mappings.rows_for(cfg):
    per = shapes[row.rsft][1:] if row.per_layer else shapes[row.rsft]
    specs += [(k, mappings.hf_shape(row.transform, per), np.dtype(ml_dtypes.bfloat16))
              for k in mappings.hf_keys(row, cfg.num_layers)]
  rng = np.random.default_rng(0)
  produce = lambda key: (0.02 * rng.standard_normal(dict((k, s) for k, s, _ in specs)[key], np.float32)
                         ).astype(ml_dtypes.bfloat16)
  os.makedirs(path, exist_ok=True)
  half = len(specs) // 2
  shards = {"model-00001-of-00002.safetensors": specs[:half], "model-00002-of-00002.safetensors": specs[half:]}
  for name, part in shards.items():
    write_file(os.path.join(path, name), part, produce)
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": {k: n for n, part in shards.items() for k, _, _ in part}}, f)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg.to_hf_dict(), f, indent=2)


def worker(which: str, path: str) -> None:
  import psutil

  if which == "rsft":
    import jax
    import rsft
    jax.jit(lambda x: x + 1)(1).block_until_ready()  # start the XLA client before the baseline
    load = lambda: jax.block_until_ready(rsft.load_model(path, dtype="bfloat16").params)
  else:
    import torch
    import transformers

    def load():
      model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
      if which == "transformers+touch":  # its tensors are memory-mapped: read every page, as a first forward does
        with torch.no_grad():
          sum(float(p.float().sum()) for p in model.parameters())
      return model
  base = psutil.Process().memory_info().rss
  start = time.perf_counter()
  model = load()
  seconds = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  del model
  print(json.dumps({"seconds": seconds, "peak_rss": peak, "baseline_rss": base}))


def measure(which: str, path: str) -> dict:
  out = subprocess.run([sys.executable, __file__, f"--worker={which}", f"--dir={path}"], check=True,
                       capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--dir", default=os.path.join(HERE, "out", "qwen3_1b"))
  parser.add_argument("--worker", choices=["rsft", "transformers", "transformers+touch"])
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.dir)
  if not os.path.exists(os.path.join(args.dir, "config.json")):
    print(f"building synthetic checkpoint in {args.dir} ...", flush=True)
    build_checkpoint(args.dir)
  size = sum(os.path.getsize(os.path.join(args.dir, f)) for f in os.listdir(args.dir) if f.endswith(".safetensors"))
  rows = {name: measure(name, args.dir) for name in ("rsft", "transformers", "transformers+touch")}
  print(f"checkpoint: {args.dir}  {size / 2**30:.2f} GiB on disk")
  print(f"{'loader':<20}{'wall s':>9}{'peak RSS - baseline':>22}{'x ckpt':>9}")
  for name, r in rows.items():
    extra = r["peak_rss"] - r["baseline_rss"]
    print(f"{name:<20}{r['seconds']:>9.1f}{extra / 2**30:>18.2f} GiB{extra / size:>9.2f}")
  for ref in ("transformers", "transformers+touch"):
    print(f"rsft / {ref} wall-time ratio: {rows['rsft']['seconds'] / rows[ref]['seconds']:.2f}")
  rsft_ratio = (rows["rsft"]["peak_rss"] - rows["rsft"]["baseline_rss"]) / size
  print(f"rsft peak RSS / checkpoint size: {rsft_ratio:.2f} (contract: < 1.3) -> {'OK' if rsft_ratio < 1.3 else 'FAIL'}")


if __name__ == "__main__":
  main()
