"""The smallest TPU slice of each generation that fits each study model at 20,000 tokens (docs/fit.md).

  python bench/fit_table.py --out=bench/out/fit_table.json [--models=qwen3_14b] [--families=v6e]

For each model (configs/paper.py's run, the study's settings: bf16 params and AdamW state, batch 256) and TPU
generation, slices are tried smallest first; on each, remat=full and then remat=offload (layer inputs in host
memory), with one 20,000-token row per chip per micro-batch (micro_batch_size = chips, gradient accumulation up
to 256 rows). The first that rsft.tools.fit says fits is the answer. Results are cached in --out (rerun resumes).
Compiling happens on this CPU machine with libtpu; a 14B train step takes about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from rsft import config as rconfig  # noqa: E402
from rsft.tools import fit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("qwen3_1.7b", "qwen3_4b", "qwen3_8b", "qwen3_14b")
SIZES = {"v5p": (8, 16, 32, 64, 128), "v4": (8, 16, 32, 64, 128), "v5e": (1, 4, 8, 16, 32, 64, 128, 256),
         "v6e": (1, 4, 8, 16, 32, 64, 128)}
REMATS = ("full", "offload")


def config_for(model: str, chips: int, remat: str):
  c = rconfig.load_config_file(os.path.join(ROOT, "configs", "paper.py"), f"model={model}")
  c.train.micro_batch_size = min(chips, c.train.global_batch_size)
  c.model.remat = remat
  return c


def lower_bound(model: str, chips: int) -> float:
  """Bytes per chip no layout avoids: bf16 params, AdamW mu and nu, the float32 gradient accumulator."""
  from rsft.models import presets
  from rsft.train import metrics
  return metrics.param_count(presets.get(model)) * (2 + 2 + 2 + 4) / chips


def markdown(results: dict) -> str:
  lines = ["| model | generation | smallest slice that fits | remat | per chip: state + temporaries / HBM | host "
           "memory per chip | step at 40% MFU | tried |", "|" + "---|" * 8]
  order = lambda key: (MODELS.index(key.split("/")[0]), list(SIZES).index(key.split("/")[1]))
  for key, r in sorted(results.items(), key=lambda kv: order(kv[0])):
    model, family = key.split("/")
    tried = ", ".join(f"{t['slice']}" + (f" {t['remat']} {t['total_gib']:.1f}" if "remat" in t else " (state)")
                      for t in r["tried"] if not t["fits"])
    f = r["fits"]
    if not f:
      lines.append(f"| {model} | {family} | none up to {r['tried'][-1]['slice']} | | | | | {tried} |")
      continue
    lines.append(f"| {model} | {family} | **{f['slice']}** | {f['remat']} | {f['arguments_gib']:.1f} + "
                 f"{f['temporaries_gib']:.1f} = {f['total_gib']:.1f} / {f['hbm_gib']:.2f} GiB | "
                 f"{f['host_gib']:.1f} GiB | {f['step_s_at_40_mfu']:.0f} s | {tried or '-'} |")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "fit_table.json"))
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--families", default=",".join(SIZES))
  p.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
  args = p.parse_args(argv)
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
          [r] = fit.run(config_for(model, chips, remat), name, what="train", arch=model)
          tried.append(dict(slice=name, remat=remat, fits=r.fits, total_gib=r.total / fit.GIB,
                            temporaries_gib=r.temporaries / fit.GIB, arguments_gib=r.arguments / fit.GIB,
                            host_gib=r.host_temporaries / fit.GIB, hbm_gib=r.hbm / fit.GIB,
                            step_s_at_40_mfu=r.seconds_at_mfu(0.4) if r.model_flops_per_chip else None,
                            compile_s=time.time() - t0))
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


if __name__ == "__main__":
  main(sys.argv[1:])
