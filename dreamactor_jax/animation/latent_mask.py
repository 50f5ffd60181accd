"""The mask at latent resolution and the DiT's input channels, packed as Wan2.1 I2V packs them.

Wan I2V (wan/image2video.py, diffusers WanImageToVideoPipeline.prepare_latents) holds one mask value
per pixel frame and latent position, repeats frame 0's mask 4 times (the VAE keeps frame 0 alone in
latent frame 0) and folds each group of 4 frames into 4 channels:

    padded = [m0, m0, m0, m0, m1, m2, ..., m_{T-1}]            4F frames for T = 1 + 4(F-1)
    latent_mask[:, f, ..., c] = padded[4f + c]                  so f = 0: m0 x4; f > 0: m_{4f-3+c}

Wan's mask is constant over space; the canvas mask is not, so each latent position takes the mean
of its 8x8 pixels (exact for canvases, whose halves and frames are whole 8x8 blocks). A VAE of
another spatial factor (a small codec) passes its own as `space_factor`.

With `model.condition="channels"` the DiT reads `[16 noisy, 4 mask, 16 condition]` channels (36,
WAN.md "I2V"); `dit_input` is the only place that knows this order. Wan2.2 TI2V-5B
(`condition="timestep"`) has no mask or condition channels: it reads its 48 latent channels alone,
given positions holding the clean condition latents, and the mask as per-token timesteps
(`regions.token_timesteps`, 0 where given). The packing here is the same for both; on the Wan2.2
VAE `space_factor` is 16.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dreamactor_jax.animation.frames import SPACE_FACTOR, TIME_FACTOR, check_frame_count

MASK_CHANNELS = TIME_FACTOR


def pack_mask(pixel_mask: jax.Array, space_factor: int = SPACE_FACTOR) -> jax.Array:
  """Pixel mask `[B, T, H, W]` (T = 1 + 4k, 1 = given) -> latent mask `[B, 1 + k, H/s, W/s, 4]` for
  the VAE's spatial factor s (`VAEConfig.space_factor`; Wan's 8)."""
  if pixel_mask.ndim != 4:
    raise ValueError(f"pixel mask has shape {pixel_mask.shape}; expected [B, T, H, W]")
  batch, frames, height, width = pixel_mask.shape
  check_frame_count("pixel mask", frames)
  if height % space_factor or width % space_factor:
    raise ValueError(f"pixel mask is {height}x{width}; H and W must be multiples of {space_factor}")
  lh, lw = height // space_factor, width // space_factor
  blocks = pixel_mask.reshape(batch, frames, lh, space_factor, lw, space_factor)
  mask = blocks.mean(axis=(3, 5), dtype=jnp.float32).astype(pixel_mask.dtype)  # B T h w
  padded = jnp.concatenate([jnp.repeat(mask[:, :1], TIME_FACTOR, axis=1), mask[:, 1:]], axis=1)  # B 4F h w
  grouped = padded.reshape(batch, -1, TIME_FACTOR, lh, lw)  # B F c h w
  return grouped.transpose(0, 1, 3, 4, 2)


def dit_input_channels(latent_channels: int = 16, condition: str = "channels") -> int:
  """Input channels of the DiT for the canvas: noisy + mask + condition (36 for Wan2.1) with
  `condition="channels"`, the latents alone (48 for Wan2.2 TI2V) with "timestep"."""
  return latent_channels if condition == "timestep" else 2 * latent_channels + MASK_CHANNELS


def check_dit_channels(in_channels: int, latent_channels: int = 16, condition: str = "channels",
                       region: str = "generated") -> None:
  """Raises unless a DiT with `in_channels` and `model.condition` reads the canvas (a T2V checkpoint
  has 16) with the loss region `region`."""
  expected = dit_input_channels(latent_channels, condition)
  if condition == "timestep":
    if in_channels != expected:
      raise ValueError(f"checkpoint has in_channels={in_channels}; with model.condition='timestep' (TI2V) the "
                       f"DiT reads the {latent_channels} latent channels alone")
    if region != "generated":
      raise ValueError(f"model.condition='timestep' marks given positions by timestep 0, so they must be read "
                       f"clean: animation.loss_region must be 'generated', not {region!r}")
  elif in_channels != expected:
    raise ValueError(f"checkpoint has in_channels={in_channels}; the canvas layout needs {expected} = "
                     f"{latent_channels} noisy + {MASK_CHANNELS} mask + {latent_channels} condition latents "
                     f"(widen a T2V checkpoint with `convert dit --in-channels {expected}`)")


def dit_input(noisy: jax.Array, latent_mask: jax.Array, condition: jax.Array) -> jax.Array:
  """DiT input `[B, F, h, w, 16 + 4 + 16]` from noisy latents `[B, F, h, w, 16]`, the latent mask
  `[B, F, h, w, 4]` and the condition (VAE-encoded canvas) latents `[B, F, h, w, 16]`.

  Leading shapes must agree (`[B, F, h, w]`); the result is in noisy's dtype.
  """
  if not noisy.shape[:-1] == latent_mask.shape[:-1] == condition.shape[:-1]:
    raise ValueError(f"DiT inputs differ in [B, F, h, w]: noisy {noisy.shape}, mask {latent_mask.shape}, "
                     f"condition {condition.shape}")
  if latent_mask.shape[-1] != MASK_CHANNELS:
    raise ValueError(f"latent mask has {latent_mask.shape[-1]} channels; expected {MASK_CHANNELS}")
  dtype = noisy.dtype
  return jnp.concatenate([noisy, latent_mask.astype(dtype), condition.astype(dtype)], axis=-1)
