"""Prefix caching and chunked prefill: rsft with each off and on, beside transformers.generate, in one run.

  python bench/prefill_sharing.py                    # tiny random Qwen3 (vocabulary 512), float32
  python bench/prefill_sharing.py --model=smollm2    # the real SmolLM2-135M-Instruct (rsft.tools.models.fetch)
  python bench/prefill_sharing.py --smoke            # seconds: the path and the output, not the speed

Two workloads, greedy, no stop tokens (every row decodes --new tokens), all prompts handed over in one call:
  shared prefix  --prompts prompts = one --prefix-token system prompt + an 8-40-token question, at most --batch in
                 flight. rsft without and with Options(prefix_cache=True) (each shared page computed once),
                 transformers in batches of --batch. Reported: generated tokens per second, the ratios, the prompt
                 tokens the cache supplied, and whether every row's tokens match the uncached run.
  long prompt    one --long-token prompt (a judge input) ahead of --batch - 1 short prompts (8-40 tokens).
                 rsft with whole prompts (the long one is prefilled before any row decodes) and with
                 Options(chunked_prefill=--piece) (pieces between decode calls of 16 steps); transformers in one
                 batch. Reported: time to first token of the short rows (mean) and of the long row, seconds from
                 the call's start (rsft: GenerateResult.first_token_s; transformers: a max_new_tokens=1 call on
                 the same batch), and generated tokens per second over the whole call.
Each system runs each workload once untimed first.
"""

from __future__ import annotations

import argparse

import numpy as np

from rsft.tools.benchtools import hf_generate, reference_model, timed


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="", help="smollm2: the real SmolLM2-135M-Instruct; default a tiny Qwen3")
  parser.add_argument("--prompts", type=int, default=64)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--prefix", type=int, default=512, help="shared system-prompt tokens")
  parser.add_argument("--new", type=int, default=32, help="tokens generated per row")
  parser.add_argument("--long", type=int, default=2048, help="the long prompt's tokens")
  parser.add_argument("--piece", type=int, default=256, help="chunked_prefill tokens per piece")
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    args.prompts, args.batch, args.prefix, args.new, args.long, args.piece = 8, 4, 40, 4, 160, 32
  import rsft

  hf, path, name = reference_model(args.model, max_position_embeddings=8192)
  m = rsft.load_model(path)
  vocab = min(hf.config.vocab_size, 32000)
  page = 16 if args.smoke else 128
  rng = np.random.default_rng(0)
  tokens = lambda k: rng.integers(20, vocab, k).tolist()

  def ours(prompts, **options):
    return rsft.generate(
      m, prompts, args.new, stop_token_ids=[], options=rsft.Options(max_num_seqs=args.batch, page_size=page, **options)
    )

  def theirs(prompts, new=args.new):
    return hf_generate(hf, prompts, args.batch, max_new_tokens=new, do_sample=False, eos_token_id=None)

  print(f"{name}, float32, greedy, {args.new} new tokens a row, at most {args.batch} in flight; pages of {page}")
  system = tokens(args.prefix)
  shared = [system + tokens(int(rng.integers(8, 41))) for _ in range(args.prompts)]
  generated = args.prompts * args.new
  plain, t_plain = timed(lambda: ours(shared))
  cached, t_cached = timed(lambda: ours(shared, prefix_cache=True))
  _, t_hf = timed(lambda: theirs(shared))
  same = sum(a == b for a, b in zip(plain.tokens, cached.tokens))
  print(
    f"shared prefix {args.prefix} + 8-40 tokens, {args.prompts} prompts: rsft {generated / t_plain:.0f} tok/s, "
    f"rsft prefix_cache {generated / t_cached:.0f} tok/s ({cached.prefix_hits} prompt tokens from the cache), "
    f"transformers {generated / t_hf:.0f} tok/s; ratio cache / no cache {t_plain / t_cached:.2f}, "
    f"rsft prefix_cache / transformers {t_hf / t_cached:.2f}, rsft / transformers {t_hf / t_plain:.2f} "
    f"({same}/{args.prompts} rows token-identical with and without the cache)"
  )

  mixed = [tokens(args.long)] + [tokens(int(rng.integers(8, 41))) for _ in range(args.batch - 1)]
  generated = len(mixed) * args.new
  whole, t_whole = timed(lambda: ours(mixed))
  chunked, t_chunked = timed(lambda: ours(mixed, chunked_prefill=args.piece))
  _, t_hf = timed(lambda: theirs(mixed))
  _, ttft_hf = timed(lambda: theirs(mixed, new=1))
  short = lambda r: float(np.mean(r.first_token_s[1:]))
  print(
    f"long prompt {args.long} + {len(mixed) - 1} short: time to first token, short rows / long row: rsft whole "
    f"{short(whole):.3f} / {whole.first_token_s[0]:.3f} s, rsft chunked_prefill={args.piece} "
    f"{short(chunked):.3f} / {chunked.first_token_s[0]:.3f} s, transformers {ttft_hf:.3f} / {ttft_hf:.3f} s; "
    f"tok/s rsft whole {generated / t_whole:.0f}, chunked {generated / t_chunked:.0f}, transformers "
    f"{generated / t_hf:.0f}; short-row TTFT ratio whole / chunked {short(whole) / short(chunked):.2f} "
    f"({sum(a == b for a, b in zip(whole.tokens, chunked.tokens))}/{len(mixed)} rows token-identical)"
  )


if __name__ == "__main__":
  main()
