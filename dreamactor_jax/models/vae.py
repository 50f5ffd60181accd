"""The Wan causal 3D VAEs (WAN.md, "VAE"), channels-last: video `[B, T, H, W, 3]` in -1..1 with
T = 1 + 4k frames <-> latents `[B, 1 + k, H/s, W/s, z_dim]`; s = 8 for Wan2.1, 16 for Wan2.2.

Wan2.2's VAE (`VAE_SIZES["wan2.2"]`) is the same network with three changes: 2x2 pixel blocks are
folded into channels before the encoder and unfolded after the decoder (`patch_size`); each stage
adds a parameter-free resampled copy of its input, channel groups averaged on the way down and
duplicated on the way up (`residual_stages`); and the decoder has its own width
(`decoder_base_dim`), keeping its channels through each upsampling.

One code path serves both formulations. Every causal module maps `(x, cache) -> (y, cache)`, where
the cache holds what the module needs from earlier frames (the last two input frames of each
k=3 causal conv, the last frame before a temporal downsample). `cache=None` means "no earlier
frames": zero history, which is exactly the causal zero padding of the single pass. So the single
pass is one call over all frames, and the memory-bounded chunked path is the same call on frame 0
and then a scan over 4-frame (encoder) or 1-latent (decoder) chunks carrying the caches; both give
the same numbers. Large frames can also be tiled spatially with linearly blended overlaps
(`VAEConfig.tile_*`), as diffusers' `enable_tiling` does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from dreamactor_jax.animation.frames import check_frame_count
from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.config import ModelConfig
from dreamactor_jax.models.layers import Dense, param
from dreamactor_jax.models.vae_conv import CausalConv3d, Conv2d

Cache = Any  # a pytree of arrays mirroring the module tree; None before the first frame

# Per-channel statistics of the VAEs' latents: Wan2.1 from diffusers' AutoencoderKLWan defaults,
# Wan2.2 from the official `wan/modules/vae2_2.py` (Wan2_2_VAE), as in the diffusers Wan2.2 vae config.
WAN21_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
WAN22_LATENTS_MEAN = (-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
                      -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
                      -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
                      -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
                      -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
                      0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667)
WAN22_LATENTS_STD = (0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
                     0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
                     0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
                     0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
                     0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
                     0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744)


@dataclasses.dataclass(frozen=True)
class VAEConfig(ModelConfig):
  """Architecture of a Wan VAE (defaults: the released Wan2.1 model; `VAE_SIZES`) and how to run it."""

  base_dim: int = 96
  z_dim: int = 16
  dim_mult: tuple[int, ...] = (1, 2, 4, 4)
  num_res_blocks: int = 2
  temporal_downsample: tuple[bool, ...] = (False, True, True)
  decoder_base_dim: int | None = None  # None: base_dim
  patch_size: int = 1  # pixels per side folded into channels around the network (Wan2.2: 2)
  residual_stages: bool = False  # Wan2.2: stages add their resampled input; upsampling keeps the width
  latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
  latents_std: tuple[float, ...] = WAN21_LATENTS_STD
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype of convolutions and attention; norms are fp32
  mode: Literal["single", "chunked"] = "chunked"
  tile_sample_size: int | None = None  # pixels per spatial tile side; None: no tiling
  tile_sample_stride: int = 192  # pixels between tile starts (tile - stride is the blended overlap)

  @property
  def time_factor(self) -> int:
    return 2 ** sum(self.temporal_downsample)

  @property
  def space_factor(self) -> int:
    return 2 ** (len(self.dim_mult) - 1) * self.patch_size

  @property
  def pixel_channels(self) -> int:
    """Channels the encoder reads and the decoder writes: RGB with the folded pixel blocks."""
    return 3 * self.patch_size ** 2


# The released VAEs. Wan2.1: diffusers' AutoencoderKLWan defaults. Wan2.2 (TI2V-5B): the official
# `wan/modules/vae2_2.py` (dim 160, dec_dim 256, z_dim 48, patchify 2), diffusers'
# `AutoencoderKLWan(is_residual=True, patch_size=2, ...)`.
VAE_SIZES = {
    "wan2.1": VAEConfig(),
    "wan2.2": VAEConfig(base_dim=160, decoder_base_dim=256, z_dim=48, patch_size=2, residual_stages=True,
                        latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD),
}


class RMSNorm(nnx.Module):
  """`x / max(||x||_C, 1e-12) * sqrt(C) * scale` over channels, in fp32 (WAN.md: RMS_norm)."""

  def __init__(self, dim: int, *, param_dtype, rngs: nnx.Rngs):
    self.scale = param(rngs, nnx.initializers.ones, (dim,), ("norm",), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    y = x32 / jnp.maximum(norm, 1e-12) * math.sqrt(x.shape[-1]) * self.scale[...].astype(jnp.float32)
    return y.astype(x.dtype)


class ResidualBlock(nnx.Module):
  """`shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))` with causal k=3 convs."""

  def __init__(self, in_dim: int, out_dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm1 = RMSNorm(in_dim, param_dtype=param_dtype, rngs=rngs)
    self.conv1 = CausalConv3d(in_dim, out_dim, (3, 3, 3), **kw)
    self.norm2 = RMSNorm(out_dim, param_dtype=param_dtype, rngs=rngs)
    self.conv2 = CausalConv3d(out_dim, out_dim, (3, 3, 3), **kw)
    self.conv_shortcut = CausalConv3d(in_dim, out_dim, (1, 1, 1), **kw) if in_dim != out_dim else None

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    cache1, cache2 = cache or (None, None)
    shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)[0]
    h, cache1 = self.conv1(jax.nn.silu(self.norm1(x)), cache1)
    h, cache2 = self.conv2(jax.nn.silu(self.norm2(h)), cache2)
    return shortcut + h, (cache1, cache2)


class AttentionBlock(nnx.Module):
  """Single-head self-attention within each frame (no time mixing, so no cache)."""

  def __init__(self, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.norm = RMSNorm(dim, param_dtype=param_dtype, rngs=rngs)
    names = ("conv_in", "conv_out")
    self.to_qkv = Dense(dim, 3 * dim, names=names, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.proj = Dense(dim, dim, names=names, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    batch, frames, height, width, dim = x.shape
    tokens = self.norm(x).reshape(batch * frames, height * width, 1, dim)
    q, k, v = jnp.split(self.to_qkv(tokens), 3, axis=-1)  # [q, k, v] order of the fused 1x1 conv
    out = self.proj(attention(q, k, v))
    return x + out.reshape(x.shape).astype(x.dtype), None


class Resample(nnx.Module):
  """x2 down/up-sampling in space, optionally also in time (WAN.md: downsample3d, upsample3d).

  Down: zero-pad right/bottom, 3x3 conv stride 2; in time, frame 0 passes and the rest go through
  a stride-2 k=3 conv over [previous frame, frames]. Up: in time, frames after 0 become two each
  (one causal conv to 2C channels, the halves interleaved); then nearest x2 and a 3x3 conv to
  `up_dim` channels (Wan2.1: C/2, Wan2.2: C).
  """

  def __init__(self, dim: int, mode: Literal["down2d", "down3d", "up2d", "up3d"], *, up_dim: int | None = None,
               dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mode = mode
    if mode.startswith("down"):
      self.conv = Conv2d(dim, dim, stride=2, padding=((0, 1), (0, 1)), **kw)
      self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), **kw) if mode == "down3d" else None
    else:
      self.conv = Conv2d(dim, up_dim or dim // 2, stride=1, padding=((1, 1), (1, 1)), **kw)
      self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), **kw) if mode == "up3d" else None

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    if self.mode == "up3d":
      x, cache = self._upsample_time(x, cache)
    if self.mode.startswith("up"):
      x = self.conv(jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3))
    else:
      x = self.conv(x)
    if self.mode == "down3d":
      x, cache = self._downsample_time(x, cache)
    return x, cache

  def _downsample_time(self, x: jax.Array, previous: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    if previous is None:  # frame 0 stands alone; later frames pair with their predecessor
      first, rest = x[:, :1], self.time_conv.conv(x, time_stride=2) if x.shape[1] > 1 else x[:, :0]
      return jnp.concatenate([first, rest], axis=1), x[:, -1:]
    return self.time_conv.conv(jnp.concatenate([previous.astype(x.dtype), x], axis=1), time_stride=2), x[:, -1:]

  def _upsample_time(self, x: jax.Array, cache: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    first, x = (x[:, :1], x[:, 1:]) if cache is None else (x[:, :0], x)
    if x.shape[1] == 0:  # only frame 0 so far: the time conv has seen nothing
      return first, jnp.zeros((first.shape[0], 2, *first.shape[2:]), first.dtype)
    doubled, cache = self.time_conv(x, cache)
    batch, frames, height, width, dim2 = doubled.shape
    doubled = doubled.reshape(batch, frames, height, width, 2, dim2 // 2).transpose(0, 1, 4, 2, 3, 5)
    doubled = doubled.reshape(batch, 2 * frames, height, width, dim2 // 2)
    return jnp.concatenate([first.astype(doubled.dtype), doubled], axis=1), cache


class MidBlock(nnx.Module):
  """Residual block, frame attention, residual block."""

  def __init__(self, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([ResidualBlock(dim, dim, **kw), ResidualBlock(dim, dim, **kw)])
    self.attentions = nnx.List([AttentionBlock(dim, **kw)])

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    return _run_sequence([self.resnets[0], self.attentions[0], self.resnets[1]], x, cache)


def _run_sequence(layers: Sequence[Callable], x: jax.Array, cache: Cache) -> tuple[jax.Array, list]:
  caches = cache or [None] * len(layers)
  new = []
  for layer, layer_cache in zip(layers, caches):
    x, layer_cache = layer(x, layer_cache)
    new.append(layer_cache)
  return x, new


class Head(nnx.Module):
  """RMSNorm, SiLU, causal k=3 conv to the output channels."""

  def __init__(self, in_dim: int, out_dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.norm_out = RMSNorm(in_dim, param_dtype=param_dtype, rngs=rngs)
    self.conv_out = CausalConv3d(in_dim, out_dim, (3, 3, 3), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    return self.conv_out(jax.nn.silu(self.norm_out(x)), cache)


def _shortcut_factors(in_dim: int, out_dim: int, resample: str | None) -> tuple[int, int]:
  """(time, space) factors of a Wan2.2 stage shortcut; raises unless the channel groups divide evenly."""
  time_factor, space_factor = (2 if resample and resample.endswith("3d") else 1), (2 if resample else 1)
  cells = time_factor * space_factor ** 2
  many, few = (out_dim * cells, in_dim) if resample and resample.startswith("up") else (in_dim * cells, out_dim)
  if many % few:
    raise ValueError(f"a residual stage from {in_dim} to {out_dim} channels ({resample or 'no resampling'}) "
                     f"needs {many} values per cell to split evenly over {few} channels")
  return time_factor, space_factor


def average_down(x: jax.Array, out_dim: int, *, time_factor: int, space_factor: int) -> jax.Array:
  """Wan2.2's parameter-free down shortcut: `[B, T, H, W, C]` -> `[B, ceil(T/t), H/s, W/s, out_dim]`.

  Each cell's C x t x s x s values, ordered (channel, frame, row, column), are split into out_dim
  consecutive groups and averaged. An odd T gets a zero frame in front, so frame 0 stands alone as
  in the causal downsampling (and a chunk of even length needs nothing from earlier chunks).
  """
  x = jnp.pad(x, ((0, 0), ((-x.shape[1]) % time_factor, 0), (0, 0), (0, 0), (0, 0)))
  batch, frames, height, width, dim = x.shape
  cells = x.reshape(batch, frames // time_factor, time_factor, height // space_factor, space_factor,
                    width // space_factor, space_factor, dim)
  cells = cells.transpose(0, 1, 3, 5, 7, 2, 4, 6)  # B T H W C t s s
  return cells.reshape(*cells.shape[:4], out_dim, -1).mean(axis=-1)


def duplicate_up(x: jax.Array, out_dim: int, *, time_factor: int, space_factor: int, first: bool) -> jax.Array:
  """Wan2.2's parameter-free up shortcut, the mirror of `average_down`: each channel repeated into
  consecutive (channel, frame, row, column) slots of `[B, t T, s H, s W, out_dim]`. On the first
  chunk frame 0 stays one frame (its t - 1 leading copies are dropped), as in the causal upsampling."""
  batch, frames, height, width, dim = x.shape
  cells = jnp.repeat(x, out_dim * time_factor * space_factor ** 2 // dim, axis=-1)
  cells = cells.reshape(batch, frames, height, width, out_dim, time_factor, space_factor, space_factor)
  cells = cells.transpose(0, 1, 5, 2, 6, 3, 7, 4)  # B T t H s W s C
  y = cells.reshape(batch, frames * time_factor, height * space_factor, width * space_factor, out_dim)
  return y[:, time_factor - 1:] if first else y


def fold_pixels(video: jax.Array, patch: int) -> jax.Array:
  """`[B, T, H, W, C]` -> `[B, T, H/p, W/p, C p p]`, channels ordered (colour, column, row) as Wan2.2's patchify."""
  if patch == 1:
    return video
  batch, frames, height, width, dim = video.shape
  blocks = video.reshape(batch, frames, height // patch, patch, width // patch, patch, dim)
  return blocks.transpose(0, 1, 2, 4, 6, 5, 3).reshape(batch, frames, height // patch, width // patch, -1)


def unfold_pixels(x: jax.Array, patch: int) -> jax.Array:
  """Inverse of `fold_pixels`: `[B, T, h, w, C p p]` -> `[B, T, p h, p w, C]`."""
  if patch == 1:
    return x
  batch, frames, height, width, channels = x.shape
  blocks = x.reshape(batch, frames, height, width, channels // patch ** 2, patch, patch)  # ... C column row
  return blocks.transpose(0, 1, 2, 6, 3, 5, 4).reshape(batch, frames, height * patch, width * patch, -1)


class DownBlock(nnx.Module):
  """A Wan2.2 encoder stage: residual blocks and an optional x2 downsampling, plus `average_down` of
  the stage's input (the parameter-free shortcut)."""

  def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, downsample: str | None, *, dtype,
               param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([ResidualBlock(in_dim if i == 0 else out_dim, out_dim, **kw)
                             for i in range(num_res_blocks)])
    self.downsampler = Resample(out_dim, downsample, **kw) if downsample else None
    self.out_dim = out_dim
    self.factors = _shortcut_factors(in_dim, out_dim, downsample)

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    layers = [*self.resnets] + ([self.downsampler] if self.downsampler is not None else [])
    y, cache = _run_sequence(layers, x, cache)
    time_factor, space_factor = self.factors
    return y + average_down(x, self.out_dim, time_factor=time_factor, space_factor=space_factor), cache


class Encoder(nnx.Module):
  """Pixels `[B, T, H, W, 3 p p]` -> `[B, 1 + (T-1)/4, H/8, W/8, 2 z_dim]` (mean and log-variance)."""

  def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
    kw = dict(dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs)
    dims = [config.base_dim * m for m in (1, *config.dim_mult)]
    self.conv_in = CausalConv3d(config.pixel_channels, dims[0], (3, 3, 3), **kw)
    blocks = []
    for stage, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      downsample = None
      if stage < len(config.dim_mult) - 1:
        downsample = "down3d" if config.temporal_downsample[stage] else "down2d"
      if config.residual_stages:
        blocks.append(DownBlock(in_dim, out_dim, config.num_res_blocks, downsample, **kw))
        continue
      for _ in range(config.num_res_blocks):
        blocks.append(ResidualBlock(in_dim, out_dim, **kw))
        in_dim = out_dim
      if downsample:
        blocks.append(Resample(out_dim, downsample, **kw))
    self.down_blocks = nnx.List(blocks)
    self.mid_block = MidBlock(dims[-1], **kw)
    self.head = Head(dims[-1], 2 * config.z_dim, **kw)

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    return _run_sequence([self.conv_in, *self.down_blocks, self.mid_block, self.head], x, cache)


class UpBlock(nnx.Module):
  """num_res_blocks + 1 residual blocks, then an optional x2 upsampling: Wan2.1 halves the channels;
  Wan2.2 (`residual`) keeps them and adds `duplicate_up` of the block's input."""

  def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample: str | None, *, residual: bool,
               dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.resnets = nnx.List([ResidualBlock(in_dim if i == 0 else out_dim, out_dim, **kw)
                             for i in range(num_res_blocks + 1)])
    self.upsampler = Resample(out_dim, upsample, up_dim=out_dim if residual else None, **kw) if upsample else None
    self.out_dim = out_dim
    self.factors = _shortcut_factors(in_dim, out_dim, upsample) if residual and upsample else None

  def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    layers = [*self.resnets] + ([self.upsampler] if self.upsampler is not None else [])
    y, new_cache = _run_sequence(layers, x, cache)
    if self.factors is None:
      return y, new_cache
    time_factor, space_factor = self.factors
    shortcut = duplicate_up(x, self.out_dim, time_factor=time_factor, space_factor=space_factor, first=cache is None)
    return y + shortcut, new_cache


class Decoder(nnx.Module):
  """Latents `[B, F, h, w, z_dim]` -> pixels `[B, 1 + 4(F-1), 8h, 8w, 3 p p]` (not yet clamped)."""

  def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
    kw = dict(dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs)
    mult = config.dim_mult
    dims = [(config.decoder_base_dim or config.base_dim) * m for m in (mult[-1], *mult[::-1])]
    temporal_upsample = config.temporal_downsample[::-1]
    self.conv_in = CausalConv3d(config.z_dim, dims[0], (3, 3, 3), **kw)
    self.mid_block = MidBlock(dims[0], **kw)
    blocks = []
    for stage, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      if stage > 0 and not config.residual_stages:
        in_dim //= 2  # Wan2.1's upsampling convs halve the channels
      upsample = None if stage == len(mult) - 1 else ("up3d" if temporal_upsample[stage] else "up2d")
      blocks.append(UpBlock(in_dim, out_dim, config.num_res_blocks, upsample, residual=config.residual_stages, **kw))
    self.up_blocks = nnx.List(blocks)
    self.head = Head(dims[-1], config.pixel_channels, **kw)

  def __call__(self, z: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
    return _run_sequence([self.conv_in, self.mid_block, *self.up_blocks, self.head], z, cache)


class StandardisedLatents:
  """`normalize`/`denormalize` between a codec's latents and the standardised latents the DiT reads,
  from `config.latents_mean/std` (per channel)."""

  config: Any

  def normalize(self, latents: jax.Array) -> jax.Array:
    """Codec latents -> the standardised latents the DiT reads: `(z - mean) / std` per channel."""
    mean, std = (jnp.asarray(v, jnp.float32) for v in (self.config.latents_mean, self.config.latents_std))
    return (latents - mean) / std

  def denormalize(self, latents: jax.Array) -> jax.Array:
    """Inverse of `normalize`."""
    mean, std = (jnp.asarray(v, jnp.float32) for v in (self.config.latents_mean, self.config.latents_std))
    return latents * std + mean


class WanVAE(StandardisedLatents, nnx.Module):
  """A Wan VAE: `encode` video -> latent mean, `decode` latents -> video, both channels-last;
  `normalize`/`denormalize` (`StandardisedLatents`) to and from what the DiT reads.
  """

  def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
    kw = dict(dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs)
    self.config = config
    self.encoder = Encoder(config, rngs=rngs)
    self.quant_conv = CausalConv3d(2 * config.z_dim, 2 * config.z_dim, (1, 1, 1), **kw)
    self.post_quant_conv = CausalConv3d(config.z_dim, config.z_dim, (1, 1, 1), **kw)
    self.decoder = Decoder(config, rngs=rngs)

  def encode(self, video: jax.Array) -> jax.Array:
    """Video `[B, T, H, W, 3]` in -1..1, T = 1 + 4k -> latent mean `[B, 1 + k, H/s, W/s, z_dim]` fp32
    (s: `config.space_factor`)."""
    check_frame_count("video", video.shape[1], self.config.time_factor)
    factor = self.config.space_factor
    if video.shape[2] % factor or video.shape[3] % factor:
      raise ValueError(f"video frames are {video.shape[2]}x{video.shape[3]}; the VAE needs sides divisible by {factor}")
    moments = self._tiled(self._encode_moments, video, scale=1 / factor)
    return moments[..., :self.config.z_dim].astype(jnp.float32)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Latents `[B, F, h, w, z_dim]` -> video `[B, 1 + 4(F-1), s h, s w, 3]` in -1..1, fp32."""
    video = self._tiled(self._decode_video, latents, scale=self.config.space_factor)
    return jnp.clip(video.astype(jnp.float32), -1.0, 1.0)

  def _encode_moments(self, video: jax.Array) -> jax.Array:
    step = self.config.time_factor
    pixels = fold_pixels(video, self.config.patch_size)
    moments = _causal_scan(self.encoder, pixels, first=1, step=step, chunked=self.config.mode == "chunked")
    return self.quant_conv(moments)[0]

  def _decode_video(self, latents: jax.Array) -> jax.Array:
    z = self.post_quant_conv(latents)[0]
    pixels = _causal_scan(self.decoder, z, first=1, step=1, chunked=self.config.mode == "chunked")
    return unfold_pixels(pixels, self.config.patch_size)

  def _tiled(self, fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, scale: float) -> jax.Array:
    """`fn` over overlapping spatial tiles of x, blended linearly over the overlaps (diffusers' rule).

    Tile size and stride are in pixels; `scale` converts x's grid to fn's output grid.
    """
    size, stride = self.config.tile_sample_size, self.config.tile_sample_stride
    if size is None:
      return fn(x)
    in_per_pixel = 1 if scale < 1 else 1 / self.config.space_factor
    out_per_pixel = in_per_pixel * scale
    height, width = x.shape[2:4]
    if height / in_per_pixel <= size and width / in_per_pixel <= size:
      return fn(x)
    in_size, in_stride = round(size * in_per_pixel), round(stride * in_per_pixel)
    out_stride, blend = round(stride * out_per_pixel), round((size - stride) * out_per_pixel)
    rows = []
    for top in range(0, height, in_stride):
      row = []
      for left in range(0, width, in_stride):
        tile = fn(x[:, :, top:top + in_size, left:left + in_size])
        if rows:
          tile = _blend(rows[-1][len(row)], tile, blend, axis=2)
        if row:
          tile = _blend(row[-1], tile, blend, axis=3)
        row.append(tile)
      rows.append(row)
    stitched = jnp.concatenate([jnp.concatenate([t[:, :, :out_stride, :out_stride] for t in row], axis=3)
                                for row in rows], axis=2)
    return stitched[:, :, :round(height * scale), :round(width * scale)]


def _blend(before: jax.Array, tile: jax.Array, extent: int, *, axis: int) -> jax.Array:
  """Fades the end of `before` into the start of `tile` along `axis` over `extent` positions."""
  extent = min(before.shape[axis], tile.shape[axis], extent)
  if extent == 0:
    return tile
  weight = (jnp.arange(extent, dtype=jnp.float32) / extent).reshape((-1,) + (1,) * (tile.ndim - axis - 1))
  tail = jax.lax.slice_in_dim(before, before.shape[axis] - extent, before.shape[axis], axis=axis)
  head = jax.lax.slice_in_dim(tile, 0, extent, axis=axis)
  mixed = (tail * (1 - weight) + head * weight).astype(tile.dtype)
  return jnp.concatenate([mixed, jax.lax.slice_in_dim(tile, extent, tile.shape[axis], axis=axis)], axis=axis)


def _causal_scan(module: nnx.Module, x: jax.Array, *, first: int, step: int, chunked: bool) -> jax.Array:
  """`module(x)` over frames, either in one pass or as `first` frames then a scan over `step`-frame chunks."""
  if not chunked or x.shape[1] <= first:
    return module(x)[0]
  head, cache = module(x[:, :first])
  rest = x[:, first:]
  chunks = rest.reshape(rest.shape[0], -1, step, *rest.shape[2:]).swapaxes(0, 1)  # n B step H W C

  def body(carry, chunk):
    out, carry = module(chunk, carry)
    return carry, out

  _, outs = jax.lax.scan(body, cache, chunks)
  outs = outs.swapaxes(0, 1)
  return jnp.concatenate([head, outs.reshape(outs.shape[0], -1, *outs.shape[3:])], axis=1)
