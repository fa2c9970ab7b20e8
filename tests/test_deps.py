"""The lock is what runs: the tested environment holds exactly requirements/cpu.txt's versions, the lock satisfies
pyproject.toml's ranges, the TPU and GPU locks hold the same versions, and tools/deps_drift.py reads both sides."""

import importlib.metadata
import importlib.util
import os
import re
import tomllib

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = os.path.join(ROOT, "requirements")


def drift_tool():
  spec = importlib.util.spec_from_file_location("deps_drift", os.path.join(ROOT, "tools", "deps_drift.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def lock(name: str) -> dict[str, str]:
  with open(os.path.join(REQ, name)) as f:
    return drift_tool()._pins(f.read())


def normalized(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.skipif(os.environ.get("RSFT_DRIFT") == "1", reason="tools/deps_drift.py runs the suite off the lock")
def test_the_environment_is_the_lock():
  """The README's set-up command installs the lock and nothing else: every locked version is the installed one."""
  want = {**lock("cpu.txt"), **lock("torch-cpu.txt")}
  installed = {normalized(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
  differ = {name: (version, installed.get(name)) for name, version in want.items() if installed.get(name) != version}
  assert not differ, f"(locked, installed) differ: {differ}; run `bash tools/setup_env.sh` (docs/dependencies.md)"


def test_the_locks_satisfy_pyproject_and_agree_with_each_other():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  cpu = {**lock("cpu.txt"), **lock("torch-cpu.txt")}
  needed = project["dependencies"] + project["optional-dependencies"]["test"]
  for line in needed:
    req = Requirement(line)
    name = normalized(req.name)
    assert name in cpu, f"{req.name} (pyproject.toml) is not in requirements/cpu.txt: run requirements/lock.sh"
    assert req.specifier.contains(cpu[name], prereleases=True), (req, cpu[name])
  for other in ("tpu.txt", "gpu.txt"):
    pins = lock(other)
    assert {n: v for n, v in pins.items() if n in cpu and cpu[n] != v} == {}, other  # one stack, not one per file
  assert "libtpu" in lock("tpu.txt") and "jax-cuda12-plugin" in lock("gpu.txt") and "torch" not in lock("tpu.txt")
  assert cpu["nltk"] == "3.9.1"  # the study's (docs/eval_protocol.md, "IFEval and nltk")


def test_drift_report_reads_locks_freezes_and_junit(tmp_path):
  tool = drift_tool()
  text = (
    "absl-py==2.5.1 \\\n    --hash=sha256:28 \\\n    # via grain\nflax==0.12.8 ; python_full_version < '3.12'"
    " \\\nTorch==2.13.0+cpu\n# nltk==0\nml_collections==1.1.0\n-e file:///x\n"
  )
  assert tool._pins(text) == {"absl-py": "2.5.1", "flax": "0.12.8", "torch": "2.13.0+cpu", "ml-collections": "1.1.0"}
  junit = tmp_path / "j.xml"
  junit.write_text(
    '<testsuites><testsuite><testcase classname="tests.a" name="t1"/><testcase classname="tests.a" '
    'name="t2"><failure message="x"/></testcase><testcase classname="tests.b" name="t3"><skipped/>'
    '</testcase><testcase classname="tests.b" name="t4"><error/></testcase></testsuite></testsuites>'
  )
  assert tool._outcomes(str(junit)) == {
    "tests.a::t1": "passed",
    "tests.a::t2": "failed",
    "tests.b::t3": "skipped",
    "tests.b::t4": "error",
  }
