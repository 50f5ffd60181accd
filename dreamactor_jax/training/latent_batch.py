"""From a data batch (uint8 clips, CONTRACTS.md) to what the DiT trains on, with the frozen encoders.

PAPER.md sections 2-5: the canvas holds the given left frames (the reference at frame 0, then the
clip's frames 1..k-1) and the driving video on the right, its first second blanked (the start
transition). A continued segment is trained as `sample.py` samples it: its given left frames are
the clip's own first k frames (what the previous segment generated) and its driving frames are all
real, none blanked. With `prediction="change"` the batch also carries the latents of the first
given left frame held still (`conditioning.change_base`), which the loss predicts relative to. The
target x0 is the whole canvas of the clip: the character video on the left, the driving frames on
the right. Both go through the VAE in one call.
Text is dropped to the null prompt with probability `text_dropout`, for classifier-free guidance.

The `animate2` layout (Wan-Animate-2, ANIMATE2.md) has no canvas; the triplet maps onto its two
streams as the sampler builds them (conditioning.py): the reference image is latent frame 0 of the
generation stream (mask 1), the clip's carried frames (continuation) then blank follow it as the
condition, the target x0 is [reference latent, clip latents], and the driving clip (stage 1: the
rendered skeletons; stage 2: another identity doing the same motion) is the driving pass's
latents, read with its own prompt (`driving_text`) and CLIP tokens of its first frame. There is no
start transition: the driving signal is never blanked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from dreamactor_jax import animation
from dreamactor_jax.conditioning import (CanvasLatents, change_base, encode_canvas, encode_video, prepend_reference,
                                         reference_frame, reference_tokens)
from dreamactor_jax.models.dit import Layout
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder
from dreamactor_jax.models.patch_codec import Codec


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LatentBatch:
  """target, condition `[B, F, h, 2w, z]`; mask `[B, F, h, 2w, 4]`; text `[B, Lt, text_dim]`;
  image `[B, 257, 1280]` CLIP tokens or None.

  Layout animate2: target, condition `[B, 1 + F, h, w, z]` and mask `[B, 1 + F, h, w, 4]` (the
  reference frame, then the clip's frames); driving `[B, F, h, w, z]` the driving clip's latents,
  driving_text `[B, Lt, text_dim]` its prompt, driving_image its CLIP tokens or None. Other
  layouts leave the driving fields None."""

  target: jax.Array
  condition: jax.Array
  mask: jax.Array
  text: jax.Array
  image: jax.Array | None
  driving: jax.Array | None = None
  driving_text: jax.Array | None = None
  driving_image: jax.Array | None = None
  base: jax.Array | None = None  # `[B, F, h, 2w, z]`: what a "change" prediction is relative to, or None


def to_unit(frames: jax.Array) -> jax.Array:
  """uint8 -> float32 in -1..1 (as `media.to_unit`, on device)."""
  return frames.astype(jnp.float32) / 127.5 - 1.0


def prepare_batch(vae: Codec, clip: CLIPVisionEncoder | None, batch: Mapping[str, jax.Array], key: jax.Array, *,
                  null_text: jax.Array, given_frames: int = 1, start_seconds: float = 1.0,
                  blank: float = animation.BLANK, text_dropout: float = 0.0, layout: Layout = "full",
                  driving_text: jax.Array | None = None, continuation: bool = False,
                  prediction: str = "video") -> LatentBatch:
  """Encodes a data batch: video, driving `[B, T, H, W, 3]` uint8, reference `[B, H, W, 3]` uint8,
  text `[B, Lt, D]`, fps `[B]`. `null_text` `[Lt, D]` is the embedding of the unconditional prompt.
  `given_frames` (static) left frames are given: the reference, then the clip's frames 1..k-1
  (animate2: the clip's first k frames are carried after the reference frame, as a later sampling
  segment carries them; 0 for none). `layout` (static) is the DiT's; animate2 reads `driving_text` `[Lt, D]`, the
  embedding of the driving pass's prompt (`sampling.driving_prompt`). `continuation` (static; full and
  motion_cache) trains a continued segment (module docstring); `prediction` (static) "change" adds
  the `base` latents."""
  video, reference = to_unit(batch["video"]), to_unit(batch["reference"])
  drop = jax.random.bernoulli(key, text_dropout, (video.shape[0],))
  text = jnp.where(drop[:, None, None], null_text[None].astype(batch["text"].dtype), batch["text"])
  image = reference_tokens(clip, reference)
  if layout == "animate2":
    return _animate2_batch(vae, clip, video, reference, to_unit(batch["driving"]), text, image,
                           carried=given_frames, blank=blank, driving_text=driving_text)
  driving = to_unit(batch["driving"])
  if not continuation:  # a first segment starts with the transition; a continued one's frames are all real
    driving = animation.blank_start(driving, batch["fps"], start_seconds, blank=blank)
  first = video[:, 0] if continuation else reference
  given = jnp.concatenate([first[:, None], video[:, 1:given_frames]], axis=1)
  canvas = animation.build_canvas(driving, given, blank=blank, space_factor=vae.config.space_factor)
  # One VAE call for the target canvas (the clip | driving) and the condition canvas.
  target, condition = jnp.split(encode_video(vae, jnp.concatenate([animation.join_halves(video, driving),
                                                                    canvas.video])), 2)
  mask = animation.pack_mask(canvas.mask, vae.config.space_factor).astype(jnp.float32)
  base = change_base(vae, first, video.shape[1], blank=blank) if prediction == "change" else None
  return LatentBatch(target=target, condition=condition, mask=mask, text=text, image=image, base=base)


def _animate2_batch(vae: Codec, clip: CLIPVisionEncoder | None, video: jax.Array, reference: jax.Array,
                    driving: jax.Array, text: jax.Array, image: jax.Array | None, *, carried: int, blank: float,
                    driving_text: jax.Array | None) -> LatentBatch:
  """The animate2 layout (module docstring) of unit-range video, driving `[B, T, H, W, 3]` and
  reference `[B, H, W, 3]`, the first `carried` clip frames given."""
  if driving_text is None:
    raise ValueError("layout 'animate2' needs driving_text: the embedding of sampling.driving_prompt")
  frames = animation.given_then_blank(video[:, :carried], video.shape[1], blank=blank)
  # One VAE call for the clip (the target), its condition frames and the driving clip.
  target, condition, driving_latents = jnp.split(encode_video(vae, jnp.concatenate([video, frames.video, driving])), 3)
  mask = animation.pack_mask(frames.mask, vae.config.space_factor).astype(jnp.float32)
  reference_latents = encode_canvas(vae, reference_frame(reference))
  latents = prepend_reference(reference_latents, CanvasLatents(condition=condition, mask=mask))
  return LatentBatch(target=jnp.concatenate([reference_latents.condition, target], axis=1),
                     condition=latents.condition, mask=latents.mask, text=text, image=image, driving=driving_latents,
                     driving_text=jnp.broadcast_to(driving_text.astype(text.dtype), text.shape),
                     driving_image=reference_tokens(clip, driving[:, 0]))
