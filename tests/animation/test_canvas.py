"""The pixel canvas and mask against hand-built layouts; halves split/join on videos, masks and latents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.animation import BLANK, build_canvas, join_halves, left_half, split_halves

B, T, H, W = 2, 9, 16, 32  # unequal sizes: a swapped axis fails


def _hand_canvas(driving, given):
  """The layout written out frame by frame, half by half."""
  k = given.shape[1]
  video = np.zeros((B, T, H, 2 * W, 3), np.float32)
  mask = np.zeros((B, T, H, 2 * W), np.float32)
  for t in range(T):
    video[:, t, :, :W] = given[:, t] if t < k else BLANK
    mask[:, t, :, :W] = 1.0 if t < k else 0.0
    video[:, t, :, W:] = driving[:, t]
    mask[:, t, :, W:] = 1.0
  return video, mask


@pytest.mark.parametrize("k", [1, 2, 5, T])
def test_canvas_matches_hand_layout(k):
  rng = np.random.default_rng(k)
  driving = rng.uniform(-1, 1, (B, T, H, W, 3)).astype(np.float32)
  given = rng.uniform(-1, 1, (B, k, H, W, 3)).astype(np.float32)
  canvas = build_canvas(jnp.asarray(driving), jnp.asarray(given))
  video, mask = _hand_canvas(driving, given)
  assert canvas.video.shape == (B, T, H, 2 * W, 3) and canvas.mask.shape == (B, T, H, 2 * W)
  np.testing.assert_array_equal(canvas.video, video)
  np.testing.assert_array_equal(canvas.mask, mask)


def test_reference_case_frame0_vs_later_frames():
  driving = jnp.full((1, 5, 16, 16, 3), 0.5)
  reference = jnp.full((1, 16, 16, 3), -0.75)
  canvas = build_canvas(driving, reference[:, None])
  left, right = split_halves(canvas.video)
  np.testing.assert_array_equal(left[:, 0], -0.75)  # frame 0: the reference on the left
  np.testing.assert_array_equal(left[:, 1:], 0.0)  # later frames: blank
  np.testing.assert_array_equal(right, 0.5)  # every frame: driving on the right
  mask_left, mask_right = split_halves(canvas.mask)
  assert float(mask_left[:, 0].min()) == 1 and float(mask_left[:, 1:].max()) == 0 and float(mask_right.min()) == 1


def test_canvas_is_jittable_and_keeps_dtype():
  driving = jnp.zeros((1, 5, 16, 32, 3), jnp.bfloat16)
  canvas = jax.jit(build_canvas)(driving, jnp.ones((1, 1, 16, 32, 3), jnp.bfloat16))
  assert canvas.video.dtype == jnp.bfloat16 and canvas.mask.dtype == jnp.bfloat16


def test_halves_round_trip_on_latents_and_masks():
  latents = jnp.arange(2 * 3 * 5 * 14 * 4.0).reshape(2, 3, 5, 14, 4)
  left, right = split_halves(latents)
  assert left.shape == right.shape == (2, 3, 5, 7, 4)
  np.testing.assert_array_equal(left, latents[:, :, :, :7])
  np.testing.assert_array_equal(join_halves(left, right), latents)
  np.testing.assert_array_equal(left_half(latents[..., 0]), latents[:, :, :, :7, 0])  # masks: same axis


def test_errors():
  driving = jnp.zeros((1, 5, 16, 32, 3))
  with pytest.raises(ValueError, match="given frames = 6; expected 1 .. 5"):
    build_canvas(driving, jnp.zeros((1, 6, 16, 32, 3)))
  with pytest.raises(ValueError, match=r"given frames \(1, 1, 16, 16, 3\) do not match driving"):
    build_canvas(driving, jnp.zeros((1, 1, 16, 16, 3)))
  with pytest.raises(ValueError, match="24x32; H and W must be multiples of 16"):
    build_canvas(jnp.zeros((1, 5, 24, 32, 3)), jnp.zeros((1, 1, 24, 32, 3)))
  with pytest.raises(ValueError, match=r"48x64; H and W must be multiples of 32 \(the VAE's 16 pixels per latent"):
    build_canvas(jnp.zeros((1, 5, 48, 64, 3)), jnp.zeros((1, 1, 48, 64, 3)), space_factor=16)
  with pytest.raises(ValueError, match="canvas width 7 .* is odd"):
    split_halves(jnp.zeros((1, 1, 2, 7, 4)))
  with pytest.raises(ValueError, match="canvas halves differ"):
    join_halves(jnp.zeros((1, 1, 2, 3)), jnp.zeros((1, 1, 2, 4)))
