"""Fitting the demo's latent codec (`models/patch_codec.py`) to training videos.

The basis is the principal directions of the videos' pixel patches (so decoding is the best linear
reconstruction from `components` numbers per patch). Each latent channel is then standardised, as
Wan's are: the DiT's errors in a faint texture direction are scaled down by that direction's small
std when decoded. (One std shared by all channels keeps latent MSE equal to pixel MSE, but then
those errors decode at full size, as coloured pixel noise over the character: tried, and seen.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
import tqdm

from dreamactor_jax.models.patch_codec import PatchCodec, PatchCodecConfig


def fit_patch_codec(config: PatchCodecConfig, videos: Iterator[np.ndarray], *, batches: int,
                    progress: bool = True) -> PatchCodec:
  """A `PatchCodec(config)` fit on `batches` batches of videos `[B, T, H, W, 3]` in -1..1, T = 1 + 4k:
  basis and centre from the patches' covariance, then each latent channel's mean and std."""
  codec = PatchCodec(config, rngs=None)
  size = config.patch * config.patch * 3
  if config.components > size:
    raise ValueError(f"patch codec: components={config.components}, but a {config.patch}x{config.patch} RGB patch "
                     f"has only {size} values")
  clips = [np.asarray(next(videos), np.float32) for _ in tqdm.trange(batches, desc="codec", disable=not progress)]
  patches = np.concatenate([np.asarray(codec.patches(jnp.asarray(clip))).reshape(-1, size) for clip in clips])
  _, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False))  # eigenvalues ascending
  codec.center[...] = jnp.asarray(patches.mean(0))
  codec.basis[...] = jnp.asarray(eigenvectors[:, ::-1][:, :config.components].copy())
  latents = np.concatenate([np.asarray(codec.encode(jnp.asarray(clip))).reshape(-1, config.z_dim) for clip in clips])
  mean, std = latents.mean(0), np.maximum(latents.std(0), 1e-3)
  codec.config = dataclasses.replace(config, latents_mean=tuple(float(m) for m in mean),
                                     latents_std=tuple(float(s) for s in std))
  return codec
