"""The in-context canvas at pixel level (PAPER.md section 2).

Every frame becomes twice as wide as the video: the LEFT half holds the character (frame 0: the
reference image; in segment continuation the first k frames are given; blank elsewhere), the RIGHT
half holds the driving frame (rendered skeleton in stage 1, RGB in stage 2). The pixel mask is 1
where the canvas is given: the left half of the given frames and all of the right half.

    frame:       0            1 .. k-1           k .. T-1
    left:    given[0]      given[1..k-1]       blank (0.0)
    right:   driving[0]    driving[1..k-1]     driving[k..T-1]
    mask:    1 | 1         1 | 1               0 | 1

Width is axis 3 of every canvas array: videos `[B, T, H, 2W, 3]`, masks `[B, T, H, 2W]` and
latents `[B, F, h, 2w, C]`, so `split_halves`/`join_halves` serve all of them (DiT tokens, ordered
F, H, W: reshape `[B, L, D]` to `[B, F, h, 2w, D]` first).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dreamactor_jax.animation.frames import SPACE_FACTOR

WIDTH_AXIS = 3
# Pixel value of the canvas where nothing is given (mid grey in -1..1, as Wan I2V's zero frames).
BLANK = 0.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Canvas:
  """The condition video `[B, T, H, 2W, 3]` and its pixel mask `[B, T, H, 2W]` (1 = given)."""

  video: jax.Array
  mask: jax.Array


def split_halves(canvas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A canvas array (width on axis 3, even) -> (left = character, right = motion) halves."""
  width = canvas.shape[WIDTH_AXIS]
  if width % 2:
    raise ValueError(f"canvas width {width} (axis 3 of shape {canvas.shape}) is odd; a canvas is two halves")
  return jnp.split(canvas, 2, axis=WIDTH_AXIS)


def join_halves(left: jax.Array, right: jax.Array) -> jax.Array:
  """Left (character) and right (motion) halves, equal shapes -> canvas with doubled axis 3."""
  if left.shape != right.shape:
    raise ValueError(f"canvas halves differ in shape: left {left.shape}, right {right.shape}")
  return jnp.concatenate([left, right], axis=WIDTH_AXIS)


def left_half(canvas: jax.Array) -> jax.Array:
  """The character half `[B, T, H, W, ...]` of a canvas array."""
  return split_halves(canvas)[0]


def given_then_blank(given: jax.Array, frames: int, *, blank: float = BLANK, dtype=None) -> Canvas:
  """The character's frames of a segment: the k given frames `[B, k, H, W, 3]` (0 <= k <= frames),
  then blank; its pixel mask is 1 on the given frames. Returns video `[B, frames, H, W, 3]` and mask
  `[B, frames, H, W]` in `dtype` (default given's). The canvas's left half; with k = 0 or 1, as
  Wan-Animate-2's video condition (the carried-over frames, then zeros)."""
  batch, k, height, width, _ = given.shape
  if not 0 <= k <= frames:
    raise ValueError(f"given frames = {k}; expected 0 .. {frames} (the segment's frame count)")
  dtype = given.dtype if dtype is None else dtype
  video = jnp.concatenate([given.astype(dtype), jnp.full((batch, frames - k, height, width, 3), blank, dtype)], axis=1)
  mask = jnp.concatenate([jnp.ones((batch, k, height, width), dtype),
                          jnp.zeros((batch, frames - k, height, width), dtype)], axis=1)
  return Canvas(video=video, mask=mask)


def build_canvas(driving: jax.Array, given: jax.Array, *, blank: float = BLANK,
                 space_factor: int = SPACE_FACTOR) -> Canvas:
  """Canvas and pixel mask from the driving video and the first given left frames.

  driving `[B, T, H, W, 3]` in -1..1 (after any start-transition blanking); given `[B, k, H, W, 3]`
  with 1 <= k <= T: the reference image as `reference[:, None]` (k = 1, the paper's case) or the
  previous segment's last frames. Returns video `[B, T, H, 2W, 3]` and mask `[B, T, H, 2W]`, both
  in driving's dtype. H and W must be multiples of 2 * `space_factor` (the VAE's pixels per latent,
  Wan2.1's 8 or Wan2.2's 16, then the DiT's 2x2 patches), so that each half is whole tokens.
  """
  if driving.ndim != 5 or given.ndim != 5:
    raise ValueError(f"driving {driving.shape} and given {given.shape} must both be [B, T, H, W, 3]")
  _, frames, height, width, _ = driving.shape
  if given.shape[:1] + given.shape[2:] != driving.shape[:1] + driving.shape[2:]:
    raise ValueError(f"given frames {given.shape} do not match driving {driving.shape} in batch, H, W, channels")
  if not 1 <= given.shape[1] <= frames:
    raise ValueError(f"given frames = {given.shape[1]}; expected 1 .. {frames} (the driving video's frame count)")
  if height % (2 * space_factor) or width % (2 * space_factor):
    raise ValueError(f"video frames are {height}x{width}; H and W must be multiples of {2 * space_factor} "
                     f"(the VAE's {space_factor} pixels per latent, then 2x2 patches)")
  left = given_then_blank(given, frames, blank=blank, dtype=driving.dtype)
  return Canvas(video=join_halves(left.video, driving), mask=join_halves(left.mask, jnp.ones_like(left.mask)))
