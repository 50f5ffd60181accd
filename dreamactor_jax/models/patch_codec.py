"""A linear latent codec for CPU-scale work: the demo's stand-in for the Wan VAE.

Each frame is cut into `patch x patch` pixel patches, and each patch is projected on `components`
principal directions (fit on training videos, `training/codec.py`). Time is grouped as the Wan VAE
groups it, so everything downstream (frame counts 1 + 4k, the 4-channel I2V mask, the latent grid)
is unchanged: latent frame 0 holds frame 0 (repeated four times, as Wan I2V repeats frame 0's mask)
and latent frame f > 0 holds frames 4f-3 .. 4f, stacked on channels:

    latents[:, f, i, j, c * components + k] = <patch (i, j) of pixel frame (4f - 3 + c), direction k>

so `z_dim = 4 * components`. A Wan VAE narrow enough to train on two CPU cores in minutes draws
characters as blurs (README "Demo"); this codec, with 6 directions per 4x4 patch, keeps about 28 dB
of the demo's canvases and costs a matrix product.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

# Wan's 4 frames per latent frame: the grouping the I2V mask packing (`pack_mask`) assumes.
from dreamactor_jax.animation.frames import TIME_FACTOR, check_frame_count
from dreamactor_jax.models.config import ModelConfig
from dreamactor_jax.models.vae import StandardisedLatents, WanVAE


@dataclasses.dataclass(frozen=True)
class PatchCodecConfig(ModelConfig):
  """A patch codec's sizes and latent statistics; `codec` tells its config.json from a Wan VAE's."""

  patch: int = 4
  components: int = 12
  latents_mean: tuple[float, ...] = ()  # [z_dim] after fitting
  latents_std: tuple[float, ...] = ()
  codec: Literal["patch"] = "patch"

  @property
  def z_dim(self) -> int:
    return TIME_FACTOR * self.components

  @property
  def time_factor(self) -> int:
    return TIME_FACTOR

  @property
  def space_factor(self) -> int:
    return self.patch


class PatchCodec(StandardisedLatents, nnx.Module):
  """`encode` video -> latents, `decode` latents -> video (module docstring), channels-last, like `WanVAE`."""

  def __init__(self, config: PatchCodecConfig, *, rngs: nnx.Rngs):
    del rngs  # fit, not drawn: built as zeros, filled by `training.codec.fit_patch_codec` or a checkpoint
    self.config = config
    size = config.patch * config.patch * 3
    self.center = nnx.Param(jnp.zeros((size,), jnp.float32))  # the mean patch
    self.basis = nnx.Param(jnp.zeros((size, config.components), jnp.float32))  # orthonormal columns

  def patches(self, video: jax.Array) -> jax.Array:
    """Video `[B, T, H, W, 3]` -> patches `[B, T, H/p, W/p, p * p * 3]` (row, column, colour order)."""
    batch, frames, height, width, channels = video.shape
    p = self.config.patch
    if height % p or width % p:
      raise ValueError(f"video frames are {height}x{width}; the patch codec needs sides divisible by {p}")
    blocks = video.reshape(batch, frames, height // p, p, width // p, p, channels)
    return blocks.transpose(0, 1, 2, 4, 3, 5, 6).reshape(batch, frames, height // p, width // p, p * p * channels)

  def encode(self, video: jax.Array) -> jax.Array:
    """Video `[B, T, H, W, 3]` in -1..1, T = 1 + 4k -> latents `[B, 1 + k, H/p, W/p, z_dim]` fp32."""
    check_frame_count("video", video.shape[1])
    coefficients = (self.patches(video.astype(jnp.float32)) - self.center[...]) @ self.basis[...]
    padded = jnp.concatenate([jnp.repeat(coefficients[:, :1], TIME_FACTOR, axis=1), coefficients[:, 1:]], axis=1)
    batch, frames, h, w, k = padded.shape
    grouped = padded.reshape(batch, frames // TIME_FACTOR, TIME_FACTOR, h, w, k)
    return grouped.transpose(0, 1, 3, 4, 2, 5).reshape(batch, frames // TIME_FACTOR, h, w, TIME_FACTOR * k)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Latents `[B, F, h, w, z_dim]` -> video `[B, 1 + 4(F-1), p*h, p*w, 3]` in -1..1, fp32."""
    batch, frames, h, w, z = latents.shape
    if z != self.config.z_dim:
      raise ValueError(f"latents have {z} channels; the patch codec reads {self.config.z_dim}")
    k, p = self.config.components, self.config.patch
    grouped = latents.astype(jnp.float32).reshape(batch, frames, h, w, TIME_FACTOR, k).transpose(0, 1, 4, 2, 3, 5)
    first = grouped[:, :1].mean(axis=2)  # frame 0's four copies
    coefficients = jnp.concatenate([first, grouped[:, 1:].reshape(batch, -1, h, w, k)], axis=1)
    patches = coefficients @ self.basis[...].T + self.center[...]
    video = patches.reshape(batch, -1, h, w, p, p, 3).transpose(0, 1, 2, 4, 3, 5, 6).reshape(batch, -1, h * p, w * p, 3)
    return jnp.clip(video, -1.0, 1.0)


Codec = WanVAE | PatchCodec  # what the trainer and the sampler encode canvases with
