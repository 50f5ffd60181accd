"""Which parts of a canvas are generated and which are given (PAPER.md section 2, [I]).

Generated = the left half of the frames that are not given; everything else (the left half of the
given frames, all of the right half) is given. At latent resolution a position is given only when
all 4 of its mask channels are 1 (every pixel frame and pixel it covers is given), so a latent frame
mixing given and generated pixel frames (given frames not 1 + 4m) counts as generated.

The loss weight and the output slices below read the same region: the loss supervises exactly the
latents that `generated_latents` cuts out, whose pixels `generated_video` returns.

A DiT conditioned by timesteps (Wan2.2 TI2V, `model.condition="timestep"`) reads the region per
token: `token_timesteps` gives given tokens timestep 0 and generated ones the step's timestep, as
TI2V gives its clean first frame 0 (diffusers' `expand_timesteps`, Wan2.2 `textimage2video.py`).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from dreamactor_jax.animation.canvas import left_half
from dreamactor_jax.animation.frames import whole_latent_frames

LossRegion = Literal["generated", "canvas"]


def generated_region(latent_mask: jax.Array) -> jax.Array:
  """Latent mask `[B, F, h, 2w, 4]` -> `[B, F, h, 2w]` float32, 1 where generated, 0 where given."""
  return 1.0 - jnp.all(latent_mask >= 1, axis=-1).astype(jnp.float32)


def token_timesteps(latent_mask: jax.Array, timestep: jax.Array, patch_size: tuple[int, int, int]) -> jax.Array:
  """Per-token timesteps `[B, L]` (tokens ordered F, H, W) from the latent mask `[B, F, h, w, 4]` and the
  step's timestep `[B]`: 0 on given tokens, `timestep` on tokens covering any generated position
  (canvases built for the DiT's patches never mix the two within a token)."""
  batch, frames, height, width, _ = latent_mask.shape
  pt, ph, pw = patch_size
  if frames % pt or height % ph or width % pw:
    raise ValueError(f"latent mask {latent_mask.shape} is not whole patches of {patch_size}")
  patches = generated_region(latent_mask).reshape(batch, frames // pt, pt, height // ph, ph, width // pw, pw)
  return patches.max(axis=(2, 4, 6)).reshape(batch, -1) * jnp.asarray(timestep, jnp.float32).reshape(batch, 1)


def loss_weight(latent_mask: jax.Array, region: LossRegion = "generated") -> jax.Array:
  """Per-position loss weight `[B, F, h, 2w]` float32: the generated region, or 1 on the whole canvas."""
  if region == "generated":
    return generated_region(latent_mask)
  if region == "canvas":
    return jnp.ones(latent_mask.shape[:-1], jnp.float32)
  raise ValueError(f"loss region {region!r}; expected 'generated' or 'canvas'")


def generated_video(canvas_video: jax.Array, given_frames: int) -> jax.Array:
  """The animation: canvas video `[B, T, H, 2W, 3]` -> left half of frames k.. `[B, T - k, H, W, 3]`."""
  return left_half(canvas_video)[:, given_frames:]


def generated_latents(canvas_latents: jax.Array, given_frames: int) -> jax.Array:
  """Canvas latents `[B, F, h, 2w, C]` -> the generated ones `[B, F - g, h, w, C]`, where g counts the
  latent frames made only of the `given_frames` pixel frames (`whole_latent_frames`)."""
  return left_half(canvas_latents)[:, whole_latent_frames(given_frames):]
