"""The in-context flow-matching objective on both attention layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dreamactor_jax.configs import base
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


def animate2_batch(seed=0, batch=2, frames=3, height=4, width=6, carried=0):
  """Generation latents `[B, 1 + frames, h, w, 16]` (reference frame, then `carried` given frames) and the
  driving latents `[B, frames, h, w, 16]`."""
  keys = jax.random.split(jax.random.key(seed), 5)
  shape = (batch, 1 + frames, height, width, 16)
  given = (jnp.arange(1 + frames) <= carried).astype(jnp.float32)
  mask = jnp.broadcast_to(given[None, :, None, None, None], (*shape[:4], 4))
  return LatentBatch(target=jax.random.normal(keys[0], shape), condition=jax.random.normal(keys[1], shape), mask=mask,
                     text=jax.random.normal(keys[2], (batch, 5, 20)), image=None,
                     driving=jax.random.normal(keys[3], (batch, frames, height, width, 16)),
                     driving_text=jax.random.normal(keys[4], (batch, 5, 20)))


@pytest.mark.parametrize("carried", [0, 1])
def test_animate2_joint_gradient_equals_the_two_passes_composed(carried):
  """The animate2 loss runs the driving pass and the generation pass in one function. Its gradient
  (fp32) equals the chain rule written by hand over two separate passes: the generation loss's
  gradient in the weights plus, through the driving pass's VJP, its gradient in the cached keys/values.
  The hand-written loss noises every frame and supervises frames after the given ones only."""
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36, "layout": "animate2",
                                   "motion_timestep": 1.0})
  model = numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=4)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  batch, key = animate2_batch(carried=carried), jax.random.key(11)

  def joint(params):
    return animation_loss(nnx.merge(graphdef, params, rest), batch, key, sigmas=SIGMAS, layout="animate2")

  (loss, aux), grad = jax.jit(jax.value_and_grad(joint, has_aux=True))(params)

  ones = jnp.ones((*batch.driving.shape[:-1], 4))
  def driving_pass(params):
    return nnx.merge(graphdef, params, rest).encode_motion(
        jnp.concatenate([batch.driving, ones, batch.driving], axis=-1), batch.driving_text, timestep=jnp.ones((2,)))

  sigma_key, noise_key = jax.random.split(key)
  sigma = diffusion.sample_training_sigmas(sigma_key, 2, **SIGMAS)
  noise = jax.random.normal(noise_key, batch.target.shape)
  supervised = (jnp.arange(4) > carried).astype(jnp.float32)

  def generation_pass(params, cache):
    s = sigma[:, None, None, None, None]
    noisy = (1 - s) * batch.target + s * noise
    velocity = nnx.merge(graphdef, params, rest)(jnp.concatenate([noisy, batch.mask, batch.condition], axis=-1),
                                                 1000 * sigma, batch.text, motion=cache)
    error = jnp.square(velocity - (noise - batch.target)).mean((2, 3, 4))  # [B, 1 + F]
    return ((error * supervised).sum(1) / supervised.sum()).mean()

  cache, pullback = jax.vjp(driving_pass, params)
  hand_loss, (grad_direct, grad_cache) = jax.value_and_grad(generation_pass, argnums=(0, 1))(params, cache)
  (grad_through_cache,) = pullback(grad_cache)
  np.testing.assert_allclose(loss, hand_loss, rtol=1e-5)
  np.testing.assert_allclose(aux.sigma, sigma)
  expected = jax.tree.map(jnp.add, grad_direct, grad_through_cache)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grad), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
  # the driving pass carries a real share of the gradient (a stop_gradient on the cache would fail above)
  assert 1e-3 * optax.tree.norm(grad) < optax.tree.norm(grad_through_cache)
