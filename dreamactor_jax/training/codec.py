"""A small latent codec for CPU-scale work: a Wan VAE (the same model code) trained from scratch.

No pretrained weights reach this machine, and the released VAE is far too slow for a demo on two
cores, so the demo recipe trains a narrow `WanVAE` (same causal 3D architecture, x4 time, x8 space,
16 latent channels) to reconstruct training canvases, then measures its per-channel latent mean and
std into `VAEConfig.latents_mean/std`, so the DiT reads unit-scale latents as it does with Wan's.
The objective is plain reconstruction (L1 + MSE) of the latent mean: the DiT only ever reads means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from flax import nnx

from dreamactor_jax.models.vae import VAEConfig, WanVAE


def reconstruction_loss(vae: WanVAE, video: jax.Array) -> jax.Array:
  """L1 + MSE of decode(encode(video)) against video `[B, T, H, W, 3]` in -1..1."""
  reconstruction = vae.decode(vae.encode(video))
  error = reconstruction - video
  return jnp.mean(jnp.abs(error)) + jnp.mean(jnp.square(error))


def train_codec(config: VAEConfig, videos: Iterator[np.ndarray], *, steps: int, learning_rate: float = 1e-3,
                seed: int = 0, progress: bool = True) -> tuple[WanVAE, list[float]]:
  """Trains a `WanVAE(config)` on batches of videos `[B, T, H, W, 3]` in -1..1; returns it and the losses."""
  vae = WanVAE(config, rngs=nnx.Rngs(seed))
  optimizer = optax.chain(optax.clip_by_global_norm(1.0),
                          optax.adamw(optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, steps // 10),
                                                                         steps, learning_rate * 0.05),
                                      weight_decay=1e-4))
  graphdef, params = nnx.split(vae, nnx.Param)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, video):
    loss, grads = jax.value_and_grad(lambda p: reconstruction_loss(nnx.merge(graphdef, p), video))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  with tqdm.trange(steps, desc="codec", disable=not progress) as bar:
    for _ in bar:
      params, opt_state, loss = step(params, opt_state, jnp.asarray(next(videos)))
      losses.append(float(loss))
      bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
  return nnx.merge(graphdef, params), losses


def latent_statistics(vae: WanVAE, videos: Iterator[np.ndarray], *, batches: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std `[z_dim]` of the VAE's latent means over `batches` batches of videos."""
  encode = nnx.jit(lambda vae, video: vae.encode(video))
  latents = np.concatenate([np.asarray(encode(vae, jnp.asarray(next(videos)))).reshape(-1, vae.config.z_dim)
                            for _ in range(batches)])
  return latents.mean(0), np.maximum(latents.std(0), 1e-3)


def with_statistics(vae: WanVAE, mean: np.ndarray, std: np.ndarray) -> WanVAE:
  """The same weights under a config whose `latents_mean/std` are `mean`, `std`."""
  vae.config = dataclasses.replace(vae.config, latents_mean=tuple(float(m) for m in mean),
                                   latents_std=tuple(float(s) for s in std))
  return vae
