"""The flow-matching objective on hand-computable cases; noise-level sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.animation import build_canvas, loss_weight, pack_mask
from dreamactor_jax.diffusion import (flow_matching_loss, noisy_latents, relative_velocity, sample_training_sigmas,
                                      shift_sigmas, velocity_target, weighted_mse)


def test_noising_and_target():
  x0, noise = jnp.full((2, 1, 1, 1, 2), 2.0), jnp.full((2, 1, 1, 1, 2), -1.0)
  np.testing.assert_allclose(noisy_latents(x0, noise, jnp.asarray([0.25, 1.0]))[:, 0, 0, 0, 0], [1.25, -1.0])
  np.testing.assert_array_equal(velocity_target(x0, noise), -3.0)


def test_weighted_mse_by_hand():
  prediction = jnp.asarray([[1.0, 3.0], [0.0, 2.0], [5.0, 5.0], [1.0, 1.0]]).reshape(2, 1, 1, 2, 2)
  target = jnp.zeros((2, 1, 1, 2, 2))
  weight = jnp.asarray([[1.0, 0.0], [1.0, 1.0]]).reshape(2, 1, 1, 2)
  out = weighted_mse(prediction, target, weight)
  # sample 0: only position 0 -> (1 + 9) / 2 = 5; sample 1: (25 + 25 + 1 + 1) / 4 = 13
  np.testing.assert_allclose(out.per_sample, [5.0, 13.0])
  np.testing.assert_allclose(out.loss, 9.0)
  np.testing.assert_array_equal(weighted_mse(prediction, target, jnp.zeros((2, 1, 1, 2))).per_sample, [0.0, 0.0])


def test_loss_reads_only_the_generated_region():
  canvas = build_canvas(jnp.zeros((2, 5, 16, 32, 3)), jnp.zeros((2, 1, 16, 32, 3)))
  weight = loss_weight(pack_mask(canvas.mask))  # [2, 2, 2, 8]: left half of latent frame 1
  rng = np.random.default_rng(0)
  x0, noise = (jnp.asarray(rng.standard_normal((2, 2, 2, 8, 3)), jnp.float32) for _ in range(2))
  sigma = jnp.asarray([0.3, 0.8])
  seen = {}

  def exact_outside(x, t):  # right velocity in the generated region, wrong (by 1) everywhere else
    seen["timestep"] = t
    return velocity_target(x0, noise) + (1.0 - weight[..., None])

  out = flow_matching_loss(exact_outside, x0, noise, sigma, weight)
  np.testing.assert_allclose(seen["timestep"], [300.0, 800.0])
  np.testing.assert_array_equal(out.per_sample, [0.0, 0.0])
  whole = flow_matching_loss(exact_outside, x0, noise, sigma, loss_weight(pack_mask(canvas.mask), "canvas"))
  np.testing.assert_allclose(whole.per_sample, [0.75, 0.75])  # 24 of 32 positions off by 1


def test_loss_is_differentiable_and_jittable():
  x0, noise = jnp.ones((1, 2, 2, 2, 3)), jnp.zeros((1, 2, 2, 2, 3))

  def loss(scale):
    return flow_matching_loss(lambda x, t: scale * x, x0, noise, jnp.asarray([0.5]), jnp.ones((1, 2, 2, 2))).loss

  value, grad = jax.jit(jax.value_and_grad(loss))(2.0)
  # prediction 2 * 0.5 = 1, target -1: error 2 -> loss 4, d/dscale = 2 * 2 * 0.5 = 2
  np.testing.assert_allclose([value, grad], [4.0, 2.0])


def test_training_sigmas():
  key = jax.random.key(0)
  normal = jax.random.normal(key, (8,), jnp.float32)
  np.testing.assert_allclose(sample_training_sigmas(key, 8, mean=0.5, std=2.0), jax.nn.sigmoid(0.5 + 2.0 * normal),
                             rtol=1e-6)
  uniform = sample_training_sigmas(key, 8, distribution="uniform", shift=3.0)
  np.testing.assert_allclose(uniform, shift_sigmas(jax.random.uniform(key, (8,)), 3.0), rtol=1e-6)
  many = sample_training_sigmas(key, 4096)
  assert 0 < float(many.min()) and float(many.max()) < 1 and abs(float(jnp.median(many)) - 0.5) < 0.03
  with pytest.raises(ValueError, match="sigma distribution 'beta'; expected 'logit_normal' or 'uniform'"):
    sample_training_sigmas(key, 8, distribution="beta")


def test_relative_velocity_trains_and_samples_the_change():
  """A model of y = x0 - base through `relative_velocity`: it reads the noised change and its loss on
  x0 is its loss on y, exactly; with a zero model of y, a step of Euler keeps y at the noise, so x0
  at sigma 0 is noise + base."""
  rng = np.random.default_rng(0)
  x0, noise, base = (jnp.asarray(rng.standard_normal((2, 3, 4, 5, 6)), jnp.float32) for _ in range(3))
  sigma = jnp.asarray([0.3, 0.8])
  weight = jnp.asarray(rng.uniform(0, 1, (2, 3, 4, 5)), jnp.float32)
  seen = {}

  def model(noisy, timestep):
    seen["input"] = noisy
    return jnp.tanh(noisy) * (timestep / 1000)[:, None, None, None, None]

  change = flow_matching_loss(model, x0 - base, noise, sigma, weight)
  relative = flow_matching_loss(relative_velocity(model, base), x0, noise, sigma, weight)
  np.testing.assert_allclose(seen["input"], noisy_latents(x0 - base, noise, sigma), atol=1e-6)
  np.testing.assert_allclose(relative.per_sample, change.per_sample, rtol=1e-5)
  velocity = relative_velocity(lambda noisy, timestep: jnp.zeros_like(noisy), base)
  np.testing.assert_allclose(noise + (0 - 1) * velocity(noise, jnp.full((2,), 1000.0)), noise + base, atol=1e-6)
