"""Running untrusted generated programs: one fresh `python -I` each, in a bubblewrap sandbox that holds as root.

Threat model (docs/security.md): the program is hostile and may use ctypes and raw syscalls. Each run gets
- fresh mount, PID, network, IPC and UTS namespaces (bubblewrap), and a minimal read-only root: the interpreter's
  prefix and the system libraries only, its own /proc and /dev, a private writable /tmp of bounded size. Host files,
  sockets, processes and the network are not there to reach;
- no privilege: it runs as a fresh unprivileged uid (setpriv), with an empty capability bounding set and
  no_new_privs, so mount(), umount2(), setns(), ptrace or raising its rlimits all fail;
- limits on the whole program where cgroups are writable (pids.max, memory.limit_in_bytes), and per process
  always (RLIMIT_AS, CPU, FSIZE, NOFILE, NPROC: the unprivileged uid makes NPROC bind, even when rsft runs as root);
- a wall-clock limit: on expiry, or when the program ends, its PID namespace's init is killed, which makes the
  kernel kill every process in it (a setsid() or PR_SET_PDEATHSIG trick does not leave it); the call returns
  within the limit plus about a second;
- stdout / stderr read while they stream and cut at `output_bytes` (the program is killed past it).
Without bubblewrap (`bwrap`) and `setpriv` the sandbox refuses to run code unless RSFT_UNSAFE_SANDBOX=1 opts in to
rlimits in a plain subprocess (logged loudly). bubblewrap: `apt-get install bubblewrap` (tools/setup_env.sh installs it). stdlib only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from absl import logging

from rsft.evals.errors import EnvironmentProblem

UNSAFE_ENV = "RSFT_UNSAFE_SANDBOX"


@dataclasses.dataclass(frozen=True)
class Limits:
  seconds: float = 10.0  # wall clock; CPU time gets the same plus 1 s
  memory_bytes: int = 2 << 30  # per process (RLIMIT_AS) and, with cgroups, for the whole program
  file_bytes: int = 8 << 20  # RLIMIT_FSIZE
  open_files: int = 64
  processes: int = 32  # for the whole program (cgroup pids.max; RLIMIT_NPROC of its own uid)
  output_bytes: int = 1 << 20  # stdout / stderr kept; past it the program is killed
  tmp_bytes: int = 64 << 20  # the private /tmp (a tmpfs of this size)


@dataclasses.dataclass
class Result:
  status: str  # "ok" (exit 0) | "error" (non-zero exit, or output over the cap) | "timeout"
  returncode: int | None
  stdout: str
  stderr: str
  seconds: float
  contained: bool  # ran in the bubblewrap sandbox


class SandboxUnavailable(EnvironmentProblem):
  """No contained way to run generated code here (and RSFT_UNSAFE_SANDBOX is not set)."""


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[tuple[str, str] | None, str]:
  """((bwrap, setpriv), "") when both exist and a probe program runs contained here, else (None, why not)."""
  bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
  if not (bwrap and setpriv):
    missing = " and ".join(name for name, path in (("bwrap", bwrap), ("setpriv", setpriv)) if not path)
    return None, (
      f"{missing} not found: generated code needs bubblewrap to run contained (`apt-get install "
      "bubblewrap`; setpriv is in util-linux)"
    )
  try:
    probe = subprocess.run(_command((bwrap, setpriv), 4242424, ["-c", "print(6 * 7)"]), capture_output=True, timeout=30)
  except (OSError, subprocess.SubprocessError) as e:
    return None, f"bwrap could not start a probe program: {type(e).__name__}: {e}"
  if probe.stdout.strip() != b"42":
    stderr = probe.stderr.decode(errors="replace").strip()[-300:]
    return None, (
      f"bwrap is installed but cannot run a program here ({stderr or f'exit {probe.returncode}'}); "
      "it needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
      "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04) or a setuid bwrap"
    )
  return (bwrap, setpriv), ""


def _tools() -> tuple[str, str] | None:
  return _probe()[0]


def available() -> bool:
  """Whether generated code can run contained here."""
  return _tools() is not None


def problem() -> str | None:
  """Why generated code cannot run here, with the fix; None when it can (contained, or uncontained because the
  user set RSFT_UNSAFE_SANDBOX=1)."""
  if available() or os.environ.get(UNSAFE_ENV) == "1":
    return None
  return _probe()[1] + f" (or set {UNSAFE_ENV}=1 to run it with rlimits only, uncontained)"


def _readonly_binds() -> list[str]:
  """The interpreter's prefix (and a venv's) plus the system library folders, read-only, at their own paths."""
  paths = [
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    sys.base_prefix,
    sys.prefix,
    os.path.dirname(os.path.realpath(sys.executable)),
  ]
  binds, seen = [], set()
  for path in paths:
    real = os.path.realpath(path)
    if os.path.exists(path) and real not in seen:
      seen.add(real)
      binds.append(path)
  # Their parent folders (e.g. /root for a pyenv install) are made world-traversable inside: bwrap would create
  # them 0700 and the unprivileged uid could not reach the interpreter.
  parents = sorted({a for p in binds for a in _ancestors(p)} - set(binds), key=len)
  return [arg for d in parents for arg in ("--perms", "0755", "--dir", d)] + [
    arg for p in binds for arg in ("--ro-bind", p, p)
  ]


def _ancestors(path: str) -> list[str]:
  out, head = [], os.path.dirname(path.rstrip("/"))
  while head not in ("", "/"):
    out.append(head)
    head = os.path.dirname(head)
  return out


def _command(
  tools: tuple[str, str], uid: int, python_args: list[str], info_fd: int | None = None, tmp_bytes: int = 64 << 20
) -> list[str]:
  bwrap, setpriv = tools
  cmd = [
    bwrap,
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--new-session",
    *_readonly_binds(),
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "1777",
    "--size",
    str(tmp_bytes),
    "--tmpfs",
    "/tmp",
    "--chdir",
    "/tmp",
    "--clearenv",
    "--setenv",
    "PATH",
    "/usr/bin:/bin",
    "--setenv",
    "HOME",
    "/tmp",
    "--setenv",
    "TMPDIR",
    "/tmp",
    "--setenv",
    "LANG",
    "C.UTF-8",
    "--setenv",
    "PYTHONHASHSEED",
    "0",
    "--setenv",
    "OMP_NUM_THREADS",
    "1",
    "--cap-drop",
    "ALL",
    "--cap-add",
    "CAP_SETUID",
    "--cap-add",
    "CAP_SETGID",
    "--cap-add",
    "CAP_SETPCAP",
  ]
  if info_fd is not None:
    cmd += ["--info-fd", str(info_fd)]  # bwrap writes the init's pid there and does not pass the fd on
  # setpriv gives up the three capabilities bwrap kept for it: a fresh uid, no groups, empty bounding set.
  return cmd + [
    "--",
    setpriv,
    f"--reuid={uid}",
    f"--regid={uid}",
    "--clear-groups",
    "--no-new-privs",
    "--bounding-set=-all",
    "--inh-caps=-all",
    sys.executable,
    "-I",
    *python_args,
  ]


def _own_cgroup(controller: str) -> str:
  """This process's cgroup path for a v1 controller ("" = v2), so sandboxes nest under rsft's own limits."""
  try:
    with open("/proc/self/cgroup") as f:
      for line in f:
        _, names, path = line.rstrip("\n").split(":", 2)
        if (controller and controller in names.split(",")) or (not controller and names == ""):
          return path
  except (OSError, ValueError):
    pass
  return "/"


@functools.cache
def _remove_stale(root: str, settings_key: Any) -> None:
  """Once per process: remove empty rsft_sandbox_* cgroups a killed grader left (rmdir fails on live ones)."""
  for controller in settings_key:
    parent = os.path.join(root, controller, _own_cgroup(controller).lstrip("/"))
    try:
      names = [n for n in os.listdir(parent) if n.startswith("rsft_sandbox_")]
    except OSError:
      continue
    for n in names:
      try:
        os.rmdir(os.path.join(parent, n))
      except OSError:
        pass


class _Cgroups:
  """A pids + memory cgroup (v1 or v2) for one run where this process may create them; otherwise inert."""

  def __init__(self, limits: Limits):
    self.dirs: list[str] = []
    name = f"rsft_sandbox_{uuid.uuid4().hex[:12]}"
    root = "/sys/fs/cgroup"
    v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))
    settings = (
      {"": {"pids.max": limits.processes, "memory.max": limits.memory_bytes, "memory.swap.max": 0}}
      if v2
      else {"pids": {"pids.max": limits.processes}, "memory": {"memory.limit_in_bytes": limits.memory_bytes}}
    )
    _remove_stale(root, tuple(settings))
    for controller, values in settings.items():
      path = os.path.join(root, controller, _own_cgroup(controller).lstrip("/"), name)
      try:
        os.mkdir(path)
        self.dirs.append(path)
        for key, value in values.items():
          if os.path.exists(os.path.join(path, key)):
            with open(os.path.join(path, key), "w") as f:
              f.write(str(value))
      except OSError:
        continue

  def enter_command(self) -> list[str]:
    """A shell prefix that puts itself (and so everything it execs) into the cgroups first."""
    if not self.dirs:
      return []
    writes = "; ".join(f'echo $$ > "{os.path.join(d, "cgroup.procs")}"' for d in self.dirs)
    return ["/bin/sh", "-c", f'{writes}; exec "$@"', "sh"]

  def kill_and_remove(self) -> None:
    for path in self.dirs:
      for _ in range(50):
        try:
          with open(os.path.join(path, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
        except OSError:
          break
        if not pids:
          break
        for pid in pids:
          try:
            os.kill(pid, signal.SIGKILL)
          except ProcessLookupError:
            pass
        time.sleep(0.01)
      try:
        os.rmdir(path)
      except OSError:
        pass


def _drain(stream, cap: int, chunks: list[bytes], over: threading.Event) -> None:
  """Reads a pipe while the program writes it, keeping at most `cap` bytes; past the cap sets `over`."""
  kept = 0
  while True:
    data = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
    if not data:
      return
    if kept < cap:
      chunks.append(data[: cap - kept])
    kept += len(data)
    if kept > cap:
      over.set()


# keyctl(2)'s number per architecture: the loader joins a fresh, empty session keyring, so the program does not
# possess the keys of rsft's session (an unprivileged uid can still read keys it possesses).
_KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}


def _loader(limits: Limits, program_fd: int) -> str:
  """Runs inside the sandbox as the unprivileged uid: sets the rlimits, reads the program, runs it as __main__."""
  rlimits = [
    ("RLIMIT_AS", limits.memory_bytes),
    ("RLIMIT_CPU", int(limits.seconds) + 1),
    ("RLIMIT_FSIZE", limits.file_bytes),
    ("RLIMIT_NOFILE", limits.open_files),
    ("RLIMIT_NPROC", limits.processes),
    ("RLIMIT_CORE", 0),
  ]
  keyctl = _KEYCTL_SYSCALL.get(os.uname().machine)
  join_keyring = (
    (
      f"import ctypes\nctypes.CDLL(None).syscall({keyctl}, 1, None)\n"  # KEYCTL_JOIN_SESSION_KEYRING
      "del ctypes\n"
    )
    if keyctl
    else ""
  )
  return (
    join_keyring + "import os,resource as r\n"
    f"for k,v in {rlimits!r}: r.setrlimit(getattr(r,k),(v,v))\n"
    f"src=os.fdopen({program_fd}).read()\n"
    "del os, r\n"
    "exec(compile(src,'main.py','exec'),{'__name__':'__main__'})"
  )


@dataclasses.dataclass
class _Launched:
  proc: subprocess.Popen
  groups: _Cgroups | None
  info: dict[str, int]
  program_fd: int  # write end of the pipe the loader reads the program from
  contained: bool
  start: float

  def kill(self) -> None:
    _kill_everything(self.proc, self.info.get("child-pid"), self.groups)


def _launch(limits: Limits) -> _Launched:
  """Starts the sandboxed loader, which waits for its program on a pipe of its own (stdin stays the program's)."""
  tools = _tools()
  if tools is None:
    if os.environ.get(UNSAFE_ENV) != "1":
      raise SandboxUnavailable(
        "refusing to run generated code: bubblewrap (bwrap) and setpriv are needed for the sandbox (install with "
        f"`apt-get install bubblewrap`), or set {UNSAFE_ENV}=1 to run it with rlimits only, uncontained."
      )
    logging.log_first_n(
      logging.WARNING, "sandbox: %s=1, running generated code UNCONTAINED (rlimits only)", 1, UNSAFE_ENV
    )
  uid = random.randrange(200_000, 2_000_000_000)  # a uid of its own: RLIMIT_NPROC counts this program only
  read_fd, write_fd = os.pipe()
  info_r, info_w = os.pipe()
  python_args = ["-c", _loader(limits, read_fd)]
  if tools is not None:
    cmd = _command(tools, uid, python_args, info_fd=info_w, tmp_bytes=limits.tmp_bytes)
  else:
    cmd = [sys.executable, "-I", *python_args]
  groups = _Cgroups(limits) if tools is not None else None
  cmd = (groups.enter_command() if groups else []) + cmd
  env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
  start = time.monotonic()
  try:
    proc = subprocess.Popen(
      cmd,
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      env=env,
      cwd="/",
      pass_fds=(read_fd, info_w),
      start_new_session=True,
    )
  finally:
    os.close(read_fd)
    os.close(info_w)
  info: dict[str, int] = {}
  threading.Thread(target=_read_info, args=(info_r, info), daemon=True).start()
  return _Launched(proc, groups, info, write_fd, tools is not None, start)


def run(program: str, stdin: str = "", limits: Limits = Limits()) -> Result:
  """Runs `program` contained (module docstring); `stdin` is the program's standard input."""
  launched = _launch(limits)
  proc = launched.proc
  out, err, over = [], [], threading.Event()
  readers = [
    threading.Thread(target=_drain, args=(proc.stdout, limits.output_bytes, out, over), daemon=True),
    threading.Thread(target=_drain, args=(proc.stderr, limits.output_bytes, err, over), daemon=True),
  ]
  for t in readers:
    t.start()
  threading.Thread(target=_feed, args=(launched.program_fd, program, proc.stdin, stdin, True), daemon=True).start()
  status = None
  deadline = launched.start + limits.seconds
  while proc.poll() is None:
    if over.is_set():
      status = "error"
      break
    if time.monotonic() > deadline:
      status = "timeout"
      break
    time.sleep(0.005)
  launched.kill()
  for t in readers:
    t.join(timeout=1.0)
  if status is None:
    status = "ok" if proc.returncode == 0 else "error"
  if over.is_set():
    status = "error"
  return Result(
    status,
    proc.returncode,
    b"".join(out).decode(errors="replace"),
    b"".join(err).decode(errors="replace"),
    time.monotonic() - launched.start,
    launched.contained,
  )


class Process:
  """A sandboxed program rsft talks to in lines while it runs (a candidate serving calls, a checker asking them).

  Lines the program writes that start with `marker` are messages; everything else it prints is kept aside (capped).
  Use as a context manager: leaving it kills the program and everything it started.
  """

  def __init__(self, program: str, marker: str, limits: Limits = Limits()):
    self.marker, self.limits = marker, limits
    self._launched = _launch(limits)
    self._messages: queue.Queue = queue.Queue()
    self.over = threading.Event()
    self._err: list[bytes] = []
    proc = self._launched.proc
    threading.Thread(target=self._read_lines, daemon=True).start()
    threading.Thread(
      target=_drain, args=(proc.stderr, limits.output_bytes, self._err, threading.Event()), daemon=True
    ).start()
    threading.Thread(
      target=_feed, args=(self._launched.program_fd, program, proc.stdin, "", False), daemon=True
    ).start()
    self.deadline = self._launched.start + limits.seconds
    # The watchdog: at the deadline the program goes, whatever rsft is blocked on (a send into a full pipe too).
    self._watchdog = threading.Timer(limits.seconds, self.close)
    self._watchdog.daemon = True
    self._watchdog.start()

  def _read_lines(self) -> None:
    """Splits stdout into lines by hand from bounded chunks: a line without a newline cannot grow past the cap."""
    kept, partial = 0, b""
    stream = self._launched.proc.stdout
    while True:
      data = stream.read1(1 << 16)
      if not data:
        break
      kept += len(data)
      if kept > self.limits.output_bytes:
        self.over.set()
        self.close()
        break
      *lines, partial = (partial + data).split(b"\n")
      for line in lines:
        text = line.decode(errors="replace")
        if text.startswith(self.marker):
          self._messages.put(text[len(self.marker) :])
    self._messages.put(None)  # end of output

  def send(self, line: str) -> bool:
    try:
      self._launched.proc.stdin.write(line.encode() + b"\n")
      self._launched.proc.stdin.flush()
      return True
    except (BrokenPipeError, OSError, ValueError):
      return False

  def receive(self, deadline: float | None = None) -> str | None:
    """The next message, or None at the end of output, past the deadline or the output cap."""
    deadline = min(deadline or self.deadline, self.deadline)
    while not self.over.is_set():
      try:
        return self._messages.get(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
      except queue.Empty:
        if time.monotonic() >= deadline:
          return None
    return None

  @property
  def stderr(self) -> str:
    return b"".join(self._err).decode(errors="replace")

  def close(self) -> None:
    self._watchdog.cancel() if threading.current_thread() is not self._watchdog else None
    self._launched.kill()

  def __enter__(self) -> Process:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _read_info(fd: int, holder: dict[str, int]) -> None:
  """bwrap's --info-fd: JSON with the sandbox init's pid (in our PID namespace)."""
  with os.fdopen(fd, "rb") as f:
    data = f.read()
  try:
    holder.update({k: v for k, v in json.loads(data.decode() or "{}").items() if isinstance(v, int)})
  except ValueError:
    pass


def _feed(program_fd: int, program: str, stdin_pipe, stdin: str, close_stdin: bool) -> None:
  """Writes the program through its own pipe and the input to stdin, tolerating a program that died first."""
  try:
    with os.fdopen(program_fd, "w") as w:
      w.write(program)
  except (BrokenPipeError, OSError):
    pass
  if not close_stdin:
    return
  try:
    stdin_pipe.write(stdin.encode())
  except (BrokenPipeError, OSError):
    pass
  finally:
    try:
      stdin_pipe.close()
    except OSError:
      pass


def _parent_of(pid: int) -> int | None:
  try:
    with open(f"/proc/{pid}/status") as f:
      return next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
  except (OSError, StopIteration, ValueError):
    return None


def _kill_everything(proc: subprocess.Popen, init_pid: int | None, groups: _Cgroups | None) -> None:
  """SIGKILL the sandbox's PID-namespace init (the kernel then kills every process in the namespace), bwrap's
  process group, and whatever is left in the run's cgroups."""
  if init_pid and _parent_of(init_pid) == proc.pid:  # only ever bwrap's own child
    try:
      os.kill(init_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  try:
    proc.wait(timeout=2.0)
  except subprocess.TimeoutExpired:
    pass
  if groups is not None:
    groups.kill_and_remove()
