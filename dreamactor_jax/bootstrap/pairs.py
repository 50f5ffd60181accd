"""What the bootstrap pairs up (PAPER.md section 4): clips of the stage-1 dataset (identity A), the
reference images of other identities B, and the colour augmentation of self pairs.

Clips. One clip per record, planned from the dataset's index without reading frames: `num_frames`
(1 + 4k) frames at a stride (by default the one bringing the record's fps nearest the stage-1
model's), starting at a frame drawn from (seed, video id), cut to the aspect bucket nearest the
record (centred, as the stage-1 pipeline does without random crop). `read_clip` decodes it and
renders its skeleton exactly as the stage-1 pipeline does with bone scaling off (`skeleton.PoseDrawing`,
the stage-1 bundle's), keeping the keypoints for pose scoring. The plan is a pure function of
(index, seed, options), so hosts split it `process_index::process_count` and reruns find their work.

References. `DatasetReferences`: each identity's first frame of its first video (by id), non-humanoid
identities included; `FolderReferences`: image files, identity = file stem, or the sub-folder name for
files in sub-folders (one of its images drawn per pair). A clip gets K identities other than A's, drawn
from (seed, video id) as a prefix of one permutation, so a larger K extends a smaller one.

Self pairs (off by default): the clip drives itself under `augment.appearance_augment`, one affine
colour map per clip applied to every frame alike (hue rotation, channel permutation, saturation,
contrast, brightness), never a geometric change: PAPER.md Fig. 2's unspecified driving augmentation,
and the way stage 2 sees motion of characters the stage-1 model cannot render (no keypoints).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax import media
from dreamactor_jax.data import staging
from dreamactor_jax.data.keypoints import Pose
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.data.video import Bucket, cover_box, decode_jpeg, decode_jpegs, nearest_bucket

log = logging.getLogger(__name__)


class PairError(ValueError):
  """Inputs the bootstrap cannot pair up; the message is one line naming the flag or path."""


def _stream(seed: int, video_id: str, purpose: int) -> np.random.Generator:
  """A generator for one purpose (0: clip start, 1: references, 2: augmentation) of one video."""
  return np.random.default_rng([seed, zlib.crc32(video_id.encode()), purpose])


# ------------------------------------------------------------------------------------ clips


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """One clip of one record: `frames` `[T]` source frame indices, cut to `bucket` (H, W)."""

  record: int  # index in the dataset
  video_id: str
  identity: str
  caption: str
  fps: float  # the clip's (source fps / stride)
  frames: tuple[int, ...]
  bucket: tuple[int, int]
  has_pose: bool  # the index lists persons (cross pairs need keypoints)


def clip_stride(source_fps: float, target_fps: float) -> int:
  """The frame stride bringing `source_fps` nearest `target_fps` (at least 1)."""
  return max(1, round(source_fps / target_fps))


def plan_clips(rows: Sequence[dict], identities: Sequence[str], *, num_frames: int, frame_stride: int | None,
               target_fps: float, buckets: Sequence[tuple[int, int]], seed: int) -> tuple[list[ClipPlan], list[str]]:
  """One clip per record long enough for it, in index order; returns (clips, ids of records too short).

  rows: the dataset index (`staging.read_index`); identities: each record's identity.
  """
  if num_frames < 1 or (num_frames - 1) % 4:
    raise PairError(f"--num-frames={num_frames}; expected 1 + 4k (e.g. 81)")
  shapes = [Bucket(h, w) for h, w in buckets]
  clips, too_short = [], []
  for record, (row, identity) in enumerate(zip(rows, identities, strict=True)):
    stride = frame_stride or clip_stride(row["fps"], target_fps)
    span = 1 + (num_frames - 1) * stride
    if row["num_frames"] < span:
      too_short.append(row["video_id"])
      continue
    start = int(_stream(seed, row["video_id"], 0).integers(0, row["num_frames"] - span + 1))
    bucket = shapes[nearest_bucket(row["height"], row["width"], shapes)]
    clips.append(ClipPlan(record=record, video_id=row["video_id"], identity=identity, caption=row["caption"],
                          fps=float(row["fps"]) / stride, frames=tuple(range(start, start + span, stride)),
                          bucket=(bucket.height, bucket.width), has_pose=row["num_persons"] > 0))
  return clips, too_short


@dataclasses.dataclass
class ClipData:
  """A decoded clip: `video` `[T, H, W, 3]` uint8, `reference` `[H, W, 3]` (its first frame),
  `skeleton` `[T, H, W, 3]` (rendered keypoints; None without keypoints) and `body` `[T, P, 18, 3]`
  (the skeleton's keypoints in pixels of the clip's frames, confidence below the threshold zeroed)."""

  video: np.ndarray
  reference: np.ndarray
  skeleton: np.ndarray | None
  body: np.ndarray | None


def read_clip(record: dict, clip: ClipPlan, drawing: PoseDrawing = PoseDrawing()) -> ClipData:
  """Decodes a planned clip from its dataset record (a `LazySource` item) and draws its skeleton as
  the stage-1 pipeline does with `drawing` (the stage-1 bundle's), without bone scaling
  (`data/pipeline.py`, `Stage1Loader`)."""
  height, width = clip.bucket
  frames = np.array(clip.frames)
  box = cover_box(int(record["height"]), int(record["width"]), Bucket(height, width))
  video = decode_jpegs([record["frames"][f] for f in frames], box, (height, width))
  skeleton = body = None
  pose = Pose(record["body"], record["hands"], record["face"]).frames(frames)
  if pose.num_persons and (pose.body[..., 2] >= drawing.threshold).any():
    pose = drawing.place(pose, height, width, box)
    skeleton = drawing.draw(pose, height, width)
    body = pose.body.copy()
    body[..., 2] = np.where(body[..., 2] >= drawing.threshold, body[..., 2], 0.0)
  return ClipData(video=video, reference=video[0].copy(), skeleton=skeleton, body=body)


# ------------------------------------------------------------------------------- references


@dataclasses.dataclass(frozen=True)
class Reference:
  """A reference image of identity B: `source` says where it comes from (`video:<id>` or `file:<path>`)."""

  identity: str
  source: str


class ReferencePool:
  """Identities B and their images; `pick` draws K of them for a clip."""

  identities: list[str]

  def choices(self, identity: str) -> list[str]:
    """The sources of `identity`'s images."""
    raise NotImplementedError

  def image(self, reference: Reference) -> np.ndarray:
    """uint8 `[H, W, 3]`."""
    raise NotImplementedError

  def pick(self, exclude: str, count: int, *, seed: int, video_id: str) -> list[Reference]:
    """`count` references of identities other than `exclude` (fewer if there are fewer), drawn from
    (seed, video_id): the first `count` of one permutation."""
    others = [identity for identity in self.identities if identity != exclude]
    if not others:
      raise PairError(f"no reference identity other than {exclude!r} (video {video_id}); the bootstrap needs "
                      "images of at least one other identity (--references or a dataset of several identities)")
    rng = _stream(seed, video_id, 1)
    picks = []
    for i in rng.permutation(len(others))[:count]:
      sources = self.choices(others[i])
      picks.append(Reference(others[i], sources[int(rng.integers(len(sources)))]))
    return picks


class DatasetReferences(ReferencePool):
  """The first frame of each identity's first video (by id) in the stage-1 dataset."""

  def __init__(self, source: staging.LazySource, rows: Sequence[dict], identities: Sequence[str]):
    self.source = source
    self.first: dict[str, tuple[int, str]] = {}
    for record, (row, identity) in sorted(enumerate(zip(rows, identities)), key=lambda item: item[1][0]["video_id"]):
      self.first.setdefault(identity, (record, row["video_id"]))
    self.identities = sorted(self.first)

  def choices(self, identity: str) -> list[str]:
    return [f"video:{self.first[identity][1]}"]

  @functools.lru_cache(maxsize=64)
  def image(self, reference: Reference) -> np.ndarray:
    record = self.source[self.first[reference.identity][0]]
    return decode_jpeg(record["frames"][0])


class FolderReferences(ReferencePool):
  """Image files under a folder (module docstring)."""

  def __init__(self, folder: str | os.PathLike):
    self.folder = Path(folder)
    if not self.folder.is_dir():
      raise PairError(f"--references {folder} is not a folder")
    files: dict[str, list[str]] = {}
    for path in sorted(self.folder.rglob("*")):
      if path.is_file() and path.suffix.lower() in media.IMAGE_SUFFIXES:
        relative = path.relative_to(self.folder)
        identity = relative.parts[0] if len(relative.parts) > 1 else path.stem
        files.setdefault(identity, []).append(f"file:{relative.as_posix()}")
    if not files:
      raise PairError(f"--references {folder} holds no images ({', '.join(media.IMAGE_SUFFIXES)})")
    self.files = files
    self.identities = sorted(files)

  def choices(self, identity: str) -> list[str]:
    return self.files[identity]

  @functools.lru_cache(maxsize=64)
  def image(self, reference: Reference) -> np.ndarray:
    return media.read_image(self.folder / reference.source.removeprefix("file:"))


def record_identities(source: staging.LazySource, rows: Sequence[dict], cache: Path | None = None,
                      progress: bool = True) -> list[str]:
  """Each record's identity: from the index (datasets built with an `identity` column), else read from
  the records once (every record is decoded) and kept in `cache` (a JSON file) for later runs."""
  if all("identity" in row for row in rows):
    return [row["identity"] for row in rows]
  ids = [row["video_id"] for row in rows]
  if cache is not None and cache.exists():
    known = json.loads(cache.read_text())
    if all(video_id in known for video_id in ids):
      return [known[video_id] for video_id in ids]
  log.info("the dataset index has no identity column (built before it had one): reading each record's identity")
  identities = [staging.text(source[i]["identity"]) for i in tqdm(range(len(rows)), desc="identities",
                                                                   unit="record", disable=not progress)]
  if cache is not None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(dict(zip(ids, identities)), indent=0))
  return identities


# ------------------------------------------------------------------------------- self pairs


def augment_rng(seed: int, video_id: str) -> np.random.Generator:
  """The generator of a self pair's augmentation."""
  return _stream(seed, video_id, 2)
