"""The Wan2.1 video diffusion transformer in Flax NNX, on channels-last latents (WAN.md, "DiT forward").

One class covers T2V (16 input channels) and I2V (36 = 16 noisy + 4 mask + 16 condition, plus the
CLIP image branch). The block stack is built with `nnx.vmap` and run with `nnx.scan` (optionally
rematerialised), so a 40-layer model traces one block. Dtype policy: parameters in
`param_dtype`, matmuls in `dtype`, while the residual stream, modulation, norms, RoPE and the
timestep embedding stay fp32, as the original Wan code does under autocast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from dreamactor_jax.models.attention import Implementation, attention
from dreamactor_jax.models.config import ModelConfig
from dreamactor_jax.models.layers import Dense, LayerNorm, RMSNorm, gelu_exact, gelu_tanh, param
from dreamactor_jax.models.rope import RopeTables, apply_rope, rope_tables

RematPolicy = Literal["none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable"]

# Wan's text encoder context is always padded to this many tokens (WAN.md).
TEXT_LEN = 512


@dataclasses.dataclass(frozen=True)
class DiTConfig(ModelConfig):
  """Architecture and numerics of the DiT. Sizes of the released models: configs/base.py."""

  dim: int = 1536
  num_heads: int = 12
  num_layers: int = 30
  ffn_dim: int = 8960
  in_channels: int = 16
  out_channels: int = 16
  text_dim: int = 4096
  freq_dim: int = 256
  patch_size: tuple[int, int, int] = (1, 2, 2)
  image_dim: int | None = None  # CLIP width for I2V (1280); None for T2V.
  eps: float = 1e-6
  rope_theta: float = 10000.0
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype of matmuls and attention
  remat: RematPolicy = "none"
  attention: Implementation = "auto"

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads


def timestep_sinusoid(timestep: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding `[B] -> [B, dim]` in fp32, ordered [cos, sin] (WAN.md)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = timestep.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class MLP(nnx.Module):
  """Linear -> activation -> Linear."""

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, activation, names: tuple[str, str, str],
               dtype, param_dtype, rngs: nnx.Rngs):
    self.up = Dense(in_dim, hidden_dim, names=names[:2], dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.down = Dense(hidden_dim, out_dim, names=names[1:], dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(self.activation(self.up(x)))


class Attention(nnx.Module):
  """Multi-head attention with q/k RMSNorm across heads (before the head split).

  Self-attention when `context` is None (with RoPE), else cross-attention to `context`. With
  `image_dim` set it also attends to image tokens through its own key/value projections and adds
  that result before the output projection (Wan I2V).
  """

  def __init__(self, config: DiTConfig, *, image_branch: bool, rngs: nnx.Rngs):
    dim, dtype, pdtype = config.dim, jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    dense = lambda names: Dense(dim, dim, names=names, dtype=dtype, param_dtype=pdtype, rngs=rngs)
    norm = lambda: RMSNorm(dim, eps=config.eps, param_dtype=pdtype, rngs=rngs, names=("heads",))
    self.q, self.k, self.v = dense(("embed", "heads")), dense(("embed", "heads")), dense(("embed", "heads"))
    self.out = dense(("heads", "embed"))
    self.norm_q, self.norm_k = norm(), norm()
    if image_branch:
      self.image_k, self.image_v = dense(("embed", "heads")), dense(("embed", "heads"))
      self.norm_image_k = norm()
    self.image_branch = image_branch
    self.num_heads = config.num_heads
    self.implementation = config.attention

  def _heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.num_heads, -1)  # B L (N K) -> B L N K

  def __call__(self, x: jax.Array, *, context: jax.Array | None = None, rope: RopeTables | None = None,
               image_context: jax.Array | None = None) -> jax.Array:
    """x `[B, L, D]`; context `[B, Lc, D]`; image_context `[B, Li, D]` -> `[B, L, D]`."""
    source = x if context is None else context
    q = self._heads(self.norm_q(self.q(x)))
    k = self._heads(self.norm_k(self.k(source)))
    v = self._heads(self.v(source))
    if rope is not None:
      q, k = apply_rope(q, rope), apply_rope(k, rope)
    out = attention(q, k, v, implementation=self.implementation)
    if self.image_branch:
      image_k = self._heads(self.norm_image_k(self.image_k(image_context)))
      image_v = self._heads(self.image_v(image_context))
      out = out + attention(q, image_k, image_v, implementation=self.implementation)
    return self.out(out.reshape(*out.shape[:-2], -1))


class Block(nnx.Module):
  """One DiT block: modulated self-attention, cross-attention to text (and image), modulated FFN."""

  def __init__(self, config: DiTConfig, *, rngs: nnx.Rngs):
    pdtype = jnp.dtype(config.param_dtype)
    self.modulation = param(rngs, lambda key, shape, dtype: jax.random.normal(key, shape, dtype) / config.dim**0.5,
                            (6, config.dim), (None, "embed"), pdtype)
    self.norm_self = LayerNorm(config.dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.self_attn = Attention(config, image_branch=False, rngs=rngs)
    self.norm_cross = LayerNorm(config.dim, eps=config.eps, affine=True, param_dtype=pdtype, rngs=rngs)
    self.cross_attn = Attention(config, image_branch=config.image_dim is not None, rngs=rngs)
    self.norm_ffn = LayerNorm(config.dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.ffn = MLP(config.dim, config.ffn_dim, config.dim, activation=gelu_tanh, names=("embed", "mlp", "embed"),
                   dtype=jnp.dtype(config.dtype), param_dtype=pdtype, rngs=rngs)
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, x: jax.Array, *, time_mod: jax.Array, context: jax.Array, rope: RopeTables,
               image_context: jax.Array | None) -> jax.Array:
    """x `[B, L, D]` fp32 residual stream; time_mod `[B, 6, D]` fp32 -> `[B, L, D]` fp32."""
    shift, scale, gate, ffn_shift, ffn_scale, ffn_gate = jnp.split(
        self.modulation[...].astype(jnp.float32)[None] + time_mod, 6, axis=1)
    h = (self.norm_self(x) * (1 + scale) + shift).astype(self.dtype)
    x = x + self.self_attn(h, rope=rope).astype(jnp.float32) * gate
    h = self.norm_cross(x).astype(self.dtype)
    x = x + self.cross_attn(h, context=context, image_context=image_context).astype(jnp.float32)
    h = (self.norm_ffn(x) * (1 + ffn_scale) + ffn_shift).astype(self.dtype)
    return x + self.ffn(h).astype(jnp.float32) * ffn_gate


class ImageEmbedder(nnx.Module):
  """CLIP tokens -> DiT width: LN -> Linear -> exact GELU -> Linear -> LN, eps 1e-5 (WAN.md)."""

  def __init__(self, config: DiTConfig, *, rngs: nnx.Rngs):
    pdtype = jnp.dtype(config.param_dtype)
    self.norm_in = LayerNorm(config.image_dim, eps=1e-5, affine=True, param_dtype=pdtype, rngs=rngs)
    self.mlp = MLP(config.image_dim, config.image_dim, config.dim, activation=gelu_exact,
                   names=("image", "mlp", "embed"), dtype=jnp.dtype(config.dtype), param_dtype=pdtype, rngs=rngs)
    self.norm_out = LayerNorm(config.dim, eps=1e-5, affine=True, param_dtype=pdtype, rngs=rngs)
    self.dtype = jnp.dtype(config.dtype)

  def __call__(self, image_tokens: jax.Array) -> jax.Array:
    """`[B, Li, image_dim] -> [B, Li, D]` in the compute dtype."""
    return self.norm_out(self.mlp(self.norm_in(image_tokens).astype(self.dtype))).astype(self.dtype)


class WanDiT(nnx.Module):
  """Wan2.1 DiT: `model(latents, timestep, text, image_context=None) -> velocity`."""

  def __init__(self, config: DiTConfig, *, rngs: nnx.Rngs):
    if config.dim % config.num_heads:
      raise ValueError(f"model.dim={config.dim} is not divisible by model.num_heads={config.num_heads}")
    self.config = config
    dim, dtype, pdtype = config.dim, jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    f32 = jnp.float32
    pt, ph, pw = config.patch_size
    self.patch_embed = param(rngs, nnx.initializers.lecun_normal(in_axis=(0, 1, 2, 3), out_axis=4),
                             (pt, ph, pw, config.in_channels, dim), (None, None, None, None, "embed"), pdtype)
    self.patch_bias = param(rngs, nnx.initializers.zeros, (dim,), ("embed",), pdtype)
    # fp32: the timestep embedding and modulation run in fp32 in the original code (WAN.md).
    self.time_embed = MLP(config.freq_dim, dim, dim, activation=jax.nn.silu, names=(None, "embed", "embed"),
                          dtype=f32, param_dtype=pdtype, rngs=rngs)
    self.time_proj = Dense(dim, 6 * dim, names=("embed", "modulation"), dtype=f32, param_dtype=pdtype, rngs=rngs)
    self.text_embed = MLP(config.text_dim, dim, dim, activation=gelu_tanh, names=("text", "embed", "embed"),
                          dtype=dtype, param_dtype=pdtype, rngs=rngs)
    self.image_embed = ImageEmbedder(config, rngs=rngs) if config.image_dim is not None else None

    @nnx.split_rngs(splits=config.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_blocks(rngs: nnx.Rngs) -> Block:
      return Block(config, rngs=rngs)

    self.blocks = make_blocks(rngs)
    self.norm_out = LayerNorm(dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.head_modulation = param(rngs, lambda key, shape, dt: jax.random.normal(key, shape, dt) / dim**0.5,
                                 (2, dim), (None, "embed"), pdtype)
    self.head = Dense(dim, math.prod(config.patch_size) * config.out_channels, names=("embed", None),
                      dtype=dtype, param_dtype=pdtype, rngs=rngs)

  def __call__(self, latents: jax.Array, timestep: jax.Array, text: jax.Array, *,
               image_context: jax.Array | None = None) -> jax.Array:
    """Predicts the flow velocity.

    latents `[B, F, H, W, C_in]`; timestep `[B]` in 0..1000; text `[B, Lt, text_dim]` (UMT5
    states, zero-padded); image_context `[B, Li, image_dim]` CLIP tokens for I2V models.
    Returns `[B, F, H, W, C_out]` fp32.
    """
    config = self.config
    batch, frames, height, width, channels = latents.shape
    pt, ph, pw = config.patch_size
    if channels != config.in_channels or frames % pt or height % ph or width % pw:
      raise ValueError(f"latents {latents.shape} must be [B, F, H, W, {config.in_channels}] with F, H, W "
                       f"divisible by patch_size={config.patch_size}")
    if (self.image_embed is None) != (image_context is None):
      raise ValueError(f"image_context (CLIP tokens [B, Li, image_dim]) is needed exactly when model.image_dim "
                       f"is set; image_dim={config.image_dim}, got {None if image_context is None else image_context.shape}")
    grid = (frames // pt, height // ph, width // pw)
    tokens = self._patchify(latents)

    temb = self.time_embed(timestep_sinusoid(timestep, config.freq_dim))  # B D fp32
    time_mod = self.time_proj(jax.nn.silu(temb)).reshape(batch, 6, config.dim)
    context = self.text_embed(text)
    image_tokens = self.image_embed(image_context) if self.image_embed is not None else None
    rope = rope_tables(grid, config.head_dim, theta=config.rope_theta)

    def apply_block(block: Block, x: jax.Array) -> jax.Array:
      return block(x, time_mod=time_mod, context=context, rope=rope, image_context=image_tokens)

    if config.remat != "none":
      policy = None if config.remat == "full" else getattr(jax.checkpoint_policies, config.remat)
      apply_block = nnx.remat(apply_block, policy=policy, prevent_cse=False)
    x = nnx.scan(apply_block, in_axes=(0, nnx.Carry), out_axes=nnx.Carry)(self.blocks, tokens)

    shift, scale = jnp.split(self.head_modulation[...].astype(jnp.float32)[None] + temb[:, None], 2, axis=1)
    x = (self.norm_out(x) * (1 + scale) + shift).astype(jnp.dtype(config.dtype))
    return self._unpatchify(self.head(x).astype(jnp.float32), grid)

  def _patchify(self, latents: jax.Array) -> jax.Array:
    """`[B, F, H, W, C] -> [B, L, D]` fp32: the stride-equals-kernel Conv3d as one matmul."""
    batch, frames, height, width, channels = latents.shape
    pt, ph, pw = self.config.patch_size
    x = latents.reshape(batch, frames // pt, pt, height // ph, ph, width // pw, pw, channels)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(batch, -1, pt * ph * pw * channels)
    dtype = jnp.dtype(self.config.dtype)
    kernel = self.patch_embed[...].reshape(-1, self.config.dim).astype(dtype)
    return (jnp.dot(x.astype(dtype), kernel) + self.patch_bias[...].astype(dtype)).astype(jnp.float32)

  def _unpatchify(self, x: jax.Array, grid: tuple[int, int, int]) -> jax.Array:
    """`[B, L, pt*ph*pw*C] -> [B, F, H, W, C]`; features ordered (pt, ph, pw, C)."""
    pt, ph, pw = self.config.patch_size
    frames, height, width = grid
    x = x.reshape(x.shape[0], frames, height, width, pt, ph, pw, -1)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(x.shape[0], frames * pt, height * ph, width * pw, -1)


def expand_input_channels(params: Mapping[str, jax.Array], config: DiTConfig,
                          in_channels: int) -> tuple[dict[str, jax.Array], DiTConfig]:
  """Widens the patch embedding of flat DiT params to `in_channels`, new channels zero.

  Initialises the 36-channel in-context model (16 noisy + 4 mask + 16 condition latents, concatenated
  on channels in that order) from a 16-channel T2V checkpoint: the extra inputs start out ignored,
  so the output equals the T2V model's until training moves them.
  """
  if in_channels < config.in_channels:
    raise ValueError(f"in_channels={in_channels} is fewer than the checkpoint's {config.in_channels}")
  params = dict(params)
  kernel = params["patch_embed"]
  pad = [(0, 0)] * kernel.ndim
  pad[3] = (0, in_channels - config.in_channels)
  params["patch_embed"] = jnp.pad(kernel, pad)
  return params, dataclasses.replace(config, in_channels=in_channels)
