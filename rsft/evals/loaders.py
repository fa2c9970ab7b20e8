"""Benchmark items from local files (JSONL / parquet / CSV) or `hf:` names, schema-checked."""

from __future__ import annotations

import os
from typing import Any

from rsft.data.readers import raw_rows
from rsft.evals.benchmarks import Benchmark, Item, missing_fields
from rsft.evals.data import default_dir

GENERATED_ITEMS = 200  # file-less benchmarks (countdown): items made when no limit is given


def data_dir(eval_cfg: Any) -> str:
  """eval.data_dir, or the user cache `python -m rsft.evals.data fetch` fills when it is unset."""
  return eval_cfg.data_dir or default_dir()


def data_path(bench: Benchmark, data_dir: str) -> str:
  path = os.path.join(data_dir, bench.file)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"benchmark {bench.name}: {path} does not exist; fetch it with `python -m "
      f"rsft.evals.data fetch --benchmarks={bench.name}` or set --config.eval.data_dir to the "
      f"folder holding {bench.file}."
    )
  return path


def parse_files(spec: str | None) -> dict[str, str]:
  """eval.files: "name=path,name=path" (a path may be an `hf:owner/name[:split]` dataset) -> {name: path}."""
  out = {}
  for part in (spec or "").split(","):
    if not part.strip():
      continue
    name, sep, path = part.partition("=")
    if not sep or not path.strip():
      raise ValueError(f"eval.files entry {part!r}: expected benchmark=path")
    out[name.strip()] = path.strip()
  return out


def load_items(bench: Benchmark, data_dir: str, limit: int = 0, path: str | None = None) -> list[Item]:
  """The benchmark's items in file order (the first `limit` when limit > 0); `path` overrides the data file."""
  if bench.generate_items is not None and path is None:
    return [bench.make_item(row, i) for i, row in enumerate(bench.generate_items(limit or GENERATED_ITEMS))]
  if path is None:
    path = data_path(bench, data_dir)
  elif not path.startswith("hf:") and not os.path.exists(path):
    raise FileNotFoundError(f"benchmark {bench.name}: eval.files gives {path}, which does not exist.")
  items = []
  for i, row in raw_rows(path):
    if isinstance(row, Exception):
      raise row
    missing = missing_fields(bench, row)
    if missing:
      raise ValueError(f"{path}: row {i}: missing field(s) {missing} for benchmark {bench.name}")
    items.append(bench.make_item(row, i))
    if limit and len(items) >= limit:
      break
  return items
