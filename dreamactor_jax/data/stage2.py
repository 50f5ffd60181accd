"""The stage-2 dataset (PAPER.md sections 4-5): triplets written by the bootstrap step.

Each record holds a real clip of identity A (the target), A's reference frame, and the pseudo
driving video in which identity B performs A's motion, with fps, caption and the filter scores.

  write_stage2_dataset("data/", records)   # resumable: records whose key is staged are skipped
  keys = written_stage2_keys("data/")      # what an interrupted bootstrap already wrote
  remove_stage2_records("data/", rejected) # a review's rejections; the next write drops them

Records are staged one file each (staging.py) as they come, so the bootstrap can stop at any point;
the ArrayRecord dataset (`OUT/stage2_pairs/1.0.0`) is rewritten from all staged records at the end.
The staging folder is the store further calls append to, so it is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from dreamactor_jax.data import staging
from dreamactor_jax.data.video import encode_jpeg

NAME = "stage2_pairs"


class Stage2Pairs(staging.StagedBuilder):
  """Stage-2 triplets. Features (per record; T frames):

  key str (unique), video_id str (A's source video), identity str (A), driving_identity str (B),
  caption str, fps float32, height/width/num_frames int32 (the target's), target `[T]` JPEG bytes,
  reference JPEG bytes, driving `[T]` JPEG bytes (any size), scores str (JSON object of floats).
  """

  INDEX_COLUMNS = ("key", "video_id", "identity", "driving_identity", "height", "width", "num_frames", "fps",
                   "scores", "caption")

  def _features(self) -> dict:
    frames = tfds.features.Tensor(shape=(None,), dtype=np.object_)
    return {
        "key": tfds.features.Text(), "video_id": tfds.features.Text(), "identity": tfds.features.Text(),
        "driving_identity": tfds.features.Text(), "caption": tfds.features.Text(),
        "fps": tfds.features.Scalar(np.float32), "height": tfds.features.Scalar(np.int32),
        "width": tfds.features.Scalar(np.int32), "num_frames": tfds.features.Scalar(np.int32),
        "target": frames, "driving": frames, "reference": tfds.features.Tensor(shape=(), dtype=np.object_),
        "scores": tfds.features.Text(),
    }

  def _example(self, staged):
    target = staging.unpack_bytes(staged["target_data"], staged["target_offsets"])
    driving = staging.unpack_bytes(staged["driving_data"], staged["driving_offsets"])
    names = ("key", "video_id", "identity", "driving_identity", "caption", "scores")
    example = {name: str(staged[name]) for name in names}
    example.update(fps=float(staged["fps"]), height=int(staged["height"]), width=int(staged["width"]),
                   num_frames=len(target), target=np.array(target, dtype=object),
                   driving=np.array(driving, dtype=object), reference=staged["reference"].tobytes())
    row = [example["key"], example["video_id"], example["identity"], example["driving_identity"], example["height"],
           example["width"], len(target), example["fps"], json.loads(example["scores"]), example["caption"]]
    return example["key"], example, row


def stage2_key(video_id: str, driving_identity: str) -> str:
  """The default record key: A's source video and B's identity."""
  return f"{video_id}@{driving_identity}"


def _staging_dir(out_dir: str | os.PathLike) -> Path:
  return Path(out_dir) / f".staging-{NAME}"


def written_stage2_keys(out_dir: str | os.PathLike) -> set[str]:
  """Keys of the records already staged under `out_dir` (to resume a bootstrap run)."""
  folder = _staging_dir(out_dir)
  paths = folder.glob("*.npz") if folder.exists() else []
  return {str(np.load(path, allow_pickle=False)["key"]) for path in paths if not path.name.endswith(".tmp.npz")}


def remove_stage2_records(out_dir: str | os.PathLike, keys: Iterable[str]) -> int:
  """Unstages the records of `keys` (e.g. triplets a review rejected); the next `write_stage2_dataset`
  rewrites the dataset without them. Keys not staged are ignored; returns how many were removed."""
  folder = _staging_dir(out_dir)
  removed = 0
  for key in keys:
    path = folder / f"{staging.staged_name(key)}.npz"
    if path.exists():
      path.unlink()
      removed += 1
  return removed


def _check(record: dict, key: str) -> None:
  video, driving, reference = record["video"], record["driving"], record["reference"]
  for name, array, ndim in (("video", video, 4), ("driving", driving, 4), ("reference", reference, 3)):
    if array.dtype != np.uint8 or array.ndim != ndim or array.shape[-1] != 3:
      shape = "[T, H, W, 3]" if ndim == 4 else "[H, W, 3]"
      raise ValueError(f"stage-2 record {key!r}: {name} is {array.dtype} {array.shape}, expected uint8 {shape}")
  if len(video) != len(driving):
    raise ValueError(f"stage-2 record {key!r}: video has {len(video)} frames, driving {len(driving)}")
  if reference.shape != video.shape[1:]:
    raise ValueError(f"stage-2 record {key!r}: reference is {reference.shape}, the video's frames {video.shape[1:]}")


def write_stage2_dataset(out_dir: str | os.PathLike, records: Iterable[dict], *, quality: int = 95,
                         finalize: bool = True, progress: bool = True) -> Path | None:
  """Stages each record not yet written, then (if `finalize`) rewrites the dataset; returns its folder.

  A record: `video` uint8 [T, H, W, 3] (target clip of A), `reference` uint8 [H, W, 3] (of A),
  `driving` uint8 [T, H', W', 3] (B doing A's motion), `fps` float, `caption` str, `scores`
  {name: float}, `video_id` str (A's source), `identity` str (A), `driving_identity` str (B),
  optional `key` str (default `stage2_key(video_id, driving_identity)`).
  """
  folder = _staging_dir(out_dir)
  staging.check_options(folder, dict(quality=quality))
  for record in tqdm(records, desc="stage-2 records", unit="record", disable=not progress):
    key = record.get("key") or stage2_key(record["video_id"], record["driving_identity"])
    path = folder / f"{staging.staged_name(key)}.npz"
    if path.exists():
      continue
    _check(record, key)
    target, target_offsets = staging.pack_bytes([encode_jpeg(frame, quality) for frame in record["video"]])
    driving, driving_offsets = staging.pack_bytes([encode_jpeg(frame, quality) for frame in record["driving"]])
    scores = {str(name): float(value) for name, value in record.get("scores", {}).items()}
    staging.write_staged(path, dict(
        key=key, video_id=record["video_id"], identity=record.get("identity") or record["video_id"],
        driving_identity=record["driving_identity"], caption=record.get("caption", ""),
        fps=np.float32(record["fps"]), height=record["video"].shape[1], width=record["video"].shape[2],
        target_data=target, target_offsets=target_offsets, driving_data=driving, driving_offsets=driving_offsets,
        reference=np.frombuffer(encode_jpeg(record["reference"], quality), np.uint8), scores=json.dumps(scores)))
  if not finalize:
    return None
  if not any(folder.glob("*.npz")):
    raise staging.DataError(f"{out_dir}: no stage-2 records to write")
  return staging.prepare(Stage2Pairs, out_dir, folder)


def refuse_self_pairs(rows: Iterable[dict], name: str) -> None:
  """Raises DataError when an index row's driving identity is its target's (`data.allow_self_pairs`)."""
  selves = [row["key"] for row in rows if row["identity"] == row["driving_identity"]]
  if selves:
    raise staging.DataError(
        f"{name}: {len(selves)} self pairs (the driving clip shows the target's own identity, e.g. {selves[0]!r}): "
        "trained on them the loss collapses, the model learns to copy the driving pixels instead of transferring "
        "the motion; train on cross-identity pairs (the bootstrap's), or set data.allow_self_pairs=True")


def open_stage2(path: str | os.PathLike) -> Path:
  """The version folder of a stage-2 dataset, given the writer's `out_dir` or the folder itself."""
  return staging.dataset_dir(path, NAME)
