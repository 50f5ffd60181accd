"""The CLIP ViT-H/14 vision tower as Wan2.1 I2V uses it, in Flax NNX, on channels-last pixels.

Wan conditions I2V on the 257 tokens (class token + 16x16 patches) of the open-clip
`xlm-roberta-large-vit-huge-14` vision tower (`wan/modules/clip.py`, `CLIPModel.visual`), taken from
the PENULTIMATE block: `VisionTransformer.forward(..., use_31_block=True)` runs all blocks but the
last and applies no post-norm or head; diffusers' Wan I2V pipeline does the same with
`CLIPVisionModel(..., output_hidden_states=True).hidden_states[-2]`.

So `CLIPVisionConfig.num_layers` counts the blocks COMPUTED (31 for ViT-H/14), and the model holds
only those: a 32-block checkpoint's last block, post-norm and projection/head are never read, so
they are not parameters here (leaner in memory and optimizer state); the importer
(`checkpoints/clip_torch.py`) accepts full checkpoints and skips exactly those tensors.

Numerics follow the DiT (WAN.md, "Precision gotchas"): parameters in `param_dtype`, matmuls and
attention in `dtype`, LayerNorms and the residual stream in fp32 (Wan runs this tower under
autocast with fp32 LayerNorms; its residual stream is in the autocast dtype).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.config import ModelConfig
from dreamactor_jax.models.layers import MLP, Dense, LayerNorm, gelu_exact, param
from dreamactor_jax.models.stack import RematPolicy, build_stack, scan_stack

Activation = Literal["gelu", "quick_gelu"]

# torchvision Normalize constants in Wan's CLIP transforms (the OpenAI CLIP statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig(ModelConfig):
  """Architecture and numerics of the vision tower.

  Defaults are ViT-H/14 as Wan2.1 I2V runs it: `clip_xlm_roberta_vit_h_14` in `wan/modules/clip.py`
  (image 224, patch 14, width 1280, mlp ratio 4, 16 heads, 32 blocks, exact GELU, eps 1e-5), of
  which 31 blocks are computed (module docstring); 257 tokens.
  """

  image_size: int = 224
  patch_size: int = 14
  dim: int = 1280
  ffn_dim: int = 5120
  num_heads: int = 16
  num_layers: int = 31  # blocks computed; the checkpoint holds one more
  eps: float = 1e-5
  # "gelu" (exact erf) for open-clip/laion ViT-H; "quick_gelu" (x * sigmoid(1.702 x)) for OpenAI CLIPs.
  activation: Activation = "gelu"
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype of matmuls and attention
  remat: RematPolicy = "none"

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  @property
  def num_tokens(self) -> int:
    """Class token plus one token per patch: 257 for ViT-H/14 at 224."""
    return (self.image_size // self.patch_size) ** 2 + 1


def quick_gelu(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS = {"gelu": gelu_exact, "quick_gelu": quick_gelu}


class SelfAttention(nnx.Module):
  """Multi-head self-attention with biased q, k, v and output projections (no q/k norm)."""

  def __init__(self, config: CLIPVisionConfig, *, rngs: nnx.Rngs):
    dim, dtype, pdtype = config.dim, jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    dense = lambda names: Dense(dim, dim, names=names, dtype=dtype, param_dtype=pdtype, rngs=rngs)
    self.q, self.k, self.v = dense(("embed", "heads")), dense(("embed", "heads")), dense(("embed", "heads"))
    self.out = dense(("heads", "embed"))
    self.num_heads = config.num_heads

  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, L, D] -> [B, L, D]` in the compute dtype."""
    heads = lambda t: t.reshape(*t.shape[:-1], self.num_heads, -1)  # B L (N K) -> B L N K
    out = attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)))
    return self.out(out.reshape(*out.shape[:-2], -1))


class EncoderBlock(nnx.Module):
  """Pre-LN transformer block: `x += attn(LN1(x))`; `x += fc2(act(fc1(LN2(x))))`."""

  def __init__(self, config: CLIPVisionConfig, *, rngs: nnx.Rngs):
    dtype, pdtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    self.norm1 = LayerNorm(config.dim, eps=config.eps, affine=True, param_dtype=pdtype, rngs=rngs)
    self.attn = SelfAttention(config, rngs=rngs)
    self.norm2 = LayerNorm(config.dim, eps=config.eps, affine=True, param_dtype=pdtype, rngs=rngs)
    self.mlp = MLP(config.dim, config.ffn_dim, config.dim, activation=_ACTIVATIONS[config.activation],
                   names=("embed", "mlp", "embed"), dtype=dtype, param_dtype=pdtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    """x `[B, L, D]` fp32 residual stream -> `[B, L, D]` fp32."""
    x = x + self.attn(self.norm1(x).astype(self.dtype)).astype(jnp.float32)
    return x + self.mlp(self.norm2(x).astype(self.dtype)).astype(jnp.float32)


class CLIPVisionEncoder(nnx.Module):
  """`encoder(pixels) -> [B, L, D]` penultimate-block tokens (L = 257 for ViT-H/14).

  Patch embedding (a bias-free stride-equals-kernel conv, as one matmul), class token, learned
  position embedding, pre-LayerNorm, then `num_layers` pre-LN blocks; no post-norm, no head.
  """

  def __init__(self, config: CLIPVisionConfig, *, rngs: nnx.Rngs):
    if config.dim % config.num_heads:
      raise ValueError(f"clip.dim={config.dim} is not divisible by clip.num_heads={config.num_heads}")
    if config.image_size % config.patch_size:
      raise ValueError(f"clip.image_size={config.image_size} is not divisible by "
                       f"clip.patch_size={config.patch_size}")
    self.config = config
    dim, pdtype, patch = config.dim, jnp.dtype(config.param_dtype), config.patch_size
    embedding_init = nnx.initializers.normal(dim**-0.5)  # Wan's init scale for cls/pos embeddings
    self.patch_embed = param(rngs, nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                             (patch, patch, 3, dim), (None, None, None, "embed"), pdtype)
    self.class_embed = param(rngs, embedding_init, (dim,), ("embed",), pdtype)
    self.pos_embed = param(rngs, embedding_init, (config.num_tokens, dim), (None, "embed"), pdtype)
    self.norm_pre = LayerNorm(dim, eps=config.eps, affine=True, param_dtype=pdtype, rngs=rngs)

    self.blocks = build_stack(lambda rngs: EncoderBlock(config, rngs=rngs), config.num_layers, rngs=rngs)

  def __call__(self, pixels: jax.Array) -> jax.Array:
    """pixels `[B, S, S, 3]` (S = image_size), already `preprocess`ed -> `[B, L, D]` fp32."""
    config = self.config
    size = config.image_size
    if pixels.shape[1:] != (size, size, 3):
      raise ValueError(f"pixels {pixels.shape} must be [B, {size}, {size}, 3]; resize them with preprocess()")
    tokens = self._patchify(pixels)
    cls = jnp.broadcast_to(self.class_embed[...].astype(jnp.float32), (tokens.shape[0], 1, config.dim))
    x = jnp.concatenate([cls, tokens], axis=1) + self.pos_embed[...].astype(jnp.float32)
    x = self.norm_pre(x)

    x, _ = scan_stack(self.blocks, lambda block, x, _: (block(x), None), x, remat=config.remat)
    return x

  def _patchify(self, pixels: jax.Array) -> jax.Array:
    """`[B, S, S, 3] -> [B, L-1, D]` fp32, patches row-major (as Conv2d output flattened)."""
    batch, height, width, channels = pixels.shape
    patch = self.config.patch_size
    x = pixels.reshape(batch, height // patch, patch, width // patch, patch, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, -1, patch * patch * channels)
    dtype = jnp.dtype(self.config.dtype)
    kernel = self.patch_embed[...].reshape(-1, self.config.dim).astype(dtype)
    return jnp.dot(x.astype(dtype), kernel).astype(jnp.float32)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """`[out_size, in_size]` float64 matrix of PyTorch's bicubic resize along one axis.

  Matches `F.interpolate(mode="bicubic", align_corners=False, antialias=False)`: Keys cubic with
  a = -0.75, source coordinate `(i + 0.5) * in / out - 0.5`, taps clamped to the border.
  (`jax.image.resize` uses a = -0.5 and antialiases when downsampling: up to 1.3 apart on a
  480x832 -> 224 resize of a noisy image in -1..1.)
  """
  a = -0.75

  def cubic(t):  # Keys kernel at distance |t|
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))

  source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  floor = np.floor(source)
  offsets = np.arange(-1, 3)
  taps = floor[:, None] + offsets  # out 4
  weights = cubic(source[:, None] - taps)
  matrix = np.zeros((out_size, in_size))
  rows = np.broadcast_to(np.arange(out_size)[:, None], taps.shape)
  np.add.at(matrix, (rows, np.clip(taps, 0, in_size - 1).astype(int)), weights)
  return matrix


def resize_bicubic(images: jax.Array, height: int, width: int) -> jax.Array:
  """PyTorch-exact bicubic resize (see `bicubic_matrix`): `[B, H, W, C] -> [B, height, width, C]` fp32."""
  rows = jnp.asarray(bicubic_matrix(images.shape[1], height), jnp.float32)
  cols = jnp.asarray(bicubic_matrix(images.shape[2], width), jnp.float32)
  # HIGHEST: accelerators otherwise round these matmuls' inputs to bf16/tf32.
  precision = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", rows, images.astype(jnp.float32), precision=precision)
  return jnp.einsum("pw,bowc->bopc", cols, x, precision=precision)


def preprocess(images: jax.Array, *, image_size: int = 224) -> jax.Array:
  """Wan's CLIP preprocessing: `[B, H, W, 3]` in -1..1 -> `[B, image_size, image_size, 3]` fp32.

  As `CLIPModel.visual` in `wan/modules/clip.py`: bicubic resize straight to a square (the aspect
  ratio is NOT kept; torch `F.interpolate`, align_corners=False, no antialias, no clamping), map
  -1..1 to 0..1, normalise with the OpenAI CLIP mean/std. diffusers' Wan I2V pipeline instead runs
  a `CLIPImageProcessor` (shortest side to 224 with PIL bicubic on 8-bit images, centre crop,
  same mean/std), so its CLIP tokens differ from the original code's for non-square images.
  """
  x = resize_bicubic(images, image_size, image_size) * 0.5 + 0.5
  return (x - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)
