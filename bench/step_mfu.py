"""Train-step MFU on the local accelerator: rsft's real train step vs a transformers/PyTorch step, same model.

  python bench/step_mfu.py --arch=qwen3_0.6b --batch=4 --seq=4096 [--steps=5] [--remat=full] [--no-torch]

Random weights of a study architecture (rsft/models/presets.py), bf16 compute, AdamW, full supervision. rsft:
`rsft.train.loop.build_step` (the jitted step train.py runs, with model.attention=auto: cuDNN flash on GPU,
splash on TPU) over all local devices (pure FSDP). Reference, in the same process on the same GPU: transformers'
Qwen3ForCausalLM (attn_implementation="sdpa", bf16 weights, torch.optim.AdamW, gradient checkpointing when
--remat is not none). MFU = tokens/s x (6·N + 6·L·H·Nq·T) / peak bf16 FLOP/s (the convention of
rsft.train.metrics). Prints one JSON line per system and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rsft_step(arch: str, batch: int, seq: int, steps: int, remat: str) -> dict:
  import jax

  from rsft import api, config as rconfig, sharding
  from rsft.models import presets
  from rsft.train import loop, metrics
  cfg = presets.get(arch)
  c = rconfig.base_config()
  c.model.dtype, c.model.param_dtype, c.model.remat = "bfloat16", "bfloat16", remat
  c.data.max_length = seq
  c.train.global_batch_size = c.train.micro_batch_size = batch
  mesh = sharding.make_mesh(1, -1, 1)
  parts = loop.build_step(c, cfg, mesh, total_steps=1000)
  params = api.init_model(cfg, seed=0, dtype="bfloat16", param_dtype="bfloat16", mesh=mesh, remat_policy=remat,
                          attention=c.model.attention).params
  opt_state = parts.init_opt(params)
  rng = np.random.default_rng(0)
  ids = rng.integers(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
  positions = np.tile(np.arange(seq, dtype=np.int32), (batch, 1))
  host = dict(inputs=ids[:, :-1], targets=ids[:, 1:], weights=np.ones((batch, seq), np.float32),
              segment_ids=np.ones((batch, seq), np.int32), positions=positions)
  b = {k: jax.device_put(v, parts.batch_sharding) for k, v in host.items()}
  params, opt_state, out = parts.jitted(params, opt_state, b)  # compile + warm-up
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    params, opt_state, out = parts.jitted(params, opt_state, b)
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / steps
  tokens_per_s = batch * seq / seconds
  peak = metrics.peak_flops()
  return dict(system="rsft", device=jax.devices()[0].device_kind, devices=jax.device_count(), arch=arch,
              batch=batch, seq=seq, remat=remat, step_s=seconds, tokens_per_s=tokens_per_s,
              mfu=tokens_per_s * metrics.flops_per_token(cfg, seq) / peak if peak else None,
              loss=float(out["loss"]))


def torch_step(arch: str, batch: int, seq: int, steps: int, remat: str) -> dict:
  import torch
  import transformers

  from rsft.models import presets
  from rsft.train import metrics
  cfg = presets.get(arch)
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
    loss = model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
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
  peak = metrics.chip_peak_flops(torch.cuda.get_device_name()) if device == "cuda" else None
  return dict(system="transformers", device=torch.cuda.get_device_name() if device == "cuda" else "cpu", arch=arch,
              batch=batch, seq=seq, remat=remat, step_s=seconds, tokens_per_s=tokens_per_s,
              mfu=tokens_per_s * metrics.flops_per_token(cfg, seq) / peak if peak else None, loss=float(loss.detach()))


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--arch", default="qwen3_0.6b")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=4096)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--remat", default="full")
  p.add_argument("--no-torch", dest="torch", action="store_false")
  a = p.parse_args(argv)
  ours = rsft_step(a.arch, a.batch, a.seq, a.steps, a.remat)
  print(json.dumps(ours), flush=True)
  if a.torch:
    ref = torch_step(a.arch, a.batch, a.seq, a.steps, a.remat)
    print(json.dumps(ref), flush=True)
    print(json.dumps({"rsft_over_transformers_tokens_per_s": ours["tokens_per_s"] / ref["tokens_per_s"]}))


if __name__ == "__main__":
  main(sys.argv[1:])
