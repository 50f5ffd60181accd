"""Latent mask packing against Wan I2V's own packing (torch, as in wan/image2video.py and diffusers'
WanImageToVideoPipeline.prepare_latents), against hand-built canvas expectations, and the DiT input order."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from dreamactor_jax.animation import (build_canvas, check_dit_channels, dit_input, dit_input_channels, pack_mask,
                                      whole_latent_frames)


def _wan_packing(frame_mask: np.ndarray, lat_h: int, lat_w: int) -> np.ndarray:
  """Wan's packing of a per-frame mask `[T]` (spatially constant), channels-first `[4, F, h, w]`."""
  msk = torch.from_numpy(frame_mask.astype(np.float32))[None, :, None, None].expand(1, -1, lat_h, lat_w)
  msk = torch.concat([torch.repeat_interleave(msk[:, 0:1], repeats=4, dim=1), msk[:, 1:]], dim=1)
  msk = msk.view(1, msk.shape[1] // 4, 4, lat_h, lat_w)
  return msk.transpose(1, 2)[0].numpy()


@pytest.mark.parametrize("frames", [1, 5, 13])
def test_matches_wan_packing(frames):
  rng = np.random.default_rng(frames)
  frame_mask = rng.integers(0, 2, frames).astype(np.float32)  # any 0/1 per frame, not only Wan's [1, 0, ...]
  frame_mask[0] = 1.0
  lat_h, lat_w = 3, 5
  pixel = np.broadcast_to(frame_mask[None, :, None, None], (2, frames, 8 * lat_h, 8 * lat_w))
  ours = np.asarray(pack_mask(jnp.asarray(pixel)))
  assert ours.shape == (2, 1 + (frames - 1) // 4, lat_h, lat_w, 4)
  np.testing.assert_array_equal(ours[0], _wan_packing(frame_mask, lat_h, lat_w).transpose(1, 2, 3, 0))
  np.testing.assert_array_equal(ours[1], ours[0])


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_canvas_mask_by_hand(k):
  """Latent frame 0 holds pixel frame 0 four times; latent frame f > 0, channel c holds pixel frame 4f-3+c."""
  frames, height, width = 9, 16, 48  # F = 3, latent 2 x (6 | 6)
  canvas = build_canvas(jnp.zeros((1, frames, height, width, 3)), jnp.zeros((1, k, height, width, 3)))
  mask = np.asarray(pack_mask(canvas.mask))
  assert mask.shape == (1, 3, 2, 12, 4)
  for f in range(3):
    for c in range(4):
      pixel_frame = 0 if f == 0 else 4 * f - 3 + c
      np.testing.assert_array_equal(mask[0, f, :, :6, c], float(pixel_frame < k))
      np.testing.assert_array_equal(mask[0, f, :, 6:, c], 1.0)
  fully_given = mask[0, :, :, :6].min(axis=(1, 2, 3)) == 1
  assert fully_given.sum() == whole_latent_frames(k)  # k = 1 + 4m -> m + 1 whole latent frames


def test_spatial_mean_over_8x8_blocks_keeps_axes():
  pixel = np.zeros((1, 1, 16, 24), np.float32)  # latent 2 x 3
  pixel[0, 0, 8:16, 16:24] = 1.0  # latent (1, 2)
  pixel[0, 0, 0:4, 8:16] = 1.0  # half of latent (0, 1)
  mask = np.asarray(pack_mask(jnp.asarray(pixel)))[0, 0, :, :, 0]
  np.testing.assert_array_equal(mask, [[0, 0.5, 0], [0, 0, 1]])
  # A codec of spatial factor 4 (the VAE's `space_factor`): 4x4 blocks, latent 4 x 6.
  mask = np.asarray(pack_mask(jnp.asarray(pixel), space_factor=4))[0, 0, :, :, 0]
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]])


def test_dit_input_order_is_noisy_mask_condition():
  shape = (2, 3, 5, 14)
  noisy, mask, condition = jnp.full(shape + (16,), 1.0), jnp.full(shape + (4,), 2.0), jnp.full(shape + (16,), 3.0)
  x = dit_input(noisy, mask, condition)
  assert x.shape == shape + (36,) and dit_input_channels() == 36
  np.testing.assert_array_equal(x[..., :16], 1.0)
  np.testing.assert_array_equal(x[..., 16:20], 2.0)
  np.testing.assert_array_equal(x[..., 20:], 3.0)


def test_errors():
  with pytest.raises(ValueError, match="pixel mask = 6 frames; Wan needs 1 \\+ 4k frames \\(nearest: 5 or 9\\)"):
    pack_mask(jnp.zeros((1, 6, 16, 16)))
  with pytest.raises(ValueError, match="pixel mask is 12x16; H and W must be multiples of 8"):
    pack_mask(jnp.zeros((1, 5, 12, 16)))
  with pytest.raises(ValueError, match="DiT inputs differ"):
    dit_input(jnp.zeros((1, 2, 3, 4, 16)), jnp.zeros((1, 2, 3, 5, 4)), jnp.zeros((1, 2, 3, 4, 16)))
  with pytest.raises(ValueError, match="latent mask has 1 channels; expected 4"):
    dit_input(jnp.zeros((1, 2, 3, 4, 16)), jnp.zeros((1, 2, 3, 4, 1)), jnp.zeros((1, 2, 3, 4, 16)))
  with pytest.raises(ValueError, match="checkpoint has in_channels=16; the canvas layout needs 36"):
    check_dit_channels(16)
  check_dit_channels(36)
  # Wan2.2 TI2V: the 48 latent channels alone, given positions read clean
  check_dit_channels(48, 48, "timestep")
  assert dit_input_channels(48, "timestep") == 48
  with pytest.raises(ValueError, match="in_channels=100; with model.condition='timestep' .* 48 latent channels alone"):
    check_dit_channels(100, 48, "timestep")
  with pytest.raises(ValueError, match="animation.loss_region must be 'generated', not 'canvas'"):
    check_dit_channels(48, 48, "timestep", "canvas")
