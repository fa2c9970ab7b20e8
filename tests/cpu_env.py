"""The environment of every test process, in one place: conftest applies it to the pytest process, and a test that
starts python subprocesses gives them the same with `env(devices)`.

The tests' models are tiny, so compiling dominates their time: XLA compiles without LLVM's expensive passes and
without its fusion emitters (every comparison is between two programs compiled alike, or against torch within a
tolerance), and compiled programs go to a cache shared by the session's processes (a subprocess that compiles what
the pytest process already compiled reads it back). The cache folder is the session's own, made fresh, so nothing
carries over between runs.
"""

import os
import tempfile

# XLA:CPU's MLIR fusion emitters take about twice the compile time of its elemental emitters on these programs:
# test_prefix_cache_and_chunked_prefill_give_the_same_tokens compiles 134 programs in 26 s with them, 12.5 s without.
FAST_COMPILE = (
  "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for `devices` fake CPU devices (0: XLA's default of one), keeping flags the user set that do not
  conflict."""
  owned = ("--xla_force_host_platform_device_count", *(f.split("=")[0] for f in FAST_COMPILE.split()))
  own = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(owned)]
  count = [f"--xla_force_host_platform_device_count={devices}"] if devices else []
  return " ".join(own + count + FAST_COMPILE.split())


def apply() -> None:
  """For the pytest process (before jax is imported); inherited by every subprocess it starts."""
  os.environ["XLA_FLAGS"] = xla_flags(8)
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rsft_test_jax_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"


def env(devices: int = 8, **extra: str) -> dict[str, str]:
  """The environment for a python subprocess of a test, with its own fake device count."""
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices), **extra)
