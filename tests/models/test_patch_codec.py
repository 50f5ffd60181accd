"""The demo's patch codec: its latent layout (Wan's time grouping), the PCA fit, checkpoints that
name their codec, and sampling through a bundle that holds one."""

import numpy as np
import pytest
from flax import nnx

import tiny_bundle
from conftest import numpy_random_model
from dreamactor_jax.checkpoints import load_codec, save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models import PatchCodec, PatchCodecConfig, VAEConfig, WanDiT, WanVAE
from dreamactor_jax.sampling.animate import Models, animate
from dreamactor_jax.sampling.bundle import load_bundle
from dreamactor_jax.sampling.prompt_cache import TextEmbedder
from dreamactor_jax.training.codec import fit_patch_codec

# 12 x 20 frames of 2x2 patches: a 6 x 10 latent grid; 12 values per patch.
PATCH = 2


def identity_codec(components: int = 12) -> PatchCodec:
  """The first `components` pixel values of each patch, as they are (an exact codec at 12)."""
  codec = PatchCodec(PatchCodecConfig(patch=PATCH, components=components), rngs=None)
  codec.basis[...] = np.eye(PATCH * PATCH * 3, components, dtype=np.float32)
  return codec


def test_latents_hold_each_patch_of_each_frame_in_wan_time_groups():
  video = np.random.default_rng(0).uniform(-1, 1, (2, 9, 12, 20, 3)).astype(np.float32)
  latents = np.asarray(identity_codec().encode(video))
  assert latents.shape == (2, 3, 6, 10, 48)
  i, j = 4, 7  # latent row, column: pixels [8:10, 14:16]
  patch = lambda frame: video[:, frame, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 12)
  for c in range(4):
    np.testing.assert_array_equal(latents[:, 0, i, j, 12 * c:12 * c + 12], patch(0))  # frame 0, four times
    np.testing.assert_array_equal(latents[:, 2, i, j, 12 * c:12 * c + 12], patch(5 + c))  # frames 5..8


def test_a_full_basis_decodes_exactly():
  video = np.random.default_rng(1).uniform(-1, 1, (1, 5, 12, 20, 3)).astype(np.float32)
  codec = identity_codec()
  np.testing.assert_allclose(np.asarray(codec.decode(codec.encode(video))), video, atol=1e-6)


def test_bad_inputs_are_named():
  codec = identity_codec()
  with pytest.raises(ValueError, match=r"video = 6 frames; Wan needs 1 \+ 4k frames \(nearest: 5 or 9\)"):
    codec.encode(np.zeros((1, 6, 12, 20, 3), np.float32))
  with pytest.raises(ValueError, match="video frames are 12x21; the patch codec needs sides divisible by 2"):
    codec.encode(np.zeros((1, 5, 12, 21, 3), np.float32))
  with pytest.raises(ValueError, match="latents have 47 channels; the patch codec reads 48"):
    codec.decode(np.zeros((1, 2, 6, 10, 47), np.float32))
  with pytest.raises(ValueError, match="components=13, but a 2x2 RGB patch has only 12 values"):
    fit_patch_codec(PatchCodecConfig(patch=2, components=13), iter([]), batches=1, progress=False)


def smooth_videos(seed: int):
  """Videos whose patches live near a low-dimensional subspace (smooth colour ramps plus faint noise)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:12, 0:20] / 20.0
  while True:
    a, b, c = rng.uniform(-0.5, 0.5, (3, 2, 5, 1, 1, 3))
    ramps = a + b * y[None, None, ..., None] + c * x[None, None, ..., None]
    yield np.clip(ramps + rng.normal(0, 0.01, ramps.shape), -1, 1).astype(np.float32)


def test_fit_finds_the_principal_directions_and_standardises():
  codec = fit_patch_codec(PatchCodecConfig(patch=PATCH, components=3), smooth_videos(0), batches=20, progress=False)
  basis = np.asarray(codec.basis[...])
  np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)
  test = next(smooth_videos(1))
  error = lambda c: np.mean((np.asarray(c.decode(c.encode(test))) - test) ** 2)
  assert error(codec) < 4e-4  # three directions hold a ramp's patches (noise variance 1e-4)
  one = fit_patch_codec(PatchCodecConfig(patch=PATCH, components=1), smooth_videos(0), batches=20, progress=False)
  assert error(one) > 10 * error(codec)
  videos = smooth_videos(0)
  z = np.asarray(codec.normalize(codec.encode(np.concatenate([next(videos) for _ in range(20)]))))  # the fit's data
  np.testing.assert_allclose(z.mean(axis=(0, 1, 2, 3)), 0.0, atol=1e-4)
  np.testing.assert_allclose(z.std(axis=(0, 1, 2, 3)), 1.0, rtol=1e-3)


def test_load_codec_reads_the_kind_its_config_names(tmp_path):
  codec = fit_patch_codec(PatchCodecConfig(patch=PATCH, components=3), smooth_videos(0), batches=4, progress=False)
  save_model(tmp_path / "patch", model_params(codec), codec.config)
  loaded, config = load_codec(tmp_path / "patch")
  assert isinstance(loaded, PatchCodec) and config == codec.config
  np.testing.assert_array_equal(np.asarray(loaded.basis[...]), np.asarray(codec.basis[...]))
  vae = WanVAE(VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2), num_res_blocks=1), rngs=nnx.Rngs(0))
  save_model(tmp_path / "vae", model_params(vae), vae.config)
  assert isinstance(load_codec(tmp_path / "vae")[0], WanVAE)


def test_a_bundle_with_a_patch_codec_animates(tmp_path):
  """4x4 patches, 3 directions: z 12, the DiT reads 12 + 4 + 12 channels and writes 12."""
  codec = fit_patch_codec(PatchCodecConfig(patch=4, components=3),
                          (np.random.default_rng(s).uniform(-1, 1, (1, 5, *tiny_bundle.SIZE, 3)).astype(np.float32)
                           for s in range(3)), batches=3, progress=False)
  dit = numpy_random_model(lambda: WanDiT(tiny_bundle.dit_config(in_channels=28, out_channels=12), rngs=nnx.Rngs(0)))
  folder = tiny_bundle.write_tiny_bundle(tmp_path / "bundle", dit, codec)
  models = load_bundle(folder)
  assert isinstance(models.vae, PatchCodec)
  rng = np.random.default_rng(3)
  reference = rng.integers(0, 256, (*tiny_bundle.SIZE, 3), np.uint8)
  driving = rng.integers(0, 256, (7, *tiny_bundle.SIZE, 3), np.uint8)
  video = animate(models, reference, driving, fps=4.0, progress=False)
  assert video.shape == (7, *tiny_bundle.SIZE, 3) and video.dtype == np.uint8
  with pytest.raises(ValueError, match="DiT out_channels=16 differs from the VAE's z_dim=12"):
    Models(dit=numpy_random_model(lambda: WanDiT(tiny_bundle.dit_config(in_channels=28), rngs=nnx.Rngs(0))),
           vae=codec, text=TextEmbedder(tiny_bundle.TEXT_DIM, tiny_bundle.TEXT_LEN, source="tiny"))
