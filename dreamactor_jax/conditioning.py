"""What the DiT is conditioned on, computed the same way by the trainer and the sampler.

The canvas (`animation.build_canvas`) goes through the frozen VAE into condition latents, its pixel
mask is packed to Wan I2V's 4 latent channels, and for I2V-shaped models (an image branch) the
reference image goes through CLIP. `animation.dit_input` then stacks them with the noisy latents.

Given positions. With the loss on the generated region (the default), the noisy latents the DiT
reads hold the clean condition latents wherever the canvas is given (the reference frame, the
motion half), in training and at every sampling step alike (`model_latents`): the model never has
to denoise what it is given, nothing unsupervised drifts during sampling, and the motion half is
treated as in the motion_cache layout (clean). With the loss on the whole canvas, every position is
noised and denoised, as in Wan I2V.

Wan2.2 TI2V-5B (`model.condition="timestep"`) conditions one way only: its first latent frame holds
the clean image latents at timestep 0 while the rest is noised at the step's timestep. The canvas
maps onto that directly: every given token (the reference frame's left half, continued frames, the
whole motion half) holds its clean latents at timestep 0 and the generated tokens are denoised, so
`dit_inputs` passes the latents alone (48 channels, no mask or condition channels to learn) and
the mask as per-token timesteps (`animation.token_timesteps`). It is the loss region "generated"
above with the mask read by the modulation instead of the patch embedding: the 5B's pretrained
way of reading a clean frame, extended from the first frame to the canvas's given regions.

Wan-Animate-2 (ANIMATE2.md) has no canvas: its generation stream is the reference image encoded alone
as latent frame 0 (mask 1, `reference_frame`), then the video's frames (`animation.given_then_blank`:
frames carried over from the previous segment, then blank), joined by `prepend_reference`; every
position is noised. Its driving pass reads `driving_dit_input`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dreamactor_jax.animation import (BLANK, MASK_CHANNELS, Canvas, LossRegion, dit_input, generated_region,
                                      join_halves, pack_mask, split_halves, token_timesteps)
from dreamactor_jax.models.dit import Condition
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder, preprocess
from dreamactor_jax.models.patch_codec import Codec


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CanvasLatents:
  """condition `[B, F, h, 2w, z]` (normalised VAE latents of the canvas), mask `[B, F, h, 2w, 4]`."""

  condition: jax.Array
  mask: jax.Array


def encode_video(vae: Codec, video: jax.Array) -> jax.Array:
  """Video `[B, T, H, W, 3]` in -1..1 -> the normalised latents the DiT reads `[B, F, H/s, W/s, z]`
  (s: the codec's `space_factor`, Wan's 8)."""
  return vae.normalize(vae.encode(video))


def decode_latents(vae: Codec, latents: jax.Array) -> jax.Array:
  """Inverse of `encode_video`: normalised latents -> video in -1..1."""
  return vae.decode(vae.denormalize(latents))


def encode_canvas(vae: Codec, canvas: Canvas) -> CanvasLatents:
  """The canvas video and mask at latent resolution."""
  mask = pack_mask(canvas.mask, vae.config.space_factor).astype(jnp.float32)
  return CanvasLatents(condition=encode_video(vae, canvas.video), mask=mask)


def change_base(vae: Codec, first: jax.Array, frames: int, *, blank: float = BLANK) -> jax.Array:
  """Latents `[B, F, h, 2w, z]` of the canvas where nothing moves: `first` (`[B, H, W, 3]`, -1..1,
  the first given left frame: the reference, or the frame a continued segment starts from) held on
  all `frames` left frames, blank on the right. A DiT trained with `animation.prediction="change"`
  predicts the canvas relative to it (`diffusion.relative_velocity`): zero means "do nothing"."""
  held = jnp.broadcast_to(first[:, None], (first.shape[0], frames, *first.shape[1:]))
  return encode_video(vae, join_halves(held, jnp.full_like(held, blank)))


def model_latents(noisy: jax.Array, latents: CanvasLatents, region: LossRegion) -> jax.Array:
  """The noisy latents `[B, F, h, w, z]` as the DiT reads them: given positions clean when `region`
  is "generated" (module docstring), unchanged when it is "canvas"."""
  if region == "canvas":
    return noisy
  given = generated_region(latents.mask) == 0
  return jnp.where(given[..., None], latents.condition.astype(noisy.dtype), noisy)


def dit_inputs(noisy: jax.Array, latents: CanvasLatents, timestep: jax.Array, *, region: LossRegion,
               condition: Condition = "channels", patch_size: tuple[int, int, int] = (1, 2, 2)
               ) -> tuple[jax.Array, jax.Array]:
  """What the DiT reads at one step: noisy latents `[B, F, h, w, z]` and timestep `[B]` -> its input
  latents and timestep. `condition="channels"`: `[B, F, h, w, z + 4 + z]` (`model_latents`, mask,
  condition) and the timestep; "timestep" (TI2V): `[B, F, h, w, z]` given positions clean and the
  per-token timesteps `[B, L]`, 0 where given (module docstring)."""
  if condition == "timestep":
    return model_latents(noisy, latents, region), token_timesteps(latents.mask, timestep, patch_size)
  return dit_input(model_latents(noisy, latents, region), latents.mask, latents.condition), timestep


def split_for_motion_cache(latents: CanvasLatents, condition: Condition = "channels"
                           ) -> tuple[CanvasLatents, jax.Array]:
  """The motion_cache layout's two inputs: the left half's condition and mask (`[B, F, h, w, .]`,
  stacked with the noisy latents at every step) and the motion half's DiT input for
  `WanDiT.encode_motion` (computed once per sample, at `model.motion_timestep`): the clean driving
  latents as the "noisy" channels, mask 1, condition = the driving latents `[B, F, h, w, 36]`; with
  `condition="timestep"` the clean driving latents alone `[B, F, h, w, z]` (TI2V reads given tokens
  so, at timestep 0)."""
  left_condition, motion_condition = split_halves(latents.condition)
  left_mask, motion_mask = split_halves(latents.mask)
  motion = motion_condition if condition == "timestep" else dit_input(motion_condition, motion_mask, motion_condition)
  return CanvasLatents(condition=left_condition, mask=left_mask), motion


def reference_frame(reference: jax.Array) -> Canvas:
  """Wan-Animate-2's reference image `[B, H, W, 3]` as a one-frame video `[B, 1, H, W, 3]`, all given."""
  return Canvas(video=reference[:, None], mask=jnp.ones((*reference.shape[:3],), reference.dtype)[:, None])


def prepend_reference(reference: CanvasLatents, video: CanvasLatents) -> CanvasLatents:
  """The generation stream's condition: the encoded `reference_frame` `[B, 1, h, w, .]`, then the
  video's latents `[B, F, h, w, .]` -> `[B, 1 + F, h, w, .]`."""
  return jax.tree.map(lambda r, v: jnp.concatenate([r, v], axis=1), reference, video)


def driving_dit_input(driving_latents: jax.Array) -> jax.Array:
  """Wan-Animate-2's driving pass input: latents `[B, F, h, w, z]` -> `[B, F, h, w, z + 4 + z]`, the
  clean latents as the noisy channels, an all-ones mask and the latents as condition (read at the
  DiT's `motion_timestep`)."""
  mask = jnp.ones((*driving_latents.shape[:-1], MASK_CHANNELS), driving_latents.dtype)
  return dit_input(driving_latents, mask, driving_latents)


def reference_tokens(clip: CLIPVisionEncoder | None, reference: jax.Array) -> jax.Array | None:
  """CLIP tokens `[B, 257, 1280]` of the reference `[B, H, W, 3]` (-1..1) for I2V-shaped DiTs, else None."""
  return None if clip is None else clip(preprocess(reference, image_size=clip.config.image_size))
