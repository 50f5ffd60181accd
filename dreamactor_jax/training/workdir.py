"""What a run owns in its workdir: an exclusive lock, and folders replaced whole.

Two `train.py` runs on one workdir would delete each other's checkpoints in progress, so a run holds
an advisory `flock` on `<workdir>/train.lock` (with its pid inside) while it lives. The kernel drops
the lock when the process ends, however it ends, so a killed run never leaves it stuck.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

LOCK_FILE = "train.lock"


class WorkdirBusy(ValueError):
  """Another live process holds the workdir."""


def lock_workdir(workdir: Path) -> IO[str]:
  """Takes `workdir`'s lock, or raises WorkdirBusy naming the holder's pid; keep the returned file
  open for as long as the run lives (closing it releases the lock)."""
  workdir.mkdir(parents=True, exist_ok=True)
  handle = open(workdir / LOCK_FILE, "a+")  # noqa: SIM115  (held open for the run's life)
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = handle.read().strip() or "unknown"
    handle.close()
    raise WorkdirBusy(f"--workdir={workdir}: another run (pid {holder}) is training in it; wait for it to "
                      "end, or give another --workdir") from None
  handle.seek(0)
  handle.truncate()
  handle.write(f"{os.getpid()}\n")
  handle.flush()
  return handle


def replace_folder(staging: Path, out: Path) -> Path:
  """Moves the complete folder `staging` to `out`; the old `out` is deleted only after the new one
  is in place, so a crash at any moment leaves one whole copy (`out`, or `out.old` beside it)."""
  old = out.with_name(out.name + ".old")
  shutil.rmtree(old, ignore_errors=True)
  if out.exists():
    out.rename(old)
  staging.rename(out)
  shutil.rmtree(old, ignore_errors=True)
  return out
