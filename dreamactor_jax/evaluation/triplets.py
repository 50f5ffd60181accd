"""Evaluation triplets (reference, driving, truth), results, and the hook that runs a method.

A triplet folder holds one sub-folder per triplet (written by `python -m
dreamactor_jax.data.synthetic --split test`, or by hand for your own videos):

    <name>/reference.png|.jpg         the character to animate (identity B), uint8 [H, W, 3]
    <name>/driving.mp4|.webm|.mov|.gif|.npz   the motion (identity A), T frames, any size
    <name>/truth.npz|.mp4|...         B performing the motion: T frames of H x W (.npz: lossless, preferred)
    <name>/meta.json                  optional: {"kind": ...} groups the table (default "all")
    <name>/background.npz|.png        optional background plate for the silhouettes ([T or 1, H, W, 3]);
                                      default: the truth's per-pixel temporal median
    <name>/truth_mask.npz             optional exact truth silhouettes (`mask`, coverage uint8 [T, H, W])
    <name>/reference_mask.npz         optional exact reference silhouette (`mask`, uint8 [1, H, W]); with
                                      truth_mask it places the triplet in the "moving" split
    <name>/truth.pose.npz             optional truth keypoints (`body` [T, P, 18, 3]) for PCK
    <name>/driving.pose.npz           optional driving keypoints (a pose-driven method may use them)

`.npz` videos store the array under `video` (or as their only array). A results folder holds
`<name>.npz` (lossless, preferred; `samples` uint8 [N, T, H, W, 3] for N samples of the method, or
`video`) or `<name>.mp4|...`, T frames of H x W, and optionally `<name>.pose.npz` (result
keypoints, for PCK).

A triplet *moves* when the reference's silhouette and the truth's overlap little: their IoU,
averaged over frames 1.., is below `MOVING_IOU` (copying the reference cannot score there).

The hook for models: any `AnimateFn` (`animate(reference uint8 [H, W, 3], driving uint8
[T, H', W', 3]) -> uint8 [T, H, W, 3]`) runs over a triplet folder with `animate_triplets`;
one that declares a `samples` keyword returns that many samples, uint8 [N, T, H, W, 3].
`copy_reference` is the floor every method must beat.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax import media

# animate(reference uint8 [H, W, 3], driving uint8 [T, H', W', 3]) -> uint8 [T, H, W, 3]
AnimateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

MOVING_IOU = 0.5  # reference-vs-truth silhouette IoU below which a triplet is in the "moving" split
IMAGE_EXTENSIONS = media.IMAGE_SUFFIXES
VIDEO_EXTENSIONS = (".npz",) + media.VIDEO_SUFFIXES
log = logging.getLogger(__name__)


def copy_reference(reference: np.ndarray, driving: np.ndarray) -> np.ndarray:
  """The baseline: the reference image repeated for every driving frame."""
  return np.repeat(reference[None], driving.shape[0], axis=0)


@dataclasses.dataclass
class Triplet:
  """One evaluation case, loaded."""
  name: str
  folder: Path
  reference: np.ndarray  # uint8 [H, W, 3]
  driving: np.ndarray  # uint8 [T, H', W', 3]
  truth: np.ndarray  # uint8 [T, H, W, 3]
  meta: dict
  background: np.ndarray | None = None  # uint8 [T or 1, H, W, 3]
  truth_body: np.ndarray | None = None  # float32 [T, P, 18, 3]
  driving_body: np.ndarray | None = None  # float32 [T, P, 18, 3]
  truth_mask: np.ndarray | None = None  # uint8 [T, H, W] coverage x 255
  reference_mask: np.ndarray | None = None  # uint8 [H, W] coverage x 255

  @property
  def kind(self) -> str:
    return str(self.meta.get("kind", "all"))

  @property
  def reference_iou(self) -> float:
    """Mean IoU over frames 1.. of the reference's and the truth's exact silhouettes (coverage >=
    0.5; 1 where both are empty); NaN without both masks or with one frame."""
    if self.truth_mask is None or self.reference_mask is None or self.truth_mask.shape[0] < 2:
      return float("nan")
    reference, truth = self.reference_mask[None] >= 128, self.truth_mask[1:] >= 128
    inter, union = (reference & truth).sum((1, 2)), (reference | truth).sum((1, 2))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())

  @property
  def moving(self) -> bool:
    """In the "moving" split: `reference_iou` below MOVING_IOU."""
    return bool(self.reference_iou < MOVING_IOU)


def _find(folder: Path, stem: str, extensions: tuple[str, ...]) -> Path | None:
  for extension in extensions:
    path = folder / f"{stem}{extension}"
    if path.is_file():
      return path
  return None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
  """Every array of an .npz; a damaged file raises ValueError naming it (numpy alone blames pickling)."""
  try:
    with np.load(path) as data:
      return {name: data[name] for name in data}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a readable .npz of arrays ({type(e).__name__})") from None


def read_any_video(path: Path) -> np.ndarray:
  """uint8 [T, H, W, 3] from a video file or an .npz (`video` or its only array)."""
  if path.suffix == ".npz":
    data = _read_npz(path)
    names = list(data)
    if "video" not in names and len(names) != 1:
      raise ValueError(f"{path}: expected an array named 'video' (or a single array); found {names}")
    video = data["video" if "video" in names else names[0]]
  else:
    video = media.read_video(path).frames
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f"{path}: expected uint8 [T, H, W, 3], got {video.dtype} {video.shape}")
  return video


def _read_body(path: Path) -> np.ndarray | None:
  if not path.is_file():
    return None
  data = _read_npz(path)
  if "body" not in data:
    raise ValueError(f"{path}: expected an array named 'body' [T, P, 18, 3]")
  return data["body"].astype(np.float32)


def _read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
  """uint8 `shape` coverage from `mask` of an .npz, or None when the file is absent."""
  if not path.is_file():
    return None
  mask = _read_npz(path).get("mask")
  if mask is None or mask.dtype != np.uint8 or mask.shape != shape:
    found = "no array 'mask'" if mask is None else f"{mask.dtype} {mask.shape}"
    raise ValueError(f"{path}: expected 'mask' uint8 {shape}, found {found}")
  return mask


def find_triplets(folder: str | os.PathLike, *, strict: bool = False) -> list[Path]:
  """The sub-folders of `folder` that hold a reference, a driving video and a truth, sorted. A
  sub-folder holding only some of them is named in a warning and skipped, or with `strict` refused."""
  folder = Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f"triplet folder {folder} does not exist")
  found = []
  for path in sorted(p for p in folder.iterdir() if p.is_dir()):
    parts = {"reference": _find(path, "reference", IMAGE_EXTENSIONS),
             "driving": _find(path, "driving", VIDEO_EXTENSIONS), "truth": _find(path, "truth", VIDEO_EXTENSIONS)}
    missing = [name for name, part in parts.items() if part is None]
    if not missing:
      found.append(path)
    elif len(missing) < len(parts):
      message = f"{path}: no {' or '.join(missing)} (expected reference.png, driving.mp4 and truth.npz or .mp4)"
      if strict:
        raise ValueError(message)
      log.warning("%s; skipped (--strict refuses)", message)
  if not found:
    raise FileNotFoundError(f"no triplets in {folder}: expected sub-folders with reference.png, driving.mp4 and "
                            "truth.npz (or truth.mp4)")
  return found


def load_triplet(folder: str | os.PathLike) -> Triplet:
  """Reads one triplet folder and checks that its parts fit together."""
  folder = Path(folder)
  reference = media.read_image(_find(folder, "reference", IMAGE_EXTENSIONS))
  driving = read_any_video(_find(folder, "driving", VIDEO_EXTENSIONS))
  truth = read_any_video(_find(folder, "truth", VIDEO_EXTENSIONS))
  if truth.shape[1:3] != reference.shape[:2]:
    raise ValueError(f"{folder}: truth frames are {truth.shape[1:3]} but the reference is {reference.shape[:2]}")
  if driving.shape[0] != truth.shape[0]:
    raise ValueError(f"{folder}: driving has {driving.shape[0]} frames, truth {truth.shape[0]}; expected equal")
  meta_path = folder / "meta.json"
  meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
  background = None
  background_path = _find(folder, "background", (".npz",) + IMAGE_EXTENSIONS)
  if background_path is not None:
    background = (read_any_video(background_path) if background_path.suffix == ".npz"
                  else media.read_image(background_path)[None])
    if background.shape[1:] != truth.shape[1:] or background.shape[0] not in (1, truth.shape[0]):
      raise ValueError(f"{background_path}: shape {background.shape}; expected [1 or {truth.shape[0]}, "
                       f"{truth.shape[1]}, {truth.shape[2]}, 3]")
  reference_mask = _read_mask(folder / "reference_mask.npz", (1, *truth.shape[1:3]))
  return Triplet(folder.name, folder, reference, driving, truth, meta, background,
                 _read_body(folder / "truth.pose.npz"), _read_body(folder / "driving.pose.npz"),
                 _read_mask(folder / "truth_mask.npz", truth.shape[:3]),
                 None if reference_mask is None else reference_mask[0])


def load_result(results: str | os.PathLike, triplet: Triplet) -> tuple[np.ndarray, np.ndarray | None]:
  """A method's samples uint8 [N, T, H, W, 3] for `triplet` (N = 1 unless its .npz holds `samples`)
  and its keypoints, if given; shape-checked."""
  results = Path(results)
  path = _find(results, triplet.name, VIDEO_EXTENSIONS)
  if path is None:
    raise FileNotFoundError(f"no result for triplet {triplet.name} in {results}: expected {triplet.name}.npz or "
                            f"{triplet.name}.mp4")
  samples = _read_npz(path).get("samples") if path.suffix == ".npz" else None
  samples = read_any_video(path)[None] if samples is None else samples
  if samples.dtype != np.uint8 or samples.ndim != 5 or samples.shape[1:] != triplet.truth.shape:
    raise ValueError(f"{path}: shape {samples.shape[1:] if samples.ndim == 5 else samples.shape}; expected "
                     f"{triplet.truth.shape} like the truth of {triplet.name}")
  return samples, _read_body(results / f"{triplet.name}.pose.npz")


def run_animate(animate: AnimateFn, triplet: Triplet, samples: int = 1) -> np.ndarray:
  """`animate(reference, driving)` on one triplet -> uint8 [N, T, H, W, 3], checked against the
  truth's shape. An `animate` that declares a `samples` keyword is asked for `samples` of them
  (others give one); one that declares a `triplet` keyword receives the `Triplet` too, e.g. to read
  `triplet.driving_body` (a pose-driven model given true keypoints) or `triplet.meta` (captions)."""
  parameters = inspect.signature(animate).parameters
  kwargs = {"triplet": triplet} if "triplet" in parameters else {}
  if "samples" in parameters:
    video = np.asarray(animate(triplet.reference, triplet.driving, samples=samples, **kwargs))
    expected = (samples, *triplet.truth.shape)
  else:
    video = np.asarray(animate(triplet.reference, triplet.driving, **kwargs))
    expected = triplet.truth.shape
  if video.dtype != np.uint8 or video.shape != expected:
    raise ValueError(f"animate returned {video.dtype} {video.shape} for triplet {triplet.name}; expected uint8 "
                     f"{expected}")
  return video if "samples" in parameters else video[None]


def animate_triplets(animate: AnimateFn, triplets: str | os.PathLike, out: str | os.PathLike | None = None, *,
                     fps: float | None = None, progress: bool = True) -> dict[str, np.ndarray]:
  """Runs `animate` (see `run_animate`) on every triplet; returns {name: uint8 [T, H, W, 3]}.

  With `out`, writes `<name>.npz` (what scores read) and `<name>.mp4`: a results folder.
  """
  videos = {}
  with media.frozen_gc():
    for path in tqdm(find_triplets(triplets), desc="animate", unit="triplet", disable=not progress):
      triplet = load_triplet(path)
      video = videos[triplet.name] = run_animate(animate, triplet)[0]
      if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dir / f"{triplet.name}.npz", video=video)
        media.write_video(out_dir / f"{triplet.name}.mp4", video, fps or triplet.meta.get("fps", 8))
  return videos
