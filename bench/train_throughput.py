"""Train-step throughput: rsft's jitted step vs a PyTorch/transformers loop, and the loss's memory at long T.

  python bench/train_throughput.py [--steps=10] [--batch=8] [--seq=512] [--size=tiny|medium]
  python bench/train_throughput.py --smoke     # tiny, 1 step of 1 x 32 tokens, loss memory at T 256, V 4096

1. The same random Qwen3 architecture (--size: tiny = 4 layers d 256 V 4096; medium = 12 layers d 1024 V 32768,
   ~270M), batch, sequence length, float32, AdamW (lr 1e-4, wd 0.01, clip 1.0), full supervision; tokens/s of each
   after one untimed warm-up step (rsft's compile), in one run on the same machine, and their ratio.
2. Peak temporary memory (XLA's compiled memory analysis, no run needed) of loss + gradient w.r.t. the hidden
   states and head for T = 2048 / 4096 / 8192 with vocab 151936: rsft's chunked head vs dense logits, and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

SIZES = {
  "tiny": dict(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
  ),
  # ~270M parameters: big enough that an accelerator is not launch-bound.
  "medium": dict(
    vocab_size=32768,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=64,
  ),
}
ARCH = dict(SIZES["tiny"], rope_theta=1e6, tie_word_embeddings=False, max_position_embeddings=8192)


def rsft_tokens_per_s(batch: int, seq: int, steps: int) -> float:
  import types

  import jax

  import rsft
  from rsft.models import ModelConfig
  from rsft.train import optim
  from rsft.train.step import StepConfig, train_step

  cfg = ModelConfig(
    model_type="qwen3",
    vocab_size=ARCH["vocab_size"],
    hidden_size=ARCH["hidden_size"],
    intermediate_size=ARCH["intermediate_size"],
    num_layers=ARCH["num_hidden_layers"],
    num_heads=ARCH["num_attention_heads"],
    num_kv_heads=ARCH["num_key_value_heads"],
    head_dim=ARCH["head_dim"],
    rope_theta=ARCH["rope_theta"],
    qk_norm=True,
  )
  m = rsft.init_model(cfg, seed=0, remat_policy="none")
  tc = types.SimpleNamespace(
    **dict(
      lr=1e-4,
      warmup_ratio=0.0,
      schedule="constant",
      max_grad_norm=1.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.01,
      weight_decay_mask="all",
    )
  )
  tx, _ = optim.make_optimizer(tc, steps)
  step = jax.jit(functools.partial(train_step, m.graphdef, tx, StepConfig(loss_chunk=512)), donate_argnums=(0, 1))
  rng = np.random.default_rng(0)
  ids = rng.integers(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
  b = dict(
    inputs=ids[:, :-1],
    targets=ids[:, 1:],
    weights=np.ones((batch, seq), np.float32),
    segment_ids=np.ones((batch, seq), np.int32),
    positions=np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
  )
  params, opt_state = m.params, tx.init(m.params)
  for _ in range(2):  # compile + warm-up; twice: without a mesh the first call's inputs are uncommitted arrays and
    params, opt_state, out = step(params, opt_state, b)  # its committed outputs compile once more
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, out = step(params, opt_state, b)
  jax.block_until_ready(out)
  return batch * seq * steps / (time.perf_counter() - start)


def torch_tokens_per_s(batch: int, seq: int, steps: int) -> float:
  import torch
  import transformers

  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = transformers.AutoModelForCausalLM.from_config(transformers.Qwen3Config(**ARCH)).float().train().to(device)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
  ids = torch.tensor(np.random.default_rng(0).integers(0, ARCH["vocab_size"], (batch, seq + 1))).to(device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def one():
    opt.zero_grad(set_to_none=True)
    # Every one of the seq targets supervised, as in rsft's batch (HF's `labels=` shift would drop the last one).
    logits = model(input_ids=ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  one()
  sync()
  start = time.perf_counter()
  for _ in range(steps):
    one()
  sync()
  return batch * seq * steps / (time.perf_counter() - start)


def loss_memory(seq: int, vocab: int = 151936, hidden: int = 64, chunk: int = 1024) -> tuple[int, int]:
  """Temp bytes of value_and_grad of the summed log-likelihood: (chunked head, dense logits)."""
  import jax
  import jax.numpy as jnp

  from rsft.models.head import chunked_logprobs

  h = jax.ShapeDtypeStruct((1, seq, hidden), jnp.bfloat16)
  w = jax.ShapeDtypeStruct((hidden, vocab), jnp.bfloat16)
  y = jax.ShapeDtypeStruct((1, seq), jnp.int32)

  def dense(h, w, y):
    logits = jnp.einsum("BTD,DV->BTV", h, w, preferred_element_type=jnp.float32)
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), y[..., None], -1).sum()

  def chunked(h, w, y):
    return chunked_logprobs(h, w, y, chunk).sum()

  def temp(fn):
    compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(h, w, y).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  return temp(chunked), temp(dense)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=512)
  parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
  parser.add_argument("--smoke", action="store_true", help="tiny, 1 step, batch 1 x 32, loss memory at vocab 4096")
  args = parser.parse_args()
  if args.smoke:
    args.size, args.steps, args.batch, args.seq = "tiny", 1, 1, 32
  ARCH.update(SIZES[args.size])
  import jax
  import torch

  print(f"device: {jax.devices()[0].device_kind}; torch threads {torch.get_num_threads()}")
  ours = rsft_tokens_per_s(args.batch, args.seq, args.steps)
  ref = torch_tokens_per_s(args.batch, args.seq, args.steps)
  print(
    f"train step, {args.size} Qwen3 ({ARCH['num_hidden_layers']}L d{ARCH['hidden_size']} V{ARCH['vocab_size']}), "
    f"batch {args.batch} x {args.seq}, float32, {args.steps} timed steps after one warm-up step each:"
  )
  print(f"  rsft          {ours:10.0f} tokens/s")
  print(f"  transformers  {ref:10.0f} tokens/s")
  print(f"  ratio rsft / transformers: {ours / ref:.2f}")
  vocab, seqs = (4096, (256,)) if args.smoke else (151936, (2048, 4096, 8192))
  print(f"loss + grad temporary memory, vocab {vocab}, bf16 hidden/head, chunk 1024:")
  for seq in seqs:
    chunked, dense = loss_memory(seq, vocab)
    print(
      f"  T={seq:5d}  chunked {chunked / 2**20:8.1f} MiB   dense {dense / 2**20:8.1f} MiB   "
      f"ratio chunked / dense {chunked / dense:.2f}"
    )


if __name__ == "__main__":
  main()
