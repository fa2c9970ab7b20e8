"""The code sandbox against a hostile program run as root (issue 13): each attack fails and leaves no trace.

Every attack runs as a generated program would, through rsft.evals.sandbox.run, while this test process is root.
"""

import os
import socket
import sys
import time
import uuid

import pytest

from rsft.evals import sandbox

pytestmark = pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed here")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBC = "import ctypes, ctypes.util, os\nlibc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"


def run(program, **limits):
  return sandbox.run(program, limits=sandbox.Limits(**{"seconds": 5, **limits}))


def leftovers(tag: str) -> list[int]:
  """Host processes whose command line or name carries `tag` (an attack's own marker)."""
  out = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f, open(f"/proc/{pid}/comm", "rb") as g:
        if tag.encode() in f.read() or tag[:15].encode() in g.read():
          out.append(int(pid))
    except OSError:
      continue
  return out


def test_runs_unprivileged_in_a_minimal_root():
  r = run(
    "import os, re\ns = open('/proc/self/status').read()\n"
    "print(os.getuid(), sorted(os.listdir('/')), re.findall(r'Cap(?:Eff|Prm|Bnd):\\s*(\\S+)', s),"
    " re.search(r'NoNewPrivs:\\s*(\\d)', s).group(1), sum(p.isdigit() for p in os.listdir('/proc')) < 5)"
  )
  assert r.status == "ok" and r.contained, r.stderr
  uid, rest = r.stdout.split(" ", 1)
  assert int(uid) != 0
  assert "'0000000000000000', '0000000000000000', '0000000000000000'] 1 True" in rest
  # Only the system folders and the interpreter's own (pyenv under /root, a venv wherever it lives): never the
  # checkout or the home folder the venv sits in, of which only the empty path down to the venv exists.
  interpreter = {p.strip("/").split("/")[0] for p in (sys.prefix, sys.base_prefix, os.path.realpath(sys.executable))}
  top = set(eval(rest[: rest.index("]") + 1]))
  assert top <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "proc", "sbin", "tmp", "usr"} | interpreter, top
  here, venv_parent = os.path.dirname(os.path.abspath(__file__)), os.path.dirname(sys.prefix)
  r = run(f"import os\nprint(os.path.exists({here!r}), os.listdir({venv_parent!r}))")
  assert r.stdout.startswith("False "), r.stdout  # this tests folder is not there
  if sys.prefix != sys.base_prefix:  # in a venv: its parent folder holds the venv alone
    assert r.stdout.split(" ", 1)[1].strip() == repr([os.path.basename(sys.prefix)]), r.stdout


@pytest.mark.parametrize(
  "name,program",
  [
    (
      "remount / writable",
      LIBC + "print(libc.mount(None, b'/', None, 32 | 4096, None))\nopen('/usr/rsft_attack', 'w').write('x')",
    ),
    (
      "unmount /proc",
      LIBC + "assert libc.umount2(b'/proc', 2) != 0\nprint(os.listdir('/proc'))\nopen('/usr/rsft_attack', 'w')",
    ),
    (
      "join another network namespace",
      LIBC + "fd = os.open('/proc/1/ns/net', os.O_RDONLY)\n"
      "assert libc.setns(fd, 0) == 0\nimport socket\n"
      "socket.create_connection(('127.0.0.1', PORT), timeout=2)",
    ),
    (
      "read host files",
      "for p in ('/etc/shadow', '/etc/passwd', '/root/.bashrc', SHARED):\n"
      "    try:\n        open(p).read(); print('READ', p)\n    except OSError:\n        pass\n"
      "assert False",
    ),
    ("raise its own limits", "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))"),
    ("ptrace the parent", LIBC + "assert libc.ptrace(16, os.getppid(), None, None) == 0"),
  ],
)
def test_privileged_attacks_fail(name, program, tmp_path):
  with socket.socket() as server:  # a host service on loopback that the sandbox must not reach
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    program = program.replace("PORT", str(server.getsockname()[1]))
    program = program.replace("SHARED", repr(os.path.join(ROOT, "..", "shared", "benchmarks", "math500.jsonl")))
    r = run(program)
    server.settimeout(0.2)
    with pytest.raises(socket.timeout):
      server.accept()
  assert r.status == "error" and "READ" not in r.stdout, (r.stdout, r.stderr[-400:])
  assert not os.path.exists("/usr/rsft_attack")


def test_host_unix_socket_is_not_there(tmp_path):
  path = f"/tmp/rsft_attack_{uuid.uuid4().hex[:8]}.sock"
  server = socket.socket(socket.AF_UNIX)
  server.bind(path)
  server.listen(1)
  try:
    r = run(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\nprint('connected')")
    server.settimeout(0.2)
    with pytest.raises(socket.timeout):
      server.accept()
  finally:
    server.close()
    os.unlink(path)
  assert r.status == "error" and "connected" not in r.stdout


def test_escaping_the_process_group_does_not_outlive_the_limit():
  tag = f"rsft_persist_{uuid.uuid4().hex[:8]}"
  program = (
    LIBC + "libc.prctl(1, 0)\n"  # PR_SET_PDEATHSIG = 0
    f"if os.fork() == 0:\n    os.setsid()\n    libc.prctl(1, 0)\n"
    f"    os.execv('/bin/sleep', ['/bin/sleep', '60', '{tag}'])\n"
    "print('parent done')"
  )
  start = time.monotonic()
  r = run(program, seconds=2)
  assert time.monotonic() - start < 3.5
  assert r.stdout.startswith("parent done")
  time.sleep(0.2)
  assert leftovers(tag) == []
  start = time.monotonic()
  r = run(
    LIBC + f"libc.prctl(15, b'{tag[:15]}')\nimport time\nos.setsid() if os.fork() == 0 else None\ntime.sleep(60)",
    seconds=1,
  )
  assert r.status == "timeout" and time.monotonic() - start < 2.5 and leftovers(tag) == []


def test_fork_bomb_is_capped_and_reaped():
  tag = f"bomb{uuid.uuid4().hex[:8]}"
  start = time.monotonic()
  r = run(
    LIBC + f"libc.prctl(15, b'{tag}')\nimport time\nwhile True:\n    try:\n        os.fork()\n"
    "    except OSError:\n        print('capped', flush=True); time.sleep(60)",
    seconds=2,
    processes=16,
  )
  assert time.monotonic() - start < 3.5 and "capped" in r.stdout
  time.sleep(0.2)
  assert leftovers(tag) == []


def test_output_bomb_is_cut_while_it_streams():
  start = time.monotonic()
  r = run(
    "import sys\nblock = 'x' * (1 << 20)\nwhile True:\n    sys.stdout.write(block)", seconds=20, output_bytes=1 << 20
  )
  assert r.status == "error" and len(r.stdout) <= 1 << 20 and time.monotonic() - start < 5


def test_memory_is_limited_for_the_whole_program():
  groups = sandbox._Cgroups(sandbox.Limits())
  has_cgroups = bool(groups.dirs)
  groups.kill_and_remove()
  if not has_cgroups:
    pytest.skip("cgroups are not writable here: memory is limited per process only")
  program = (
    "import os, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
    "        x = bytearray(600 << 20)\n        for i in range(0, len(x), 4096): x[i] = 1\n"
    "        time.sleep(1); os._exit(0)\n    kids.append(pid)\n"
    "print([os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids])"
  )
  r = run(program, seconds=10, memory_bytes=1 << 30)
  codes = eval(r.stdout.strip()) if r.stdout.strip().startswith("[") else None
  assert codes is None or any(c != 0 for c in codes), r.stdout  # 3 x 600 MB cannot all live in 1 GiB


def test_refuses_without_bubblewrap_unless_opted_in(monkeypatch):
  monkeypatch.setattr(sandbox, "_tools", lambda: None)
  monkeypatch.delenv(sandbox.UNSAFE_ENV, raising=False)
  with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
    sandbox.run("print(1)")
  monkeypatch.setenv(sandbox.UNSAFE_ENV, "1")
  r = sandbox.run("print(1)")
  assert r.stdout == "1\n" and not r.contained


def test_private_tmp_is_bounded():
  r = run(
    "import os\nfor i in range(1000):\n    open(f'f{i}', 'wb').write(b'x' * (4 << 20))",
    tmp_bytes=16 << 20,
    file_bytes=8 << 20,
  )
  assert r.status == "error" and "No space left" in r.stderr


@pytest.mark.parametrize(
  "name,tail",
  [
    ("SystemExit(0)", "\nraise SystemExit(0)\n"),
    ("atexit os._exit(0)", "\nimport atexit, os\natexit.register(lambda: os._exit(0))\n"),
    ("excepthook", "\nimport sys, os\nsys.excepthook = lambda *a: os._exit(0)\n"),
    (
      "own unittest.main",
      "\nimport unittest\nclass T(unittest.TestCase):\n    def test(self): pass\nunittest.main(exit=True)\n",
    ),
    ("patch AssertionError", "\nimport builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"),
    ("exit from inside the call", ""),
  ],
)
def test_forged_humaneval_passes_fail(name, tail):
  import json

  from rsft.evals.graders import code

  item = json.loads(open(os.path.join(ROOT, "..", "shared", "benchmarks", "humaneval.jsonl")).readline())
  wrong = "    import os\n    os._exit(0)\n" if name == "exit from inside the call" else "    return None\n"
  response = f"```python\n{item['prompt']}{wrong}{tail}```"
  right = f"```python\n{item['prompt']}{item['canonical_solution']}{tail}```"
  got = code.grade_humaneval([item, item], [response, right])
  assert got[0].score == 0.0, got
  if name in ("SystemExit(0)", "own unittest.main"):  # the candidate's module never finishes: nothing to call
    assert got[1].score == 0.0
  elif name != "exit from inside the call":
    assert got[1].score == 1.0, got  # the same tail on a right answer does not hurt it


def test_a_program_that_stops_reading_cannot_hang_its_caller():
  program = "import fcntl, time\nfcntl.fcntl(0, 1031, 4096)\nprint('READY', flush=True)\ntime.sleep(60)"  # F_SETPIPE_SZ
  start = time.monotonic()
  with sandbox.Process(program, "READY", sandbox.Limits(seconds=2)) as p:
    assert p.receive() == ""
    assert p.send("x" * (1 << 20)) is False  # blocked on the full pipe until the watchdog killed the program
  assert time.monotonic() - start < 4


def test_a_line_without_newline_cannot_grow_the_callers_memory():
  program = "import os\nwhile True:\n    os.write(1, b'x' * (1 << 16))"
  start = time.monotonic()
  with sandbox.Process(program, "M", sandbox.Limits(seconds=10, output_bytes=1 << 20)) as p:
    assert p.receive() is None and p.over.is_set()
  assert time.monotonic() - start < 5


def test_the_session_keyring_is_not_shared():
  import ctypes

  own = ctypes.CDLL(None).syscall(250, 0, -3, 0) if os.uname().machine == "x86_64" else None  # KEYCTL_GET_KEYRING_ID
  if own is None or own < 0:
    pytest.skip("keyctl unavailable")
  r = run("import ctypes\nprint(ctypes.CDLL(None).syscall(250, 0, -3, 0))")
  assert r.status == "ok" and int(r.stdout) != own
