"""Tiny random animation models (numpy-filled, nothing compiled) and a bundle of them, for the
sampling and sample.py tests. Sizes are unequal so a swapped axis fails: a 32 x 48 video (canvas
latents 4 x 12, tokens 2 x 6 per frame), 3 heads of 16, text [7, 20], CLIP 5 tokens of 8.

TI2V-shaped (`ti2v_models`): Wan2.2's 16x VAE shape (2x2 pixel patches, residual stages) with 12
latent channels and a DiT reading them alone (`condition="timestep"`) on a 64 x 96 video (canvas
latents 4 x 12, tokens 2 x 6 per frame)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from flax import nnx

from dreamactor_jax.configs import base
from conftest import numpy_random_model
from dreamactor_jax.models import CLIPVisionConfig, CLIPVisionEncoder, DiTConfig, VAEConfig, WanDiT, WanVAE
from dreamactor_jax.sampling.animate import AnimateOptions, Models
from dreamactor_jax.sampling.bundle import BundleInfo, save_bundle
from dreamactor_jax.sampling.prompt_cache import TextEmbedder

SIZE = (32, 48)
TEXT_LEN, TEXT_DIM = 7, 20
# single-pass VAE: half the compile time of the chunked scan, same function
VAE = VAEConfig(base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1, temporal_downsample=(False, True, True),
                latents_mean=(0.1,) * 16, latents_std=(2.0,) * 16, mode="single")
VAE_16X = VAEConfig(base_dim=6, decoder_base_dim=10, z_dim=12, dim_mult=(1, 2, 4, 2), num_res_blocks=1, patch_size=2,
                    residual_stages=True, latents_mean=(0.1,) * 12, latents_std=(2.0,) * 12, mode="single")
SIZE_16X = (64, 96)
TI2V = dict(in_channels=12, out_channels=12, condition="timestep")
CLIP = CLIPVisionConfig(image_size=12, patch_size=6, dim=8, ffn_dim=12, num_heads=2, num_layers=1)
# Short segments so every test's VAE programs share one shape (5 frames): compiled once per process.
OPTIONS = AnimateOptions(steps=3, guidance=4.0, shift=3.0, start_seconds=1.0, segment_frames=5, overlap_frames=1)


def dit_config(image: bool = False, **overrides) -> DiTConfig:
  return DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36, "text_dim": TEXT_DIM,
                                 **({"image_dim": CLIP.dim} if image else {}), **overrides})


def fake_encoder():
  """A stand-in for UMT5: prompt -> a fixed random `[len + 1, TEXT_DIM]` embedding."""
  def encode(prompts):
    return [np.random.default_rng(zlib.crc32(p.encode())).standard_normal((len(p) + 1, TEXT_DIM)).astype(np.float32)
            for p in prompts]
  return encode


def tiny_models(*, image: bool = False, text: bool = False, options: AnimateOptions = OPTIONS, seed: int = 0,
                vae_config: VAEConfig = VAE, size: tuple[int, int] = SIZE, **dit_overrides) -> Models:
  dit = numpy_random_model(lambda: WanDiT(dit_config(image, **dit_overrides), rngs=nnx.Rngs(0)), seed=seed)
  vae = numpy_random_model(lambda: WanVAE(vae_config, rngs=nnx.Rngs(0)), seed=seed + 1)
  clip = numpy_random_model(lambda: CLIPVisionEncoder(CLIP, rngs=nnx.Rngs(0)), seed=seed + 2) if image else None
  embedder = TextEmbedder(TEXT_DIM, TEXT_LEN, load_encoder=fake_encoder if text else None, source="tiny")
  return Models(dit=dit, vae=vae, text=embedder, clip=clip, size=size, options=options)


def ti2v_models(**options) -> Models:
  """The TI2V-shaped models (module docstring); `options` as `tiny_models`'."""
  return tiny_models(vae_config=VAE_16X, size=SIZE_16X, **{**TI2V, **options})


def write_tiny_bundle(out: Path, dit: WanDiT, vae: WanVAE, clip: CLIPVisionEncoder | None = None, **info) -> Path:
  """A bundle of these models (text none) whose animation.json asks for 2 steps and 5-frame segments."""
  values = dict(stage="rgb", size=SIZE, fps=4.0, text="none", text_len=TEXT_LEN,
                animation=dict(start_seconds=0.25, segment_frames=5, overlap_frames=1),
                sampling=dict(steps=2, guidance=3.0))
  return save_bundle(out, BundleInfo(**{**values, **info}), dit=dit, vae=vae, clip=clip)
