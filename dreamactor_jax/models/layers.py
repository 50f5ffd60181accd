"""Small building blocks shared by the models: parameters with logical axis names, dense layers and
MLPs, fp32 norms and activations, following the dtype policy of WAN.md ("Precision gotchas").

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, ...) as its `out_sharding`
metadata; `parallel/` maps them to mesh axes, so the models never name a mesh axis themselves.
Sharding is applied by the caller (jit with out_shardings), never eagerly at creation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

AxisNames = tuple[str | None, ...]


def param(rngs: nnx.Rngs, init, shape: Sequence[int], names: AxisNames, dtype,
          variable_type: type[nnx.Param] = nnx.Param) -> nnx.Param:
  """A parameter initialised by `init(key, shape, dtype)` and tagged with logical axis names.

  `variable_type` is `nnx.Param` or a subclass (`nnx.LoRAParam` for the low-rank adapters, so
  filters can tell trainable adapters from the frozen base).
  """
  if len(names) != len(shape):
    raise ValueError(f"axis names {names} do not match shape {tuple(shape)}")
  return variable_type(init(_next_key(rngs), tuple(shape), dtype), out_sharding=names, eager_sharding=False)


def _next_key(rngs: nnx.Rngs) -> jax.Array:
  """`rngs.params()`: the same key and count. Its `count[...] += 1` makes flax compare the shardings of
  the old and new count; under `nnx.eval_shape` (every checkpoint load) the new count is a tracer whose
  missing `.sharding` makes jax search the whole trace for an error message, once per parameter: 75%
  of an abstract VAE build. Replacing the whole value skips that comparison."""
  stream = rngs.params
  count = stream.count.get_value()
  stream.count.set_value(count + 1)
  return jax.random.fold_in(stream.key.get_value(), count)


@dataclasses.dataclass(frozen=True)
class LoRA:
  """A low-rank adapter's shape: `y += (x @ a) @ b * alpha / rank`, `a [in, rank]`, `b [rank, out]`."""

  rank: int
  alpha: float
  param_dtype: str = "float32"

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


class Dense(nnx.Module):
  """`y = x @ kernel + bias` with kernel `[in, out]` (PyTorch Linear transposed), optionally plus a LoRA.

  Computes in `dtype` (the compute dtype) whatever the parameter dtype is. With `lora`, the adapter
  `lora_a [in, rank]`, `lora_b [rank, out]` (both `nnx.LoRAParam`) adds `(x @ a) @ b * alpha / rank`;
  `b` starts at zero, so a fresh adapter leaves the layer unchanged.
  """

  def __init__(self, in_features: int, out_features: int, *, names: AxisNames, dtype, param_dtype,
               rngs: nnx.Rngs, use_bias: bool = True, lora: LoRA | None = None):
    scale = 1.0 / in_features
    self.kernel = param(rngs, nnx.initializers.variance_scaling(scale, "fan_in", "uniform", in_axis=0),
                        (in_features, out_features), names, param_dtype)
    self.bias = param(rngs, nnx.initializers.zeros, (out_features,), names[-1:], param_dtype) if use_bias else None
    # a: uniform with bound 1/sqrt(in), as PEFT's kaiming_uniform(a=sqrt(5)); b: zero.
    lora_init = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=0)
    self.lora_a = param(rngs, lora_init, (in_features, lora.rank), (names[0], "lora"), jnp.dtype(lora.param_dtype),
                        nnx.LoRAParam) if lora else None
    self.lora_b = param(rngs, nnx.initializers.zeros, (lora.rank, out_features), ("lora", names[1]),
                        jnp.dtype(lora.param_dtype), nnx.LoRAParam) if lora else None
    self.lora_scale = lora.scale if lora else 0.0
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    y = jnp.dot(x, self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    if self.lora_a is not None:
      down = jnp.dot(x, self.lora_a[...].astype(self.dtype))
      y = y + jnp.dot(down, self.lora_b[...].astype(self.dtype)) * jnp.asarray(self.lora_scale, self.dtype)
    return y


class MLP(nnx.Module):
  """Linear -> activation -> Linear, optionally with LoRA on both."""

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, activation, names: tuple[str | None, str, str],
               dtype, param_dtype, rngs: nnx.Rngs, lora: LoRA | None = None):
    self.up = Dense(in_dim, hidden_dim, names=names[:2], dtype=dtype, param_dtype=param_dtype, rngs=rngs, lora=lora)
    self.down = Dense(hidden_dim, out_dim, names=names[1:], dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                      lora=lora)
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    """`[..., in_dim] -> [..., out_dim]` in the compute dtype."""
    return self.down(self.activation(self.up(x)))


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
