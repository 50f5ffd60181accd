"""The in-context flow-matching objective on both attention layouts."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from conftest import numpy_random_model
from dreamactor_jax import animation, diffusion
from dreamactor_jax.models import DiTConfig, WanDiT, WanVAE
from dreamactor_jax.training.latent_batch import LatentBatch, prepare_batch
from dreamactor_jax.training.objective import animation_loss
from dreamactor_jax.training.optimizer import make_optimizer
from dreamactor_jax.training.step import init_train_state, train_step
from tiny_bundle import TI2V, VAE_16X

SIGMAS = dict(distribution="uniform", mean=0.0, std=1.0, shift=1.0)


@pytest.fixture(scope="module")
def model():
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36})
  return numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=3)


def latent_batch(seed=0, batch=2, frames=3, height=4, half=6, channels=16, space_factor=8):
  keys = jax.random.split(jax.random.key(seed), 3)
  pixels = (space_factor * height, space_factor * half)
  pixel_mask = animation.build_canvas(jnp.zeros((batch, 1 + 4 * (frames - 1), *pixels, 3)),
                                      jnp.zeros((batch, 1, *pixels, 3)), space_factor=space_factor).mask
  mask = animation.pack_mask(pixel_mask, space_factor)
  shape = (batch, frames, height, 2 * half, channels)
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


@pytest.fixture(scope="module")
def ti2v():
  """TI2V-shaped: 12 latent channels in and out, given tokens marked by timestep 0."""
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, **TI2V})
  return numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=6)


def test_ti2v_reads_the_latents_alone_with_given_tokens_at_timestep_zero(ti2v):
  # The 16x VAE's canvas; per-token timesteps written as diffusers' TI2V pipeline takes them: the
  # mask's top-left latent of each 2x2 patch times the step's timestep.
  batch = latent_batch(4, channels=12, space_factor=16)
  key = jax.random.key(9)
  loss, aux = animation_loss(ti2v, batch, key, sigmas=SIGMAS)
  sigma_key, noise_key = jax.random.split(key)
  sigma = diffusion.sample_training_sigmas(sigma_key, 2, **SIGMAS)
  noise = jax.random.normal(noise_key, batch.target.shape)
  generated = animation.generated_region(batch.mask)  # B F h 2w
  s = sigma[:, None, None, None, None]
  noisy = jnp.where(generated[..., None] > 0, (1 - s) * batch.target + s * noise, batch.condition)
  timestep = (generated[:, :, ::2, ::2] * 1000 * sigma[:, None, None, None]).reshape(2, -1)
  assert timestep.shape == (2, 3 * 2 * 6) and float(timestep[:, :12].max()) == 0.0  # frame 0: all given
  velocity = ti2v(noisy, timestep, batch.text)
  error = jnp.square(velocity - (noise - batch.target)).mean(-1)
  expected = (error * generated).sum((1, 2, 3)) / generated.sum((1, 2, 3))
  np.testing.assert_allclose(aux.per_sample, expected, rtol=1e-5)
  np.testing.assert_allclose(loss, expected.mean(), rtol=1e-5)
  # motion_cache: the motion half runs once at timestep 0, read as the 12 clean latent channels alone
  cached, _ = animation_loss(ti2v, batch, key, sigmas=SIGMAS, layout="motion_cache")
  assert np.isfinite(float(cached))


def test_tiny_ti2v_trains_on_the_16x_canvas():
  """A data batch (9 frames of 64 x 96, the first 0.25 s of driving blanked) through the tiny 16x VAE
  into the canvas, then full fine-tuning steps: the loss on a fixed draw falls, every step finite."""
  model = numpy_random_model(lambda: WanDiT(DiTConfig.from_mapping({**base.get_config("tiny").model, **TI2V}),
                                            rngs=nnx.Rngs(0)), seed=7)
  vae = numpy_random_model(lambda: WanVAE(VAE_16X, rngs=nnx.Rngs(0)), seed=8)
  rng = np.random.default_rng(0)
  raw = {"video": rng.integers(0, 256, (2, 9, 64, 96, 3), np.uint8),
         "driving": rng.integers(0, 256, (2, 9, 64, 96, 3), np.uint8),
         "reference": rng.integers(0, 256, (2, 64, 96, 3), np.uint8),
         "text": rng.standard_normal((2, 5, 20)).astype(np.float32), "fps": np.array([8.0, 4.0], np.float32)}
  batch = jax.jit(lambda raw: prepare_batch(vae, None, raw, jax.random.key(0), null_text=jnp.zeros((5, 20)),
                                            start_seconds=0.25))(raw)
  assert batch.target.shape == (2, 3, 4, 12, 12) and batch.mask.shape == (2, 3, 4, 12, 4)
  optimizer = make_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=3e-3, warmup_steps=0, schedule="constant", decay_steps=1, final_lr_fraction=1.0,
      grad_clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)))
  graphdef, state = init_train_state(model, optimizer)
  loss_fn = functools.partial(animation_loss, sigmas=SIGMAS)
  step = jax.jit(functools.partial(train_step, optimizer=optimizer, plan=None, loss_fn=loss_fn), static_argnums=0)
  fixed = jax.jit(lambda params, key: loss_fn(nnx.merge(graphdef, params, state.frozen), batch, key)[0])
  keys = jax.random.split(jax.random.key(1), 4)
  before = np.mean([fixed(state.params, k) for k in keys])
  for i in range(12):
    state, metrics = step(graphdef, state, batch, jax.random.key(i))
    assert np.isfinite(float(metrics.loss))
  after = np.mean([fixed(state.params, k) for k in keys])
  assert after < 0.8 * before, (before, after)


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


@pytest.fixture(scope="module")
def animate2_split():
  """(graphdef, params, rest) of a random tiny animate2-layout DiT."""
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36, "layout": "animate2",
                                   "motion_timestep": 1.0})
  return nnx.split(numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=4), nnx.Param, ...)


# Module-level and jitted with the batch as an argument: every case runs one compiled program each.
@functools.partial(jax.jit, static_argnums=0)
def joint_loss_and_grad(graphdef, params, rest, batch, key):
  def joint(params):
    return animation_loss(nnx.merge(graphdef, params, rest), batch, key, sigmas=SIGMAS, layout="animate2")
  return jax.value_and_grad(joint, has_aux=True)(params)


@functools.partial(jax.jit, static_argnums=0)
def loss_and_grads_by_hand(graphdef, params, rest, batch, key, supervised):
  """The loss of frames where `supervised` `[1 + F]` is 1, and its gradient in the weights directly and
  through the driving pass's cached keys/values."""
  ones = jnp.ones((*batch.driving.shape[:-1], 4))
  def driving_pass(params):
    return nnx.merge(graphdef, params, rest).encode_motion(
        jnp.concatenate([batch.driving, ones, batch.driving], axis=-1), batch.driving_text, timestep=jnp.ones((2,)))

  sigma_key, noise_key = jax.random.split(key)
  sigma = diffusion.sample_training_sigmas(sigma_key, 2, **SIGMAS)
  noise = jax.random.normal(noise_key, batch.target.shape)

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
  return hand_loss, sigma, grad_direct, grad_through_cache


@pytest.mark.parametrize("carried", [0, 1])
def test_animate2_joint_gradient_equals_the_two_passes_composed(animate2_split, carried):
  """The animate2 loss runs the driving pass and the generation pass in one function. Its gradient
  (fp32) equals the chain rule written by hand over two separate passes: the generation loss's
  gradient in the weights plus, through the driving pass's VJP, its gradient in the cached keys/values.
  The hand-written loss noises every frame and supervises frames after the given ones only."""
  graphdef, params, rest = animate2_split
  batch, key = animate2_batch(carried=carried), jax.random.key(11)
  (loss, aux), grad = joint_loss_and_grad(graphdef, params, rest, batch, key)
  supervised = (jnp.arange(4) > carried).astype(jnp.float32)
  hand_loss, sigma, grad_direct, grad_through_cache = loss_and_grads_by_hand(graphdef, params, rest, batch, key,
                                                                             supervised)
  np.testing.assert_allclose(loss, hand_loss, rtol=1e-5)
  np.testing.assert_allclose(aux.sigma, sigma)
  expected = jax.tree.map(jnp.add, grad_direct, grad_through_cache)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grad), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
  # the driving pass carries a real share of the gradient (a stop_gradient on the cache would fail above)
  assert 1e-3 * optax.tree.norm(grad) < optax.tree.norm(grad_through_cache)
