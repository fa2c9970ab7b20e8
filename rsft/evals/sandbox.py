"""Running untrusted generated programs: one fresh `python -I` process each, contained (eval_anchors.md §5).

The reference harnesses exec code in a forked process after monkey-patching dangerous functions away, which
their own docs call "not a security sandbox". Here every program gets: a new session (`setsid`) so the whole
process group is killed on timeout; rlimits on address space, CPU time, file size, open files, processes and
core dumps; a fresh temporary working directory, removed afterwards; a minimal environment; new network, PID
and mount namespaces (`unshare`: no network, no other process visible, every mount read-only except the
working directory; when unshare is unavailable the run goes on and a warning is logged once); the program
through a pipe (no file written); and stdout/stderr capped. stdlib only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import logging


@dataclasses.dataclass(frozen=True)
class Limits:
  seconds: float = 10.0          # wall clock; CPU time gets the same plus 1 s
  memory_bytes: int = 2 << 30    # RLIMIT_AS
  file_bytes: int = 8 << 20      # RLIMIT_FSIZE
  open_files: int = 64
  processes: int = 64            # RLIMIT_NPROC (root is exempt; the group kill still reaps children)
  output_bytes: int = 1 << 20    # stdout / stderr kept


@dataclasses.dataclass
class Result:
  status: str        # "ok" (exit 0) | "error" (non-zero exit) | "timeout"
  returncode: int | None
  stdout: str
  stderr: str
  seconds: float
  contained: bool    # ran inside network, PID and mount namespaces


# Inside fresh network, PID and mount namespaces: every mount becomes read-only except the program's own
# working directory, then the interpreter replaces the shell (as PID 1 of its namespace it sees no outside
# process to signal, and `getppid()` is 0).
_CONTAIN = ('set -e; cwd="$1"; shift; mount --make-rprivate /; mount --bind "$cwd" "$cwd"; '
            'for m in $(awk \'{print $2}\' /proc/mounts); do [ "$m" = "$cwd" ] || '
            'mount -o remount,bind,ro "$m" 2>/dev/null || true; done; cd "$cwd"; exec "$@"')


@functools.lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[str, ...]:
  """The unshare command that works here (root: plain; otherwise inside a user namespace), or ()."""
  exe, sh = shutil.which("unshare"), shutil.which("sh")
  candidates = [(exe, "-n", "-p", "-f", "-m", "--mount-proc", "--kill-child"),
                (exe, "-r", "-n", "-p", "-f", "-m", "--mount-proc", "--kill-child")] if exe and sh else []
  probe = tempfile.mkdtemp(prefix="rsft_sandbox_probe_")
  try:
    for prefix in candidates:
      cmd = prefix + ("--", sh, "-c", _CONTAIN, "sh", probe, sh, "-c", "touch ok && ! touch /rsft_probe 2>/dev/null")
      try:
        if subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0:
          return prefix + ("--", sh, "-c", _CONTAIN, "sh")
      except (OSError, subprocess.SubprocessError):
        continue
  finally:
    shutil.rmtree(probe, ignore_errors=True)
  logging.warning("sandbox: unshare (network, PID and mount namespaces) is unavailable here; generated programs "
                  "run with rlimits and a process-group kill only, with network and filesystem access.")
  return ()


def run(program: str, stdin: str = "", limits: Limits = Limits()) -> Result:
  """Runs `program` with `stdin` appended after it is read (the program is piped in first)."""
  prefix = _namespace_prefix()
  cwd = tempfile.mkdtemp(prefix="rsft_sandbox_")
  # The program comes through its own pipe (stdin stays free for the test input); a one-line loader reads it.
  read_fd, write_fd = os.pipe()
  # The loader runs in the sandboxed interpreter itself: it sets the rlimits (no preexec_fn, which is unsafe in a
  # multithreaded parent such as a JAX process), reads the program and runs it as __main__.
  rlimits = [("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_CPU", int(limits.seconds) + 1),
             ("RLIMIT_FSIZE", limits.file_bytes), ("RLIMIT_NOFILE", limits.open_files),
             ("RLIMIT_NPROC", limits.processes), ("RLIMIT_CORE", 0)]
  loader = ("import os,resource as r\n"
            f"for k,v in {rlimits!r}: r.setrlimit(getattr(r,k),(v,v))\n"
            f"src=os.fdopen({read_fd}).read()\n"
            "exec(compile(src,'main.py','exec'),{'__name__':'__main__'})")
  env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "HOME": cwd, "TMPDIR": cwd,
         "LANG": "C.UTF-8"}
  start = time.monotonic()
  try:
    contain = list(prefix) + [cwd] if prefix else []
    proc = subprocess.Popen(contain + [sys.executable, "-I", "-c", loader], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                            pass_fds=(read_fd,), start_new_session=True)
    os.close(read_fd)
    try:
      with os.fdopen(write_fd, "w") as w:
        w.write(program)
    except BrokenPipeError:  # the child died before reading its program; its exit status says why
      pass
    try:
      out, err = proc.communicate(stdin.encode(), timeout=limits.seconds)
      status = "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
      _kill_group(proc)
      out, err = proc.communicate()
      status = "timeout"
    _kill_group(proc)  # grandchildren the program left behind
  finally:
    shutil.rmtree(cwd, ignore_errors=True)
  cap = limits.output_bytes
  return Result(status, proc.returncode, out[:cap].decode(errors="replace"), err[:cap].decode(errors="replace"),
                time.monotonic() - start, bool(prefix))


def _kill_group(proc: subprocess.Popen) -> None:
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
