"""Decode and scoring throughput: rsft vs transformers on the same tiny Qwen3, in one run.

  python bench/sample_throughput.py [--batch=16] [--new=256] [--prompt=64]

Decode: generation of `new` tokens for `batch` prompts (no stops), greedy and with the study's sampling settings,
tokens/s after a warm-up call (rsft's jit compile is excluded, as transformers has none). Scoring: teacher-forced
log-probs of batch x (prompt + new) tokens, rsft.infer.scorer vs a transformers forward + log_softmax gather.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--new", type=int, default=256)
  parser.add_argument("--prompt", type=int, default=64)
  args = parser.parse_args()
  import jax
  import torch
  import rsft
  import tiny_models
  from rsft.infer import sampler, scorer

  path = tempfile.mkdtemp()
  hf = tiny_models.build("qwen3", path, num_hidden_layers=4, hidden_size=128, intermediate_size=384,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32)
  m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, tiny_models.VOCAB, args.prompt).tolist() for _ in range(args.batch)]
  opts = sampler.Options(prompt_buckets=(args.prompt,), chunk_steps=args.new)
  rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts)  # compile
  start = time.perf_counter()
  res = rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts)
  ours = args.batch * args.new / (time.perf_counter() - start)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  hf = hf.to(device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  ids = torch.tensor(prompts, device=device)
  with torch.no_grad():
    hf.generate(input_ids=ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    sync()
    start = time.perf_counter()
    out = hf.generate(input_ids=ids, max_new_tokens=args.new, do_sample=False, eos_token_id=None, pad_token_id=0)
    sync()
    ref = args.batch * args.new / (time.perf_counter() - start)
  same = sum(a == b for a, b in zip(res.tokens, out[:, args.prompt:].tolist()))
  print(f"device {jax.devices()[0].device_kind}; tiny Qwen3 (4L d128 V512), batch {args.batch}, prompt {args.prompt}, "
        f"{args.new} new tokens, greedy; {same}/{args.batch} rows token-identical to transformers")
  print(f"  decode  rsft {ours:9.0f} tok/s   transformers {ref:9.0f} tok/s   ratio {ours / ref:.2f}   (greedy)")
  study = dict(temperature=0.6, top_p=0.95, top_k=20)  # the study's sampling settings
  rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts, **study)
  start = time.perf_counter()
  rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts, **study)
  ours = args.batch * args.new / (time.perf_counter() - start)
  with torch.no_grad():
    start = time.perf_counter()
    hf.generate(input_ids=ids, max_new_tokens=args.new, do_sample=True, eos_token_id=None, pad_token_id=0, **study)
    sync()
    ref = args.batch * args.new / (time.perf_counter() - start)
  print(f"  decode  rsft {ours:9.0f} tok/s   transformers {ref:9.0f} tok/s   ratio {ours / ref:.2f}   "
        "(T 0.6, top-p 0.95, top-k 20)")

  completions = res.tokens
  scorer.score(m, prompts, completions)  # compile
  start = time.perf_counter()
  scorer.score(m, prompts, completions)
  ours = args.batch * (args.prompt + args.new) / (time.perf_counter() - start)
  full = torch.tensor([p + c for p, c in zip(prompts, completions)], device=device)
  with torch.no_grad():
    hf(input_ids=full)
    sync()
    start = time.perf_counter()
    logits = hf(input_ids=full).logits.float()
    torch.log_softmax(logits[:, :-1], -1).gather(-1, full[:, 1:, None])
    sync()
    ref = args.batch * (args.prompt + args.new) / (time.perf_counter() - start)
  print(f"  score   rsft {ours:9.0f} tok/s   transformers {ref:9.0f} tok/s   ratio {ours / ref:.2f}")


if __name__ == "__main__":
  main()
