"""The VAE's convolution layouts (models/vae_conv.py) against the plain 3D convolution, with gradients."""

import jax
import numpy as np
import pytest

from dreamactor_jax.models import vae_conv


@pytest.mark.parametrize("in_dim, out_dim", [(3, 6), (6, 3)])
def test_few_channel_convolution_matches_the_plain_one_with_gradients(in_dim, out_dim):
  # The CPU layout for RGB inputs/outputs has its own forward and borrows the plain conv's gradient.
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (2, 5, 6, 7, in_dim))
  kernel = jax.random.normal(keys[1], (3, 3, 3, in_dim, out_dim))
  cotangent = jax.random.normal(keys[2], (2, 3, 6, 7, out_dim))
  ours, ours_vjp = jax.vjp(vae_conv._few_channels_conv3d, x, kernel)
  plain, plain_vjp = jax.vjp(vae_conv._plain_conv3d, x, kernel)
  np.testing.assert_allclose(ours, plain, rtol=1e-5, atol=1e-5)
  for got, expected in zip(ours_vjp(cotangent), plain_vjp(cotangent)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("frames", [1, 3, 4, 6])
def test_cpu_convolution_layouts_match_the_plain_one(monkeypatch, frames):
  # 2D convolutions per time tap; for chunks of 2-4 frames (split size lowered here) one frame at a time.
  monkeypatch.setattr(vae_conv, "_FRAME_SPLIT_SIZE", 1)
  keys = jax.random.split(jax.random.key(frames), 2)
  x = jax.random.normal(keys[0], (2, frames + 2, 6, 7, 5))
  kernel = jax.random.normal(keys[1], (3, 3, 3, 5, 8))
  np.testing.assert_allclose(vae_conv._conv3d(x, kernel, time_stride=1), vae_conv._plain_conv3d(x, kernel),
                             rtol=1e-5, atol=1e-4)
