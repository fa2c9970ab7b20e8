"""SFT data readers: the study's parquet, JSONL, and Hugging Face datasets, normalised to (prompt turns, response).

Accepted row shapes (first match wins):
  {"message": [turns...], "response": str}        the study's parquet schema (paper.md §2)
  {"messages": [turns..., {"role": "assistant"}]} the last assistant turn is the response
  {"prompt": str | [turns...], "response": str}
A malformed row is an error naming the file and the row; with on_error="skip" it is skipped and counted.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging


@dataclasses.dataclass
class Example:
  messages: list[dict[str, str]]  # the prompt turns (no assistant answer)
  response: str
  source: str
  row: int


@dataclasses.dataclass
class ReadStats:
  rows: int = 0
  skipped: int = 0
  errors: list[str] = dataclasses.field(default_factory=list)


def _turns(value: Any, where: str) -> list[dict[str, str]]:
  if isinstance(value, str):
    return [{"role": "user", "content": value}]
  if hasattr(value, "tolist"):  # numpy arrays from parquet
    value = value.tolist()
  if not isinstance(value, (list, tuple)) or not value:
    raise ValueError(f"{where}: expected a non-empty list of chat turns, got {type(value).__name__}")
  turns = []
  for k, turn in enumerate(value):
    if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or not isinstance(turn.get("content"), str):
      raise ValueError(f"{where}: turn {k} must be a dict with string 'role' and 'content'")
    turns.append({"role": turn["role"], "content": turn["content"]})
  return turns


def normalize(row: Any, source: str, index: int) -> Example:
  where = f"{source}: row {index}"
  if not isinstance(row, dict):
    raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
  if "message" in row or "prompt" in row:
    prompt = row["message"] if "message" in row else row["prompt"]
    response = row.get("response")
    if not isinstance(response, str) or not response:
      raise ValueError(f"{where}: 'response' must be a non-empty string")
    return Example(_turns(prompt, where), response, source, index)
  if "messages" in row:
    turns = _turns(row["messages"], where)
    if turns[-1]["role"] != "assistant" or len(turns) < 2:
      raise ValueError(f"{where}: 'messages' must end with an assistant turn after at least one prompt turn")
    return Example(turns[:-1], turns[-1]["content"], source, index)
  raise ValueError(f"{where}: no 'message'/'prompt' + 'response' or 'messages' field (has {sorted(row)})")


def raw_rows(path: str, fmt: str = "auto") -> Iterator[tuple[int, Any]]:
  """(row number, row dict) of a JSONL / parquet / CSV file or an 'hf:' dataset; a bad JSON line yields the error
  (so callers can skip or raise with file and row)."""
  if path.startswith("hf:"):
    yield from _hf_rows(path)
    return
  if fmt in ("auto", None):
    fmt = os.path.splitext(path)[1].lstrip(".")
  fmt = "jsonl" if fmt == "json" else fmt
  if fmt == "csv":
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
      yield from enumerate(csv.DictReader(f))
  elif fmt == "jsonl":
    with open(path, "rb") as f:
      for i, raw in enumerate(f):
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          yield i, ValueError(f"{path}: row {i}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start})")
          continue
        if not line.strip():
          continue
        try:
          yield i, json.loads(line)
        except json.JSONDecodeError as e:
          yield i, ValueError(f"{path}: row {i}: invalid JSON ({e.msg})")
  elif fmt == "parquet":
    import pyarrow.parquet as pq

    for i, row in enumerate(pq.read_table(path).to_pylist()):
      yield i, row
  else:
    raise ValueError(f"{path}: unknown format {fmt!r}; use jsonl, parquet, csv or hf")


def _hf_rows(name: str) -> Iterator[tuple[int, Any]]:
  """'hf:owner/name[:split]' through `datasets`, offline from its local cache (no network at run time)."""
  import datasets

  spec = name[3:]
  repo, _, split = spec.partition(":")
  yield from enumerate(datasets.load_dataset(repo, split=split or "train"))


def resolve_files(files: str | Sequence[str]) -> list[str]:
  """Comma-separated or listed paths, globs expanded; 'hf:' names pass through."""
  items = [f.strip() for f in (files.split(",") if isinstance(files, str) else files) if f and f.strip()]
  out = []
  for item in items:
    if item.startswith("hf:"):
      out.append(item)
      continue
    matches = sorted(glob.glob(item))
    if not matches:
      raise FileNotFoundError(f"data file {item!r} does not exist")
    out.extend(matches)
  return out


_DATA_SUFFIXES = (".gz", ".zst", ".bz2", ".xz", ".jsonl", ".json", ".parquet")


def source_name(source: str) -> str:
  """A file's name in `data.mix`: its base name without its data suffixes ("/d/qwen2.5-math.jsonl.gz" ->
  "qwen2.5-math"), or a dataset's name without owner ("hf:owner/name:train" -> "name:train")."""
  if source.startswith("hf:"):
    return source[3:].rstrip("/").rsplit("/", 1)[-1]
  name = os.path.basename(source)
  while name.endswith(_DATA_SUFFIXES):
    name = name[: name.rindex(".")]
  return name


def read(files: str | Sequence[str], fmt: str = "auto", on_error: str = "raise") -> tuple[list[Example], ReadStats]:
  if on_error not in ("raise", "skip"):
    raise ValueError(f"data.on_error={on_error!r}; use 'raise' or 'skip'")
  stats, out = ReadStats(), []
  for path in resolve_files(files):
    for i, row in raw_rows(path, fmt):
      stats.rows += 1
      try:
        if isinstance(row, Exception):
          raise row
        out.append(normalize(row, path, i))
      except ValueError as e:
        if on_error == "raise":
          raise
        stats.skipped += 1
        stats.errors.append(str(e))
  if stats.skipped:
    logging.warning("skipped %d of %d malformed rows; first: %s", stats.skipped, stats.rows, stats.errors[0])
  return out, stats
