"""The user cache that fetched files live in (benchmarks, models), and the hash that checks them: one convention for
every fetcher, so $XDG_CACHE_HOME and the per-kind override behave the same everywhere."""

from __future__ import annotations

import hashlib
import os


def directory(kind: str, override_env: str) -> str:
  """$override_env, else $XDG_CACHE_HOME/rsft/<kind>, else ~/.cache/rsft/<kind>."""
  if os.environ.get(override_env):
    return os.environ[override_env]
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "rsft", kind)


def sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
