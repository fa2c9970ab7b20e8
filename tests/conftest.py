"""CPU with 8 fake devices, so sharding is exercised for real (set before jax is imported; tests/cpu_env.py)."""

import os
import shutil

import cpu_env

cpu_env.apply()

# IFEval's sentence splitter (NLTK punkt_tab): the copy beside the repo, as CI has it (users download it once).
_NLTK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "nltk_data")
if os.path.isdir(_NLTK):
  os.environ.setdefault("NLTK_DATA", os.path.abspath(_NLTK))


def pytest_sessionfinish(session, exitstatus):
  if hasattr(session.config, "workerinput"):
    return  # a pytest-xdist worker: the cache is shared with the others, the controller removes it at the end
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  if os.path.basename(cache).startswith("rsft_test_jax_cache_"):
    shutil.rmtree(cache, ignore_errors=True)
