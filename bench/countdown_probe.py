"""Where a Countdown-trained checkpoint goes wrong: teacher-forced probabilities of the gold trace's tokens on
held-out puzzles, by the kind of decision each token carries, with transformers scoring the same tokens.

  python bench/countdown_probe.py --workdir=/tmp/countdown [--steps=320,659] [--puzzles=64] [--level=countdown3]
  python bench/countdown_probe.py --smoke     # a random tiny Qwen3 on 4 puzzles: the whole path in seconds

Sampled accuracy at 64 items moves by +-0.1 from run to run; this reads the same gold traces under each
checkpoint, so a change of trace format, base or model shows up in the part it touches. Kinds: `value` (the result
after `a+b=`: arithmetic), `target` (the target copied after `vs`), `yes` / `no` (the comparison of a result with
the target: the decision to stop), `continue` (the `,` after a miss that goes on) and `exhausted` (the `.` after
the last move, then Backtrack), `first_move` (the operands and operation that open each line: the search order),
`left` (the numbers that remain), `boxed` (the answer), `other`. Each cell: mean probability of the gold token /
share of gold tokens above 0.5 (the ones the checkpoint would most likely write itself).

`yes, target+1` is the mean probability of `yes` at the same hits when the prompt's target and its copies are one
higher, so the result no longer matches: a model that compares gives it near 0, one that stops by the shape of the
trace gives it about what it gives `yes`. The reference line exports each checkpoint to Hugging Face format and
scores the same sequences with transformers: the probabilities are the model's, not rsft's.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
from collections.abc import Callable

import numpy as np

from rsft import api
from rsft.convert import step_dir
from rsft.data import tiny_tokenizer
from rsft.evals import items
from rsft.tasks import countdown
from rsft.tools import tiny_models

KINDS = [  # (kind, pattern): group 1 marks the characters; the first kind that claims a character wins
  ("value", r"\d+[-+*/]\d+=(\d+)"),
  ("target", r" vs (\d+)"),
  ("yes", r" vs \d+ (yes)"),
  ("no", r" vs \d+ (no)"),
  ("continue", r" no(,) "),
  ("exhausted", r" no(\.) Backtrack"),
  ("first_move", r"(?m)^(\d+[-+*/]\d+)=\d+, left"),
  ("left", r"left ([\d, ]+):"),
  ("boxed", r"\\boxed\{([^}]*)\}"),
]
NAMES = [k for k, _ in KINDS] + ["other"]
MOVED = "yes, target+1"


def char_kinds(response: str) -> dict[int, str]:
  kinds: dict[int, str] = {}
  for kind, pattern in KINDS:
    for m in re.finditer(pattern, response):
      for k in range(m.start(1), m.end(1)):
        kinds.setdefault(k, kind)
  return kinds


def gold_sequences(tokenizer, puzzles: list[countdown.Puzzle], shift: int = 0) -> list[tuple[np.ndarray, list[str]]]:
  """Per puzzle: chat prompt + gold trace as ids, and the kind of each predicted token (None in the prompt). With
  `shift`, the prompt and every copy of the target say target + shift; the trace's results stay as they were."""
  out = []
  for p in puzzles:
    moved = countdown.Puzzle(p.numbers, p.target + shift)
    prompt = tokenizer.apply_chat_template(
      [{"role": "user", "content": countdown.prompt(moved)}], tokenize=False, add_generation_prompt=True
    )
    response = countdown.trace(p)
    if shift:
      response = re.sub(rf"(Need| vs) {p.target}\b", rf"\g<1> {moved.target}", response)
    enc = tokenizer(prompt + response, return_offsets_mapping=True)
    kinds = char_kinds(response)
    token_kinds = []
    for start, end in enc["offset_mapping"][1:]:
      chars = range(start - len(prompt), end - len(prompt))
      token_kinds.append(None if start < len(prompt) else next((kinds[k] for k in chars if k in kinds), "other"))
    out.append((np.array([enc["input_ids"]], np.int32), token_kinds))
  return out


def gold_probs(logprobs: Callable[[np.ndarray], np.ndarray], sequences) -> tuple[dict[str, np.ndarray], list]:
  """Per kind, the probability given to each gold response token; and the raw log-probs per sequence."""
  probs, raw = collections.defaultdict(list), []
  for ids, token_kinds in sequences:
    lp = np.asarray(logprobs(ids))[0]
    raw.append(lp)
    for t, kind in enumerate(token_kinds):
      if kind is not None:
        probs[kind].append(float(np.exp(lp[t])))
  return {k: np.array(v) for k, v in probs.items()}, raw


def transformers_logprobs(hf_dir: str) -> Callable[[np.ndarray], np.ndarray]:
  import torch
  import transformers

  model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
  return lambda ids: tiny_models.hf_logprobs(model, ids, np.ones_like(ids))


def probe_row(label: str, rsft_dir: str, hf_dir: str, sequences, moved) -> tuple[str, float]:
  """One table row for a checkpoint, and max |log p rsft - log p transformers| over every token scored."""
  model = api.load_model(rsft_dir)
  score = lambda ids: api.token_logprobs(model, ids)  # noqa: E731
  probs, ours = gold_probs(score, sequences)
  _, theirs = gold_probs(transformers_logprobs(hf_dir), sequences)
  moved_yes = gold_probs(score, moved)[0].get("yes", np.zeros(0))
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
  cells = [f"{probs[k].mean():.2f} / {(probs[k] > 0.5).mean():.2f}" if k in probs else "" for k in NAMES]
  cells.append(f"{moved_yes.mean():.2f}" if moved_yes.size else "")
  return f"| {label} | " + " | ".join(cells) + " |", diff


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", help="a run of configs/countdown_tiny.py (or any Countdown SFT run)")
  parser.add_argument("--steps", default="", help="comma-separated checkpoint steps (default: every one)")
  parser.add_argument("--puzzles", type=int, default=64)
  parser.add_argument("--level", default="countdown3", choices=sorted(countdown.LEVELS))
  parser.add_argument("--smoke", action="store_true", help="a random tiny Qwen3 and 4 puzzles")
  args = parser.parse_args()
  if not args.smoke and not args.workdir:
    parser.error("--workdir is required (or --smoke)")
  puzzles = [
    countdown.Puzzle(tuple(r["numbers"]), r["target"])  # the benchmark's own held-out items
    for r in items.countdown_items(args.level)(4 if args.smoke else args.puzzles)
  ]
  with tempfile.TemporaryDirectory() as tmp:
    if args.smoke:
      texts = [
        countdown.prompt(p) + countdown.trace(p) for p in countdown.generate(0, 50, **countdown.LEVELS[args.level])
      ]
      tokenizer = tiny_tokenizer.train(texts, tiny_models.VOCAB, os.path.join(tmp, "tokenizer"))
      hf_dir = os.path.join(tmp, "random")
      tiny_models.build("qwen3", hf_dir)
      checkpoints = [("random", hf_dir, hf_dir)]
    else:
      tokenizer = api.load_tokenizer(os.path.join(args.workdir, "tokenizer"))
      ckpts = os.path.join(args.workdir, "checkpoints")
      steps = [int(s) for s in args.steps.split(",")] if args.steps else step_dir.finished_steps(ckpts)
      checkpoints = [(str(s), os.path.join(ckpts, str(s)), None) for s in steps]
    sequences, moved = gold_sequences(tokenizer, puzzles), gold_sequences(tokenizer, puzzles, shift=1)
    print(
      f"{args.workdir or 'smoke'}: {len(puzzles)} held-out {args.level} gold traces; "
      "mean p of the gold token / share with p > 0.5"
    )
    print("| step | " + " | ".join(NAMES + [MOVED]) + " |")
    print("| --- " * (len(NAMES) + 2) + "|")
    worst = 0.0
    for label, rsft_dir, hf_dir in checkpoints:
      if hf_dir is None:
        hf_dir = api.export_hf(rsft_dir, os.path.join(tmp, f"hf_{label}"))
      row, diff = probe_row(label, rsft_dir, hf_dir, sequences, moved)
      print(row, flush=True)
      worst = max(worst, diff)
    print(f"reference: max |log p rsft - log p transformers| over every gold token, every checkpoint: {worst:.2e}")


if __name__ == "__main__":
  main()
