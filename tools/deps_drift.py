"""Early warning for the next dependency release: which tests move when pyproject.toml's ranges resolve to the
newest versions they allow, against the locked set (requirements/cpu.txt). It never fails a landing: it reports.

  python tools/deps_drift.py                                  # whole suite, both environments built fresh
  python tools/deps_drift.py --locked_venv=.venv -- tests/test_ifeval.py tests/test_parity.py
  python tools/deps_drift.py --out=/tmp/drift.json

Builds a locked venv (tools/setup_env.sh) unless --locked_venv names one, and a "latest" venv: the same CPU torch
(the parity reference is held fixed: a newer one is a multi-GB CUDA build), then `pip install --upgrade -e .[test]`,
which takes the newest release every range admits. Runs the same pytest arguments in both with --junitxml and
prints the packages that moved and every test whose outcome differs (passed -> failed, ...). Exit status 0 whatever
moved; 2 only when an environment cannot be built. docs/dependencies.md says what to do with the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins(text: str) -> dict[str, str]:
  """{normalized name: version} from `pip freeze` or a uv-compiled lock (hash and comment lines skipped)."""
  out = {}
  for line in text.splitlines():
    match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line.strip())
    if match:
      out[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
  return out


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
  print("+", " ".join(cmd), flush=True)
  return subprocess.run(cmd, cwd=ROOT, **kw)


def _latest_venv(path: str) -> None:
  python = os.path.join(path, "bin", "python")
  torch = open(os.path.join(ROOT, "requirements", "torch-cpu.txt")).read()
  torch_pin = re.search(r"^torch==\S+", torch, re.M).group(0)
  steps = [
    [sys.executable, "-m", "venv", path],
    [python, "-m", "pip", "install", "-q", "--no-deps", torch_pin],
    [python, "-m", "pip", "install", "-q", "--upgrade", "--upgrade-strategy", "eager", "-e", ".[test]", torch_pin],
  ]
  for cmd in steps:
    if _run(cmd).returncode != 0:
      raise SystemExit(2)


def _outcomes(junit: str) -> dict[str, str]:
  """{test id: passed | failed | error | skipped} from a junit XML file."""
  out = {}
  for case in ET.parse(junit).getroot().iter("testcase"):
    name = f"{case.get('classname')}::{case.get('name')}"
    kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    out[name] = (
      {"failure": "failed", "error": "error", "skipped": "skipped"}.get(kinds[0], "passed") if kinds else "passed"
    )
  return out


def _pytest(venv: str, args: list[str], junit: str) -> dict[str, str]:
  python = os.path.join(venv, "bin", "python")
  _run(
    [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args],
    env=dict(os.environ, RSFT_DRIFT="1"),
  )  # test_deps checks the env is the lock: not here
  return _outcomes(junit) if os.path.exists(junit) else {}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--locked_venv", default="", help="an existing venv built from the lock (default: build one)")
  parser.add_argument("--out", default="", help="also write the report here as JSON")
  parser.add_argument("--keep", action="store_true", help="keep the temporary venvs")
  parser.add_argument("pytest_args", nargs="*", default=["tests"])
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="rsft_drift_")
  try:
    locked = args.locked_venv
    if not locked:
      locked = os.path.join(tmp, "locked")
      if _run(["bash", os.path.join(ROOT, "tools", "setup_env.sh"), locked]).returncode != 0:
        return 2
    latest = os.path.join(tmp, "latest")
    _latest_venv(latest)
    freeze = lambda venv: (
      _run(
        [os.path.join(venv, "bin", "python"), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
      ).stdout
    )
    before, after = _pins(freeze(locked)), _pins(freeze(latest))
    moved = {
      name: [before.get(name), version] for name, version in sorted(after.items()) if before.get(name) != version
    }
    moved.update({name: [version, None] for name, version in before.items() if name not in after})
    was = _pytest(locked, args.pytest_args, os.path.join(tmp, "locked.xml"))
    now = _pytest(latest, args.pytest_args, os.path.join(tmp, "latest.xml"))
    changed = {t: [was.get(t), now.get(t)] for t in sorted(set(was) | set(now)) if was.get(t) != now.get(t)}
    print(f"\n{len(moved)} package(s) differ from the lock (locked -> latest):")
    for name, (old, new) in moved.items():
      print(f"  {name}: {old} -> {new}")
    print(f"{len(changed)} of {len(now)} test(s) changed outcome (locked -> latest):")
    for test, (old, new) in changed.items():
      print(f"  {test}: {old} -> {new}")
    if args.out:
      with open(args.out, "w") as f:
        json.dump(
          {
            "moved": moved,
            "changed": changed,
            "tests": len(now),
            "failed_latest": sorted(t for t, o in now.items() if o in ("failed", "error")),
          },
          f,
          indent=1,
        )
    return 0
  finally:
    if not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      print(f"venvs kept in {tmp}")


if __name__ == "__main__":
  sys.exit(main())
