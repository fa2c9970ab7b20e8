"""Resumable JSONL: results are appended and fsynced batch by batch, and a rerun skips rows already written.

A run killed mid-write leaves at most one torn last line; it is cut off on the next open, so the file is always
a list of whole rows. The settings that produced the rows sit beside them (`<output>.meta.json`): a rerun with
other settings is an error instead of a silently mixed file.

On a pod every process runs the same sweep (the model is one program over all hosts) but only process 0 writes;
the others read the same `done` set behind a barrier, so all processes skip and generate the same rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from absl import logging

from rsft import distributed


def read(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, row) for each non-blank line; a bad line is an error naming file and line, except a torn last
  line (no newline: a write cut by a kill), which is left out, as the next ResumableWriter cuts it off."""
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  torn = lines.pop() if lines else b""  # the text after the last newline: empty unless the last write was cut
  for number, raw in enumerate(lines + ([torn] if torn.strip() else []), 1):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"{path}:{number}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start}).") from None
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines) + 1:  # the torn tail
        logging.warning("%s: leaving out a torn last line (%d bytes) from an interrupted write", path, len(raw))
        return
      raise ValueError(f"{path}:{number}: not valid JSON ({e.msg}).") from None
    if not isinstance(row, dict):
      raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}.")
    yield number, row


class ResumableWriter:
  """Appends rows to `path`; `done` maps the key of each row already there to its `prompt_sha` (or None)."""

  def __init__(self, path: str, key: Callable[[dict[str, Any]], Hashable], settings: dict[str, Any]):
    self.path = path
    self.primary = distributed.is_primary()
    meta_path = path + ".meta.json"
    settings = json.loads(json.dumps(settings, default=str))
    distributed.sync(f"open {path}")  # everyone sees the file as process 0 last left it
    if os.path.exists(meta_path) and os.path.exists(path):
      with open(meta_path) as f:
        before = json.load(f)
      changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
      if changed:
        raise ValueError(
          f"{path} was written with other settings ({', '.join(changed)}: "
          f"{[before.get(k) for k in changed]} -> {[settings.get(k) for k in changed]}); "
          "rerun with the same settings or choose another eval.output."
        )
    if self.primary:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      with open(meta_path, "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)
      if os.path.exists(path):
        self._cut_torn_line()
    distributed.sync(f"opened {path}")
    self.done: dict[Hashable, str | None] = {}
    if os.path.exists(path):
      for _, row in read(path):
        self.done[key(row)] = row.get("prompt_sha")
    # A lone surrogate (a response read from JSON with "\udcff" in it) cannot be UTF-8: backslashreplace writes it as
    # that same JSON escape, inside its string, so the row round-trips instead of crashing the writer.
    self._file = open(path, "a", encoding="utf-8", errors="backslashreplace") if self.primary else None

  def _cut_torn_line(self) -> None:
    with open(self.path, "rb+") as f:
      data = f.read()
      end = data.rfind(b"\n") + 1
      if end < len(data):
        f.truncate(end)

  def write(self, rows: Iterable[dict[str, Any]]) -> None:
    if not self.primary:
      return
    self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    distributed.sync(f"closed {self.path}")

  def __enter__(self) -> ResumableWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
