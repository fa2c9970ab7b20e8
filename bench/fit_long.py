"""Chips needed for Qwen3-14B at 16k, 32k and 64k tokens per row, with and without the sequence axis (docs/fit.md).

  python bench/fit_long.py [--out=bench/out/fit_long.json] [--lengths=32768] [--families=v6e] [--markdown]
  python bench/fit_long.py --smoke   # a 2-layer model, 1,024-token rows, v5e-4, into a temp dir: seconds

configs/qwen14b_verified.py as the headline run trains (bf16 weights and AdamW, verl loss, remat=offload), one
row per data-parallel chip per micro-batch, fsdp over the rest of the slice. For each row length and TPU
generation, slices are tried smallest first: once with mesh.sequence=1 (a whole row per chip) and once with the
smallest sequence axis that fits (2, then 4; ring attention), each slice compiled by rsft.tools.fit with
libtpu's compiler on this CPU. Results are cached in --out (a rerun resumes); a 14B compile takes 3-4 minutes
on two cores. A capacity table: each row compares the compiled plan per chip with the chip's usable HBM.
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
SIZES = {"v5p": (8, 16, 32), "v6e": (8, 16, 32, 64)}
LENGTHS = (16384, 32768, 65536)
SEQUENCE = [2, 4]
ARCH = "qwen3_14b"
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


def config_for(length: int, sequence: int):
  c = rconfig.load_config_file(os.path.join(ROOT, "configs", "qwen14b_verified.py"))
  c.data.max_length = length
  c.mesh.update(fsdp=-1, sequence=sequence, sequence_attention="ring")
  c.train.micro_batch_size = 0
  if ARCH == "smoke":
    c.model.path, c.model.arch, c.train.global_batch_size, c.train.verl_rows_per_micro = None, SMOKE, 8, 1
  return rconfig.validate(c)


def compile_one(name: str, length: int, sequence: int) -> dict:
  t0 = time.time()
  [r] = fit.run(config_for(length, sequence), name, what="train", arch=None if ARCH == "smoke" else ARCH)
  return dict(
    slice=name,
    sequence=sequence,
    fits=r.fits,
    total_gib=r.total / fit.GIB,
    hbm_gib=r.hbm / fit.GIB,
    temporaries_gib=r.temporaries / fit.GIB,
    arguments_gib=r.arguments / fit.GIB,
    host_gib=r.host_temporaries / fit.GIB,
    compile_s=time.time() - t0,
  )


def search(results: dict, out: str, length: int, family: str, axis: bool) -> None:
  key = f"{family}/{length}/{'sequence' if axis else 'whole rows'}"
  if results.get(key, {}).get("done"):
    return
  tried, found = [], None
  for count in SIZES[family]:
    name = f"{family}-{count}"
    for sequence in SEQUENCE if axis else (1,):
      if fit.parse_slice(name).chips % sequence or fit.parse_slice(name).chips == sequence:
        continue  # the axis must divide the slice and leave fsdp room
      tried.append(compile_one(name, length, sequence))
      print(key, tried[-1], flush=True)
      if tried[-1]["fits"]:
        found = tried[-1]
        break
    if found:
      break
  results[key] = dict(done=True, fits=found, tried=tried)
  with open(out + ".tmp", "w") as f:
    json.dump(results, f, indent=1)
  os.replace(out + ".tmp", out)


def markdown(results: dict) -> str:
  lines = [
    "| tokens per row | generation | layout | smallest slice that fits | per chip: state + temporaries / HBM "
    "| host per chip | tried |",
    "|" + "---|" * 7,
  ]
  for key, r in sorted(results.items(), key=lambda kv: (int(kv[0].split("/")[1]), kv[0])):
    family, length, layout = key.split("/")
    tried = ", ".join(f"{t['slice']} seq {t['sequence']} {t['total_gib']:.1f}" for t in r["tried"] if not t["fits"])
    f = r["fits"]
    if not f:
      lines.append(f"| {int(length):,} | {family} | {layout} | none up to {family}-{SIZES[family][-1]} | | | {tried} |")
      continue
    lines.append(
      f"| {int(length):,} | {family} | {layout} | **{f['slice']}** (sequence={f['sequence']}) | "
      f"{f['arguments_gib']:.1f} + {f['temporaries_gib']:.1f} = {f['total_gib']:.1f} / "
      f"{f['hbm_gib']:.2f} GiB | {f['host_gib']:.1f} GiB | {tried or '-'} |"
    )
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "fit_long.json"))
  p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
  p.add_argument("--families", default=",".join(SIZES))
  p.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
  p.add_argument("--smoke", action="store_true", help="a 2-layer model, 1,024-token rows, on v5e-4, into a temp dir")
  args = p.parse_args(argv)
  tmp = None
  if args.smoke:
    try:
      import libtpu  # noqa: F401
    except ImportError:
      print("skipped: bench/fit_long.py compiles with libtpu's TPU compiler; install jax[tpu] (no TPU needed)")
      return
    global ARCH
    tmp = tempfile.TemporaryDirectory()
    ARCH, SIZES["v5e"], SEQUENCE[:] = "smoke", (4,), [2]
    args.out, args.lengths, args.families = os.path.join(tmp.name, "fit_long.json"), "1024", "v5e"
  results = json.load(open(args.out)) if os.path.exists(args.out) else {}
  if not args.markdown:
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    for length in map(int, args.lengths.split(",")):
      for family in args.families.split(","):
        for axis in (False, True):
          search(results, args.out, length, family, axis)
  print(markdown(results))
  if tmp:
    tmp.cleanup()


if __name__ == "__main__":
  main(sys.argv[1:])
