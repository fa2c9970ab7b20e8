"""Decode speed against the memory-bandwidth roofline, next to transformers.generate on the same model, one run.

  python bench/decode_roofline.py --size=0.6b     # on a GPU (bench/gpu_check.sh); --size=tiny runs anywhere
  python bench/decode_roofline.py --smoke         # --size=tiny at batch 2 x 8 new tokens, in seconds

A decode step must read every weight once and every KV-cache column it attends to, so
    roofline steps/s = peak HBM bandwidth (rsft/hardware.py) / (weight bytes + KV bytes per step)
and the achieved fraction is measured steps/s over that. rsft attends over the whole allocated cache (prompt
bucket + max_new columns; masked columns are read too), so the KV term uses the allocated length; the
"useful" fraction counts only the real tokens (mean over the run). Random bf16 weights in the shape of
Qwen3-0.6B (real vocabulary); greedy decoding without stops, so both libraries run every step. rsft runs with its
evaluation defaults (rsft.Options()) unless --chunk_steps says otherwise; each side does one full untimed run of
the same workload before the timed one.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np

from rsft.tools.benchtools import timed

SIZES = {  # transformers Qwen3Config fields
  "tiny": dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    tie_word_embeddings=True,
  ),
  "0.6b": dict(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
  ),
}


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--prompt", type=int, default=256)
  parser.add_argument("--new", type=int, default=512)
  parser.add_argument("--chunk_steps", type=int, default=None, help="rsft.Options.chunk_steps (default: rsft's)")
  parser.add_argument("--skip-transformers", action="store_true")
  parser.add_argument("--smoke", action="store_true", help="--size=tiny, batch 2, prompt 16, 8 new tokens")
  args = parser.parse_args()
  if args.smoke:
    args.size, args.batch, args.prompt, args.new = "tiny", 2, 16, 8
  import jax
  import torch
  import transformers

  import rsft
  from rsft import hardware

  torch.manual_seed(0)
  cfg = transformers.Qwen3Config(rope_theta=1e6, max_position_embeddings=40960, **SIZES[args.size])
  hf = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
  with tempfile.TemporaryDirectory() as path:
    hf.save_pretrained(path)
    m = rsft.load_model(path, dtype="bfloat16")
  opts = rsft.Options(**({"chunk_steps": args.chunk_steps} if args.chunk_steps else {}))
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, cfg.vocab_size, args.prompt).tolist() for _ in range(args.batch)]
  res, seconds = timed(lambda: rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts))
  steps_per_s = args.new / seconds

  weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(m.params))
  kv_per_column = 2 * cfg.num_hidden_layers * args.batch * cfg.num_key_value_heads * cfg.head_dim * 2  # bf16
  bucket = min((b for b in opts.prompt_buckets if b >= args.prompt), default=args.prompt)
  allocated = (weight_bytes + kv_per_column * (bucket + args.new)) * steps_per_s
  useful = (weight_bytes + kv_per_column * (args.prompt + args.new / 2)) * steps_per_s
  kind = jax.devices()[0].device_kind
  peak = hardware.hbm_bandwidth(kind)
  out = dict(
    device=kind,
    size=args.size,
    batch=args.batch,
    prompt=args.prompt,
    prompt_bucket=bucket,
    new=args.new,
    rsft_options=repr(opts),
    weight_gb=weight_bytes / 1e9,
    rsft_tok_s=args.batch * steps_per_s,
    rsft_ms_per_step=1e3 / steps_per_s,
    achieved_gb_s=allocated / 1e9,
    useful_gb_s=useful / 1e9,
    peak_gb_s=peak / 1e9 if peak else None,
    roofline_fraction=allocated / peak if peak else None,
    useful_roofline_fraction=useful / peak if peak else None,
  )

  if not args.skip_transformers:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    hf = hf.to(device)
    ids = torch.tensor(prompts, device=device)
    kw = dict(
      attention_mask=torch.ones_like(ids), max_new_tokens=args.new, do_sample=False, eos_token_id=None, pad_token_id=0
    )

    def hf_generate():
      with torch.no_grad():
        ref = hf.generate(input_ids=ids, **kw)
      sync()
      return ref

    ref, hf_seconds = timed(hf_generate)
    same = sum(a[:32] == b[:32] for a, b in zip(res.tokens, ref[:, args.prompt :].tolist()))
    out.update(
      transformers_device=device,
      transformers_tok_s=args.batch * args.new / hf_seconds,
      rsft_over_transformers_tok_s=hf_seconds / seconds,
      rows_same_first_32_tokens=f"{same}/{args.batch}",
    )
  print(json.dumps(out, indent=1))
  fraction = f"{out['roofline_fraction']:.2f}" if peak else f"unknown (no bandwidth for {kind!r} in rsft/hardware.py)"
  line = f"decode {args.size} Qwen3 (bf16, batch {args.batch}): HBM roofline fraction {fraction}"
  if not args.skip_transformers:
    line += f"; ratio rsft / transformers tokens/s {out['rsft_over_transformers_tok_s']:.2f}"
  print(line)


if __name__ == "__main__":
  main()
