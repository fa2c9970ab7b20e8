"""A cheap identity for a model's weights, so adapters are never merged into a base they were not trained on.

Hashing every byte of a 28 GB checkpoint would cost minutes per load; this hashes each weight file's name, size
and 17 evenly spaced 64 KiB samples (start and end included), about 1 MiB a file. Two checkpoints of one
architecture (a base and its instruct tune, two SFT steps) differ in essentially every tensor, so the samples
tell them apart; a change confined to bytes no sample covers would not be seen.
"""

from __future__ import annotations

import hashlib
import os

from rsft.convert import step_dir
from rsft.convert.hf_to_rsft import checkpoint_files, is_gguf

SAMPLES, SAMPLE_BYTES = 17, 64 * 1024


def weight_files(path: str) -> list[str]:
  """The files that hold `path`'s weights: an HF dir's config and safetensors, a step dir's params, a GGUF file."""
  if is_gguf(path):
    return [path]
  if step_dir.is_step_dir(path):
    root = os.path.join(path, step_dir.PARAMS)
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
  return [os.path.join(path, "config.json")] + sorted(checkpoint_files(path))


def of(path: str) -> str:
  """sha256 over each weight file's relative name, size and sampled bytes (hex)."""
  path = os.fspath(path)
  digest = hashlib.sha256()
  root = path if os.path.isdir(path) else os.path.dirname(path)
  for file in weight_files(path):
    size = os.path.getsize(file)
    digest.update(f"{os.path.relpath(file, root)}\0{size}\0".encode())
    with open(file, "rb") as f:
      for i in range(SAMPLES):
        f.seek(max(0, (size - SAMPLE_BYTES) * i // (SAMPLES - 1)))
        digest.update(f.read(SAMPLE_BYTES))
  return digest.hexdigest()
