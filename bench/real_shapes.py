"""A real model on real work: SmolLM2-135M-Instruct (python -m rsft.tools.models fetch), rsft beside transformers in
one process on the same device, float32.

  python bench/real_shapes.py                      # peak, decode 256:32 and 1024:64 on 64 IFEval prompts, SFT steps
  python bench/real_shapes.py --what=sft --sft=4x512,2x1024,8x256 --steps=2
  python bench/real_shapes.py --what=decode --decode=256:32,256:64 --prompts=128
  python bench/real_shapes.py --smoke              # a tiny random Llama, every path in seconds (ratios mean nothing)

peak: the device's float32 matmul rate (a 2048x2048 matmul under XLA, and under torch), the yardstick for the
shares below. decode: the IFEval prompts in the model's chat template, sampled as the study samples IFEval (T 0.6,
top-p 1.0) to a cap, stopping at <|im_end|>: rsft.generate with `slots` sequences in flight (continuous batching)
vs transformers.generate in static left-padded batches of `slots`. Useful tokens (up to the stop) per second,
their ratio, rsft's slot occupancy, and the model FLOPs (2 x parameters per token) as a share of the peak. Each
engine first runs the first `slots` prompts untimed (compiles, allocator). sft: one training step on `rows x
length` packed tokens: rsft's train_step (AdamW b2 0.95, wd 0.01, clip 1.0, token-mean loss through the chunked
head) vs a transformers forward + backward + torch AdamW step with the same settings; tokens/s after one untimed
step, the ratio, and 6 x parameters per token as a share of the peak. Writes bench/out/real_shapes.json (--out).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time

import numpy as np

from rsft.tools.benchtools import hf_generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")
STUDY_IFEVAL = dict(temperature=0.6, top_p=1.0)  # lm-eval's IFEval sampling in the study


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
  import jax
  import jax.numpy as jnp
  import torch

  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  xla = min(_seconds(lambda: f(a).block_until_ready()) for _ in range(repeats))
  t = torch.randn(n, n)
  torch_s = min(_seconds(lambda: t @ t) for _ in range(repeats))
  return {"xla_gflops": 2 * n**3 / xla / 1e9, "torch_gflops": 2 * n**3 / torch_s / 1e9}


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def model_and_prompts(smoke: bool, n: int):
  """(rsft model, transformers model, prompt id lists, stop ids, parameter count)."""
  import torch
  import transformers

  import rsft

  if smoke:
    from rsft.tools import tiny_models

    path = tempfile.mkdtemp()
    hf = tiny_models.build("llama", path)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(20, tiny_models.VOCAB, int(rng.integers(8, 41))).tolist() for _ in range(n)]
    stops = list(range(1, 9))
  else:
    from rsft.tools import models

    path = models.fetch("smollm2-135m-instruct")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    m = rsft.load_model(path)
    with open(os.path.join(BENCH, "ifeval.jsonl")) as f:
      rows = [json.loads(line) for line in f][:n]
    prompts = [
      list(
        m.tokenizer.apply_chat_template(
          [{"role": "user", "content": r["prompt"]}], tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
      )
      for r in rows
    ]
    return m, hf, prompts, list(m.stop_token_ids), sum(p.numel() for p in hf.parameters())
  return rsft.load_model(path), hf.eval(), prompts, stops, sum(p.numel() for p in hf.parameters())


def decode(m, hf, prompts, stops, cap: int, slots: int, params: int, peak: float) -> dict[str, float]:
  import torch

  import rsft

  def ours(batch):
    return rsft.generate(
      m, batch, cap, stop_token_ids=stops, seed=0, options=rsft.Options(max_num_seqs=slots), **STUDY_IFEVAL
    )

  def theirs(batch):
    lengths = []
    for row in hf_generate(
      hf,
      batch,
      slots,
      max_new_tokens=cap,
      do_sample=True,
      top_k=0,
      eos_token_id=stops,
      pad_token_id=stops[0],
      **STUDY_IFEVAL,
    ):
      stop = next((j for j, t in enumerate(row) if t in stops), None)
      lengths.append(len(row) if stop is None else stop + 1)
    return lengths

  ours(prompts[:slots])
  theirs(prompts[:slots])
  torch.manual_seed(0)
  start = time.perf_counter()
  res = ours(prompts)
  t_ours = time.perf_counter() - start
  start = time.perf_counter()
  their_lengths = theirs(prompts)
  t_theirs = time.perf_counter() - start
  mine = sum(len(t) for t in res.tokens)
  rate, their_rate = mine / t_ours, sum(their_lengths) / t_theirs
  return dict(
    cap=cap,
    slots=slots,
    prompts=len(prompts),
    rsft_tokens_per_s=rate,
    transformers_tokens_per_s=their_rate,
    ratio=rate / their_rate,
    rsft_mean_length=mine / len(prompts),
    transformers_mean_length=float(np.mean(their_lengths)),
    occupancy=mine / max(res.row_steps, 1),
    rsft_peak_share=2 * params * rate / 1e9 / peak,
    transformers_peak_share=2 * params * their_rate / 1e9 / peak,
  )


def sft_step(
  m, hf, rows: int, length: int, steps: int, params: int, peak: float, profile_parts: bool = False
) -> dict[str, float]:
  import jax
  import ml_collections
  import torch

  from rsft.train import optim
  from rsft.train.step import StepConfig, train_step

  vocab = m.config.vocab_size
  ids = np.random.default_rng(0).integers(0, vocab, (rows, length + 1)).astype(np.int32)
  batch = dict(
    inputs=ids[:, :-1],
    targets=ids[:, 1:],
    weights=np.ones((rows, length), np.float32),
    segment_ids=np.ones((rows, length), np.int32),
    positions=np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
  )
  settings = dict(
    lr=1e-4,
    warmup_ratio=0.0,
    schedule="constant",
    max_grad_norm=1.0,
    b1=0.9,
    b2=0.95,
    eps=1e-8,
    weight_decay=0.01,
    weight_decay_mask="all",
  )
  tx = optim.make_optimizer(ml_collections.ConfigDict(settings), steps + 1)[0]
  step = jax.jit(
    functools.partial(train_step, m.graphdef, tx, StepConfig(loss_chunk=min(length, 1024))), donate_argnums=(0, 1)
  )
  # committed to the device as the trainer's are: an uncommitted first call would compile the step a second time
  device = jax.devices()[0]
  params_ = jax.device_put(jax.tree.map(lambda x: x.copy(), m.params), device)
  opt = jax.device_put(jax.jit(tx.init)(params_), device)
  params_, opt, out = step(params_, opt, batch)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    params_, opt, out = step(params_, opt, batch)
  jax.block_until_ready(out)
  t_ours = (time.perf_counter() - start) / steps

  model = hf.train()
  torch_opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
  inputs, targets = torch.tensor(ids[:, :-1], dtype=torch.long), torch.tensor(ids[:, 1:], dtype=torch.long)

  def torch_step():
    torch_opt.zero_grad(set_to_none=True)
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch_opt.step()

  torch_step()
  start = time.perf_counter()
  for _ in range(steps):
    torch_step()
  t_theirs = (time.perf_counter() - start) / steps
  profile = _profile(m, tx, params_, batch, length, model, torch_opt, inputs, targets) if profile_parts else None
  hf.eval()
  tokens = rows * length
  return dict(
    profile=profile,
    rows=rows,
    length=length,
    rsft_tokens_per_s=tokens / t_ours,
    transformers_tokens_per_s=tokens / t_theirs,
    ratio=t_theirs / t_ours,
    rsft_seconds=t_ours,
    transformers_seconds=t_theirs,
    rsft_peak_share=6 * params * tokens / t_ours / 1e9 / peak,
    transformers_peak_share=6 * params * tokens / t_theirs / 1e9 / peak,
  )


def _profile(m, tx, params, batch, length, model, torch_opt, inputs, targets) -> dict[str, dict[str, float]]:
  """Where a step's time goes, seconds per part, each side timed part by part after a warm-up call: the loss
  forward alone, forward + backward (value_and_grad / loss.backward()), and the optimizer update alone."""
  import jax
  import jax.numpy as jnp
  import optax
  import torch

  from rsft.train.loss import token_scales
  from rsft.train.step import _micro_loss

  mb = dict(batch, scale=token_scales(jnp.asarray(batch["weights"]), "token_mean", 1, 1))
  chunk = min(length, 1024)
  fwd = jax.jit(lambda p: _micro_loss(p, m.graphdef, mb, chunk)[0])
  grad = jax.jit(lambda p: jax.value_and_grad(_micro_loss, has_aux=True)(p, m.graphdef, mb, chunk)[1])
  opt_state = jax.jit(tx.init)(params)
  update = jax.jit(lambda g, o, p: optax.apply_updates(p, tx.update(g, o, p)[0]))

  def best(fn, repeats=2):
    fn()
    return min(_seconds(fn) for _ in range(repeats))

  grads = grad(params)
  ours = dict(
    forward=best(lambda: jax.block_until_ready(fwd(params))),
    forward_backward=best(lambda: jax.block_until_ready(grad(params))),
    optimizer=best(lambda: jax.block_until_ready(update(grads, opt_state, params))),
  )

  def loss():
    logits = model(input_ids=inputs).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))

  def forward_backward():
    torch_opt.zero_grad(set_to_none=True)
    loss().backward()

  def optimizer():
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch_opt.step()

  with torch.no_grad():
    torch_forward = best(loss)
  theirs = dict(forward_no_grad=torch_forward, forward_backward=best(forward_backward))
  theirs["optimizer"] = best(optimizer)
  return dict(rsft=ours, transformers=theirs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--what", default="peak,decode,sft")
  parser.add_argument("--decode", default="256:32,1024:64", help="cap:slots pairs")
  parser.add_argument("--prompts", type=int, default=64)
  parser.add_argument("--sft", default="4x512,2x1024,8x256", help="rows x length shapes of one step")
  parser.add_argument("--steps", type=int, default=2, help="timed SFT steps per side")
  parser.add_argument("--profile", default="4x512", help="SFT shapes also timed part by part ('' = none)")
  parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "real_shapes.json"))
  parser.add_argument("--smoke", action="store_true", help="tiny random Llama; decode 16:2 on 4 prompts; sft 1x32")
  args = parser.parse_args()
  if args.smoke:
    args.decode, args.prompts, args.sft, args.steps, args.profile = "16:2", 4, "1x32", 1, "1x32"
    args.out = os.path.join(tempfile.mkdtemp(), "real_shapes.json")
  import jax

  what = args.what.split(",")
  report = dict(
    device=str(jax.devices()[0].device_kind),
    platform=jax.default_backend(),
    model="tiny random llama" if args.smoke else "SmolLM2-135M-Instruct (Q4_1 GGUF, float32)",
  )
  report["peak"] = matmul_peak(512 if args.smoke else 2048)
  peak = report["peak"]["xla_gflops"]
  print(
    f"{report['model']} on {report['device']}; float32 matmul peak: XLA {peak:.0f} GFLOP/s, torch "
    f"{report['peak']['torch_gflops']:.0f} GFLOP/s"
  )
  m, hf, prompts, stops, params = model_and_prompts(args.smoke, args.prompts)
  if "decode" in what:
    report["decode"] = []
    for spec in args.decode.split(","):
      cap, slots = map(int, spec.split(":"))
      r = decode(m, hf, prompts, stops, cap, slots, params, peak)
      report["decode"].append(r)
      print(
        f"decode cap {cap} slots {slots}, {r['prompts']} prompts: rsft {r['rsft_tokens_per_s']:.0f} tok/s "
        f"(mean {r['rsft_mean_length']:.0f} tokens, occupancy {r['occupancy']:.2f}, {100 * r['rsft_peak_share']:.1f}% "
        f"of peak), transformers {r['transformers_tokens_per_s']:.0f} tok/s (mean {r['transformers_mean_length']:.0f}, "
        f"{100 * r['transformers_peak_share']:.1f}%); ratio rsft / transformers {r['ratio']:.2f}",
        flush=True,
      )
  if "sft" in what:
    report["sft"] = []
    for spec in args.sft.split(","):
      rows, length = map(int, spec.split("x"))
      r = sft_step(m, hf, rows, length, args.steps, params, peak, spec in args.profile.split(","))
      report["sft"].append(r)
      print(
        f"sft step {rows}x{length}: rsft {r['rsft_seconds']:.2f} s ({r['rsft_tokens_per_s']:.0f} tok/s, "
        f"{100 * r['rsft_peak_share']:.0f}% of peak), transformers {r['transformers_seconds']:.2f} s "
        f"({r['transformers_tokens_per_s']:.0f} tok/s, {100 * r['transformers_peak_share']:.0f}%); ratio rsft / "
        f"transformers {r['ratio']:.2f}",
        flush=True,
      )
      if r["profile"]:
        parts = lambda side: ", ".join(f"{k} {v:.2f} s" for k, v in r["profile"][side].items())
        print(f"  where the time goes: rsft {parts('rsft')}; transformers {parts('transformers')}", flush=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
