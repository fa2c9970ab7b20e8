"""GPU clusters under SLURM: one sbatch job, one process per node owning all of that node's GPUs.

  python launch/slurm.py --nodes=2 --gpus_per_node=8 --partition=a100 --time=24:00:00 -- \
      train.py --config=configs/qwen14b_verified.py --workdir=/shared/runs/run14b
  (--dry_run prints the batch script and the sbatch command instead of submitting.)
  --follow_eval_gpus=N also submits eval.py with the same flags and --config.eval.follow=True as a second job (one
  node, N GPUs): each checkpoint is scored as training commits it, on its own GPUs.

Inside the job rsft.distributed reads SLURM_JOB_NODELIST / SLURM_NTASKS / SLURM_PROCID: the first node is the
coordinator (port --port), every task calls jax.distributed.initialize with its rank. The job asks for SIGTERM
two minutes before its time limit and passes it to the tasks (train.py saves a checkpoint on SIGTERM); with
--requeue (default) the job goes back in the queue after that, a preemption or a node failure, and the restarted
train.py resumes from the latest checkpoint in --workdir (which must be on a file system all nodes share).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence


def batch_script(args: argparse.Namespace, script_args: Sequence[str]) -> str:
  directives = [
    f"--job-name={args.name}",
    f"--nodes={args.nodes}",
    "--ntasks-per-node=1",
    f"--gpus-per-node={args.gpus_per_node}",
    f"--cpus-per-task={args.cpus_per_task}",
    f"--time={args.time}",
    f"--output={args.log_dir}/%x-%j.out",
    "--signal=B:TERM@120",
    "--exclusive",
  ]
  directives += [f"--partition={args.partition}"] if args.partition else []
  directives += [f"--account={args.account}"] if args.account else []
  directives += ["--requeue"] if args.requeue else ["--no-requeue"]
  env = [f"export {e}" for e in args.env]
  lines = (
    ["#!/bin/bash"]
    + [f"#SBATCH {d}" for d in directives]
    + [
      "set -euo pipefail",
      f"cd {shlex.quote(args.repo_dir)}",
      f"export RSFT_COORDINATOR_PORT={args.port}",
      "export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}",
      "export NCCL_DEBUG=${NCCL_DEBUG:-WARN}",
      *env,
      f"{args.activate}" if args.activate else "",
      'echo "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST"',
      # SIGTERM (time limit near, or preemption) reaches the batch shell; it is passed to srun, which passes it to
      # every task (train.py saves), and the job is put back in the queue to resume.
      f"srun --kill-on-bad-exit=1 python3 {shlex.join(script_args)} &",
      "pid=$!",
      "trap 'kill -TERM $pid; wait $pid" + ("; scontrol requeue $SLURM_JOB_ID" if args.requeue else "") + "' TERM",
      "wait $pid",
    ]
  )
  return "\n".join(line for line in lines if line) + "\n"


def parse(argv: Sequence[str]) -> argparse.Namespace:
  argv = list(argv)
  script = argv[argv.index("--") + 1 :] if "--" in argv else []
  argv = argv[: argv.index("--")] if "--" in argv else argv
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--name", default="rsft")
  p.add_argument("--nodes", type=int, required=True)
  p.add_argument("--gpus_per_node", type=int, default=8)
  p.add_argument("--cpus_per_task", type=int, default=32)
  p.add_argument("--partition", default=None)
  p.add_argument("--account", default=None)
  p.add_argument("--time", default="24:00:00")
  p.add_argument("--port", type=int, default=12355)
  p.add_argument("--repo_dir", default=os.getcwd(), help="this checkout as the nodes see it (shared FS)")
  p.add_argument("--log_dir", default="slurm_logs")
  p.add_argument("--activate", default=None, help="shell line run first, e.g. 'source ~/venv/bin/activate'")
  p.add_argument("--env", action="append", default=[], help="KEY=VALUE exported in the job (repeatable)")
  p.add_argument("--requeue", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--script_path", default=None, help="where the batch script is written (default: log_dir)")
  p.add_argument("--dry_run", action="store_true")
  p.add_argument(
    "--follow_eval_gpus",
    type=int,
    default=0,
    help="also submit eval.py in follow mode (same flags) on one node with this many GPUs; 0 = no",
  )
  args = p.parse_args(argv)
  if not script:
    p.error("nothing to run: put the script and its flags after `--`, e.g. -- train.py --config=...")
  if args.nodes < 1 or args.gpus_per_node < 1:
    p.error("--nodes and --gpus_per_node must be >= 1")
  for e in args.env:
    if "=" not in e:
      p.error(f"--env {e!r}: expected KEY=VALUE")
  args.script = script
  return args


def follower(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
  """The follow-mode evaluation job beside a train.py job: eval.py with the same flags, one node."""
  if not args.script or os.path.basename(args.script[0]) != "train.py":
    raise SystemExit("--follow_eval_gpus follows a train.py job: put train.py and its flags after `--`.")
  script = [os.path.join(os.path.dirname(args.script[0]), "eval.py"), *args.script[1:], "--config.eval.follow=True"]
  return argparse.Namespace(
    **{
      **vars(args),
      "name": f"{args.name}-eval",
      "nodes": 1,
      "gpus_per_node": args.follow_eval_gpus,
      "script_path": None,
    }
  ), script


def main(argv: Sequence[str]) -> int:
  args = parse(argv)
  jobs = [(args, args.script)] + ([follower(args)] if args.follow_eval_gpus else [])
  code = 0
  for job, script in jobs:
    text = batch_script(job, script)
    path = job.script_path or os.path.join(job.log_dir, f"{job.name}.sbatch")
    if args.dry_run:
      print(f"# {path}\n{text}[dry run] sbatch {shlex.quote(path)}")
      continue
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    os.makedirs(job.log_dir, exist_ok=True)
    with open(path, "w") as f:
      f.write(text)
    print(f"+ sbatch {path}", flush=True)
    code = code or subprocess.run(["sbatch", path], check=False).returncode
  return code


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
