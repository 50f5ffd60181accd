"""Reference fitting: aspect kept, centred padding, exact when sizes match, mode conversion and refusals."""

import numpy as np
import pytest

from dreamactor_jax.animation import Box, fit_box, fit_reference, to_rgb


@pytest.mark.parametrize("image, target, box", [
    ((100, 50), (64, 96), Box(0, 32, 64, 32)),  # taller: height limits, centred horizontally
    ((50, 100), (64, 96), Box(8, 0, 48, 96)),  # wider: width limits
    ((32, 48), (64, 96), Box(0, 0, 64, 96)),  # same aspect: fills the frame
    ((10, 3), (16, 16), Box(0, 5, 16, 5)),  # 4.8 rounds to 5; odd margin: extra pixel right
    ((1000, 1), (16, 32), Box(0, 15, 16, 1)),  # never below one pixel
])
def test_fit_box(image, target, box):
  assert fit_box(*image, *target) == box


def test_same_size_is_used_as_is():
  image = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
  np.testing.assert_array_equal(fit_reference(image, 16, 32), image.astype(np.float32) / 127.5 - 1)


def test_other_aspect_is_resized_and_padded_not_stretched():
  image = np.zeros((40, 20, 3), np.uint8)
  image[..., 0] = 255  # red, 2:1 tall
  fitted = fit_reference(image, 32, 48, pad=-1.0)
  assert fitted.shape == (32, 48, 3) and fitted.dtype == np.float32
  np.testing.assert_allclose(fitted[:, 16:32], np.broadcast_to([1.0, -1.0, -1.0], (32, 16, 3)), atol=1e-6)
  np.testing.assert_array_equal(fitted[:, :16], -1.0)  # padding left and right
  np.testing.assert_array_equal(fitted[:, 32:], -1.0)
  # a downscale keeps the picture: a half-black, half-white image stays so, split at the same place
  image = np.zeros((64, 64, 3), np.uint8)
  image[32:] = 255
  fitted = fit_reference(image, 16, 32)
  np.testing.assert_allclose(fitted[:6, 8:24], -1.0, atol=1e-6)
  np.testing.assert_allclose(fitted[10:, 8:24], 1.0, atol=1e-6)
  assert abs(float(fitted[:, 8:24].mean())) < 1e-6
  np.testing.assert_array_equal(fitted[:, :8], 0.0)  # default padding: the canvas blank


def test_modes():
  gray = np.full((16, 16), 255, np.uint8)
  np.testing.assert_array_equal(to_rgb(gray), np.ones((16, 16, 3)))
  np.testing.assert_array_equal(to_rgb(gray[..., None]), np.ones((16, 16, 3)))
  rgba = np.zeros((2, 2, 4), np.uint8)
  rgba[0, 0, 3], rgba[0, 1, 3] = 255, 0  # opaque black, transparent
  rgba[1, :, 3] = 51  # 20% black over white
  rgb = to_rgb(rgba)
  np.testing.assert_allclose(rgb[0, 0], -1.0)
  np.testing.assert_allclose(rgb[0, 1], 1.0)
  np.testing.assert_allclose(rgb[1, 0], 0.2 * -1.0 + 0.8 * 1.0, atol=1e-6)


def test_refusals():
  with pytest.raises(ValueError, match="reference image has dtype float32; expected uint8 HxWx3"):
    fit_reference(np.zeros((16, 16, 3), np.float32), 16, 16)
  with pytest.raises(ValueError, match=r"reference image has shape \(16, 16, 2\); expected HxWx3 RGB"):
    fit_reference(np.zeros((16, 16, 2), np.uint8), 16, 16)
  with pytest.raises(ValueError, match=r"shape \(0, 16, 3\)"):
    fit_reference(np.zeros((0, 16, 3), np.uint8), 16, 16)
