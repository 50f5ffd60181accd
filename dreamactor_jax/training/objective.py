"""The training objective of both stages: flow matching on the in-context canvas (PAPER.md 2-5).

Noise levels are drawn per sample (`diffusion.sample_training_sigmas`), the DiT reads
`[noisy, mask, condition]` (`animation.dit_input`, given positions clean: `conditioning.model_latents`),
or on a TI2V DiT the latents alone with given tokens at timestep 0 (`conditioning.dit_inputs`), and
the loss is the weighted MSE of the velocity over the loss region (the generated left half by
default, or the whole canvas). A batch with `base` latents (`animation.prediction="change"`) trains
the DiT on the change from the reference held still (`diffusion.relative_velocity`). In the
`motion_cache` layout the motion half is encoded once (`WanDiT.encode_motion`) and only the left
half is noised and predicted, as at sampling.

In the `animate2` layout (Wan-Animate-2) one function runs both passes, as DiffSynth's
`forward_origin` does for training: the driving pass (`encode_motion` on the driving latents, at
the model's `motion_timestep`) and the generation pass reading its cache, so gradients reach the
trained weights through both. Every position of the generation latents is noised, the leading
reference frame too, as at sampling; the loss covers the generated frames only (not the reference
frame, nor frames carried over for continuation), whatever `region` says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from dreamactor_jax import animation, diffusion
from dreamactor_jax.conditioning import CanvasLatents, dit_inputs, driving_dit_input, split_for_motion_cache
from dreamactor_jax.models.dit import Layout, WanDiT
from dreamactor_jax.training.latent_batch import LatentBatch


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LossAux:
  """Per-sample loss `[B]` and noise level `[B]`, for loss-by-noise-level metrics."""

  per_sample: jax.Array
  sigma: jax.Array


def animation_loss(model: WanDiT, batch: LatentBatch, key: jax.Array, *, sigmas: Mapping[str, Any],
                   region: animation.LossRegion = "generated", layout: Layout = "full") -> tuple[jax.Array, LossAux]:
  """Flow-matching loss of `model` on a `LatentBatch`; `sigmas` are `sample_training_sigmas` options."""
  sigma_key, noise_key = jax.random.split(key)
  sigma = diffusion.sample_training_sigmas(sigma_key, batch.target.shape[0], **sigmas)
  latents = CanvasLatents(condition=batch.condition, mask=batch.mask)
  target, weight, motion = batch.target, animation.loss_weight(batch.mask, region), None
  condition, patch_size = model.config.condition, model.config.patch_size
  if layout == "motion_cache":
    latents, motion_input = split_for_motion_cache(latents, condition)
    target, weight = animation.left_half(target), animation.left_half(weight)
    motion = model.encode_motion(motion_input, batch.text, image_context=batch.image)
  elif layout == "animate2":
    if batch.driving is None:
      raise ValueError("model.layout='animate2' needs a LatentBatch with driving latents (prepare_batch(layout=...))")
    # given positions: the reference frame and carried frames (mask 1); every position is noised
    weight, region = animation.generated_region(batch.mask), "canvas"
    motion = model.encode_motion(driving_dit_input(batch.driving), batch.driving_text,
                                 image_context=batch.driving_image)

  def predict_velocity(noisy: jax.Array, timestep: jax.Array) -> jax.Array:
    inputs, timestep = dit_inputs(noisy, latents, timestep, region=region, condition=condition, patch_size=patch_size)
    return model(inputs, timestep, batch.text, image_context=batch.image, motion=motion)

  if batch.base is not None:
    if layout == "animate2":
      raise ValueError("animation.prediction='change' is for the canvas layouts; animate2 predicts the video")
    base = animation.left_half(batch.base) if layout == "motion_cache" else batch.base
    predict_velocity = diffusion.relative_velocity(predict_velocity, base)

  noise = jax.random.normal(noise_key, target.shape, target.dtype)
  loss = diffusion.flow_matching_loss(predict_velocity, target, noise, sigma, weight)
  return loss.loss, LossAux(per_sample=loss.per_sample, sigma=sigma)
