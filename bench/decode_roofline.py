"""Decode speed against the memory-bandwidth roofline, next to transformers.generate on the same model, one run.

  python bench/decode_roofline.py --size=0.6b     # on a GPU (bench/gpu_check.sh); --size=tiny runs anywhere

A decode step must read every weight once and every KV-cache column it attends to, so
    roofline steps/s = peak HBM bandwidth / (weight bytes + KV bytes per step)
and the achieved fraction is measured steps/s over that. rsft attends over the whole allocated cache (prompt
bucket + max_new columns; masked columns are read too), so the KV term uses the allocated length; the
"useful" fraction counts only the real tokens (mean over the run). Random bf16 weights in the shape of
Qwen3-0.6B (real vocabulary); greedy decoding without stops, so both libraries run every step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SIZES = {  # transformers Qwen3Config fields
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, tie_word_embeddings=True),
    "0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
}
# Peak HBM bandwidth in bytes/s by device-kind prefix (vendor data sheets).
PEAK_BANDWIDTH = {"NVIDIA H100 PCIe": 2.0e12, "NVIDIA H100": 3.35e12, "NVIDIA H200": 4.8e12,
                  "NVIDIA A100-SXM4-80GB": 2.04e12, "NVIDIA A100": 1.56e12, "TPU v4": 1.2e12, "TPU v5 lite": 8.2e11,
                  "TPU v5e": 8.2e11, "TPU v5p": 2.76e12, "TPU v6 lite": 1.64e12, "TPU v6e": 1.64e12}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--prompt", type=int, default=256)
  parser.add_argument("--new", type=int, default=512)
  parser.add_argument("--skip-transformers", action="store_true")
  args = parser.parse_args()
  import jax
  import torch
  import transformers

  import rsft
  from rsft.infer import sampler

  torch.manual_seed(0)
  cfg = transformers.Qwen3Config(rope_theta=1e6, max_position_embeddings=40960, **SIZES[args.size])
  path = tempfile.mkdtemp()
  hf = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
  hf.save_pretrained(path)
  m = rsft.load_model(path, dtype="bfloat16")
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, cfg.vocab_size, args.prompt).tolist() for _ in range(args.batch)]
  opts = sampler.Options(prompt_buckets=(args.prompt,), chunk_steps=args.new)
  rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts)  # compile
  start = time.perf_counter()
  res = rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts)
  seconds = time.perf_counter() - start
  steps_per_s = args.new / seconds

  weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(m.params))
  kv_per_column = 2 * cfg.num_hidden_layers * args.batch * cfg.num_key_value_heads * cfg.head_dim * 2  # bf16
  allocated = (weight_bytes + kv_per_column * (args.prompt + args.new)) * steps_per_s
  useful = (weight_bytes + kv_per_column * (args.prompt + args.new / 2)) * steps_per_s
  kind = jax.devices()[0].device_kind
  peak = next((v for k, v in PEAK_BANDWIDTH.items() if kind.startswith(k)), None)
  out = dict(device=kind, size=args.size, batch=args.batch, prompt=args.prompt, new=args.new,
             weight_gb=weight_bytes / 1e9, rsft_tok_s=args.batch * steps_per_s, rsft_ms_per_step=1e3 / steps_per_s,
             achieved_gb_s=allocated / 1e9, useful_gb_s=useful / 1e9,
             roofline_fraction=allocated / peak if peak else None,
             useful_roofline_fraction=useful / peak if peak else None)

  if not args.skip_transformers:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    hf = hf.to(device)
    ids = torch.tensor(prompts, device=device)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
      hf.generate(input_ids=ids, max_new_tokens=8, **kw)
      sync()
      start = time.perf_counter()
      ref = hf.generate(input_ids=ids, max_new_tokens=args.new, **kw)
      sync()
      hf_seconds = time.perf_counter() - start
    same = sum(a[:32] == b[:32] for a, b in zip(res.tokens, ref[:, args.prompt:].tolist()))
    out.update(transformers_tok_s=args.batch * args.new / hf_seconds, ratio=hf_seconds / seconds,
               rows_same_first_32_tokens=f"{same}/{args.batch}")
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
