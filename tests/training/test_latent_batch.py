"""The data batch -> DiT training batch step: canvas, start transition, given frames, text dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax import animation
from dreamactor_jax.models.vae import VAEConfig, WanVAE
from dreamactor_jax.training.latent_batch import prepare_batch, to_unit
from conftest import numpy_random_model

TINY_VAE = VAEConfig(base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1, temporal_downsample=(False, True, True),
                     latents_mean=(0.1,) * 16, latents_std=(2.0,) * 16)


@pytest.fixture(scope="module")
def vae():
  return numpy_random_model(lambda: WanVAE(TINY_VAE, rngs=nnx.Rngs(0)))


@nnx.jit(static_argnames=("given_frames", "start_seconds", "text_dropout", "layout", "continuation", "prediction"))
def prepare(vae, batch, key, null_text, **options):
  return prepare_batch(vae, None, batch, key, null_text=null_text, **options)


@nnx.jit
def encode(vae, video):
  return vae.normalize(vae.encode(video))


def data_batch(seed=0, *, batch=2, frames=5, height=16, width=32, fps=(2.0, 3.0)):
  rng = np.random.default_rng(seed)
  video = rng.integers(0, 256, (batch, frames, height, width, 3), dtype=np.uint8)
  return {"video": video, "reference": video[:, 0], "driving": rng.integers(0, 256, video.shape, dtype=np.uint8),
          "text": rng.standard_normal((batch, 7, 6)).astype(np.float32), "fps": np.asarray(fps, np.float32)}


def test_latents_are_the_canvas_and_target_encoded(vae):
  batch = data_batch()
  out = prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), start_seconds=1.0)
  driving = to_unit(jnp.asarray(batch["driving"]))
  # fps 2 and 3: the first 2 and 3 driving frames are blank
  driving = driving.at[0, :2].set(0.0).at[1, :3].set(0.0)
  video = to_unit(jnp.asarray(batch["video"]))
  canvas = animation.build_canvas(driving, video[:, :1])
  expected_condition = encode(vae, canvas.video)
  expected_target = encode(vae, animation.join_halves(video, driving))
  np.testing.assert_allclose(out.condition, expected_condition, atol=2e-5)
  np.testing.assert_allclose(out.target, expected_target, atol=2e-5)
  assert out.condition.shape == (2, 2, 2, 8, 16) and out.mask.shape == (2, 2, 2, 8, 4)
  # given: latent frame 0 and the motion half
  np.testing.assert_array_equal(out.mask[:, 0], 1.0)
  np.testing.assert_array_equal(out.mask[:, 1, :, :4], 0.0)
  np.testing.assert_array_equal(out.mask[:, 1, :, 4:], 1.0)
  np.testing.assert_array_equal(out.text, batch["text"])
  assert out.image is None


def test_given_frames_and_text_dropout(vae):
  # All 5 frames given and no start transition: the condition canvas is the target canvas.
  batch = data_batch(1)
  null = jnp.full((7, 6), -3.0)
  out = prepare(vae, batch, jax.random.key(0), null, given_frames=5, text_dropout=1.0, start_seconds=0.0)
  np.testing.assert_array_equal(out.text, np.broadcast_to(null, (2, 7, 6)))
  np.testing.assert_array_equal(out.mask, 1.0)
  np.testing.assert_allclose(out.condition, out.target, atol=1e-6)


def test_continuation_is_trained_as_sampled_and_the_change_base(vae):
  """A continued segment gives the clip's own first frames (not the reference) and real driving
  frames (no start transition), as `sample.py`'s later segments; "change" adds the latents of the
  first given frame held still beside blank."""
  batch = data_batch(3)
  batch["reference"] = np.random.default_rng(4).integers(0, 256, batch["reference"].shape, dtype=np.uint8)
  out = prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), given_frames=1, start_seconds=1.0,
                continuation=True, prediction="change")
  video, driving = to_unit(jnp.asarray(batch["video"])), to_unit(jnp.asarray(batch["driving"]))
  np.testing.assert_allclose(out.condition, encode(vae, animation.build_canvas(driving, video[:, :1]).video),
                             atol=2e-5)
  held = jnp.broadcast_to(video[:, :1], video.shape)
  np.testing.assert_allclose(out.base, encode(vae, animation.join_halves(held, jnp.zeros_like(held))), atol=2e-5)
  first = prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), given_frames=1, start_seconds=1.0,
                  prediction="change")
  reference = jnp.broadcast_to(to_unit(jnp.asarray(batch["reference"]))[:, None], video.shape)
  np.testing.assert_allclose(first.base, encode(vae, animation.join_halves(reference, jnp.zeros_like(reference))),
                             atol=2e-5)
  assert prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), start_seconds=1.0).base is None


def test_mask_follows_a_codec_of_another_spatial_factor():
  """A 4x codec (two downsampling stages): the mask is packed on the codec's own latent grid."""
  config = VAEConfig(base_dim=8, dim_mult=(1, 2, 2), num_res_blocks=1, temporal_downsample=(True, True))
  small = numpy_random_model(lambda: WanVAE(config, rngs=nnx.Rngs(1)))
  out = prepare(small, data_batch(), jax.random.key(0), jnp.zeros((7, 6)), start_seconds=1.0)
  assert out.condition.shape == (2, 2, 4, 16, 16) and out.mask.shape == (2, 2, 4, 16, 4)
  np.testing.assert_array_equal(out.mask[:, 1, :, :8], 0.0)
  np.testing.assert_array_equal(out.mask[:, 1, :, 8:], 1.0)


def test_animate2_layout_puts_the_reference_first_and_the_driving_apart(vae):
  """Wan-Animate-2: latent frame 0 is the reference image (given), then the clip; the driving clip is
  encoded on its own, never blanked (no start transition), with the driving prompt broadcast."""
  batch = data_batch(2)
  batch["reference"] = np.random.default_rng(9).integers(0, 256, batch["reference"].shape, dtype=np.uint8)
  driving_text = jnp.linspace(-1.0, 1.0, 42).reshape(7, 6)
  out = prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), layout="animate2", given_frames=0,
                driving_text=driving_text)
  video, driving = to_unit(jnp.asarray(batch["video"])), to_unit(jnp.asarray(batch["driving"]))
  reference = encode(vae, to_unit(jnp.asarray(batch["reference"]))[:, None])
  assert out.target.shape == out.condition.shape == (2, 3, 2, 4, 16) and out.mask.shape == (2, 3, 2, 4, 4)
  np.testing.assert_allclose(out.target, jnp.concatenate([reference, encode(vae, video)], axis=1), atol=2e-5)
  np.testing.assert_allclose(out.condition, jnp.concatenate([reference, encode(vae, jnp.zeros_like(video))], axis=1),
                             atol=2e-5)
  np.testing.assert_allclose(out.driving, encode(vae, driving), atol=2e-5)
  np.testing.assert_array_equal(out.mask[:, 0], 1.0)
  np.testing.assert_array_equal(out.mask[:, 1:], 0.0)
  np.testing.assert_array_equal(out.driving_text, np.broadcast_to(driving_text, (2, 7, 6)))
  np.testing.assert_array_equal(out.text, batch["text"])
  assert out.image is None and out.driving_image is None
  # continuation: the clip's first 5 frames are carried after the reference frame (all of this clip)
  carried = prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), layout="animate2", given_frames=5,
                    driving_text=driving_text)
  np.testing.assert_array_equal(carried.mask, 1.0)
  np.testing.assert_allclose(carried.condition, carried.target, atol=1e-6)
  with pytest.raises(ValueError, match="layout 'animate2' needs driving_text"):
    prepare(vae, batch, jax.random.key(0), jnp.zeros((7, 6)), layout="animate2", given_frames=0)
