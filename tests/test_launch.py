"""Launch: dry-run commands of the TPU VM and SLURM launchers, and the multi-process start-up's env parsing."""

import os
import subprocess
import sys

import pytest

from rsft import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["train.py", "--config=configs/qwen14b_verified.py", "--workdir=gs://bucket/run14b"]


def launch(script, *args):
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "launch", script), *args], capture_output=True, text=True, cwd=ROOT
  )
  return proc.returncode, proc.stdout, proc.stderr


def test_tpu_run_kills_stale_holders_then_runs_on_every_worker():
  code, out, _ = launch(
    "tpu_vm.py",
    "run",
    "--name=r14b",
    "--zone=us-east5-a",
    "--env=JAX_TRACEBACK_FILTERING=off",
    "--dry_run",
    "--",
    *TRAIN,
  )
  assert code == 0
  [line] = out.splitlines()
  assert line.startswith("[dry run] gcloud compute tpus tpu-vm ssh r14b --worker=all")
  assert "lsof -t /dev/accel* /dev/vfio/*" in line and "rm -f /tmp/libtpu_lockfile" in line
  assert line.index("libtpu_lockfile") < line.index("python3 train.py")  # the kill comes first
  assert (
    "JAX_TRACEBACK_FILTERING=off python3 train.py --config=configs/qwen14b_verified.py "
    "--workdir=gs://bucket/run14b" in line
  )
  assert "tee -a ~/rsft_logs/r14b.log" in line and "--zone=us-east5-a" in line


def test_tpu_babysit_recreates_pushes_and_runs():
  code, out, _ = launch(
    "tpu_vm.py", "babysit", "--name=r", "--zone=z", "--type=v6e-16", "--spot", "--project=p", "--dry_run", "--", *TRAIN
  )
  lines = out.splitlines()
  assert code == 0
  steps = [l.split()[6] if "tpu-vm" in l else l.split()[3] for l in lines]
  assert steps == ["describe", "create", "archive", "scp", "ssh", "ssh"]  # slice gone -> create, push, run
  assert "--accelerator-type=v6e-16 --version=v2-alpha-tpuv6e --spot" in lines[1].replace(" --zone=z --project=p", "")
  assert all("--project=p" in l for l in lines if "gcloud" in l)
  assert "pip install" in lines[4] and "python3 train.py" in lines[5]


def test_tpu_launcher_rejects_bad_input():
  code, _, err = launch("tpu_vm.py", "run", "--name=r", "--zone=z", "--dry_run")
  assert code == 2 and "nothing to run" in err
  code, _, err = launch("tpu_vm.py", "create", "--name=r", "--zone=z", "--dry_run")
  assert code == 2 and "needs --type" in err
  code, _, err = launch("tpu_vm.py", "create", "--name=r", "--zone=z", "--type=v9-8", "--dry_run")
  assert code != 0 and "unknown TPU generation 'v9'" in err


def test_slurm_batch_script():
  code, out, _ = launch(
    "slurm.py",
    "--nodes=4",
    "--gpus_per_node=8",
    "--partition=h100",
    "--time=12:00:00",
    "--activate=source ~/venv/bin/activate",
    "--env=NCCL_IB_HCA=mlx5",
    "--dry_run",
    "--",
    *TRAIN,
  )
  assert code == 0
  for want in (
    "#SBATCH --nodes=4",
    "#SBATCH --ntasks-per-node=1",
    "#SBATCH --gpus-per-node=8",
    "#SBATCH --partition=h100",
    "#SBATCH --time=12:00:00",
    "#SBATCH --requeue",
    "#SBATCH --signal=B:TERM@120",
    "export RSFT_COORDINATOR_PORT=12355",
    "export NCCL_IB_HCA=mlx5",
    "source ~/venv/bin/activate",
    "srun --kill-on-bad-exit=1 python3 train.py --config=configs/qwen14b_verified.py --workdir=gs://bucket/run14b &",
    "trap 'kill -TERM $pid; wait $pid; scontrol requeue $SLURM_JOB_ID' TERM",
  ):
    assert want in out.splitlines(), want
  assert out.splitlines()[-1] == "[dry run] sbatch slurm_logs/rsft.sbatch"
  code, _, err = launch("slurm.py", "--nodes=2", "--dry_run")
  assert code == 2 and "nothing to run" in err
  code, out, _ = launch("slurm.py", "--nodes=4", "--follow_eval_gpus=2", "--dry_run", "--", *TRAIN)
  lines = out.splitlines()
  assert code == 0 and lines[-1] == "[dry run] sbatch slurm_logs/rsft-eval.sbatch"
  follower = lines[lines.index("# slurm_logs/rsft-eval.sbatch") :]
  assert "#SBATCH --nodes=1" in follower and "#SBATCH --gpus-per-node=2" in follower
  assert (
    "srun --kill-on-bad-exit=1 python3 eval.py --config=configs/qwen14b_verified.py "
    "--workdir=gs://bucket/run14b --config.eval.follow=True &"
  ) in follower


def test_nodelist_expansion():
  assert distributed.expand_nodelist("gpu[001-003,007],login1") == ["gpu001", "gpu002", "gpu003", "gpu007", "login1"]
  assert distributed.expand_nodelist("node-a7") == ["node-a7"]
  assert distributed.expand_nodelist("a[8-10]") == ["a8", "a9", "a10"]


@pytest.mark.parametrize(
  "env,want",
  [
    ({}, None),
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2"}, None),  # one-host slice
    ({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}, {}),  # pod: jax detects the rest
    ({"SLURM_JOB_NODELIST": "gpu[3-4]", "SLURM_NTASKS": "1"}, None),  # one task: single process
    (
      {"SLURM_JOB_NODELIST": "gpu[3-4]", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"},
      {"coordinator_address": "gpu3:12355", "num_processes": 2, "process_id": 1},
    ),
    (
      {"SLURM_NODELIST": "h[07-08]", "SLURM_NTASKS": "2", "SLURM_PROCID": "0", "RSFT_COORDINATOR_PORT": "999"},
      {"coordinator_address": "h07:999", "num_processes": 2, "process_id": 0},
    ),
    (
      {
        "JAX_COORDINATOR_ADDRESS": "10.1.1.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
        "SLURM_JOB_NODELIST": "x[1-4]",
        "SLURM_NTASKS": "4",
      },  # explicit wins
      {"coordinator_address": "10.1.1.1:1234", "num_processes": 4, "process_id": 3},
    ),
  ],
)
def test_coordinator_from_env(env, want):
  assert distributed.coordinator_from_env(env) == want
