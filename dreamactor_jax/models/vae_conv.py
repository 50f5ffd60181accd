"""The Wan VAEs' convolutions, channels-last: `CausalConv3d` (causal in time, its history in a cache)
and the per-frame `Conv2d` of the resamplers. The 3D convolution picks, per shape and backend, the
layout XLA runs fastest (`_conv3d`; benchmarks/vae.py), all with the same result and gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dreamactor_jax.models.layers import param


class CausalConv3d(nnx.Module):
  """Conv3d, causal in time (no future frames), 'same' in space; kernel `[kt, kh, kw, I, O]`.

  The `kt - 1` frames of history come from the cache (zeros at the start of the video).
  """

  def __init__(self, in_dim: int, out_dim: int, kernel: Sequence[int], *, dtype, param_dtype, rngs: nnx.Rngs):
    fan_in = in_dim * math.prod(kernel)
    self.kernel = param(rngs, nnx.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=(0, 1, 2, 3)),
                        (*kernel, in_dim, out_dim), (None, None, None, "conv_in", "conv_out"), param_dtype)
    bound = 1.0 / math.sqrt(fan_in)
    self.bias = param(rngs, nnx.initializers.uniform(2 * bound), (out_dim,), ("conv_out",), param_dtype)
    self.dtype = dtype

  @property
  def history(self) -> int:
    return self.kernel.shape[0] - 1

  def __call__(self, x: jax.Array, cache: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    """x `[B, T, H, W, I]`, cache `[B, kt-1, H, W, I]` or None -> (`[B, T, H, W, O]`, new cache)."""
    if self.history == 0:
      return self.conv(x), None
    if cache is None:
      cache = jnp.zeros((x.shape[0], self.history, *x.shape[2:]), x.dtype)
    padded = jnp.concatenate([cache.astype(x.dtype), x], axis=1)
    return self.conv(padded), padded[:, -self.history:]

  def conv(self, x: jax.Array, *, time_stride: int = 1) -> jax.Array:
    """The convolution alone, 'valid' in time (no padding), 'same' in space."""
    y = _conv3d(x.astype(self.dtype), self.kernel[...].astype(self.dtype), time_stride=time_stride)
    return y + self.bias[...].astype(self.dtype)


# From this many inputs per frame, a chunk's convolution runs one frame at a time: a frame's
# input and output stay in cache where 4 frames' do not (+15-20% at 64x64x192 and 128x128x96).
_FRAME_SPLIT_SIZE = 64 * 64 * 192


def _conv3d(x: jax.Array, kernel: jax.Array, *, time_stride: int) -> jax.Array:
  """x `[B, T, H, W, I]` (history included), kernel `[kt, kh, kw, I, O]` -> `[B, T', H, W, O]`:
  'valid' in time, 'same' in space.

  On CPU the layout of the work matters more than the FLOPs (benchmarks/vae.py): XLA:CPU's 3D
  convolution is up to 1.5x slower than its 2D one below 384 channels (faster above), and a
  convolution with 3 input or output channels vectorises badly. So there: few inputs -> gather
  patches and one matmul; few outputs -> one matmul to every tap's outputs, then sum the shifted
  taps; otherwise one 2D convolution per time tap, summed, for a chunk's large frames one frame at
  a time. Accelerators get the plain 3D convolution.
  """
  taps, kh, kw, in_dim, out_dim = kernel.shape
  if jax.default_backend() != "cpu" or time_stride != 1 or taps * kh * kw == 1 or in_dim >= 384:
    return _plain_conv3d(x, kernel, time_stride=time_stride)
  if min(in_dim, out_dim) <= 4:
    return _few_channels_conv3d(x, kernel)
  batch, frames, height, width = x.shape[0], x.shape[1] - taps + 1, x.shape[2], x.shape[3]
  if 1 < frames <= 4 and height * width * in_dim >= _FRAME_SPLIT_SIZE:
    return jnp.concatenate([_conv3d(x[:, f:f + taps], kernel, time_stride=1) for f in range(frames)], axis=1)
  y = sum(jax.lax.conv_general_dilated(
      x[:, t:t + frames].reshape(batch * frames, height, width, in_dim), kernel[t], window_strides=(1, 1),
      padding=_same_padding(kernel), dimension_numbers=("NHWC", "HWIO", "NHWC")) for t in range(taps))
  return y.reshape(batch, frames, height, width, out_dim)


def _same_padding(kernel: jax.Array) -> tuple[tuple[int, int], tuple[int, int]]:
  kh, kw = kernel.shape[1:3]
  return ((kh - 1) // 2,) * 2, ((kw - 1) // 2,) * 2


def _plain_conv3d(x: jax.Array, kernel: jax.Array, *, time_stride: int = 1) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, window_strides=(time_stride, 1, 1),
                                      padding=((0, 0), *_same_padding(kernel)),
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


@jax.custom_vjp
def _few_channels_conv3d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The CPU forward of a convolution with <= 4 input or output channels, as matmuls over taps.

  Its gradient is the plain convolution's (`_few_channels_backward`): differentiating the shifted
  slices would pad every tap's cotangent to the whole per-tap array, 27 full-size temporaries.
  """
  taps, kh, kw, in_dim, out_dim = kernel.shape
  frames, height, width = x.shape[1] - taps + 1, x.shape[2], x.shape[3]
  offsets = [(t, i, j) for t in range(taps) for i in range(kh) for j in range(kw)]
  padded = jnp.pad(x, ((0, 0), (0, 0), *_same_padding(kernel), (0, 0)))
  if in_dim <= 4:
    patches = jnp.concatenate([padded[:, t:t + frames, i:i + height, j:j + width] for t, i, j in offsets], axis=-1)
    return patches @ kernel.reshape(-1, out_dim)
  per_tap = padded @ kernel.transpose(3, 0, 1, 2, 4).reshape(in_dim, -1)  # B T H W (taps O)
  per_tap = per_tap.reshape(*per_tap.shape[:4], len(offsets), out_dim)
  return sum(per_tap[:, t:t + frames, i:i + height, j:j + width, n] for n, (t, i, j) in enumerate(offsets))


def _few_channels_forward(x, kernel):
  return _few_channels_conv3d(x, kernel), (x, kernel)


def _few_channels_backward(residuals, cotangent):
  _, vjp = jax.vjp(_plain_conv3d, *residuals)
  return vjp(cotangent)


_few_channels_conv3d.defvjp(_few_channels_forward, _few_channels_backward)


class Conv2d(nnx.Module):
  """Per-frame 2D convolution with kernel `[kh, kw, I, O]` and explicit spatial padding."""

  def __init__(self, in_dim: int, out_dim: int, *, stride: int, padding: tuple[tuple[int, int], tuple[int, int]],
               dtype, param_dtype, rngs: nnx.Rngs):
    bound = 1.0 / math.sqrt(in_dim * 9)
    self.kernel = param(rngs, nnx.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=(0, 1, 2)),
                        (3, 3, in_dim, out_dim), (None, None, "conv_in", "conv_out"), param_dtype)
    self.bias = param(rngs, nnx.initializers.uniform(2 * bound), (out_dim,), ("conv_out",), param_dtype)
    self.stride, self.padding, self.dtype = stride, padding, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, T, H, W, I]` -> `[B, T, H', W', O]`, each frame on its own."""
    batch, frames = x.shape[:2]
    y = jax.lax.conv_general_dilated(
        x.reshape(batch * frames, *x.shape[2:]).astype(self.dtype), self.kernel[...].astype(self.dtype),
        window_strides=(self.stride, self.stride), padding=self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + self.bias[...].astype(self.dtype)
    return y.reshape(batch, frames, *y.shape[1:])
