"""A pod in miniature for tests: one command in two jax.distributed processes on CPU (gloo collectives)."""

import socket
import subprocess

import cpu_env


def run(argv: list[str], devices_per_process: int, timeout: int = 600, **popen_kw) -> list[tuple[int, str]]:
  """(returncode, combined output) of each process of `argv` run as processes 0 and 1 of a two-process job."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = []
  for pid in range(2):
    env = cpu_env.env(
      devices_per_process, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid)
    )
    procs.append(
      subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_kw)
    )
  return [(p.returncode, out) for p, out in ((p, p.communicate(timeout=timeout)[0]) for p in procs)]
