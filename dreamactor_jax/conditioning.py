"""What the DiT is conditioned on, computed the same way by the trainer and the sampler.

The canvas (`animation.build_canvas`) goes through the frozen VAE into condition latents, its pixel
mask is packed to Wan I2V's 4 latent channels, and for I2V-shaped models (an image branch) the
reference image goes through CLIP. `animation.dit_input` then stacks them with the noisy latents.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dreamactor_jax.animation import Canvas, pack_mask
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder, preprocess
from dreamactor_jax.models.vae import WanVAE


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CanvasLatents:
  """condition `[B, F, h, 2w, z]` (normalised VAE latents of the canvas), mask `[B, F, h, 2w, 4]`."""

  condition: jax.Array
  mask: jax.Array


def encode_video(vae: WanVAE, video: jax.Array) -> jax.Array:
  """Video `[B, T, H, W, 3]` in -1..1 -> the normalised latents the DiT reads `[B, F, H/8, W/8, z]`."""
  return vae.normalize(vae.encode(video))


def decode_latents(vae: WanVAE, latents: jax.Array) -> jax.Array:
  """Inverse of `encode_video`: normalised latents -> video in -1..1."""
  return vae.decode(vae.denormalize(latents))


def encode_canvas(vae: WanVAE, canvas: Canvas) -> CanvasLatents:
  """The canvas video and mask at latent resolution."""
  return CanvasLatents(condition=encode_video(vae, canvas.video), mask=pack_mask(canvas.mask).astype(jnp.float32))


def reference_tokens(clip: CLIPVisionEncoder | None, reference: jax.Array) -> jax.Array | None:
  """CLIP tokens `[B, 257, 1280]` of the reference `[B, H, W, 3]` (-1..1) for I2V-shaped DiTs, else None."""
  return None if clip is None else clip(preprocess(reference))
