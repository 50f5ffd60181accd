"""The bootstrap's candidates -> review.csv -> the stage-2 dataset (data/stage2.py): the thresholds'
verdict or a reviewer's decision per pair, and a dataset kept in line with the accepted pairs
(staged one record at a time, rewritten only when the accepted set changed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dreamactor_jax.bootstrap import review
from dreamactor_jax.bootstrap.scores import mean_score, passes
from dreamactor_jax.data import (DataError, open_stage2, remove_stage2_records, write_stage2_dataset,
                                 written_stage2_keys)

log = logging.getLogger(__name__)
REVIEW_FILE = "review.csv"


def read_candidates(out: Path) -> dict[str, dict]:
  """`{key: metadata}` of every candidate under OUT (all processes'); the videos are not read."""
  metas = {}
  for path in sorted((out / "candidates").glob("*.npz")):
    if path.name.endswith(".tmp.npz"):
      continue
    with np.load(path) as stored:
      meta = {name: str(stored[name]) for name in ("key", "video_id", "identity", "driving_identity", "reference",
                                                     "caption", "clip")}
      meta.update(fps=float(stored["fps"]), scores=json.loads(str(stored["scores"])), path=path)
    metas[meta["key"]] = meta
  return metas


def _review_row(meta: dict, auto: bool, accept: bool, reviewed: bool) -> dict:
  scores = meta["scores"]
  return dict(key=meta["key"], video_id=meta["video_id"], identity=meta["identity"],
              driving_identity=meta["driving_identity"], reference=meta["reference"], self=int("self" in scores),
              **{k: v for k, v in scores.items() if k != "self"}, mean=mean_score(scores),
              auto=int(auto), accept=int(accept), reviewed=int(reviewed), sheet=f"sheets/{meta['path'].stem}.png")


def finalize_review(out: str | os.PathLike, *, thresholds: dict[str, float], min_score: float,
                    progress: bool = True) -> tuple[int, int, Path | None]:
  """Writes OUT/review.csv for every candidate (accept = a reviewer's earlier decision where there is
  one, else the thresholds' verdict: `review.decision`), then brings the stage-2 dataset in line with it.
  Returns (candidates, accepted, dataset folder or None)."""
  out = Path(out)
  metas = read_candidates(out)
  old = review.read_review(out / REVIEW_FILE) if (out / REVIEW_FILE).exists() else {}
  rows, accepted = [], set()
  for key, meta in metas.items():
    auto = passes(meta["scores"], thresholds, min_score)
    accept, reviewed = review.decision(old, key, auto)
    rows.append(_review_row(meta, auto, accept, reviewed))
    if accept:
      accepted.add(key)
  review.write_review(out / REVIEW_FILE, rows)
  return len(metas), len(accepted), _sync_dataset(out, accepted, metas, progress)


def apply_review(out: str | os.PathLike, review_file: str | os.PathLike, *,
                 progress: bool = True) -> tuple[int, int, Path | None]:
  """Rewrites the stage-2 dataset from an edited review file (no rendering): rows with accept 1 are
  in, rows with 0 and candidates missing from the file are out. OUT/review.csv takes the decisions,
  all marked reviewed, so later runs keep them. Returns (candidates, accepted, dataset folder or None)."""
  out = Path(out)
  metas = read_candidates(out)
  if not metas:
    raise review.ReviewError(f"--out {out} holds no candidates (candidates/*.npz); run the bootstrap first")
  decisions = review.read_review(review_file)
  unknown = sorted(set(decisions) - set(metas))
  if unknown:
    raise review.ReviewError(f"{review_file}: key {unknown[0]!r} is not a candidate in {out / 'candidates'}")
  missing = len(set(metas) - set(decisions))
  if missing:
    log.warning("%d candidates are not in %s: they are left out of the dataset", missing, review_file)
  old = review.read_review(out / REVIEW_FILE) if (out / REVIEW_FILE).exists() else {}
  rows, accepted = [], set()
  for key, meta in metas.items():
    autos = [table[key]["auto"] for table in (old, decisions) if key in table and table[key]["auto"] is not None]
    accept = key in decisions and decisions[key]["accept"]
    rows.append(_review_row(meta, autos[0] if autos else False, accept, reviewed=True))
    if accept:
      accepted.add(key)
  review.write_review(out / REVIEW_FILE, rows)
  return len(metas), len(accepted), _sync_dataset(out, accepted, metas, progress)


def _records(out: Path, keys: Sequence[str], metas: dict[str, dict]):
  """Stage-2 records (data/stage2.py) of candidates, read one at a time."""
  for key in keys:
    meta = metas[key]
    with np.load(meta["path"]) as candidate, np.load(out / "clips" / f"{meta['clip']}.npz") as clip:
      yield dict(key=key, video=clip["video"], reference=clip["reference"], driving=candidate["driving"],
                 fps=meta["fps"], caption=meta["caption"], scores=meta["scores"], video_id=meta["video_id"],
                 identity=meta["identity"], driving_identity=meta["driving_identity"])


def _sync_dataset(out: Path, accepted: set[str], metas: dict[str, dict], progress: bool) -> Path | None:
  """Stages the accepted pairs not yet staged, unstages the others, and rewrites the dataset if that
  changed anything (or it is missing); with nothing accepted the dataset is removed."""
  written = written_stage2_keys(out)
  removed = remove_stage2_records(out, written - accepted)
  try:
    existing = open_stage2(out)
  except DataError:
    existing = None
  if not accepted:
    if existing is not None:
      shutil.rmtree(existing)
    log.warning("no pair is accepted: no stage-2 dataset in %s", out)
    return None
  added = sorted(accepted - written)
  if existing is not None and not added and not removed:
    return existing
  return write_stage2_dataset(out, _records(out, added, metas), progress=progress)
