"""The forgetting probe's cost (train.probe_every) beside the sampled check it stands in for and beside transformers
scoring the same rows, in one run.

  python bench/probe_cost.py                    # tiny random Qwen3 (the demo's shape), float32
  python bench/probe_cost.py --model=smollm2    # the real SmolLM2-135M-Instruct (rsft.tools.models.fetch)
  python bench/probe_cost.py --smoke            # seconds: the path and the output, not the speed

--items prompts of 20-60 tokens get greedy answers of at most --tokens tokens once (the base's answers). Then, each
timed after one untimed call: the probe (rsft.infer.scorer.score of prompt + answer, teacher-forced: what
rsft.analysis.probe runs every K steps), a sampled check of the same prompts (rsft.generate, greedy, the same
--tokens: the least a sampled out-of-domain score costs, before any grading), and transformers scoring the same
rows (one padded forward, log-softmax gathered). Reported: milliseconds, sampled / probe, transformers / rsft,
and the largest |log-prob difference| between rsft and transformers over every answer token.
"""

from __future__ import annotations

import argparse

import numpy as np

from rsft.tools.benchtools import reference_model, timed

# configs/countdown_tiny.py's model (bench/ scripts import rsft as installed, not the repo's configs/).
DEMO_SHAPE = dict(
  vocab_size=512,
  hidden_size=128,
  intermediate_size=384,
  num_hidden_layers=4,
  num_attention_heads=2,
  num_key_value_heads=1,
  head_dim=64,
  max_position_embeddings=1024,
)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="", help="smollm2: the real SmolLM2-135M-Instruct; default a tiny Qwen3")
  parser.add_argument("--items", type=int, default=32)
  parser.add_argument("--tokens", type=int, default=128)
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    args.items, args.tokens = 4, 8
  import torch

  import rsft
  from rsft.infer import scorer

  hf, path, name = reference_model(args.model, **DEMO_SHAPE)
  name += " (the demo's shape)" if args.model != "smollm2" else ""
  m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  vocab = min(hf.config.vocab_size, 32000)
  prompts = [rng.integers(20, vocab, int(rng.integers(20, 61))).tolist() for _ in range(args.items)]
  answers = rsft.generate(m, prompts, args.tokens, stop_token_ids=[]).tokens

  def theirs():
    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
      ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
      logp = torch.log_softmax(hf(input_ids=ids, attention_mask=mask).logits.float(), -1)
    return [
      logp[r, len(p) - 1 : len(p) + len(a) - 1].gather(-1, torch.tensor(a)[:, None])[:, 0].numpy()
      for r, (p, a) in enumerate(zip(prompts, answers))
    ]

  probe, t_probe = timed(lambda: scorer.score(m, prompts, answers))
  _, t_sample = timed(lambda: rsft.generate(m, prompts, args.tokens, stop_token_ids=[]))
  ref, t_hf = timed(theirs)
  diff = max(float(np.abs(np.asarray(s.logprobs) - r).max()) for s, r in zip(probe, ref))
  print(f"{name}, float32, {args.items} probe items of 20-60 prompt tokens + {args.tokens} answer tokens")
  print(
    f"probe (teacher-forced) {1e3 * t_probe:.1f} ms, sampled check {1e3 * t_sample:.1f} ms, transformers "
    f"scoring {1e3 * t_hf:.1f} ms; ratio sampled / probe {t_sample / t_probe:.1f}, transformers / rsft "
    f"{t_hf / t_probe:.2f}; max |log p rsft - log p transformers| {diff:.1e}"
  )


if __name__ == "__main__":
  main()
