"""Every bench/ script runs its whole path at its smoke size and prints its comparison with the reference, so a
refactor that breaks a benchmark fails here rather than on a lent accelerator. Scripts whose requirement is
missing (a GPU, lm_eval's files) must say "skipped: <why>" and exit 0.

The scripts run as subprocesses (`python bench/x.py --smoke`, as a user runs them), three at a time: each spends
seconds importing jax and torch, and the whole file has to stay near a minute on two cores. For that, XLA compiles
as every test does (tests/cpu_env.py: no LLVM optimisation) and torch uses one thread: the smoke runs check paths
and output, not speed, so their ratios mean nothing.
"""

import concurrent.futures
import os
import re
import subprocess
import sys

import cpu_env
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_LM_EVAL = os.path.join(ROOT, "bench", "no_such_lm_eval_dir")

# test name -> (command, fake CPU devices, patterns the output must contain)
SCRIPTS = {
  "sample_throughput": (
    ["bench/sample_throughput.py", "--smoke"],
    1,
    [
      r"decode .* ratio rsft / transformers [\d.]+ +\(greedy; 2/2 rows token-identical\)",
      r"decode .* ratio rsft / transformers [\d.]+ +\(T 0.6, top-p 0.95, top-k 20\)",
      r"score .* ratio rsft / transformers [\d.]+",
      r"\(evaluation defaults\)",
    ],
  ),
  "decode_roofline": (
    ["bench/decode_roofline.py", "--smoke"],
    1,
    [r"decode tiny Qwen3 .*ratio rsft / transformers tokens/s [\d.]+", r'"rows_same_first_32'],
  ),
  "eval_throughput": (
    ["bench/eval_throughput.py", "--smoke"],
    1,
    [
      r"short +cap +32: rsft .* ratio rsft / transformers [\d.]+, rsft static / transformers [\d.]+",
      r"long tail rsft cost per useful token at cap 96 / cap 32: [\d.]+",
    ],
  ),
  "decode_profile": (
    ["bench/decode_profile.py", "--smoke"],
    1,
    [
      r"batch +2: rsft +[\d.]+ ms/step \(attention +\d+% of it\), transformers +[\d.]+ ms/step, "
      r"ratio +[\d.]+"
    ],
  ),
  "prefill_sharing": (
    ["bench/prefill_sharing.py", "--smoke"],
    1,
    [
      r"shared prefix 40 \+ 8-40 tokens, 8 prompts: .* \(224 prompt tokens from the cache\).* "
      r"ratio cache / no cache [\d.]+, .* \(8/8 rows token-identical",
      r"long prompt 160 \+ 3 short: time to first token.* short-row TTFT ratio whole / chunked "
      r"[\d.]+ \(4/4 rows token-identical\)",
    ],
  ),
  "probe_cost": (
    ["bench/probe_cost.py", "--smoke"],
    1,
    [
      r"probe \(teacher-forced\) [\d.]+ ms, sampled check [\d.]+ ms, transformers scoring [\d.]+ ms; "
      r"ratio sampled / probe [\d.]+, transformers / rsft [\d.]+; max \|log p rsft - log p "
      r"transformers\| [\d.e+-]+"
    ],
  ),
  "context_parallel": (
    ["bench/context_parallel.py", "--smoke"],
    8,
    [
      r"sequence 4 allgather +\(fsdp 2\): +[\d.]+ ms/step, .* ratio to unsplit [\d.]+, "
      r"temporary memory / device +[\d.]+ MiB \([\d.]+ of unsplit\), \|loss - unsplit\| [\d.e+-]+",
      r"sequence 4 ring +\(fsdp 2\): +[\d.]+ ms/step, .* \|loss - unsplit\| [\d.e+-]+",
      r"one device +: +[\d.]+ ms/step",
      r"ratio rsft one device / transformers [\d.]+",
    ],
  ),
  "sampling_cost": (
    ["bench/sampling_cost.py", "--smoke"],
    1,
    [r"vocab +512 flat +study +: rsft +[\d.]+ ms, transformers +[\d.]+ ms, ratio +[\d.]+"],
  ),
  "train_throughput": (
    ["bench/train_throughput.py", "--smoke"],
    1,
    [r"train step, tiny Qwen3", r"ratio rsft / transformers: [\d.]+", r"ratio chunked / dense [\d.]+"],
  ),
  "lora": (
    ["bench/lora.py", "--smoke"],
    1,
    [
      r"full +trainable +5\.246M \(torch +5\.246M\)",
      r"LoRA r8 +trainable +0\.156M \(torch +0\.156M\) +opt state +1\.19 MiB \(torch +1\.19\) +memory +[\d.]+ MiB "
      r"\(0\.\d\d of full\) +rsft +\d+ tok/s \([\d.]+ of full\) +torch +\d+ tok/s \([\d.]+ of full\) +rsft / torch [\d.]+",
    ],
  ),
  "step_mfu": (
    ["bench/step_mfu.py", "--smoke", "--devices=2"],
    8,
    [
      r'"system": "rsft".*"devices": 2',
      r'"system": "transformers"',
      r'"rsft_over_transformers_tokens_per_s_per_device": [\d.]+',
    ],
  ),
  "load": (
    ["bench/load.py", "--smoke"],
    1,
    [
      r"rsft / transformers wall-time ratio: [\d.]+",
      r"rsft / transformers\+touch wall-time ratio: [\d.]+",
      r"not checked",
    ],
  ),
  "accelerator_check": (
    ["bench/accelerator_check.py", "--smoke"],
    1,
    [
      r"parity qwen3 +precision=highest +max\|rsft - transformers\|=",
      r"bf16 vs f32: mean KL=",
      r"tiny load: .*ratio rsft / transformers [\d.]+",
    ],
  ),
  "fit_table": (["bench/fit_table.py", "--smoke"], 1, [r"\| smoke \| v5e \| \*\*v5e-1\*\* \| full \|"]),
  "fit_long": (
    ["bench/fit_long.py", "--smoke"],
    1,
    [r"\| 1,024 \| v5e \| sequence \| \*\*v5e-4\*\* \(sequence=2\)", r"\| 1,024 \| v5e \| whole rows \| \*\*v5e-4\*\*"],
  ),
  "grading_throughput": (
    ["bench/grading_throughput.py", "--smoke", "--workers=1"],
    1,
    [r"ratio pool / serial [\d.]+", r"ratio sandboxed / bare [\d.]+", r"HumanEval grading .* passed 2/2"],
  ),
  "ifeval_agreement": (
    ["bench/ifeval_agreement.py", "--smoke"],
    1,  # runs where lm_eval is importable
    [r"^(agreement: strict [\d.]+%, loose [\d.]+%|skipped: .* lm_eval's IFEval files)"],
  ),
  "ifeval_agreement_missing": (
    ["bench/ifeval_agreement.py", "--smoke", f"--lm_eval_dir={NO_LM_EVAL}"],
    1,
    [r"^skipped: bench/ifeval_agreement.py needs lm_eval's IFEval files"],
  ),
  "countdown_probe": (
    ["bench/countdown_probe.py", "--smoke"],
    1,
    [
      r"^\| random( \| [\d.]+ / [\d.]+){10} \| [\d.]* \|$",
      r"max \|log p rsft - log p transformers\| over every gold token, every checkpoint: [\d.e-]+",
    ],
  ),
  "real_shapes": (
    ["bench/real_shapes.py", "--smoke"],
    1,
    [
      r"decode cap 16 slots 2, 4 prompts: rsft .* ratio rsft / transformers [\d.]+",
      r"sft step 1x32: rsft .* ratio rsft / transformers [\d.]+",
      r"where the time goes: rsft forward [\d.]+ s, forward_backward [\d.]+ s, optimizer",
    ],
  ),
  "baseline_card": (
    ["bench/baseline_card.py", "--smoke"],
    1,
    [
      r"^ifeval step 0, 8 items",
      r"^  rsft +[\d.]+ \[[\d.]+, [\d.]+\]",
      r"^  rsft - transformers [+-][\d.]+ \[[+-][\d.]+, [+-][\d.]+\] \(paired",
    ],
  ),
  "gpu_check": (["bench/gpu_check.sh", "--smoke"], 1, [r"^skipped: bench/gpu_check.sh needs an NVIDIA GPU"]),
  "gpu_step": (["bench/gpu_step.sh", "--smoke"], 1, [r"^skipped: bench/gpu_step.sh needs an NVIDIA GPU"]),
}


def has_gpu() -> bool:
  try:
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
  except OSError:
    return False


def run(name: str) -> subprocess.CompletedProcess:
  command, devices, _ = SCRIPTS[name]
  # One torch thread: three scripts share two cores here, and spinning OpenMP threads would only slow them down.
  env = cpu_env.env(
    8 if devices == 8 else 0,
    OMP_NUM_THREADS="1",
    PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
  )
  launcher = ["bash"] if command[0].endswith(".sh") else [sys.executable]
  return subprocess.run(launcher + command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(request):
  """Starts every script this session selected at once (three at a time); each test waits for its own."""
  wanted = [
    item.callspec.params["name"]
    for item in request.session.items
    if item.module is request.module and hasattr(item, "callspec")
  ]
  wanted = [n for n in wanted if not (n.startswith("gpu_") and has_gpu())]
  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    yield {name: pool.submit(run, name) for name in dict.fromkeys(wanted)}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_bench_script_smoke(name, runs):
  if name.startswith("gpu_") and has_gpu():
    pytest.skip(f"a GPU is here: run `bash bench/{name}.sh --smoke` by hand (it needs jax[cuda])")
  result = runs[name].result()
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-4000:]
  for pattern in SCRIPTS[name][2]:
    assert re.search(pattern, result.stdout, re.MULTILINE), f"{pattern!r} not in {name}'s output:\n{output[-4000:]}"
  assert "FAILED" not in result.stdout


def test_no_bench_script_edits_sys_path():
  """Bench scripts import rsft as installed (rsft.tools.tiny_models, rsft.tools.synthetic), never through sys.path."""
  bench = os.path.join(ROOT, "bench")
  for name in sorted(os.listdir(bench)):
    if name.endswith(".py"):
      assert "sys.path" not in open(os.path.join(bench, name)).read(), name
  covered = {os.path.basename(c[0]) for c, _, _ in SCRIPTS.values()}
  scripts = {n for n in os.listdir(bench) if n.endswith((".py", ".sh"))}
  # A helper module (no __main__ guard) is covered through a smoked script that imports it.
  helpers = {n for n in scripts if n.endswith(".py") and "__main__" not in open(os.path.join(bench, n)).read()}
  for helper in helpers:
    importers = [
      n for n in covered if re.search(rf"^from {helper[:-3]} import", open(os.path.join(bench, n)).read(), re.M)
    ]
    assert importers, f"bench/{helper} is a helper module that no smoke-tested script imports"
  assert scripts - helpers <= covered, f"bench scripts without a smoke test: {sorted(scripts - helpers - covered)}"
