"""The smallest TPU slice of each generation that fits each study model at 20,000 tokens (docs/fit.md).

  python bench/fit_table.py --out=bench/out/fit_table.json [--models=qwen3_14b] [--families=v6e]
  python bench/fit_table.py --smoke     # a 2-layer model, 8 x 256 tokens, on v5e-1, written to a temp dir: seconds

For each model (configs/paper.py's run, the study's settings: bf16 params and AdamW state, batch 256) and TPU
generation, slices are tried smallest first; on each, remat=full and then remat=offload (layer inputs in host
memory), with one 20,000-token row per chip per micro-batch (micro_batch_size = chips, gradient accumulation up
to 256 rows). The first that rsft.tools.fit says fits is the answer. Results are cached in --out (rerun resumes).
Compiling happens on this CPU machine with libtpu; a 14B train step takes about two minutes on two cores.
A capacity table, not a race: there is no reference implementation to compare against; each row compares the
compiled plan per chip with the chip's usable HBM (rsft/hardware.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from rsft import config as rconfig  # noqa: E402
from rsft.tools import fit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("qwen3_1.7b", "qwen3_4b", "qwen3_8b", "qwen3_14b")
SIZES = {
  "v5p": (8, 16, 32, 64, 128),
  "v4": (8, 16, 32, 64, 128),
  "v5e": (1, 4, 8, 16, 32, 64, 128, 256),
  "v6e": (1, 4, 8, 16, 32, 64, 128),
}
REMATS = ["full", "offload"]
# --smoke: the study's run settings on a 2-layer Qwen3, 8 rows x 256 tokens a step, v5e-1, remat=full.
SMOKE = dict(
  model_type="qwen3",
  vocab_size=1024,
  hidden_size=256,
  intermediate_size=512,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=64,
  qk_norm=True,
  rope_theta=1e6,
  tie_word_embeddings=True,
)


def config_for(model: str, chips: int, remat: str):
  c = rconfig.load_config_file(
    os.path.join(ROOT, "configs", "paper.py"), "model=" + ("qwen3_1.7b" if model == "smoke" else model)
  )
  if model == "smoke":  # 8 rows a step (verl aggregation: 8 ranks x 1 row), in micro-batches as below
    c.model.path, c.model.arch, c.data.max_length, c.train.global_batch_size = None, SMOKE, 256, 8
    c.train.verl_rows_per_micro = 1
  c.train.micro_batch_size = min(chips, c.train.global_batch_size)
  c.model.remat = remat
  return c


def architecture(model: str):
  from rsft.models import ModelConfig, presets

  return ModelConfig(**SMOKE) if model == "smoke" else presets.get(model)


def lower_bound(model: str, chips: int) -> float:
  """Bytes per chip no layout avoids: bf16 params, AdamW mu and nu, the float32 gradient accumulator."""
  from rsft.train import metrics

  return metrics.param_count(architecture(model)) * (2 + 2 + 2 + 4) / chips


def markdown(results: dict) -> str:
  lines = [
    "| model | generation | smallest slice that fits | remat | per chip: state + temporaries / HBM | host "
    "memory per chip | step at 40% MFU | tried |",
    "|" + "---|" * 8,
  ]
  models = list(MODELS) + sorted({k.split("/")[0] for k in results} - set(MODELS))
  order = lambda key: (models.index(key.split("/")[0]), list(SIZES).index(key.split("/")[1]))
  for key, r in sorted(results.items(), key=lambda kv: order(kv[0])):
    model, family = key.split("/")
    tried = ", ".join(
      f"{t['slice']}" + (f" {t['remat']} {t['total_gib']:.1f}" if "remat" in t else " (state)")
      for t in r["tried"]
      if not t["fits"]
    )
    f = r["fits"]
    if not f:
      lines.append(f"| {model} | {family} | none up to {r['tried'][-1]['slice']} | | | | | {tried} |")
      continue
    lines.append(
      f"| {model} | {family} | **{f['slice']}** | {f['remat']} | {f['arguments_gib']:.1f} + "
      f"{f['temporaries_gib']:.1f} = {f['total_gib']:.1f} / {f['hbm_gib']:.2f} GiB | "
      f"{f['host_gib']:.1f} GiB | {f['step_s_at_40_mfu']:.0f} s | {tried or '-'} |"
    )
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "fit_table.json"))
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--families", default=",".join(SIZES))
  p.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
  p.add_argument("--smoke", action="store_true", help="a 2-layer model on v5e-1 with remat=full, into a temp dir")
  args = p.parse_args(argv)
  tmp = None
  if args.smoke:
    try:
      import libtpu  # noqa: F401
    except ImportError:
      print("skipped: bench/fit_table.py compiles with libtpu's TPU compiler; install jax[tpu] (no TPU needed)")
      return
    tmp = tempfile.TemporaryDirectory()
    args.out, args.models, args.families = os.path.join(tmp.name, "fit_table.json"), "smoke", "v5e"
    SIZES["v5e"], REMATS[:] = (1,), ["full"]
  results = json.load(open(args.out)) if os.path.exists(args.out) else {}
  if args.markdown:
    print(markdown(results))
    return
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  for model in args.models.split(","):
    for family in args.families.split(","):
      key = f"{model}/{family}"
      if key in results and results[key].get("done"):
        continue
      tried = []
      found = None
      for count in SIZES[family]:
        name = f"{family}-{count}"
        chips = fit.parse_slice(name).chips
        floor = lower_bound(model, chips)
        if floor > fit.CHIPS[family].hbm_gib * fit.GIB:
          tried.append(dict(slice=name, fits=False, skipped=f"state alone needs {floor / fit.GIB:.1f} GiB per chip"))
          print(key, tried[-1], flush=True)
          continue
        for remat in REMATS:
          t0 = time.time()
          [r] = fit.run(config_for(model, chips, remat), name, what="train", arch=None if model == "smoke" else model)
          tried.append(
            dict(
              slice=name,
              remat=remat,
              fits=r.fits,
              total_gib=r.total / fit.GIB,
              temporaries_gib=r.temporaries / fit.GIB,
              arguments_gib=r.arguments / fit.GIB,
              host_gib=r.host_temporaries / fit.GIB,
              hbm_gib=r.hbm / fit.GIB,
              step_s_at_40_mfu=r.seconds_at_mfu(0.4) if r.model_flops_per_chip else None,
              compile_s=time.time() - t0,
            )
          )
          print(key, tried[-1], flush=True)
          if r.fits:
            found = tried[-1]
            break
        if found:
          break
      results[key] = dict(done=True, fits=found, tried=tried)
      with open(args.out + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
      os.replace(args.out + ".tmp", args.out)
  print(markdown(results))
  if tmp:
    tmp.cleanup()


if __name__ == "__main__":
  main(sys.argv[1:])
