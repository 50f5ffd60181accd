"""Video and image I/O at the data edge, and the geometry of aspect-ratio buckets.

`read_video` streams frames (a long video never sits in memory whole, unlike `media.read_video`);
user-facing reading and writing otherwise live in `dreamactor_jax.media`.

Datasets store each frame as its own JPEG (not the encoded video): a clip of 1 + 4k frames at a
stride decodes exactly the frames it uses, with no seek to a keyframe and no decoding of the
frames between strided ones (an H.264 GOP costs up to GOP-length decodes per random access), and
libjpeg's DCT scaling (`Image.draft`) decodes a large frame straight at 1/2, 1/4 or 1/8 size when
the bucket is smaller. The price is about 5-10x the bytes of the encoded video.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Iterator, Sequence

import av
import numpy as np
from PIL import Image



@dataclasses.dataclass(frozen=True)
class Bucket:
  """One output frame size `H x W` that batches share (the trainer checks it against the model's
  `pixel_multiple`: the data never sees the model)."""

  height: int
  width: int

  @property
  def aspect(self) -> float:
    return self.width / self.height


def parse_buckets(sizes: Sequence[Sequence[int]]) -> tuple[Bucket, ...]:
  """`[(H, W), ...]` -> buckets, refusing sizes that are not positive."""
  buckets = tuple(Bucket(int(h), int(w)) for h, w in sizes)
  if not buckets:
    raise ValueError("data.buckets is empty; expected at least one (H, W)")
  for bucket in buckets:
    if bucket.height <= 0 or bucket.width <= 0:
      raise ValueError(f"data.buckets has {bucket.height}x{bucket.width}; H and W must be positive")
  return buckets


def nearest_bucket(height: int, width: int, buckets: Sequence[Bucket]) -> int:
  """Index of the bucket whose aspect ratio is closest (in log ratio) to `height x width`."""
  log_aspect = math.log(width / height)
  return min(range(len(buckets)), key=lambda i: abs(math.log(buckets[i].aspect) - log_aspect))


def cover_box(height: int, width: int, bucket: Bucket, offset: tuple[float, float] = (0.5, 0.5)
              ) -> tuple[float, float, float, float]:
  """The largest source box `(x0, y0, x1, y1)` of the bucket's aspect ratio inside an `height x width`
  frame; `offset` in 0..1 places it along the slack (0.5, 0.5: centred)."""
  scale = max(bucket.height / height, bucket.width / width)
  box_w, box_h = bucket.width / scale, bucket.height / scale
  x0, y0 = offset[0] * (width - box_w), offset[1] * (height - box_h)
  return x0, y0, x0 + box_w, y0 + box_h


def decode_jpeg(data: bytes, box: tuple[float, float, float, float] | None = None,
                size: tuple[int, int] | None = None, *, flip: bool = False, out: np.ndarray | None = None
                ) -> np.ndarray:
  """One JPEG -> uint8 `[H, W, 3]`: the source `box` resized to `size = (H, W)` (whole image if None),
  written into `out` when given."""
  image = Image.open(io.BytesIO(data))
  full_w, full_h = image.size
  if box is None:
    box = (0.0, 0.0, float(full_w), float(full_h))
  whole = box == (0.0, 0.0, float(full_w), float(full_h)) and (size is None or size == (full_h, full_w))
  if not whole:
    size = size or (round(box[3] - box[1]), round(box[2] - box[0]))
    # DCT-domain downscaling: decode at the smallest 1/2^n scale still larger than the box needs.
    scale = max(size[1] / (box[2] - box[0]), size[0] / (box[3] - box[1]))
    image.draft("RGB", (math.ceil(full_w * scale), math.ceil(full_h * scale)))
  image = image.convert("RGB")
  if not whole:
    sx, sy = image.size[0] / full_w, image.size[1] / full_h
    image = image.resize((size[1], size[0]), Image.BILINEAR, box=(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
  if flip:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  if out is None:
    return np.asarray(image)
  out[...] = np.asarray(image)
  return out


def decode_jpegs(frames: Sequence[bytes], box=None, size=None, *, flip: bool = False,
                 out: np.ndarray | None = None) -> np.ndarray:
  """JPEG frames -> uint8 `[T, H, W, 3]`, each as `decode_jpeg`, written into `out` when given."""
  if out is None:
    return np.stack([decode_jpeg(frame, box, size, flip=flip) for frame in frames])
  for t, frame in enumerate(frames):
    decode_jpeg(frame, box, size, flip=flip, out=out[t])
  return out


def jpeg_size(data: bytes) -> tuple[int, int]:
  """(W, H) of a JPEG from its header, without decoding it."""
  return Image.open(io.BytesIO(data)).size


def encode_jpeg(image: np.ndarray | Image.Image, quality: int = 95) -> bytes:
  """uint8 `[H, W, 3]` (or a PIL image) -> JPEG bytes."""
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  buffer = io.BytesIO()
  image.convert("RGB").save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def read_video(path: str | os.PathLike) -> tuple[float, Iterator[Image.Image]]:
  """`(fps, frames)`: the first video stream's frame rate and its frames as RGB PIL images, lazily.

  Decode errors surface while iterating (PyAV's `av.error.*`); the caller decides what is bad.
  """
  container = av.open(str(path))
  if not container.streams.video:
    container.close()
    raise ValueError("no video stream")
  stream = container.streams.video[0]
  stream.thread_type = "AUTO"
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  fps = float(rate) if rate else 0.0

  def frames():
    with container:
      for frame in container.decode(stream):
        yield frame.to_image()
  return fps, frames()


def fit_short_side(image: Image.Image, short_side: int) -> Image.Image:
  """Downscales (never up) so the shorter side is at most `short_side` (0: unchanged)."""
  width, height = image.size
  if not short_side or min(width, height) <= short_side:
    return image
  scale = short_side / min(width, height)
  return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
