"""Fitting a reference image of any size or aspect into the video's H x W (PAPER.md section 1).

The rule (never a silent stretch): scale the image by the largest factor at which it fits inside
H x W keeping its aspect (up or down; sides rounded half up, the limiting side exactly H or W),
resize with antialiased bicubic, and centre it on an H x W frame of `pad` (default 0.0 = mid grey,
the canvas blank; an odd margin's extra pixel goes right/bottom). An image of the video's aspect
fills the frame exactly; one of the video's size is used as it is.

Modes: uint8 only. RGB `HxWx3` is used as is; grayscale `HxW` or `HxWx1` is repeated to 3
channels; RGBA `HxWx4` is composited over white by its alpha (as `media.read_image` does for image
files, so an array and a file give the same reference). Anything else is refused with one line.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from dreamactor_jax.animation.canvas import BLANK


@dataclasses.dataclass(frozen=True)
class Box:
  """Where the resized image sits in the H x W frame."""

  top: int
  left: int
  height: int
  width: int


def fit_box(image_height: int, image_width: int, height: int, width: int) -> Box:
  """The largest box of the image's aspect inside `height x width`, centred."""
  if min(image_height, image_width, height, width) < 1:
    raise ValueError(f"cannot fit a {image_height}x{image_width} image into {height}x{width}")
  if image_height * width >= image_width * height:  # relatively taller: height limits
    box_h, box_w = height, (2 * image_width * height + image_height) // (2 * image_height)
  else:
    box_h, box_w = (2 * image_height * width + image_width) // (2 * image_width), width
  box_h, box_w = max(1, min(box_h, height)), max(1, min(box_w, width))
  return Box(top=(height - box_h) // 2, left=(width - box_w) // 2, height=box_h, width=box_w)


def to_rgb(image: np.ndarray) -> np.ndarray:
  """uint8 RGB/grayscale/RGBA `[h, w(, c)]` -> float32 RGB `[h, w, 3]` in -1..1 (rules above)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"reference image has dtype {image.dtype}; expected uint8 HxWx3 (RGB)")
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or not image.shape[0] or not image.shape[1]:
    raise ValueError(f"reference image has shape {image.shape}; expected HxWx3 RGB "
                     "(HxW or HxWx1 grayscale and HxWx4 RGBA are converted)")
  values = image.astype(np.float32) / 127.5 - 1.0
  if image.shape[2] == 1:
    return np.repeat(values, 3, axis=2)
  if image.shape[2] == 4:
    alpha = image[:, :, 3:].astype(np.float32) / 255.0
    return values[:, :, :3] * alpha + (1.0 - alpha)  # over white (1.0)
  return values


def fit_reference(image: np.ndarray, height: int, width: int, *, pad: float = BLANK) -> np.ndarray:
  """uint8 image `[h, w(, c)]` -> float32 `[height, width, 3]` in -1..1, aspect kept, padded with `pad`."""
  rgb = to_rgb(image)
  box = fit_box(rgb.shape[0], rgb.shape[1], height, width)
  if (box.height, box.width) != rgb.shape[:2]:
    rgb = np.clip(np.asarray(jax.image.resize(rgb, (box.height, box.width, 3), method="cubic", antialias=True)),
                  -1.0, 1.0)
  frame = np.full((height, width, 3), pad, np.float32)
  frame[box.top:box.top + box.height, box.left:box.left + box.width] = rgb
  return frame
