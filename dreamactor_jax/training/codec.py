"""Fitting the demo's latent codec (`models/patch_codec.py`) to training videos.

The basis is the principal directions of the videos' pixel patches (so decoding is the best linear
reconstruction from `components` numbers per patch). The latent statistics standardise each
channel's mean but share one std across channels: the codec is orthonormal, so the DiT's latent
MSE stays proportional to pixel MSE instead of weighting faint texture directions like the colour
of a whole patch.
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
  basis and centre from the patches' covariance, then the latent mean and std (module docstring)."""
  codec = PatchCodec(config, rngs=None)
  size = config.patch * config.patch * 3
  if config.components > size:
    raise ValueError(f"patch codec: components={config.components}, but a {config.patch}x{config.patch} RGB patch "
                     f"has only {size} values")
  clips = [np.asarray(next(videos), np.float32) for _ in tqdm.trange(batches, desc="codec", disable=not progress)]
  patches = np.concatenate([np.asarray(codec.patches(jnp.asarray(clip))).reshape(-1, size) for clip in clips])
  center = patches.mean(0)
  covariance = np.cov(patches - center, rowvar=False)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
  codec.center[...] = jnp.asarray(center)
  codec.basis[...] = jnp.asarray(eigenvectors[:, ::-1][:, :config.components].copy())
  latents = np.concatenate([np.asarray(codec.encode(jnp.asarray(clip))).reshape(-1, config.z_dim) for clip in clips])
  mean = latents.mean(0)
  std = max(float((latents - mean).std()), 1e-3)
  codec.config = dataclasses.replace(config, latents_mean=tuple(float(m) for m in mean),
                                     latents_std=(std,) * config.z_dim)
  return codec
