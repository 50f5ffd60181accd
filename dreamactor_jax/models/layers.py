"""Small building blocks shared by the models: parameters with logical axis names, dense layers,
fp32 norms and activations, following the dtype policy of WAN.md ("Precision gotchas").

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, ...) as its `out_sharding`
metadata; `parallel/` maps them to mesh axes, so the models never name a mesh axis themselves.
Sharding is applied by the caller (jit with out_shardings), never eagerly at creation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

AxisNames = tuple[str | None, ...]


def param(rngs: nnx.Rngs, init, shape: Sequence[int], names: AxisNames, dtype) -> nnx.Param:
  """A parameter initialised by `init(key, shape, dtype)` and tagged with logical axis names."""
  if len(names) != len(shape):
    raise ValueError(f"axis names {names} do not match shape {tuple(shape)}")
  return nnx.Param(init(rngs.params(), tuple(shape), dtype), out_sharding=names, eager_sharding=False)


class Dense(nnx.Module):
  """`y = x @ kernel + bias` with kernel `[in, out]` (PyTorch Linear transposed).

  Computes in `dtype` (the compute dtype) whatever the parameter dtype is.
  """

  def __init__(self, in_features: int, out_features: int, *, names: AxisNames, dtype, param_dtype,
               rngs: nnx.Rngs, use_bias: bool = True):
    scale = 1.0 / in_features
    self.kernel = param(rngs, nnx.initializers.variance_scaling(scale, "fan_in", "uniform", in_axis=0),
                        (in_features, out_features), names, param_dtype)
    self.bias = param(rngs, nnx.initializers.zeros, (out_features,), names[-1:], param_dtype) if use_bias else None
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm computed in fp32 (WAN.md: FP32LayerNorm), optionally with affine scale and bias.

  Two-pass variance (mean of squared deviations) for tight parity with PyTorch.
  """

  def __init__(self, dim: int, *, eps: float, affine: bool, param_dtype, rngs: nnx.Rngs):
    self.eps = eps
    self.scale = param(rngs, nnx.initializers.ones, (dim,), ("norm",), param_dtype) if affine else None
    self.bias = param(rngs, nnx.initializers.zeros, (dim,), ("norm",), param_dtype) if affine else None

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., D] -> [..., D] in fp32."""
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    y = centred * jax.lax.rsqrt(jnp.square(centred).mean(-1, keepdims=True) + self.eps)
    if self.scale is not None:
      y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y


class RMSNorm(nnx.Module):
  """RMSNorm over the last axis, computed in fp32, with a learned scale (PyTorch `nn.RMSNorm`)."""

  def __init__(self, dim: int, *, eps: float, param_dtype, rngs: nnx.Rngs, names: AxisNames = ("norm",)):
    self.eps = eps
    self.scale = param(rngs, nnx.initializers.ones, (dim,), names, param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """[..., D] -> [..., D] in x's dtype."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def gelu_tanh(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=True)


def gelu_exact(x: jax.Array) -> jax.Array:
  # The CLIP image embedder uses the exact erf GELU; jax.nn.gelu defaults to tanh (WAN.md).
  return jax.nn.gelu(x, approximate=False)
