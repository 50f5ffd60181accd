"""The stage-1 dataset: a TFDS ArrayRecord dataset built from a video folder (CONTRACTS.md format).

  python -m dreamactor_jax.data.build --src videos/ --out data/ [--workers 2] [--short-side 720]

Each video becomes one record: its frames as JPEGs (video.py says why), fps, size, keypoints in
pixels of the stored frames, caption and identity. Videos are staged in parallel, one file each,
so an interrupted build continues where it stopped (staging.py). Unreadable, corrupt or too short
videos and unusable keypoint files are skipped with a warning naming the file, and counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from absl import flags
from tqdm import tqdm

from dreamactor_jax import cli
from dreamactor_jax.data import staging
from dreamactor_jax.data.keypoints import Pose, read_pose
from dreamactor_jax.data.video_folder import NAME, VideoFolder
from dreamactor_jax.data.video import encode_jpeg, fit_short_side, read_video
from dreamactor_jax.media import VIDEO_SUFFIXES

log = logging.getLogger(__name__)
@dataclasses.dataclass
class BuildReport:
  """What a build did: the dataset folder, records written, and each skipped file with its reason."""

  dataset_dir: Path
  num_records: int
  skipped: dict[str, str]


def find_videos(src: Path) -> dict[str, Path]:
  """`{video_id: path}` for every video under `src` (id = relative path without extension)."""
  videos = {}
  for path in sorted(src.rglob("*")):
    if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
      videos[path.relative_to(src).with_suffix("").as_posix()] = path
  return videos


def _sidecar_text(path: Path) -> tuple[str, str | None]:
  """(caption, identity) from `<id>.json` ({"caption", "identity"}) and `<id>.txt`."""
  caption, identity = None, None
  meta_path, text_path = path.with_suffix(".json"), path.with_suffix(".txt")
  if meta_path.exists():
    meta = json.loads(meta_path.read_text())
    caption, identity = meta.get("caption"), meta.get("identity")
  if caption is None and text_path.exists():
    caption = text_path.read_text().strip()
  return caption or "", identity


def stage_video(job: tuple[str, str, str, int, int, int]) -> tuple[str, str, str | None]:
  """Encodes one video into its staged file; returns (video_id, path, reason it was skipped or None)."""
  video_id, path, out, min_frames, short_side, quality = job
  path, out = Path(path), Path(out)
  try:
    caption, identity = _sidecar_text(path)
    fps, images = read_video(path)
    jpegs, original, stored = [], None, None
    for image in images:
      original = original or image.size
      image = fit_short_side(image, short_side)
      stored = image.size
      jpegs.append(encode_jpeg(image, quality))
    if len(jpegs) < min_frames:
      raise ValueError(f"too short: {len(jpegs)} frames, need at least {min_frames}")
    if fps <= 0:
      raise ValueError("no frame rate in the container")
    pose = read_pose(path)
    if pose is None:
      pose = Pose.empty(len(jpegs))
    elif abs(pose.num_frames - len(jpegs)) > 2:  # decoders may disagree on a frame or two at the end
      raise ValueError(f"keypoints have {pose.num_frames} frames, the video {len(jpegs)}")
    else:
      scale = np.array([stored[0] / original[0], stored[1] / original[1]], np.float32)
      pose = pose.fit_frames(len(jpegs)).map_points(lambda xy: xy * scale)
  except Exception as e:  # a crawl's bad files raise anything (av, PIL, json, numpy): skip, never crash
    reason = f"{type(e).__name__}: {e}".splitlines()[0]
    staging.write_bad(out.with_suffix(".bad.json"), str(path), reason)
    return video_id, str(path), reason
  data, offsets = staging.pack_bytes(jpegs)
  staging.write_staged(out, dict(
      key=video_id, identity=identity or video_id, caption=caption, fps=np.float32(fps), width=stored[0],
      height=stored[1], frames_data=data, frames_offsets=offsets, body=pose.body, hands=pose.hands, face=pose.face))
  return video_id, str(path), None


def build_dataset(src: str | os.PathLike, out: str | os.PathLike, *, workers: int = 1, min_frames: int = 5,
                  short_side: int = 720, quality: int = 95, keep_staging: bool = False,
                  progress: bool = True) -> BuildReport:
  """Builds (or finishes building) the stage-1 dataset of the video folder `src` under `out`."""
  src, out = Path(src), Path(out)
  if not src.is_dir():
    raise staging.DataError(f"--src {src} is not a folder")
  videos = find_videos(src)
  if not videos:
    raise staging.DataError(f"--src {src} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
  stage_dir = out / f".staging-{NAME}"
  staging.check_options(stage_dir, dict(min_frames=min_frames, short_side=short_side, quality=quality))
  jobs, skipped = [], {}
  for video_id, path in videos.items():
    target = stage_dir / f"{staging.staged_name(video_id)}.npz"
    bad = target.with_suffix(".bad.json")
    if bad.exists():
      skipped[str(path)] = json.loads(bad.read_text())["reason"]
    elif not target.exists():
      jobs.append((video_id, str(path), str(target), min_frames, short_side, quality))
  with tqdm(total=len(videos), initial=len(videos) - len(jobs), desc="stage videos", unit="video",
            disable=not progress) as bar:
    if workers > 1 and len(jobs) > 1:
      with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.imap_unordered(stage_video, jobs)
        for result in results:
          _note(result, skipped)
          bar.update()
    else:
      for job in jobs:
        _note(stage_video(job), skipped)
        bar.update()
  if len(skipped) == len(videos):
    raise staging.DataError(f"--src {src}: all {len(videos)} videos were skipped, e.g. "
                            f"{next(iter(skipped))}: {next(iter(skipped.values()))}")
  dataset_dir = staging.prepare(VideoFolder, out, stage_dir)
  if not keep_staging:
    shutil.rmtree(stage_dir)
  if skipped:
    log.warning("skipped %d of %d videos (listed above)", len(skipped), len(videos))
  return BuildReport(dataset_dir, len(videos) - len(skipped), skipped)


def _note(result: tuple[str, str, str | None], skipped: dict[str, str]) -> None:
  _, path, reason = result
  if reason is not None:
    skipped[path] = reason
    log.warning("skipping %s: %s", path, reason)


def open_videos(path: str | os.PathLike) -> Path:
  """The version folder of a stage-1 dataset, given `--out` or the folder itself."""
  return staging.dataset_dir(path, NAME)


FLAGS = flags.FlagValues()
_SRC = flags.DEFINE_string("src", None, "Video folder (CONTRACTS.md format).", required=True, flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "TFDS data dir; the dataset goes to OUT/video_folder/1.0.0.", required=True,
                           flag_values=FLAGS)
_WORKERS = flags.DEFINE_integer("workers", os.cpu_count(), "Processes encoding videos.", lower_bound=1,
                                flag_values=FLAGS)
_MIN_FRAMES = flags.DEFINE_integer("min-frames", 5, "Shorter videos are skipped.", lower_bound=1, flag_values=FLAGS)
_SHORT_SIDE = flags.DEFINE_integer("short-side", 720, "Downscale frames to this short side; 0: keep.", lower_bound=0,
                                   flag_values=FLAGS)
_QUALITY = flags.DEFINE_integer("quality", 95, "JPEG quality of stored frames.", lower_bound=1, upper_bound=100,
                                flag_values=FLAGS)
_KEEP_STAGING = flags.DEFINE_bool("keep-staging", False, "Keep the per-video staged files.", flag_values=FLAGS)


def run() -> None:
  report = build_dataset(_SRC.value, _OUT.value, workers=_WORKERS.value, min_frames=_MIN_FRAMES.value,
                         short_side=_SHORT_SIDE.value, quality=_QUALITY.value, keep_staging=_KEEP_STAGING.value)
  log.info("wrote %d records to %s; skipped %d", report.num_records, report.dataset_dir, len(report.skipped))


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
