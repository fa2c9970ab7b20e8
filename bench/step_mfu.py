"""Train-step MFU on the local accelerator: rsft's real train step vs a transformers/PyTorch step, same model.

  python bench/step_mfu.py --arch=qwen3_0.6b --batch=4 --seq=4096 [--steps=5] [--remat=full] [--no-torch]
  python bench/step_mfu.py --smoke         # a 2-layer model, 1 step of 2 x 32 tokens on --devices: seconds

Random weights of a study architecture (rsft/models/presets.py), bf16 compute, AdamW, full supervision. rsft:
`rsft.train.loop.build_step` (the jitted step train.py runs, with model.attention=auto: cuDNN flash on GPU,
splash on TPU) on --devices local devices (default 1, as the reference; more = pure FSDP over them, and the
ratio is then per device). Reference, in the same process on one GPU: transformers' Qwen3ForCausalLM
(attn_implementation="sdpa", bf16 weights, torch.optim.AdamW, gradient checkpointing when --remat is not none).
Each side runs one untimed step (rsft's compile) before --steps timed ones. MFU = tokens/s x (6·N + 6·L·H·Nq·T) /
peak bf16 FLOP/s of the chips used (rsft/hardware.py; the convention of rsft.train.metrics). Prints one JSON line
per system and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

# --smoke: the layout of Qwen3 (q/k-norm, GQA 2:1, untied head) at a size that compiles in seconds on a CPU.
SMOKE = dict(
  model_type="qwen3",
  vocab_size=512,
  hidden_size=64,
  intermediate_size=128,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=32,
  rope_theta=1e6,
  qk_norm=True,
)


def architecture(arch: str):
  from rsft.models import ModelConfig, presets

  return ModelConfig(**SMOKE) if arch == "smoke" else presets.get(arch)


def rsft_step(arch: str, batch: int, seq: int, steps: int, remat: str, devices: int) -> dict:
  import jax

  import rsft
  from rsft import config as rconfig
  from rsft import hardware, sharding
  from rsft.train import loop, metrics

  cfg = architecture(arch)
  c = rconfig.base_config()
  c.model.dtype, c.model.param_dtype, c.model.remat = "bfloat16", "bfloat16", remat
  c.data.max_length = seq
  c.train.global_batch_size = c.train.micro_batch_size = batch
  used = jax.local_devices()[:devices] if devices else jax.local_devices()
  mesh = sharding.make_mesh(1, -1, 1, devices=used)
  parts = loop.build_step(cfg, loop.ModelSetup.of(c), c.train, seq, mesh, total_steps=1000)
  params = rsft.init_model(
    cfg, seed=0, dtype="bfloat16", param_dtype="bfloat16", mesh=mesh, remat_policy=remat, attention=c.model.attention
  ).params
  opt_state = parts.init_opt(params)
  rng = np.random.default_rng(0)
  ids = rng.integers(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
  positions = np.tile(np.arange(seq, dtype=np.int32), (batch, 1))
  host = dict(
    inputs=ids[:, :-1],
    targets=ids[:, 1:],
    weights=np.ones((batch, seq), np.float32),
    segment_ids=np.ones((batch, seq), np.int32),
    positions=positions,
  )
  b = {k: jax.device_put(v, parts.batch_sharding) for k, v in host.items()}
  params, opt_state, out = parts.jitted(params, opt_state, b)  # compile + warm-up
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, out = parts.jitted(params, opt_state, b)
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / steps
  tokens_per_s = batch * seq / seconds
  per_chip = hardware.peak_flops(used[0].device_kind)
  peak = per_chip * len(used) if per_chip else None
  return dict(
    system="rsft",
    device=used[0].device_kind,
    devices=len(used),
    arch=arch,
    batch=batch,
    seq=seq,
    remat=remat,
    step_s=seconds,
    tokens_per_s=tokens_per_s,
    mfu=tokens_per_s * metrics.flops_per_token(cfg, seq) / peak if peak else None,
    loss=float(out["loss"]),
  )


def torch_step(arch: str, batch: int, seq: int, steps: int, remat: str) -> dict:
  import torch
  import transformers

  from rsft import hardware
  from rsft.train import metrics

  cfg = architecture(arch)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  hf = transformers.Qwen3Config(**{k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures",)})
  torch.manual_seed(0)
  model = transformers.Qwen3ForCausalLM._from_config(hf, attn_implementation="sdpa", torch_dtype=torch.bfloat16)
  model.to(device).train()
  if remat != "none":
    model.gradient_checkpointing_enable()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
  ids = torch.from_numpy(np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq + 1))).to(device)

  def one():
    # Every one of the seq targets supervised, as in rsft's batch (HF's `labels=` shift would drop the last one).
    logits = model(input_ids=ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

  one()
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  sync()
  start = time.perf_counter()
  for _ in range(steps):
    loss = one()
  sync()
  seconds = (time.perf_counter() - start) / steps
  tokens_per_s = batch * seq / seconds
  name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
  peak = hardware.peak_flops(name)
  return dict(
    system="transformers",
    device=name,
    devices=1,
    arch=arch,
    batch=batch,
    seq=seq,
    remat=remat,
    step_s=seconds,
    tokens_per_s=tokens_per_s,
    mfu=tokens_per_s * metrics.flops_per_token(cfg, seq) / peak if peak else None,
    loss=float(loss.detach()),
  )


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--arch", default="qwen3_0.6b")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=4096)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--remat", default="full")
  p.add_argument("--devices", type=int, default=1, help="local devices rsft runs on (0 = all)")
  p.add_argument("--no-torch", dest="torch", action="store_false")
  p.add_argument("--smoke", action="store_true", help="--arch=smoke (2 layers), 1 step of 2 x 32 tokens")
  a = p.parse_args(argv)
  if a.smoke:
    a.arch, a.batch, a.seq, a.steps = "smoke", 2, 32, 1
  ours = rsft_step(a.arch, a.batch, a.seq, a.steps, a.remat, a.devices)
  print(json.dumps(ours), flush=True)
  if a.torch:
    ref = torch_step(a.arch, a.batch, a.seq, a.steps, a.remat)
    print(json.dumps(ref), flush=True)
    per_device = ours["tokens_per_s"] / ours["devices"]
    print(
      json.dumps(
        {
          "rsft_over_transformers_tokens_per_s_per_device": per_device / ref["tokens_per_s"],
          "rsft_devices": ours["devices"],
          "transformers_devices": 1,
        }
      )
    )


if __name__ == "__main__":
  main(sys.argv[1:])
