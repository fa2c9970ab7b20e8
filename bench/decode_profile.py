"""Where a decode step's time goes: rsft's step (token choice + paged forward + head) by batch size, with its paged
attention ablated, beside a transformers decode step at the same batch, in one run.

  python bench/decode_profile.py [--batches=1,8,16,32] [--vocab=777] [--context=150] [--steps=20]
  python bench/decode_profile.py --smoke        # batches 1 and 2, 12 steps, in seconds

The issue-26 model shape (tiny random Qwen3: 3 layers, hidden 96, head_dim 40), float32, T 1.0. rsft: a jitted
loop of `steps` decode steps over a paged pool whose rows hold `context` columns (the sampler's own step: select,
extend_paged, the head), timed best of 3; "no attention" is the same loop with attention.paged_attention replaced
by the identity, so the difference is what reading the pages costs. transformers: (generate of steps + 1 new
tokens - generate of 1) / steps, with its KV cache, for `batch` prompts of `context` tokens. Per step in ms, and
the ratio transformers / rsft.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

SHAPE = dict(
  num_hidden_layers=3,
  hidden_size=96,
  intermediate_size=192,
  num_attention_heads=4,
  num_key_value_heads=2,
  head_dim=40,
  max_position_embeddings=8192,
)


def best(fn, repeats: int = 3) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def per_step_by_difference(generate, steps: int, tries: int = 3) -> float:
  """(time of steps + 1 new tokens - time of 1) / steps; a difference, so noise can drive it to zero or below on a
  busy machine: measure again with more repeats rather than print a negative time."""
  for attempt in range(tries):
    repeats = 3 * (attempt + 1)
    per_step = (best(lambda: generate(steps + 1), repeats) - best(lambda: generate(1), repeats)) / steps
    if per_step > 0:
      return per_step
  raise RuntimeError(f"transformers' per-step time stayed <= 0 over {tries} tries: the machine is too noisy")


def rsft_loop(m, batch: int, context: int, steps: int, page: int = 128):
  """A jitted `steps`-step decode of `batch` rows over a paged pool: the sampler's step without its host."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from rsft.infer import engine
  from rsft.infer.sampling import row_keys, select
  from rsft.models import attention

  cfg = m.config
  per_row = -(-(context + steps) // page)
  pool = jnp.zeros((1, cfg.num_kv_heads, cfg.num_layers, batch * per_row + 1, page, cfg.head_dim))
  table = jnp.asarray(1 + np.arange(batch * per_row).reshape(batch, per_row), jnp.int32)
  ones = jnp.ones((batch,))

  @jax.jit
  def loop(params, k_pool, v_pool):
    model = nnx.merge(m.graphdef, params)

    def body(i, carry):
      k_pool, v_pool, logits, lengths = carry
      tok, _ = select(
        logits,
        row_keys(jnp.uint32(1), jnp.arange(batch), jnp.full((batch,), i)),
        ones,
        ones,
        jnp.zeros((batch,), jnp.int32),
        64,
        cfg.vocab_size,
      )
      lengths = lengths + 1
      pages = attention.Pages(table, lengths, jnp.max(lengths))
      hidden, k_pool, v_pool = model.extend_paged(tok[:, None], k_pool, v_pool, pages, jnp.ones((batch,), bool))
      return k_pool, v_pool, engine._last_logits(model, hidden[:, 0]), lengths

    init = (k_pool, v_pool, jnp.zeros((batch, cfg.vocab_size)), jnp.full((batch,), context, jnp.int32))
    return jax.lax.fori_loop(0, steps, body, init)

  return lambda: jax.block_until_ready(loop(m.params, pool, pool))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", default="1,8,16,32")
  parser.add_argument("--vocab", type=int, default=777)
  parser.add_argument("--context", type=int, default=150)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    args.batches, args.steps = "1,2", 12  # enough steps that a step's time stands above the timer's noise
  import torch

  import rsft
  from rsft.models import attention
  from rsft.tools import tiny_models

  path = tempfile.mkdtemp()
  hf = tiny_models.build("qwen3", path, vocab_size=args.vocab, **SHAPE)
  m = rsft.load_model(path)
  rng = np.random.default_rng(0)
  print(
    f"tiny Qwen3 {SHAPE}, vocabulary {args.vocab}, rows of {args.context} columns, {args.steps} steps, T 1.0, "
    f"float32; ms per decode step; ratio = transformers / rsft"
  )
  for batch in (int(b) for b in args.batches.split(",")):
    full = best(rsft_loop(m, batch, args.context, args.steps)) / args.steps
    reference = attention.paged_attention
    attention.paged_attention = lambda q, *a, **k: q  # ablation: no page reads (traced into a fresh loop)
    try:
      bare = best(rsft_loop(m, batch, args.context, args.steps)) / args.steps
    finally:
      attention.paged_attention = reference
    ids = torch.from_numpy(rng.integers(20, args.vocab, (batch, args.context)))

    def hf_generate(new: int):
      with torch.no_grad():
        hf.generate(
          input_ids=ids,
          attention_mask=torch.ones_like(ids),
          max_new_tokens=new,
          min_new_tokens=new,
          do_sample=True,
          top_k=0,
          top_p=1.0,
          pad_token_id=0,
        )

    theirs = per_step_by_difference(hf_generate, args.steps)
    print(
      f"batch {batch:3d}: rsft {full * 1e3:7.3f} ms/step (attention {max(full - bare, 0) / full:4.0%} of it), "
      f"transformers {theirs * 1e3:7.3f} ms/step, ratio {theirs / full:5.2f}"
    )


if __name__ == "__main__":
  main()
