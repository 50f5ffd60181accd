"""From a data batch (uint8 clips, CONTRACTS.md) to what the DiT trains on, with the frozen encoders.

PAPER.md sections 2-5: the canvas holds the given left frames (the reference at frame 0, or the
clip's first k frames when training segment continuation) and the driving video on the right, its
first second blanked (the start transition). The target x0 is the whole canvas of the clip: the
character video on the left, the driving frames on the right. Both go through the VAE in one call.
Text is dropped to the null prompt with probability `text_dropout`, for classifier-free guidance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from dreamactor_jax import animation
from dreamactor_jax.conditioning import encode_video, reference_tokens
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder
from dreamactor_jax.models.patch_codec import Codec


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LatentBatch:
  """target, condition `[B, F, h, 2w, z]`; mask `[B, F, h, 2w, 4]`; text `[B, Lt, text_dim]`;
  image `[B, 257, 1280]` CLIP tokens or None."""

  target: jax.Array
  condition: jax.Array
  mask: jax.Array
  text: jax.Array
  image: jax.Array | None


def to_unit(frames: jax.Array) -> jax.Array:
  """uint8 -> float32 in -1..1 (as `media.to_unit`, on device)."""
  return frames.astype(jnp.float32) / 127.5 - 1.0


def prepare_batch(vae: Codec, clip: CLIPVisionEncoder | None, batch: Mapping[str, jax.Array], key: jax.Array, *,
                  null_text: jax.Array, given_frames: int = 1, start_seconds: float = 1.0,
                  blank: float = animation.BLANK, text_dropout: float = 0.0) -> LatentBatch:
  """Encodes a data batch: video, driving `[B, T, H, W, 3]` uint8, reference `[B, H, W, 3]` uint8,
  text `[B, Lt, D]`, fps `[B]`. `null_text` `[Lt, D]` is the embedding of the unconditional prompt.
  `given_frames` (static) left frames are given: the reference, then the clip's frames 1..k-1."""
  video, reference = to_unit(batch["video"]), to_unit(batch["reference"])
  driving = animation.blank_start(to_unit(batch["driving"]), batch["fps"], start_seconds, blank=blank)
  given = jnp.concatenate([reference[:, None], video[:, 1:given_frames]], axis=1)
  canvas = animation.build_canvas(driving, given, blank=blank)
  # One VAE call for the target canvas (the clip | driving) and the condition canvas.
  target, condition = jnp.split(encode_video(vae, jnp.concatenate([animation.join_halves(video, driving),
                                                                    canvas.video])), 2)
  mask = animation.pack_mask(canvas.mask, vae.config.space_factor).astype(jnp.float32)
  drop = jax.random.bernoulli(key, text_dropout, (video.shape[0],))
  text = jnp.where(drop[:, None, None], null_text[None].astype(batch["text"].dtype), batch["text"])
  return LatentBatch(target=target, condition=condition, mask=mask, text=text, image=reference_tokens(clip, reference))
