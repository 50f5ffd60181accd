"""The Wan VAEs against diffusers' AutoencoderKLWan: encode, decode, chunked == single pass, tiling;
Wan2.2's variant (residual stages, 2x2 pixel folding) and its parameter-free pieces."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from conftest import assert_close, make_torch_vae
from dreamactor_jax.animation.frames import check_frame_count
from dreamactor_jax.convert import load_torch_vae
from dreamactor_jax.models import vae as vae_module
from dreamactor_jax.models import vae_conv
from dreamactor_jax.models.vae import VAE_SIZES, VAEConfig, WanVAE

# Non-square frames (24 x 40 pixels -> 3 x 5 latents) and a 4-stage tiny net with unequal widths.
TINY = dict(base_dim=6, z_dim=4, dim_mult=[1, 2, 3, 3], num_res_blocks=1)
# Wan2.2's shape, tiny: 2x2 pixel folding (x16 space), residual stages, a wider decoder, a last
# stage that halves the width (so its shortcut averages channel pairs).
TINY_WAN22 = dict(base_dim=6, decoder_base_dim=10, z_dim=5, dim_mult=[1, 2, 4, 2], num_res_blocks=1,
                  is_residual=True, patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=16)


def torch_and_ours(tmp_path_factory, config: dict):
  """A tiny diffusers VAE and ours loaded from its saved folder by the real importer."""
  torch_model = make_torch_vae(**config)
  folder = tmp_path_factory.mktemp("vae")
  torch_model.save_pretrained(folder)
  return torch_model, load_torch_vae(folder)[0]


@pytest.fixture(scope="module")
def vaes(tmp_path_factory):
  return torch_and_ours(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def wan22_vaes(tmp_path_factory):
  return torch_and_ours(tmp_path_factory, TINY_WAN22)


@nnx.jit
def encode(vae, video):
  return vae.encode(video)


@nnx.jit
def decode(vae, latents):
  return vae.decode(latents)


def with_mode(vae, **fields):
  vae.config = dataclasses.replace(vae.config, **fields)
  return vae


def torch_encode(model, video):
  with torch.no_grad():
    return model.encode(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())).latent_dist.mode().numpy().transpose(0, 2, 3, 4, 1)


def torch_decode(model, latents):
  with torch.no_grad():
    return model.decode(torch.from_numpy(latents.transpose(0, 4, 1, 2, 3).copy())).sample.numpy().transpose(0, 2, 3, 4, 1)


# 1 frame: the causal first chunk alone; 9: it plus two 4-frame chunks, each reading the previous one's cache.
@pytest.mark.parametrize("variant, frames", [("vaes", 1), ("vaes", 9), ("wan22_vaes", 1), ("wan22_vaes", 9)])
def test_encode_decode_match_diffusers(request, variant, frames):
  torch_model, vae = request.getfixturevalue(variant)
  space = vae.config.space_factor  # 8, or 16 for Wan2.2: 3 x 5 latents either way
  video = np.random.default_rng(frames).uniform(-1, 1, (2, frames, 3 * space, 5 * space, 3)).astype(np.float32)
  ref_latents = torch_encode(torch_model, video)
  ref_video = torch_decode(torch_model, ref_latents)
  assert ref_latents.shape == (2, 1 + (frames - 1) // 4, 3, 5, vae.config.z_dim)
  for mode in ("single", "chunked"):
    with_mode(vae, mode=mode)
    latents = np.asarray(encode(vae, jnp.asarray(video)))
    assert_close(latents, ref_latents)
    decoded = np.asarray(decode(vae, jnp.asarray(ref_latents)))
    assert decoded.shape == video.shape
    assert_close(decoded, ref_video)


def test_chunked_equals_single_pass(vaes):
  _, vae = vaes
  video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 9, 16, 24, 3)), jnp.float32)
  latents = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 2, 3, 4)), jnp.float32)
  outputs = {}
  for mode in ("single", "chunked"):
    with_mode(vae, mode=mode)
    outputs[mode] = np.asarray(encode(vae, video)), np.asarray(decode(vae, latents))
  for single, chunked in zip(outputs["single"], outputs["chunked"]):
    np.testing.assert_allclose(chunked, single, atol=2e-5 * float(np.abs(single).max()))


def test_tiled_matches_diffusers_tiling(vaes):
  torch_model, vae = vaes
  torch_model.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=24,
                            tile_sample_stride_width=24)
  try:
    # 2 x 2 tiles of 32 with stride 24: blends across both axes; the last row and column are cut short.
    video = np.random.default_rng(3).uniform(-1, 1, (1, 5, 40, 48, 3)).astype(np.float32)
    ref_latents = torch_encode(torch_model, video)
    ref_video = torch_decode(torch_model, ref_latents)
  finally:
    torch_model.disable_tiling()
  with_mode(vae, mode="chunked", tile_sample_size=32, tile_sample_stride=24)
  try:
    assert_close(np.asarray(encode(vae, jnp.asarray(video))), ref_latents)
    assert_close(np.asarray(decode(vae, jnp.asarray(ref_latents))), ref_video)
  finally:
    with_mode(vae, tile_sample_size=None)


def test_normalize_round_trip(vaes):
  _, vae = vaes
  latents = jnp.asarray(np.random.default_rng(1).normal(size=(1, 2, 3, 5, 4)), jnp.float32)
  with_mode(vae, latents_mean=(0.5, -1.0, 2.0, 0.0), latents_std=(2.0, 0.5, 1.0, 4.0))
  try:
    normal = vae.normalize(latents)
    np.testing.assert_allclose(np.asarray(normal[..., 1]), (np.asarray(latents[..., 1]) + 1.0) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(vae.denormalize(normal)), np.asarray(latents), rtol=1e-5, atol=1e-6)
  finally:
    with_mode(vae, latents_mean=VAEConfig.latents_mean, latents_std=VAEConfig.latents_std)


@pytest.mark.parametrize("frames, message", [(6, r"6 frames.*1 \+ 4k.*nearest: 5 or 9"),
                                             (0, r"0 frames.*nearest: 1 or 5"),
                                             (16, r"16 frames.*nearest: 13 or 17")])
def test_frame_count_error(frames, message):
  with pytest.raises(ValueError, match=message):
    check_frame_count("video", frames)


def test_wrong_frame_size_is_reported(vaes):
  _, vae = vaes
  with pytest.raises(ValueError, match="20x40.*divisible by 8"):
    vae.encode(jnp.zeros((1, 1, 20, 40, 3)))


def test_full_size_matches_diffusers_param_count():
  from diffusers import AutoencoderKLWan

  with torch.device("meta"):
    reference = AutoencoderKLWan()
  expected = sum(p.numel() for p in reference.parameters())
  model = nnx.eval_shape(lambda: WanVAE(VAEConfig(), rngs=nnx.Rngs(0)))
  ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert ours == expected
  video = nnx.eval_shape(lambda: WanVAE(VAEConfig(), rngs=nnx.Rngs(0)).decode(jnp.zeros((1, 21, 60, 104, 16))))
  assert video.shape == (1, 81, 480, 832, 3)


def test_frame_at_a_time_chunks_match_diffusers(vaes, monkeypatch):
  monkeypatch.setattr(vae_conv, "_FRAME_SPLIT_SIZE", 1)
  torch_model, vae = vaes
  latents = np.random.default_rng(2).normal(size=(2, 3, 3, 5, 4)).astype(np.float32)
  decoded = nnx.jit(lambda vae, z: vae.decode(z))(with_mode(vae, mode="chunked"), jnp.asarray(latents))
  assert_close(np.asarray(decoded), torch_decode(torch_model, latents))


def test_pixel_folding_matches_diffusers_patchify():
  from diffusers.models.autoencoders.autoencoder_kl_wan import patchify, unpatchify

  video = np.random.default_rng(0).normal(size=(2, 3, 6, 10, 3)).astype(np.float32)
  folded = np.asarray(vae_module.fold_pixels(jnp.asarray(video), 2))
  reference = patchify(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()), 2).numpy().transpose(0, 2, 3, 4, 1)
  np.testing.assert_array_equal(folded, reference)
  unfolded = unpatchify(torch.from_numpy(folded.transpose(0, 4, 1, 2, 3).copy()), 2).numpy()
  np.testing.assert_array_equal(np.asarray(vae_module.unfold_pixels(jnp.asarray(folded), 2)),
                                unfolded.transpose(0, 2, 3, 4, 1))
  np.testing.assert_array_equal(unfolded.transpose(0, 2, 3, 4, 1), video)


@pytest.mark.parametrize("in_dim, out_dim, time_factor, space_factor, frames",
                         [(6, 12, 2, 2, 5), (6, 12, 2, 2, 4), (6, 6, 1, 2, 3), (8, 4, 1, 1, 3)])
def test_average_down_matches_diffusers(in_dim, out_dim, time_factor, space_factor, frames):
  from diffusers.models.autoencoders.autoencoder_kl_wan import AvgDown3D

  x = np.random.default_rng(frames).normal(size=(2, frames, 4, 6, in_dim)).astype(np.float32)
  ours = vae_module.average_down(jnp.asarray(x), out_dim, time_factor=time_factor, space_factor=space_factor)
  reference = AvgDown3D(in_dim, out_dim, time_factor, space_factor)(torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()))
  np.testing.assert_allclose(np.asarray(ours), reference.numpy().transpose(0, 2, 3, 4, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("in_dim, out_dim, time_factor, first", [(12, 6, 2, True), (12, 6, 2, False), (8, 8, 1, True)])
def test_duplicate_up_matches_diffusers(in_dim, out_dim, time_factor, first):
  from diffusers.models.autoencoders.autoencoder_kl_wan import DupUp3D

  x = np.random.default_rng(in_dim).normal(size=(2, 3, 2, 5, in_dim)).astype(np.float32)
  ours = vae_module.duplicate_up(jnp.asarray(x), out_dim, time_factor=time_factor, space_factor=2, first=first)
  reference = DupUp3D(in_dim, out_dim, time_factor, 2)(torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()),
                                                       first_chunk=first)
  np.testing.assert_array_equal(np.asarray(ours), reference.numpy().transpose(0, 2, 3, 4, 1))


def test_uneven_residual_stage_is_refused():
  config = VAEConfig(base_dim=6, dim_mult=(1, 2, 3, 3), num_res_blocks=1, residual_stages=True)
  with pytest.raises(ValueError, match=r"from 12 to 18 channels \(down3d\) needs 96 values per cell to split evenly "
                                       r"over 18 channels"):
    nnx.eval_shape(lambda: WanVAE(config, rngs=nnx.Rngs(0)))


def test_wan22_full_size_matches_diffusers_param_count():
  from diffusers import AutoencoderKLWan

  config = VAE_SIZES["wan2.2"]
  with torch.device("meta"):
    reference = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, patch_size=2,
                                 in_channels=12, out_channels=12, scale_factor_spatial=16)
  model = nnx.eval_shape(lambda: WanVAE(config, rngs=nnx.Rngs(0)))
  ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert ours == sum(p.numel() for p in reference.parameters())
  assert len(config.latents_mean) == len(config.latents_std) == 48
  video = nnx.eval_shape(lambda: WanVAE(config, rngs=nnx.Rngs(0)).decode(jnp.zeros((1, 21, 44, 80, 48))))
  assert video.shape == (1, 81, 704, 1280, 3)
  latents = nnx.eval_shape(lambda: WanVAE(config, rngs=nnx.Rngs(0)).encode(jnp.zeros((1, 5, 704, 1280, 3))))
  assert latents.shape == (1, 2, 44, 80, 48)
