"""TPU VM pods: create, push code, run train.py / eval.py on every worker, logs, kill, and a babysitter.

  python launch/tpu_vm.py create --name=r14b --zone=us-east5-a --type=v5p-32 [--spot]
  python launch/tpu_vm.py push   --name=r14b --zone=us-east5-a           # committed HEAD + its lock installed on all workers
  python launch/tpu_vm.py run    --name=r14b --zone=us-east5-a -- train.py --config=configs/qwen14b_verified.py \
      --workdir=gs://bucket/run14b
  python launch/tpu_vm.py babysit --name=r14b --zone=us-east5-a --type=v5p-32 --spot -- train.py ...
  python launch/tpu_vm.py logs | kill | delete --name=r14b --zone=us-east5-a
Every subcommand takes --dry_run: it prints the commands instead of running them.

`run` first kills stale holders of the TPU (processes left by a crashed run keep /dev/accel* or /dev/vfio/* open
and the next start fails with "TPU busy"; MaxText's multihost_runner does the same), then starts the script on
all workers at once (a pod runs one process per worker; rsft.distributed finds the peers). Output goes to the
terminal and to ~/rsft_logs/NAME.log on each worker. `babysit` repeats create-if-needed, push, run until the run
exits 0: a preempted spot slice is deleted and recreated, and train.py resumes from the latest checkpoint in
--workdir (so the workdir must be on GCS, not on the VM's disk).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

# Runtime images per TPU generation (cloud.google.com/tpu/docs/runtimes).
RUNTIMES = {
  "v4": "tpu-ubuntu2204-base",
  "v5e": "v2-alpha-tpuv5-lite",
  "v5litepod": "v2-alpha-tpuv5-lite",
  "v5p": "v2-alpha-tpuv5",
  "v6e": "v2-alpha-tpuv6e",
}
KILL_STALE = (
  "sudo lsof -t /dev/accel* /dev/vfio/* 2>/dev/null | sort -u | xargs -r sudo kill -9; sudo rm -f /tmp/libtpu_lockfile"
)
PREEMPTED_STATES = ("PREEMPTED", "TERMINATED", "NOT_FOUND")


def runtime_for(accelerator_type: str) -> str:
  family = accelerator_type.split("-")[0]
  if family not in RUNTIMES:
    raise ValueError(f"--type={accelerator_type}: unknown TPU generation {family!r}; known: {sorted(RUNTIMES)}")
  return RUNTIMES[family]


class Shell:
  """Runs argv lists, or only prints them (--dry_run)."""

  def __init__(self, dry_run: bool):
    self.dry_run = dry_run

  def __call__(self, argv: Sequence[str], check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    print(("[dry run] " if self.dry_run else "+ ") + shlex.join(argv), flush=True)
    if self.dry_run:
      return subprocess.CompletedProcess(argv, 0, stdout="READY\n" if capture else None)
    return subprocess.run(argv, check=check, text=True, capture_output=capture)


def _gcloud(args: argparse.Namespace, *words: str) -> list[str]:
  out = ["gcloud", "compute", "tpus", "tpu-vm", *words, f"--zone={args.zone}"]
  return out + ([f"--project={args.project}"] if args.project else [])


def _on_all(args: argparse.Namespace, command: str) -> list[str]:
  return _gcloud(args, "ssh", args.name, "--worker=all", f"--command={command}")


def create(sh: Shell, args: argparse.Namespace) -> None:
  argv = _gcloud(
    args, "create", args.name, f"--accelerator-type={args.type}", f"--version={args.runtime or runtime_for(args.type)}"
  )
  sh(argv + (["--spot"] if args.spot else []))


def push(sh: Shell, args: argparse.Namespace) -> None:
  """The committed tree (git archive HEAD: what a run used is what git says), unpacked and installed everywhere
  from its lock (requirements/tpu.txt, hashes checked; the workers need Python >= 3.11, as jax does)."""
  archive = f"/tmp/rsft-{args.name}.tar.gz"
  sh(["git", "archive", "--format=tar.gz", f"--output={archive}", "HEAD"])
  sh(_gcloud(args, "scp", archive, f"{args.name}:{archive}", "--worker=all"))
  install = (
    f"mkdir -p {args.remote_dir} && tar -xzf {archive} -C {args.remote_dir} && cd {args.remote_dir} && "
    "python3 -m pip install -q --no-deps --require-hashes -r requirements/tpu.txt && "
    "python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -n 2"
  )
  sh(_on_all(args, install))


def remote_command(args: argparse.Namespace, script_args: Sequence[str]) -> str:
  if not script_args:
    raise ValueError("nothing to run: put the script and its flags after `--`, e.g. -- train.py --config=...")
  log = f"~/rsft_logs/{args.name}.log"
  env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (e.split("=", 1) for e in args.env))
  run = f"{env + ' ' if env else ''}python3 {shlex.join(script_args)}"
  return (
    f"{KILL_STALE}; mkdir -p ~/rsft_logs && cd {args.remote_dir} && {run} 2>&1 | tee -a {log}; exit ${{PIPESTATUS[0]}}"
  )


def run(sh: Shell, args: argparse.Namespace) -> int:
  return sh(_on_all(args, f"bash -c {shlex.quote(remote_command(args, args.script))}"), check=False).returncode


def kill(sh: Shell, args: argparse.Namespace) -> None:
  sh(_on_all(args, KILL_STALE))


def logs(sh: Shell, args: argparse.Namespace) -> None:
  sh(_gcloud(args, "ssh", args.name, "--worker=0", f"--command=tail -n {args.lines} ~/rsft_logs/{args.name}.log"))


def delete(sh: Shell, args: argparse.Namespace) -> None:
  sh(_gcloud(args, "delete", args.name, "--quiet"))


def state(sh: Shell, args: argparse.Namespace) -> str:
  out = sh(_gcloud(args, "describe", args.name, "--format=value(state)"), check=False, capture=True)
  if sh.dry_run:
    return "NOT_FOUND"  # a dry run shows the whole cycle: create, push, run
  return (out.stdout or "").strip() if out.returncode == 0 else "NOT_FOUND"


def babysit(sh: Shell, args: argparse.Namespace) -> int:
  """Until the run exits 0 (or --max_restarts): recreate a preempted slice, push, run (which resumes)."""
  for attempt in range(args.max_restarts + 1):
    current = state(sh, args)
    if current in PREEMPTED_STATES:
      if current != "NOT_FOUND":
        delete(sh, args)
      create(sh, args)
      push(sh, args)
    elif attempt == 0 and not args.no_push:
      push(sh, args)
    code = run(sh, args)
    if code == 0 or sh.dry_run:
      return code
    print(f"run exited {code} (attempt {attempt + 1}); checking the slice and restarting", flush=True)
    time.sleep(args.retry_wait_s)
  return 1


COMMANDS = {
  "create": create,
  "push": push,
  "run": run,
  "kill": kill,
  "logs": logs,
  "delete": delete,
  "babysit": babysit,
}


def parse(argv: Sequence[str]) -> argparse.Namespace:
  argv = list(argv)
  script = argv[argv.index("--") + 1 :] if "--" in argv else []
  argv = argv[: argv.index("--")] if "--" in argv else argv
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("command", choices=sorted(COMMANDS))
  p.add_argument("--name", required=True)
  p.add_argument("--zone", required=True)
  p.add_argument("--project", default=None)
  p.add_argument("--type", default=None, help="accelerator type, e.g. v5p-32, v6e-16 (create, babysit)")
  p.add_argument("--runtime", default=None, help="TPU VM image; default by generation")
  p.add_argument("--spot", action="store_true")
  p.add_argument("--remote_dir", default="~/rsft")
  p.add_argument("--env", action="append", default=[], help="KEY=VALUE set for the run (repeatable)")
  p.add_argument("--lines", type=int, default=200)
  p.add_argument("--max_restarts", type=int, default=100)
  p.add_argument("--retry_wait_s", type=float, default=60.0)
  p.add_argument("--no_push", action="store_true", help="babysit: skip the first push")
  p.add_argument("--dry_run", action="store_true")
  args = p.parse_args(argv)
  args.script = script
  if args.command in ("create", "babysit") and not args.type:
    p.error(f"{args.command} needs --type (e.g. v5p-32)")
  if args.command in ("run", "babysit"):
    try:
      remote_command(args, script)  # validated now, before any machine is touched
    except ValueError as e:
      p.error(str(e))
  return args


def main(argv: Sequence[str]) -> int:
  args = parse(argv)
  result = COMMANDS[args.command](Shell(args.dry_run), args)
  return result if isinstance(result, int) else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
