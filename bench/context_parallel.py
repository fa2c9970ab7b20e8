"""Context parallelism on 8 fake CPU devices: the same train step with each row split over mesh.sequence = 2 / 4 /
8 (fsdp takes the rest), attention by all-gather and by ring, beside the unsplit mesh (fsdp = 8), with
transformers' forward + backward of the same batch as the reference, in one run.

  python bench/context_parallel.py [--length=2048] [--rows=2] [--steps=3]
  python bench/context_parallel.py --smoke          # 256-token rows, one step each, sequence 4 only
  python bench/context_parallel.py --smollm2        # the real model: log-probs on a sequence x data mesh (ring,
                                                    # all-gather) vs one device vs transformers, 2 x 512 tokens
Tiny random Qwen3 (2 layers, hidden 64), float32, packed rows of 40-400-token documents. Fewer rows than devices (the
long-row case): unsplit, every device computes the whole batch (a batch that does not divide data x fsdp is
replicated); with the sequence axis each device computes rows / data x length / sequence tokens. Reported per mesh:
the step's time (best of --steps after one compile), tokens/s, the ratio to the unsplit mesh, the compiled
program's temporary memory per device (XLA's memory analysis: what context parallelism is for), and |loss
difference|. The devices are threads of this CPU sharing two cores: times measure work and overhead, not chips,
and the unsplit mesh repeats the whole batch on each of them, so the last row (the same step on one device, the
total work once) is the fair yardstick for the split meshes' overhead.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import numpy as np  # noqa: E402


def packed(rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  seg, pos = np.zeros((rows, length), np.int32), np.zeros((rows, length), np.int32)
  for r in range(rows):
    at, doc = 0, 1
    while at < length:
      n = min(int(rng.integers(40, 401)), length - at)
      seg[r, at : at + n], pos[r, at : at + n] = doc, np.arange(n)
      at, doc = at + n, doc + 1
  return dict(
    inputs=rng.integers(0, 512, (rows, length)).astype(np.int32),
    targets=rng.integers(0, 512, (rows, length)).astype(np.int32),
    weights=np.ones((rows, length), np.float32),
    segment_ids=seg,
    positions=pos,
  )


def smollm2() -> None:
  """SmolLM2-135M-Instruct (`python -m rsft.tools.models fetch smollm2-135m-instruct`): token log-probs of two
  512-token rows on one device, on data 2 x sequence 4 with each sequence attention, and in transformers."""
  import jax
  import torch
  import transformers

  import rsft
  from rsft import sharding
  from rsft.tools import models

  if not models.is_fetched("smollm2-135m-instruct"):
    raise SystemExit("SmolLM2 is not here: python -m rsft.tools.models fetch smollm2-135m-instruct")
  path = models.checkpoint_dir("smollm2-135m-instruct")
  ids = np.random.default_rng(0).integers(100, 40000, (2, 512)).astype(np.int32)
  one = np.asarray(rsft.token_logprobs(rsft.load_model(path), ids))
  hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  with torch.no_grad():
    logits = hf(torch.tensor(ids, dtype=torch.long)).logits.float()
  targets = torch.tensor(ids[:, 1:], dtype=torch.long)[..., None]
  ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, targets)[..., 0].numpy()
  print(f"SmolLM2-135M, 2 x 512 tokens, float32: one device vs transformers max |diff| {np.abs(one - ref).max():.2e}")
  for attention in ("allgather", "ring"):
    m = rsft.load_model(path, mesh=sharding.make_mesh(2, 1, 1, sequence=4), attention=attention)
    got = np.asarray(jax.block_until_ready(rsft.token_logprobs(m, ids)))
    print(
      f"data 2 x sequence 4, {attention:9s}: max |diff| vs one device {np.abs(got - one).max():.2e}, "
      f"vs transformers {np.abs(got - ref).max():.2e}"
    )


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--length", type=int, default=2048)
  parser.add_argument("--rows", type=int, default=2)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--smoke", action="store_true")
  parser.add_argument("--smollm2", action="store_true", help="the real model's log-probs on a sequence mesh")
  args = parser.parse_args()
  if args.smollm2:
    return smollm2()
  if args.smoke:
    args.length, args.steps = 256, 1
  import jax
  import ml_collections
  import torch
  import transformers

  import rsft
  from rsft import sharding
  from rsft.models import ModelConfig
  from rsft.train import optim
  from rsft.train.step import StepConfig, train_step

  arch = dict(
    model_type="qwen3",
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rope_theta=1e6,
    qk_norm=True,
    max_position_embeddings=4096,
  )
  cfg = ModelConfig.from_arch(arch)
  tc = ml_collections.ConfigDict(
    dict(
      lr=1e-3,
      warmup_ratio=0.0,
      schedule="constant",
      max_grad_norm=1.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.0,
      weight_decay_mask="kernels",
    )
  )
  tx = optim.make_optimizer(tc, 10)[0]
  batch = packed(args.rows, args.length)
  tokens = args.rows * args.length
  print(
    f"tiny Qwen3 (2 layers, hidden 64), float32, {args.rows} packed rows x {args.length} tokens, 8 fake CPU "
    f"devices; best of {args.steps}"
  )
  base = None
  layouts = [(1, "auto")] + [(s, a) for s in ((4,) if args.smoke else (2, 4, 8)) for a in ("allgather", "ring")]
  for sequence, attention in layouts + [(0, "auto")]:
    mesh = (
      sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
      if sequence == 0
      else sharding.make_mesh(1, -1, 1, sequence=sequence)
    )
    m = rsft.init_model(cfg, seed=0, mesh=mesh, attention=attention)
    step = jax.jit(functools.partial(train_step, m.graphdef, tx, StepConfig(loss_chunk=256, sequence=sequence)))
    place = sharding.batch_sharding(sharding.Rules(mesh), batch["inputs"].shape)
    data = {k: jax.device_put(v, place) for k, v in batch.items()}
    opt = jax.jit(tx.init)(m.params)
    compiled = step.lower(m.params, opt, data).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    _, _, out = compiled(m.params, opt, data)
    loss = float(out["loss"])
    best = float("inf")
    for _ in range(args.steps):
      start = time.perf_counter()
      jax.block_until_ready(compiled(m.params, opt, data))
      best = min(best, time.perf_counter() - start)
    base = base or (best, temp, loss)
    one_device = best  # the last layout
    name = (
      f"sequence {sequence} {attention:9s} (fsdp {8 // sequence})"
      if sequence > 1
      else "unsplit            (fsdp 8)"
      if sequence
      else "one device                 "
    )
    print(
      f"{name}: {1e3 * best:8.1f} ms/step, {tokens / best:8.0f} tok/s, ratio "
      f"to unsplit {base[0] / best:.2f}, temporary memory / device {temp / 2**20:7.1f} MiB "
      f"({temp / base[1]:.2f} of unsplit), |loss - unsplit| {abs(loss - base[2]):.1e}"
    )
  hf = transformers.Qwen3ForCausalLM(
    transformers.Qwen3Config(
      vocab_size=512,
      hidden_size=64,
      intermediate_size=128,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      head_dim=16,
      max_position_embeddings=4096,
      attn_implementation="sdpa",
    )
  )
  ids = torch.tensor(batch["inputs"], dtype=torch.long)
  position_ids = torch.tensor(batch["positions"], dtype=torch.long)
  best = float("inf")
  for _ in range(args.steps + 1):
    start = time.perf_counter()
    labels = torch.tensor(batch["targets"], dtype=torch.long)
    hf(input_ids=ids, position_ids=position_ids, labels=labels).loss.backward()
    best = min(best, time.perf_counter() - start)
  print(
    f"transformers forward + backward (position_ids packing, no optimizer): {1e3 * best:8.1f} ms/step, "
    f"{tokens / best:8.0f} tok/s; ratio rsft one device / transformers {best / one_device:.2f}"
  )


if __name__ == "__main__":
  main()
