"""Decode and scoring throughput: rsft vs transformers on the same tiny random Qwen3, in one run.

  python bench/sample_throughput.py [--batch=16] [--new=256] [--prompt=64] [--chunk_steps=N] [--prompt_buckets=a,b]
  python bench/sample_throughput.py --smoke      # the whole path at batch 2 x 8 new tokens, in seconds

Decode: `new` tokens for `batch` prompts of `prompt` random tokens (no stops), greedy and with the study's sampling
settings (T 0.6, top-p 0.95, top-k 20). Each side does one full untimed run of each workload first (rsft compiles,
transformers warms its kernels and allocator), then the timed run. rsft runs with its evaluation defaults
(rsft.Options(), what eval.py uses) unless a flag overrides one; transformers with `generate`'s defaults (KV cache
on) and the same decoding parameters. Scoring: teacher-forced log-prob, entropy and greedy match of every
completion token of batch x (prompt + new) tokens, rsft.infer.scorer.score vs a transformers forward + log_softmax,
each warmed up the same way. Everything in float32 on this process's device.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from rsft.tools.benchtools import timed

# The tiny model's shape (random weights, tiny_models.VOCAB = 512 tokens).
SHAPE = dict(
  num_hidden_layers=4, hidden_size=128, intermediate_size=384, num_attention_heads=4, num_key_value_heads=2, head_dim=32
)
STUDY = dict(temperature=0.6, top_p=0.95, top_k=20)  # the study's sampling settings


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--new", type=int, default=256)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--chunk_steps", type=int, default=None, help="rsft.Options.chunk_steps (default: rsft's)")
  parser.add_argument("--prompt_buckets", default=None, help="rsft.Options.prompt_buckets, comma-separated")
  parser.add_argument("--smoke", action="store_true", help="batch 2, prompt 16, 8 new tokens")
  args = parser.parse_args()
  if args.smoke:
    args.batch, args.prompt, args.new = 2, 16, 8
  import jax
  import torch
  import transformers

  import rsft
  from rsft.infer import scorer
  from rsft.tools import tiny_models

  overrides = {}
  if args.chunk_steps:
    overrides["chunk_steps"] = args.chunk_steps
  if args.prompt_buckets:
    overrides["prompt_buckets"] = tuple(int(b) for b in args.prompt_buckets.split(","))
  opts = rsft.Options(**overrides)
  with tempfile.TemporaryDirectory() as path:
    hf = tiny_models.build("qwen3", path, **SHAPE)
    m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, tiny_models.VOCAB, args.prompt).tolist() for _ in range(args.batch)]
  device = "cuda" if torch.cuda.is_available() else "cpu"
  hf = hf.to(device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  ids = torch.tensor(prompts, device=device)
  hf_kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=args.new, eos_token_id=None, pad_token_id=0)

  def hf_generate(**decoding):
    with torch.no_grad():
      out = hf.generate(input_ids=ids, **hf_kw, **decoding)
    sync()
    return out

  print(
    f"rsft on {jax.devices()[0].device_kind} ({jax.device_count()} devices): rsft.generate, float32, "
    f"{opts}{' (flags override: ' + ', '.join(overrides) + ')' if overrides else ' (evaluation defaults)'}"
  )
  shown = ", ".join(f"{k}={v}" for k, v in hf_kw.items() if k != "attention_mask")
  print(
    f"transformers {transformers.__version__} on {device} (torch {torch.__version__}, {torch.get_num_threads()} "
    f"threads): generate(use_cache=True, {shown}), float32"
  )
  print(
    f"tiny random Qwen3 ({SHAPE['num_hidden_layers']}L d{SHAPE['hidden_size']} V{tiny_models.VOCAB}), batch "
    f"{args.batch}, prompt {args.prompt}, {args.new} new tokens; each side: one untimed run of the same workload, "
    "then the timed one"
  )
  tokens = args.batch * args.new
  for label, decoding in (("greedy", {}), ("T 0.6, top-p 0.95, top-k 20", STUDY)):
    res, ours = timed(lambda: rsft.generate(m, prompts, args.new, stop_token_ids=[], options=opts, **decoding))
    out, ref = timed(lambda: hf_generate(do_sample=bool(decoding), **decoding))
    extra = ""
    if not decoding:
      same = sum(a == b for a, b in zip(res.tokens, out[:, args.prompt :].tolist()))
      extra = f"; {same}/{args.batch} rows token-identical"
    print(
      f"  decode  rsft {tokens / ours:9.0f} tok/s   transformers {tokens / ref:9.0f} tok/s   "
      f"ratio rsft / transformers {ref / ours:.2f}   ({label}{extra})"
    )

  completions = res.tokens
  full = torch.tensor([p + c for p, c in zip(prompts, completions)], device=device)

  def hf_score():
    with torch.no_grad():
      logp = torch.log_softmax(hf(input_ids=full).logits[:, :-1].float(), -1)
      lp = logp.gather(-1, full[:, 1:, None])[..., 0]
      entropy = -(logp.exp() * logp).sum(-1)
      greedy = logp.argmax(-1) == full[:, 1:]
    sync()
    return lp, entropy, greedy

  _, ours = timed(lambda: scorer.score(m, prompts, completions))
  _, ref = timed(hf_score)
  tokens = args.batch * (args.prompt + args.new)
  print(
    f"  score   rsft {tokens / ours:9.0f} tok/s   transformers {tokens / ref:9.0f} tok/s   "
    f"ratio rsft / transformers {ref / ours:.2f}   (log-prob, entropy, greedy match per token)"
  )


if __name__ == "__main__":
  main()
