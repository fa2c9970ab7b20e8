"""One writer per workdir stage: an advisory lock file that a second run refuses and a killed run's successor
takes over.

The lock is `fcntl.flock` on WORKDIR/.<name>.lock, held for the life of the process: the kernel releases it when
the holder dies (kill -9 included), so a stale lock never blocks, and the file's text (pid, host, start time,
command) names the holder in the refusal. Object-store workdirs (gs://, s3://) cannot be locked and are skipped
with a warning. On a pod only process 0 locks (every process runs the same program).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from absl import logging

from rsft import distributed


class WorkdirBusy(RuntimeError):
  pass


@contextlib.contextmanager
def lock(workdir: str, name: str) -> Iterator[None]:
  """Holds WORKDIR/.<name>.lock for the block; raises WorkdirBusy when another live process holds it."""
  if "://" in workdir or not distributed.is_primary():
    if "://" in workdir:
      logging.warning(
        "%s: an object-store workdir cannot be locked; make sure one %s runs on it at a time.", workdir, name
      )
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, f".{name}.lock")
  f = open(path, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "unknown"
    f.close()
    raise WorkdirBusy(
      f"{workdir} is in use by another {name} ({holder}); wait for it to finish, stop it, or choose another --workdir."
    ) from None
  f.seek(0)
  before = f.read().strip()
  if before:
    logging.info("%s: taking over the %s lock left by a run that is gone (%s)", workdir, name, before)
  f.seek(0)
  f.truncate()
  f.write(
    json.dumps(
      {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:300],
      }
    )
  )
  f.flush()
  try:
    yield
  finally:
    f.seek(0)
    f.truncate()
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


FINISHED = "train_finished.json"  # written by a training run that reached its last step (follow-mode eval's end)


def mark_finished(workdir: str, step: int) -> None:
  """Training reached its last step, `step`, and saved it: follow-mode evaluation stops once it has scored it."""
  if distributed.is_primary():
    path = os.path.join(workdir, FINISHED)
    with open(path + ".tmp", "w") as f:
      json.dump({"final_step": step, "time": time.time()}, f)
    os.replace(path + ".tmp", path)


def finished_step(workdir: str) -> int | None:
  """The final step a finished training run recorded, or None while it runs (or never ran here)."""
  try:
    with open(os.path.join(workdir, FINISHED)) as f:
      return int(json.load(f)["final_step"])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def clear_finished(workdir: str) -> None:
  """A run that (re)starts training is not finished, whatever an earlier run recorded."""
  if distributed.is_primary() and os.path.exists(os.path.join(workdir, FINISHED)):
    os.remove(os.path.join(workdir, FINISHED))
