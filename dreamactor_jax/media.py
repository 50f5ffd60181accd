"""Reading and writing the images and videos users hand us, and the previews we hand back.

Videos are uint8 `[T, H, W, 3]` here; the package works in -1..1 floats (`to_unit`/`to_uint8`).
Every failure is one line naming the file and what was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
H264_SUFFIXES = (".mp4", ".mov", ".mkv")  # the containers write_video's H.264 stream goes in
PREVIEW_MIN_HEIGHT = 256  # previews of smaller results are enlarged to this (`enlarge`)


class MediaError(ValueError):
  """An unreadable, empty or unsupported image or video."""


@contextlib.contextmanager
def frozen_gc() -> Iterator[None]:
  """Keeps the objects alive now out of the garbage collector while media files are read or
  written: imageio's pyav plugin runs a full `gc.collect()` on every close, 0.1-0.5 s per file once
  jax, grain and tfds are imported, ~5 ms with their objects frozen. Nests (the outermost unfreezes)."""
  if gc.get_freeze_count():
    yield
    return
  gc.freeze()
  try:
    yield
  finally:
    gc.unfreeze()


@dataclasses.dataclass(frozen=True)
class Video:
  frames: np.ndarray  # uint8 [T, H, W, 3]
  fps: float


def read_image(path: str | os.PathLike) -> np.ndarray:
  """An image file as uint8 `[H, W, 3]`.

  Grayscale is replicated to RGB; palette images are expanded; images with alpha (RGBA, LA) are
  composited over white, the usual backdrop of cut-out characters. Other modes are refused.
  """
  try:
    with Image.open(path) as image:
      image.load()
  except (OSError, ValueError) as e:
    raise MediaError(f"{path}: not a readable image ({e})") from None
  if image.mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  if image.mode in ("RGBA", "LA"):
    backdrop = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(backdrop, image.convert("RGBA"))
  if image.mode not in ("RGB", "RGBA", "L"):
    raise MediaError(f"{path}: image mode {image.mode!r} is not supported; expected RGB, RGBA, L, LA or P")
  return np.asarray(image.convert("RGB"))


def read_video(path: str | os.PathLike, *, fps: float | None = None, max_frames: int | None = None) -> Video:
  """A video file (mp4/webm/mov/...) or a folder of frames (sorted by name) as a `Video`.

  `fps` is required for a folder of frames and overrides a file's own rate otherwise.
  """
  path = Path(path)
  if path.is_dir():
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
      raise MediaError(f"{path}: folder holds no frames ({', '.join(IMAGE_SUFFIXES)})")
    if fps is None:
      raise MediaError(f"{path}: a folder of frames needs its frame rate (fps)")
    frames = [read_image(f) for f in files[:max_frames]]
    if len({f.shape for f in frames}) > 1:
      raise MediaError(f"{path}: frames differ in size ({sorted({f.shape[:2] for f in frames})})")
    return Video(np.stack(frames), float(fps))
  if not path.exists():
    raise MediaError(f"{path}: no such video file or folder of frames")
  try:
    with frozen_gc():
      meta = iio.immeta(path, plugin="pyav")
      frames = []
      for frame in iio.imiter(path, plugin="pyav"):
        frames.append(np.asarray(frame)[..., :3])
        if max_frames is not None and len(frames) >= max_frames:
          break
  except Exception as e:  # pyav raises many error types for corrupt input
    raise MediaError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
  if not frames:
    raise MediaError(f"{path}: the video has no frames")
  rate = fps or meta.get("fps")
  if not rate:
    raise MediaError(f"{path}: the video states no frame rate; pass fps")
  return Video(np.stack(frames), float(rate))


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
  """Writes uint8 `[T, H, W, 3]` as H.264 mp4 (yuv420p, playable everywhere), atomically."""
  path = Path(path)
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
  if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p needs even sizes
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
  os.close(fd)
  try:
    with frozen_gc():
      iio.imwrite(tmp, frames, plugin="pyav", codec="libx264", fps=fps, out_pixel_format="yuv420p")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a video is an ordinary file
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def check_video_output(path: str | os.PathLike, what: str) -> Path:
  """`path` if `write_video` can write there, checked before any work: a suffix whose container holds
  H.264 and a folder that exists (or can be made) and takes files. `what` names the flag or key."""
  path = Path(path)
  if path.suffix.lower() not in H264_SUFFIXES:
    raise MediaError(f"{what}={path}: expected a video file name ending in {', '.join(H264_SUFFIXES)}")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=path.parent).close()
  except OSError as e:
    raise MediaError(f"{what}={path}: cannot write in {path.parent} ({e.strerror or e})") from None
  if path.is_dir():
    raise MediaError(f"{what}={path}: is a folder; expected a video file name")
  return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(image)).save(path)
  return path


def to_unit(frames: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in -1..1."""
  return np.asarray(frames, np.float32) / 127.5 - 1.0


def to_uint8(frames) -> np.ndarray:
  """-1..1 floats -> uint8, rounded and clipped."""
  return np.clip(np.round((np.asarray(frames, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def side_by_side(columns: Sequence[np.ndarray], *, gap: int = 4) -> np.ndarray:
  """Videos `[T, H_i, W_i, 3]` (or images `[H_i, W_i, 3]`, held still) as one `[T, H, sum W, 3]`
  video, each column top-aligned on a white backdrop; T is the longest column's (shorter ones hold
  their last frame)."""
  videos = [c[None] if c.ndim == 3 else c for c in columns]
  frames = max(v.shape[0] for v in videos)
  height = max(v.shape[1] for v in videos)
  width = sum(v.shape[2] for v in videos) + gap * (len(videos) - 1)
  out = np.full((frames, height, width, 3), 255, np.uint8)
  x = 0
  for video in videos:
    held = video[np.minimum(np.arange(frames), video.shape[0] - 1)]
    out[:, :video.shape[1], x:x + video.shape[2]] = held
    x += video.shape[2] + gap
  return out


def enlarge(frames: np.ndarray, *, min_height: int = PREVIEW_MIN_HEIGHT) -> np.ndarray:
  """Frames `[..., H, W, 3]` scaled up by the smallest whole factor that makes them at least
  `min_height` tall, nearest-neighbour so every generated pixel stays a visible square (a 64x64
  result is a thumbnail on a screen); frames that tall already are returned as they are."""
  factor = -(-min_height // frames.shape[-3])
  if factor <= 1:
    return frames
  return np.repeat(np.repeat(frames, factor, axis=-3), factor, axis=-2)


def contact_sheet(video: np.ndarray, *, num_frames: int = 6, gap: int = 4) -> np.ndarray:
  """`num_frames` evenly spaced frames of `[T, H, W, 3]` stacked top to bottom, as one image."""
  picks = np.unique(np.linspace(0, video.shape[0] - 1, num_frames).round().astype(int))
  height = video.shape[1]
  sheet = np.full((len(picks) * (height + gap) - gap, video.shape[2], 3), 255, np.uint8)
  for row, t in enumerate(picks):
    sheet[row * (height + gap):row * (height + gap) + height] = video[t]
  return sheet
