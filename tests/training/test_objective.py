"""The in-context flow-matching objective on both attention layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base
from conftest import numpy_random_model
from dreamactor_jax import animation, diffusion
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.training.latent_batch import LatentBatch
from dreamactor_jax.training.objective import animation_loss

SIGMAS = dict(distribution="uniform", mean=0.0, std=1.0, shift=1.0)


@pytest.fixture(scope="module")
def model():
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36})
  return numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=3)


def latent_batch(seed=0, batch=2, frames=3, height=4, half=6):
  keys = jax.random.split(jax.random.key(seed), 3)
  pixel_mask = animation.build_canvas(jnp.zeros((batch, 1 + 4 * (frames - 1), 8 * height, 8 * half, 3)),
                                      jnp.zeros((batch, 1, 8 * height, 8 * half, 3))).mask
  mask = animation.pack_mask(pixel_mask)
  shape = (batch, frames, height, 2 * half, 16)
  return LatentBatch(target=jax.random.normal(keys[0], shape), condition=jax.random.normal(keys[1], shape),
                     mask=mask, text=jax.random.normal(keys[2], (batch, 5, 20)), image=None)


@pytest.mark.parametrize("layout", ["full", "motion_cache"])
def test_loss_is_flow_matching_on_the_generated_region(model, layout):
  batch = latent_batch()
  key = jax.random.key(7)
  loss, aux = jax.jit(lambda m, b, k: animation_loss(m, b, k, sigmas=SIGMAS, layout=layout))(model, batch, key)
  assert aux.per_sample.shape == aux.sigma.shape == (2,)
  np.testing.assert_allclose(loss, aux.per_sample.mean(), rtol=1e-6)
  # The target outside the generated region (given frame 0, the whole motion half) never matters.
  outside = animation.generated_region(batch.mask)[..., None] == 0
  changed = LatentBatch(**{**vars(batch), "target": jnp.where(outside, batch.target + 5.0, batch.target)})
  loss_changed, _ = animation_loss(model, changed, key, sigmas=SIGMAS, layout=layout)
  np.testing.assert_allclose(loss_changed, loss, rtol=1e-5)


def test_whole_canvas_region_noises_and_supervises_everything(model):
  batch = latent_batch(2)
  key = jax.random.key(5)
  loss, _ = animation_loss(model, batch, key, sigmas=SIGMAS, region="canvas")
  outside = animation.generated_region(batch.mask)[..., None] == 0
  changed = LatentBatch(**{**vars(batch), "target": jnp.where(outside, batch.target + 5.0, batch.target)})
  assert abs(float(animation_loss(model, changed, key, sigmas=SIGMAS, region="canvas")[0]) - float(loss)) > 1e-3


def test_full_layout_matches_a_hand_written_loss(model):
  batch = latent_batch(1)
  key = jax.random.key(3)
  loss, aux = animation_loss(model, batch, key, sigmas=SIGMAS)
  sigma_key, noise_key = jax.random.split(key)
  sigma = diffusion.sample_training_sigmas(sigma_key, 2, **SIGMAS)
  noise = jax.random.normal(noise_key, batch.target.shape)
  s = sigma[:, None, None, None, None]
  generated = animation.generated_region(batch.mask)
  noisy = jnp.where(generated[..., None] > 0, (1 - s) * batch.target + s * noise, batch.condition)
  velocity = model(jnp.concatenate([noisy, batch.mask, batch.condition], axis=-1), 1000 * sigma, batch.text)
  error = jnp.square(velocity - (noise - batch.target)).mean(-1)
  expected = (error * generated).sum((1, 2, 3)) / generated.sum((1, 2, 3))
  np.testing.assert_allclose(aux.per_sample, expected, rtol=1e-5)
  np.testing.assert_allclose(aux.sigma, sigma)
