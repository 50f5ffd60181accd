"""The generated region: what the loss weights and what the output reads are the same positions."""

import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.animation import (build_canvas, generated_latents, generated_region, generated_video,
                                      loss_weight, pack_mask, token_timesteps, whole_latent_frames)

FRAMES, HEIGHT, WIDTH = 13, 16, 48  # latent F = 4, 2 x (6 | 6)


def _mask(k):
  canvas = build_canvas(jnp.zeros((2, FRAMES, HEIGHT, WIDTH, 3)), jnp.zeros((2, k, HEIGHT, WIDTH, 3)))
  return canvas, pack_mask(canvas.mask)


@pytest.mark.parametrize("k, given_latent", [(1, 1), (5, 2), (2, 1), (9, 3)])
def test_region_by_hand(k, given_latent):
  assert whole_latent_frames(k) == given_latent
  region = np.asarray(generated_region(_mask(k)[1]))
  expected = np.zeros((2, 4, 2, 12), np.float32)
  expected[:, given_latent:, :, :6] = 1.0  # left half, latent frames not wholly given
  np.testing.assert_array_equal(region, expected)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_loss_and_output_read_the_same_region(k):
  canvas, mask = _mask(k)
  weight = np.asarray(loss_weight(mask))
  # label every latent position; the weighted labels are exactly the ones the output slice returns
  labels = np.arange(np.prod(weight.shape)).reshape(weight.shape)
  sliced = np.asarray(generated_latents(jnp.asarray(labels[..., None]), k))[..., 0]
  assert sorted(labels[weight == 1].tolist()) == sorted(sliced.ravel().tolist())
  # pixels: the output video is the left half of frames k.., exactly where the pixel mask is 0
  pixel_labels = np.arange(np.prod(canvas.mask.shape)).reshape(canvas.mask.shape)
  out = np.asarray(generated_video(jnp.asarray(pixel_labels[..., None]), k))[..., 0]
  assert out.shape == (2, FRAMES - k, HEIGHT, WIDTH)
  assert sorted(pixel_labels[np.asarray(canvas.mask) == 0].tolist()) == sorted(out.ravel().tolist())


def test_canvas_region_and_errors():
  mask = _mask(1)[1]
  np.testing.assert_array_equal(loss_weight(mask, "canvas"), np.ones((2, 4, 2, 12)))
  with pytest.raises(ValueError, match="loss region 'left'; expected 'generated' or 'canvas'"):
    loss_weight(mask, "left")


@pytest.mark.parametrize("k, given_latent", [(1, 1), (5, 2)])
def test_token_timesteps_on_the_16x_canvas(k, given_latent):
  # Wan2.2's VAE: 16x16 pixels per latent. 13 frames of 64 x 96 -> latents 4 x 4 x (6 | 6), tokens
  # 4 x 2 x (3 | 3): 0 on the given tokens (reference frames' left half, all of the motion half).
  canvas = build_canvas(jnp.zeros((2, 13, 64, 96, 3)), jnp.zeros((2, k, 64, 96, 3)), space_factor=16)
  timesteps = np.asarray(token_timesteps(pack_mask(canvas.mask, 16), jnp.array([250.0, 800.0]), (1, 2, 2)))
  expected = np.zeros((2, 4, 2, 6), np.float32)
  expected[:, given_latent:, :, :3] = np.array([250.0, 800.0])[:, None, None, None]
  np.testing.assert_array_equal(timesteps, expected.reshape(2, -1))
  with pytest.raises(ValueError, match=r"latent mask \(2, 4, 4, 12, 4\) is not whole patches of \(1, 3, 2\)"):
    token_timesteps(pack_mask(canvas.mask, 16), jnp.ones(2), (1, 3, 2))
