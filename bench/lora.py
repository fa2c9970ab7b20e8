"""LoRA vs full fine-tuning: trainable parameters, optimizer state, compiled memory and step time, rsft beside a
PyTorch loop doing the same (a transformers Qwen3 with frozen weights and hand-written adapters), in one run.

  python bench/lora.py [--shapes=tiny,small] [--ranks=8,64] [--batch=4] [--seq=256] [--steps=5]
  python bench/lora.py --smollm2      # also SmolLM2-135M-Instruct's real weights: adapted vs merged log-probs
  python bench/lora.py --smoke        # tiny shape, rank 8, 1 x 32 tokens, 1 step

rsft rows run the train path itself (rsft.train.loop.build_step with ModelSetup(lora=...)): float32, AdamW,
remat none, adapters on all seven projections, alpha = 2 x rank. "opt state" is the optimizer state's bytes;
"memory" is XLA's compiled arguments + temporaries of one step. The PyTorch rows freeze every weight and wrap the
same seven nn.Linear modules as y = W x + s B A x (A random, B zero), AdamW over the adapters only. tokens/s
after one untimed warm-up step; ratios are LoRA / full within each framework and rsft / PyTorch per mode.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SHAPES = {
  "tiny": dict(vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4),
  "small": dict(vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def hf_arch(shape: str) -> dict:
  s = SHAPES[shape]
  return dict(
    s,
    num_key_value_heads=s["num_attention_heads"] // 2,
    head_dim=64,
    rope_theta=1e6,
    tie_word_embeddings=False,
    max_position_embeddings=8192,
  )


def batch(vocab: int, rows: int, seq: int) -> dict[str, np.ndarray]:
  ids = np.random.default_rng(0).integers(0, vocab, (rows, seq + 1)).astype(np.int32)
  return dict(
    inputs=ids[:, :-1],
    targets=ids[:, 1:],
    weights=np.ones((rows, seq), np.float32),
    segment_ids=np.ones((rows, seq), np.int32),
    positions=np.tile(np.arange(seq, dtype=np.int32), (rows, 1)),
  )


def rsft_row(cfg, rank: int, rows: int, seq: int, steps: int, base_params=None) -> dict:
  """One configuration through the real train path: sizes, compiled memory, tokens/s."""
  import jax

  from rsft import config as rconfig
  from rsft.models.lora import LoRA
  from rsft.models.model import init_adapters, init_model
  from rsft.train import loop

  train = rconfig.base_config().train
  train.update(global_batch_size=rows, micro_batch_size=rows, lr=1e-4, warmup_ratio=0.0, schedule="constant")
  lora = LoRA(rank, 2.0 * rank) if rank else None
  setup = loop.ModelSetup("float32", "float32", "none", "xla", lora)
  parts = loop.build_step(cfg, setup, train, seq, None, steps + 1)
  base = base_params if base_params is not None else init_model(cfg, seed=0).params
  if lora is None:  # the step donates what trains: keep the caller's weights
    params, frozen = jax.tree.map(lambda x: x.copy(), base), None
  else:
    params, frozen = init_adapters(cfg, lora, seed=1)[1], base
  opt_state = parts.init_opt(params)
  b = batch(cfg.vocab_size, rows, seq)
  memory = parts.jitted.lower(params, opt_state, b, frozen).compile().memory_analysis()
  nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
  row = dict(
    trainable=sum(x.size for x in jax.tree.leaves(params)),
    opt_bytes=nbytes(opt_state),
    memory=memory.argument_size_in_bytes + memory.temp_size_in_bytes,
  )
  for _ in range(2):  # compile + warm-up; twice: without a mesh the first call's inputs are uncommitted arrays and
    params, opt_state, out = parts.jitted(params, opt_state, b, frozen)  # its committed outputs compile once more
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, out = parts.jitted(params, opt_state, b, frozen)
  jax.block_until_ready(out)
  row["tokens_s"] = rows * seq * steps / (time.perf_counter() - start)
  row["params"], row["frozen"] = params, frozen
  return row


def torch_row(arch: dict, rank: int, rows: int, seq: int, steps: int) -> dict:
  import torch
  import transformers

  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(transformers.Qwen3Config(**arch)).float().train()
  if rank:
    for p in model.parameters():
      p.requires_grad_(False)
    for layer in model.model.layers:
      for parent in (layer.self_attn, layer.mlp):
        for name in TARGETS:
          if hasattr(parent, name):
            setattr(parent, name, _LoRALinear(getattr(parent, name), rank, 2.0 * rank))
  trainable = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
  ids = torch.tensor(np.random.default_rng(0).integers(0, arch["vocab_size"], (rows, seq + 1)))

  def one():
    opt.zero_grad(set_to_none=True)
    logits = model(input_ids=ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()

  one()
  start = time.perf_counter()
  for _ in range(steps):
    one()
  elapsed = time.perf_counter() - start
  opt_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
  return dict(trainable=sum(p.numel() for p in trainable), opt_bytes=opt_bytes, tokens_s=rows * seq * steps / elapsed)


class _LoRALinear:
  """Built lazily (torch imported only in torch_row)."""

  def __new__(cls, base, rank: int, alpha: float):
    import torch

    class LoRALinear(torch.nn.Module):
      def __init__(self):
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

      def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.a.T) @ self.b.T)

    return LoRALinear()


def smollm2_check(steps: int) -> None:
  """Real weights: a few LoRA steps on SmolLM2-135M-Instruct, then the adapted forward vs the merged model's."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  import rsft
  from rsft.models import forward
  from rsft.models.lora import LoRA
  from rsft.models.model import abstract_model, merge_adapters
  from rsft.tools import models as fetched

  if not fetched.is_fetched("smollm2-135m-instruct"):
    print("SmolLM2-135M-Instruct is not fetched (python -m rsft.tools.models fetch smollm2-135m-instruct): skipped")
    return
  m = rsft.load_model(fetched.checkpoint_dir("smollm2-135m-instruct"))
  cfg, rows, seq = m.config, 2, 128
  full = rsft_row(cfg, 0, rows, seq, steps, m.params)
  row = rsft_row(cfg, 16, rows, seq, steps, m.params)
  lora = LoRA(16, 32.0)
  graphdef = abstract_model(cfg, lora=lora)[0]
  b = batch(cfg.vocab_size, rows, seq)
  args = (b["inputs"], b["positions"], b["segment_ids"], b["targets"], 128)
  adapted = forward.logprobs(graphdef, nnx.merge_state(row["frozen"], row["params"]), *args)
  merged_model = merge_adapters(m, lora, row["params"])
  merged = forward.logprobs(merged_model.graphdef, merged_model.params, *args)
  base = forward.logprobs(m.graphdef, m.params, *args)
  print(
    f"SmolLM2-135M-Instruct, batch {rows} x {seq}, float32, LoRA r16 on all projections after {steps + 1} steps: "
    f"trainable {row['trainable'] / 1e6:.2f}M of {full['trainable'] / 1e6:.1f}M; tokens/s LoRA {row['tokens_s']:.0f}, "
    f"full {full['tokens_s']:.0f} (ratio {row['tokens_s'] / full['tokens_s']:.2f}); max |adapted - merged| log-prob "
    f"{float(jnp.abs(adapted - merged).max()):.2e}, max |adapted - base| {float(jnp.abs(adapted - base).max()):.2e}"
  )
  jax.clear_caches()


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--shapes", default="tiny,small")
  parser.add_argument("--ranks", default="8,64")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--smollm2", action="store_true")
  parser.add_argument("--smoke", action="store_true")
  args = parser.parse_args()
  if args.smoke:
    args.shapes, args.ranks, args.batch, args.seq, args.steps = "tiny", "8", 1, 32, 1
  import jax

  from rsft.models import ModelConfig

  print(f"device: {jax.devices()[0].device_kind}; batch {args.batch} x {args.seq}, float32, {args.steps} timed steps")
  for shape in args.shapes.split(","):
    arch = hf_arch(shape)
    cfg = ModelConfig.from_hf_dict(dict(arch, model_type="qwen3", architectures=["Qwen3ForCausalLM"]))
    print(
      f"{shape}: {arch['num_hidden_layers']}L d{arch['hidden_size']} F{arch['intermediate_size']} V{arch['vocab_size']}"
    )
    ours_full, theirs_full = (
      rsft_row(cfg, 0, args.batch, args.seq, args.steps),
      torch_row(arch, 0, args.batch, args.seq, args.steps),
    )
    for rank in [0] + [int(r) for r in args.ranks.split(",")]:
      ours = ours_full if rank == 0 else rsft_row(cfg, rank, args.batch, args.seq, args.steps)
      theirs = theirs_full if rank == 0 else torch_row(arch, rank, args.batch, args.seq, args.steps)
      name = "full" if rank == 0 else f"LoRA r{rank}"
      print(
        f"  {name:9s} trainable {ours['trainable'] / 1e6:7.3f}M (torch {theirs['trainable'] / 1e6:7.3f}M)  "
        f"opt state {ours['opt_bytes'] / 2**20:7.2f} MiB (torch {theirs['opt_bytes'] / 2**20:7.2f})  "
        f"memory {ours['memory'] / 2**20:7.1f} MiB ({ours['memory'] / ours_full['memory']:.2f} of full)  "
        f"rsft {ours['tokens_s']:8.0f} tok/s ({ours['tokens_s'] / ours_full['tokens_s']:.2f} of full)  "
        f"torch {theirs['tokens_s']:8.0f} tok/s ({theirs['tokens_s'] / theirs_full['tokens_s']:.2f} of full)  "
        f"rsft / torch {ours['tokens_s'] / theirs['tokens_s']:.2f}"
      )
  if args.smollm2:
    smollm2_check(args.steps)


if __name__ == "__main__":
  main()
