"""The flow-matching training objective in Wan's convention (WAN.md, "Flow matching and sampling").

x_sigma = (1 - sigma) * x0 + sigma * noise; the DiT, given x_sigma and timestep 1000 * sigma,
predicts the velocity v = noise - x0. The loss is a weighted mean squared error over a region weight
(`animation.loss_weight`: the generated region by default), returned per sample as well so noise
levels can be tracked apart. Training noise levels are logit-normal (SD3) or uniform, optionally
shifted with Wan's shift (uniform then shifted as the sampler shifts its grid puts them where the
sampler goes).

`relative_velocity` turns a model trained on x0 - base (a prediction relative to a known base,
e.g. the change from the reference) into a velocity of x0, so neither loss nor sampler changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from dreamactor_jax.diffusion.schedules import NUM_TRAIN_TIMESTEPS, shift_sigmas, timesteps_of

SigmaDistribution = Literal["logit_normal", "uniform"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FlowLoss:
  """`loss` scalar (mean of `per_sample`) and `per_sample` `[B]`, both fp32."""

  loss: jax.Array
  per_sample: jax.Array


def _per_sample(sigma: jax.Array, ndim: int) -> jax.Array:
  return jnp.reshape(sigma, sigma.shape + (1,) * (ndim - sigma.ndim))


def sample_training_sigmas(key: jax.Array, batch_size: int, *, distribution: SigmaDistribution = "logit_normal",
                           mean: float = 0.0, std: float = 1.0, shift: float = 1.0) -> jax.Array:
  """Noise levels `[B]` fp32 in (0, 1): sigmoid(N(mean, std)) or U(0, 1), then Wan's shift."""
  if distribution == "logit_normal":
    sigmas = jax.nn.sigmoid(mean + std * jax.random.normal(key, (batch_size,), jnp.float32))
  elif distribution == "uniform":
    sigmas = jax.random.uniform(key, (batch_size,), jnp.float32)
  else:
    raise ValueError(f"sigma distribution {distribution!r}; expected 'logit_normal' or 'uniform'")
  return sigmas if shift == 1.0 else shift_sigmas(sigmas, shift)


def noisy_latents(x0: jax.Array, noise: jax.Array, sigma: jax.Array) -> jax.Array:
  """x_sigma = (1 - sigma) x0 + sigma noise; x0, noise `[B, ...]`, sigma `[B]`; in x0's dtype."""
  s = _per_sample(sigma.astype(jnp.float32), x0.ndim)
  return ((1 - s) * x0.astype(jnp.float32) + s * noise.astype(jnp.float32)).astype(x0.dtype)


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
  """v = noise - x0, fp32."""
  return noise.astype(jnp.float32) - x0.astype(jnp.float32)


def weighted_mse(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> FlowLoss:
  """Weighted MSE of `[B, F, H, W, C]` arrays under weight `[B, F, H, W]` (broadcast over C).

  per_sample[b] = sum(w (pred - target)^2) / (C sum(w)), i.e. the mean squared error over the
  weighted positions; 0 for a sample whose weight is all zero.
  """
  error = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
  weight = weight.astype(jnp.float32)
  axes = tuple(range(1, weight.ndim))
  total = jnp.sum(error * weight[..., None], axis=axes + (weight.ndim,))
  count = jnp.sum(weight, axis=axes) * error.shape[-1]
  per_sample = total / jnp.maximum(count, 1e-12)
  return FlowLoss(loss=jnp.mean(per_sample), per_sample=per_sample)


def relative_velocity(predict_velocity: Callable[[jax.Array, jax.Array], jax.Array],
                      base: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`predict_velocity` of a model of y = x0 - base (`base` `[B, ...]`, x0's shape) as a velocity of
  x0. With y_sigma = (1 - sigma) y + sigma noise = x_sigma - (1 - sigma) base, the model reads
  y_sigma and predicts noise - y = (noise - x0) + base: so v_x0 = model(y_sigma) - base. Training
  and sampling x0 through it are exactly training and sampling y."""
  def velocity(noisy: jax.Array, timestep: jax.Array) -> jax.Array:
    sigma = _per_sample(timestep.astype(jnp.float32) / NUM_TRAIN_TIMESTEPS, noisy.ndim)
    shifted = (noisy.astype(jnp.float32) - (1 - sigma) * base.astype(jnp.float32)).astype(noisy.dtype)
    prediction = predict_velocity(shifted, timestep)
    return (prediction.astype(jnp.float32) - base.astype(jnp.float32)).astype(prediction.dtype)
  return velocity


def flow_matching_loss(predict_velocity: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array,
                       noise: jax.Array, sigma: jax.Array, weight: jax.Array) -> FlowLoss:
  """The training objective: noise x0 `[B, F, H, W, C]` to sigma `[B]`, predict the velocity with
  `predict_velocity(noisy [B, F, H, W, C], timestep [B] = 1000 sigma)` (a closure over the model and
  its conditioning), weighted MSE against noise - x0 under weight `[B, F, H, W]`."""
  prediction = predict_velocity(noisy_latents(x0, noise, sigma), timesteps_of(sigma.astype(jnp.float32)))
  return weighted_mse(prediction, velocity_target(x0, noise), weight)
