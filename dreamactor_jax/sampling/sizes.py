"""The frame size of a sampling call and how its inputs are fitted to it (step 1 of `animate.py`'s docstring;
ANIMATE2.md for Wan-Animate-2's area sizing and letterbox): sizes are multiples of the model's `size_multiple`
(16 for Wan2.1: VAE x8, patch 2), driving frames are scaled
to cover and centre-cropped, never stretched, or under animate2 letterboxed on black.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from dreamactor_jax import animation, media

# Wan-Animate-2 letterboxes the reference and the driving frames on black (diffusers'
# WanAnimate2VideoProcessor, fill_color 0), in -1..1.
LETTERBOX_FILL = -1.0


def resolve_size(size: tuple[int, int] | None, trained: tuple[int, int] | None,
                 driving_size: tuple[int, int], multiple: int) -> tuple[int, int]:
  """The working (H, W): `size`, else `trained` in the driving video's orientation, else the driving
  size rounded down to multiples of `multiple` (`Models.size_multiple`; `animate.py`'s docstring, step 1)."""
  if size is None and trained is not None:
    size = tuple(trained)
    if size[0] != size[1] and driving_size[0] != driving_size[1] and \
        (size[0] > size[1]) != (driving_size[0] > driving_size[1]):
      size = size[::-1]
  if size is None:
    size = tuple(s // multiple * multiple for s in driving_size)
  height, width = (int(s) for s in size)
  animation.check_frame_size("resolution", (height, width), multiple)
  return height, width


def area_size(area: tuple[int, int], image_size: tuple[int, int], multiple: int) -> tuple[int, int]:
  """Wan-Animate-2's working (H, W): about `area[0] * area[1]` pixels in the aspect of the reference
  image `(h, w)` (first rounded down to multiples of `multiple`, 16 for Wan), each side rounded down
  to a multiple of it (diffusers' WanAnimate2ProcessImagesInputStep)."""
  image_h, image_w = (s // multiple * multiple for s in image_size)
  if not image_h or not image_w:
    raise ValueError(f"reference image {image_size[0]}x{image_size[1]}: Wan-Animate-2 needs at least "
                     f"{multiple} pixels on each side")
  pixels, aspect = area[0] * area[1], image_h / image_w
  height, width = (int(math.sqrt(pixels * r)) // multiple * multiple for r in (aspect, 1 / aspect))
  return resolve_size((height, width), None, (height, width), multiple)


def fit_driving(driving: np.ndarray, height: int, width: int, *, letterbox: bool = False) -> np.ndarray:
  """uint8 video `[..., T, h, w, 3]` -> `[..., T, height, width, 3]`, aspect kept: scaled to cover and
  centre-cropped (antialiased bicubic), or with `letterbox` scaled to fit inside and centred on black
  (antialiased bilinear, as diffusers' Wan-Animate-2 video processor); one PIL resize per frame."""
  driving = np.asarray(driving)
  h, w = driving.shape[-3:-1]
  if (h, w) == (height, width):
    return driving
  frames = driving.reshape(-1, h, w, 3)
  out = np.full((len(frames), height, width, 3), media.to_uint8(LETTERBOX_FILL), np.uint8)
  if letterbox:
    box = animation.fit_box(h, w, height, width)
    for i, frame in enumerate(frames):
      out[i, box.top:box.top + box.height, box.left:box.left + box.width] = np.asarray(
          Image.fromarray(frame).resize((box.width, box.height), Image.Resampling.BILINEAR))
  else:
    scale = max(height / h, width / w)
    crop_h, crop_w = height / scale, width / scale
    top, left = (h - crop_h) / 2, (w - crop_w) / 2
    for i, frame in enumerate(frames):
      out[i] = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC,
                                                        box=(left, top, left + crop_w, top + crop_h)))
  return out.reshape(*driving.shape[:-3], height, width, 3)
