"""The bootstrap's review sheet (PAPER.md section 4: pseudo pairs are checked by hand).

`review.csv` has one row per candidate pair: key, video_id, identity (A), driving_identity (B),
reference (B's image source), self (1 for self pairs), one column per score, mean, auto (1 if the
thresholds accept it), accept (the decision, prefilled with auto), reviewed (1 once a reviewer
decided) and sheet (its contact sheet, relative to the CSV). Edit `accept` (1/0) and apply the file
(`--apply-review` marks every row reviewed). Later runs keep a reviewer's decision (a reviewed row,
or one whose accept differs from its auto); the other rows follow the thresholds of the run.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dreamactor_jax import media
from dreamactor_jax.bootstrap.scores import SCORES

COLUMNS = ("key", "video_id", "identity", "driving_identity", "reference", "self")
TAIL = ("mean", "auto", "accept", "reviewed", "sheet")
_TRUE, _FALSE = ("1", "yes", "y", "true"), ("0", "no", "n", "false")


class ReviewError(ValueError):
  """A review file that cannot be read; the message is one line naming the file and line."""


def sheet_image(columns: Sequence[np.ndarray], *, num_frames: int = 4, gap: int = 4) -> np.ndarray:
  """A contact sheet: images `[H, W, 3]` or videos `[T, H, W, 3]` side by side (a column per input),
  `num_frames` evenly spaced frames top to bottom -> uint8 `[rows * (H + gap) - gap, W', 3]`."""
  return media.contact_sheet(media.side_by_side(columns, gap=gap), num_frames=num_frames, gap=gap)


def _format(value) -> str:
  if isinstance(value, float):
    return "" if not np.isfinite(value) else f"{value:.4f}"
  return str(value)


def write_review(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
  """Writes the rows (dicts of COLUMNS, scores, TAIL) sorted by key, atomically; score columns are those
  any row has, in `scores.SCORES` order."""
  path = Path(path)
  scores = [name for name in SCORES if name != "self" and any(name in row for row in rows)]
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow((*COLUMNS, *scores, *TAIL))
    for row in sorted(rows, key=lambda r: r["key"]):
      writer.writerow([_format(row.get(name, "")) for name in (*COLUMNS, *scores, *TAIL)])
  os.replace(tmp, path)
  return path


def _flag(value: str, path: Path, line: int, column: str) -> bool:
  text = value.strip().lower()
  if text in _TRUE:
    return True
  if text in _FALSE:
    return False
  raise ReviewError(f"{path} line {line}: {column}={value!r}; expected 1 or 0")


def read_review(path: str | os.PathLike) -> dict[str, dict]:
  """`{key: row}` of a review file; `accept`, `reviewed` (False if absent) and `auto` (None if absent) as bools."""
  path = Path(path)
  if not path.is_file():
    raise ReviewError(f"review file {path} does not exist")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = [name for name in ("key", "accept") if name not in (reader.fieldnames or ())]
    if missing:
      raise ReviewError(f"{path}: no {' or '.join(missing)} column; expected the review.csv the bootstrap writes")
    rows = {}
    for line, row in enumerate(reader, start=2):
      key = row["key"]
      if key in rows:
        raise ReviewError(f"{path} line {line}: key {key!r} appears twice")
      row["accept"] = _flag(row["accept"] or "", path, line, "accept")
      row["auto"] = _flag(row["auto"], path, line, "auto") if row.get("auto") else None
      row["reviewed"] = _flag(row["reviewed"], path, line, "reviewed") if row.get("reviewed") else False
      rows[key] = row
  return rows


def decision(old: Mapping[str, dict], key: str, auto: bool) -> tuple[bool, bool]:
  """A candidate's (accept, reviewed): a reviewer's decision in the old rows (a reviewed row, or one
  whose accept differs from its auto) holds, else the thresholds' verdict `auto`."""
  row = old.get(key)
  if row is not None and (row["reviewed"] or row["accept"] != row["auto"]):
    return row["accept"], True
  return auto, False
