"""The Wan2.1 video diffusion transformer in Flax NNX, on channels-last latents (WAN.md, "DiT forward").

One class covers T2V (16 input channels), I2V (36 = 16 noisy + 4 mask + 16 condition, plus the
CLIP image branch) and Wan2.2's TI2V-5B (48 channels of the 16x VAE, no image branch). The timestep
is one per sample `[B]` or one per token `[B, L]`: TI2V gives its clean first latent frame t = 0
while the rest is noised, so every block and the head modulate each token by its own timestep. The
block stack is built and run by models/stack.py (`nnx.vmap`, one `jax.lax.scan`, optionally
rematerialised), so a 40-layer model traces one block. Dtype policy: parameters in `param_dtype`, matmuls in `dtype`, while the residual stream, modulation, norms, RoPE and the
timestep embedding stay fp32, as the original Wan code does under autocast.

Two options beyond Wan: LoRA adapters on chosen block layers (`lora_*` fields, models/lora.py,
PAPER.md section 3), and the `motion_cache` attention layout for the DreamActor canvas
`[B, F, H, 2W, C]` (PAPER.md section 2): the right (motion) half attends only to itself and is run
once per sample by `encode_motion`, which keeps every layer's self-attention keys and values; each
denoising step then runs only the left (generated) half, whose queries attend to its own keys plus
the cached ones. Both passes use the same blocks: a block takes optional extra keys/values and
returns its own. RoPE positions are those of the full canvas (motion columns start at W/2 tokens),
so the result equals a full-canvas forward in which motion queries see only motion keys.

The `animate2` layout is Wan-Animate-2's (ANIMATE2.md), with the same two calls. `encode_motion`
runs the driving latents `[B, Fd, H, W, 36]` (4 all-ones mask channels and the driving latents as
condition) at timestep `motion_timestep` (1), with RoPE at (`refer_offset_t`, `_h`, `_w`), -1
meaning that axis' size of the driving token grid, frames `refer_stride` apart. `__call__` runs
the generation latents `[B, 1 + Fd, H, W, 36]` (a leading reference-image frame, then the video
frames) with RoPE at 0: every query attends to all generation keys and, from frame j >= 1, to the
cached driving frame j - 1 (`attention.frame_aligned_attention`: no mask, memory linear in the
tokens). `unconditional` samples skip `unconditional_skip_layers` (block 9 in both references);
`key_log_scale` is DiffSynth's bias on the keys of generation frame 1 (diffusers has none: 0).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from dreamactor_jax.models.attention import Implementation, attention, frame_aligned_attention
from dreamactor_jax.models.config import ModelConfig, check_choice
from dreamactor_jax.models.layers import MLP, Dense, LayerNorm, LoRA, RMSNorm, gelu_exact, gelu_tanh, param
from dreamactor_jax.models.lora import lora_layers
from dreamactor_jax.models.rope import RopeTables, apply_rope, rope_tables
from dreamactor_jax.models.stack import RematPolicy, build_stack, scan_stack
from dreamactor_jax.parallel.rules import constrain

# How the DiT is handed the motion (DESIGN.md, "In-context layouts"): full, the paper's attention over
# the whole canvas; motion_cache, animate2: see the module docstring. The one list of them: the
# trainer, the sampler and bundles take this type and check it with `check_choice`.
Layout = Literal["full", "motion_cache", "animate2"]
LAYOUTS: tuple[Layout, ...] = typing.get_args(Layout)
# How the DiT is told which canvas positions are given: "channels" (Wan2.1 I2V: mask and condition
# latents concatenated after the noisy ones), "timestep" (Wan2.2 TI2V: given tokens hold the clean
# latents at timestep 0, per-token timesteps; in_channels = the latent channels).
Condition = Literal["channels", "timestep"]
KeysValues = tuple[jax.Array, jax.Array]  # self-attention keys and values, each [B, L, N, K]


@dataclasses.dataclass(frozen=True)
class DiTConfig(ModelConfig):
  """Architecture and numerics of the DiT. Sizes of the released models: dreamactor_jax/configs/base.py."""

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
  lora_rank: int = 0  # 0: no adapters
  lora_alpha: float | None = None  # adapter output scaled by alpha / rank; None: alpha = rank
  lora_targets: tuple[str, ...] = ("ffn",)  # groups of models/lora.py:LORA_GROUPS
  lora_dtype: str = "float32"  # adapter parameter dtype, fp32 also under a bf16 base
  layout: Layout = "full"  # read by the sampler and trainer: whether to use encode_motion
  condition: Condition = "channels"  # read by the sampler and trainer: how given canvas positions are marked
  motion_timestep: float = 0.0  # timestep at which encode_motion runs the motion half by default
  # animate2: RoPE position of the driving tokens' first (frame, row, column), -1 = that axis' size
  # of the driving token grid, and the position step between driving frames.
  refer_offset_t: int = 1
  refer_offset_h: int = 0
  refer_offset_w: int = -1
  refer_stride: int = 1
  unconditional_skip_layers: tuple[int, ...] = ()  # blocks that `unconditional` samples skip ((9,): Animate-2)
  key_log_scale: float = 0.0  # animate2: score bias on generation frame 1's keys (DiffSynth's log_scale); 0: off
  text_len: int | None = None  # text zero-padded to this many tokens, as Wan does (512); None: used as given

  def __post_init__(self):
    if isinstance(self.lora_targets, str):  # "ffn,self_attn" from a command line
      object.__setattr__(self, "lora_targets", tuple(t for t in self.lora_targets.split(",") if t))
    if self.lora_rank < 0:
      raise ValueError(f"model.lora_rank={self.lora_rank} must be >= 0 (0: no LoRA)")
    if self.lora_rank and not self.lora_targets:
      raise ValueError(f"model.lora_rank={self.lora_rank} needs at least one group in model.lora_targets")
    lora_layers(self.lora_targets)
    check_choice("model.layout", self.layout, Layout)
    check_choice("model.condition", self.condition, Condition)
    check_choice("model.remat", self.remat, RematPolicy)
    if self.condition == "timestep" and self.layout == "animate2":
      raise ValueError("model.condition='timestep' (TI2V) marks given canvas tokens; model.layout='animate2' has "
                       "no canvas: use layout 'full' or 'motion_cache'")
    if isinstance(self.unconditional_skip_layers, str):  # "9" or "9,10" from a command line
      object.__setattr__(self, "unconditional_skip_layers",
                         tuple(int(i) for i in self.unconditional_skip_layers.split(",") if i))
    if any(not 0 <= i < self.num_layers for i in self.unconditional_skip_layers):
      raise ValueError(f"model.unconditional_skip_layers={self.unconditional_skip_layers} must be block indices in "
                       f"0..{self.num_layers - 1}")
    offsets = (self.refer_offset_t, self.refer_offset_h, self.refer_offset_w)
    if min(offsets) < -1 or self.refer_stride < 1:
      raise ValueError(f"model.refer_offset_t/h/w={offsets} must be >= 0 or -1 (the grid size) and "
                       f"model.refer_stride={self.refer_stride} >= 1")
    if self.text_len is not None and self.text_len < 1:
      raise ValueError(f"model.text_len={self.text_len} must be >= 1 or None (text used as given)")

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  def pixel_multiple(self, space_factor: int) -> int:
    """Pixels per token along H and W under a codec of `space_factor` pixels per latent position:
    video frame sides must be multiples of it (Wan2.1's VAE 8 x patch 2 = 16; Wan2.2's 16 x 2 = 32)."""
    return space_factor * math.lcm(*self.patch_size[1:])

  @property
  def lora(self) -> LoRA | None:
    """The adapter shape, or None without LoRA."""
    if not self.lora_rank:
      return None
    alpha = self.lora_rank if self.lora_alpha is None else self.lora_alpha
    return LoRA(self.lora_rank, alpha, self.lora_dtype)


def timestep_sinusoid(timestep: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding `[...] -> [..., dim]` (e.g. `[B, L]` per token) in fp32, ordered [cos, sin] (WAN.md)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = timestep.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class Attention(nnx.Module):
  """Multi-head attention with q/k RMSNorm across heads (before the head split).

  Self-attention when `context` is None (with RoPE), else cross-attention to `context`. With
  `image_dim` set it also attends to image tokens through its own key/value projections and adds
  that result before the output projection (Wan I2V). `adapted` names the projections
  (`q`, `k`, `v`, `out`) that get a LoRA.
  """

  def __init__(self, config: DiTConfig, *, image_branch: bool, rngs: nnx.Rngs, adapted: frozenset[str] = frozenset()):
    dim, dtype, pdtype = config.dim, jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)

    def dense(name: str, names: tuple[str, str]) -> Dense:
      lora = config.lora if name in adapted else None
      return Dense(dim, dim, names=names, dtype=dtype, param_dtype=pdtype, rngs=rngs, lora=lora)

    norm = lambda: RMSNorm(dim, eps=config.eps, param_dtype=pdtype, rngs=rngs, names=("heads",))
    self.q, self.k = dense("q", ("embed", "heads")), dense("k", ("embed", "heads"))
    self.v = dense("v", ("embed", "heads"))
    self.out = dense("out", ("heads", "embed"))
    self.norm_q, self.norm_k = norm(), norm()
    if image_branch:
      self.image_k, self.image_v = dense("image_k", ("embed", "heads")), dense("image_v", ("embed", "heads"))
      self.norm_image_k = norm()
    self.image_branch = image_branch
    self.num_heads = config.num_heads
    self.implementation = config.attention

  def _heads(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-1], self.num_heads, -1)  # B L (N K) -> B L N K

  def keys_values(self, source: jax.Array, *, rope: RopeTables | None = None) -> KeysValues:
    """Keys (RMSNorm, then RoPE when given) and values of `source` `[B, L, D]`: each `[B, L, N, K]`."""
    k = self._heads(self.norm_k(self.k(source)))
    if rope is not None:
      k = apply_rope(k, rope)
    return k, self._heads(self.v(source))

  def __call__(self, x: jax.Array, *, context: jax.Array | None = None, rope: RopeTables | None = None,
               image_context: jax.Array | None = None, keys_values: KeysValues | None = None,
               frame_keys_values: KeysValues | None = None, key_log_scale: float = 0.0) -> jax.Array:
    """x `[B, L, D]`; context `[B, Lc, D]`; image_context `[B, Li, D]` -> `[B, L, D]`.

    Keys and values are `keys_values` (`[B, Lk, N, K]` each) when given, else those of `context`,
    else those of x (with RoPE). `frame_keys_values` (`[B, L - L/F, N, K]`, the animate2 driving
    cache): x's frame j also attends to its frame j - 1 (`frame_aligned_attention`).
    """
    q = self._heads(self.norm_q(self.q(x)))
    if rope is not None:
      q = apply_rope(q, rope)
    if keys_values is None:
      keys_values = self.keys_values(x if context is None else context, rope=rope)
    k, v = keys_values
    if frame_keys_values is not None:
      out = frame_aligned_attention(q, k, v, *frame_keys_values, key_log_scale=key_log_scale,
                                    implementation=self.implementation)
    else:
      out = attention(q, k, v, implementation=self.implementation, kv_tokens="tokens" if context is None else "kv")
    if self.image_branch:
      image_k = self._heads(self.norm_image_k(self.image_k(image_context)))
      image_v = self._heads(self.image_v(image_context))
      out = out + attention(q, image_k, image_v, implementation=self.implementation, kv_tokens="kv")
    return self.out(out.reshape(*out.shape[:-2], -1))


class Block(nnx.Module):
  """One DiT block: modulated self-attention, cross-attention to text (and image), modulated FFN."""

  def __init__(self, config: DiTConfig, *, rngs: nnx.Rngs):
    pdtype = jnp.dtype(config.param_dtype)
    adapted = lora_layers(config.lora_targets) if config.lora_rank else frozenset()
    within = lambda prefix: frozenset(name.removeprefix(prefix) for name in adapted if name.startswith(prefix))
    self.modulation = param(rngs, lambda key, shape, dtype: jax.random.normal(key, shape, dtype) / config.dim**0.5,
                            (6, config.dim), (None, "embed"), pdtype)
    self.norm_self = LayerNorm(config.dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.self_attn = Attention(config, image_branch=False, rngs=rngs, adapted=within("self_attn."))
    self.norm_cross = LayerNorm(config.dim, eps=config.eps, affine=True, param_dtype=pdtype, rngs=rngs)
    self.cross_attn = Attention(config, image_branch=config.image_dim is not None, rngs=rngs,
                                adapted=within("cross_attn."))
    self.norm_ffn = LayerNorm(config.dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.ffn = MLP(config.dim, config.ffn_dim, config.dim, activation=gelu_tanh, names=("embed", "mlp", "embed"),
                   dtype=jnp.dtype(config.dtype), param_dtype=pdtype, rngs=rngs,
                   lora=config.lora if "ffn.up" in adapted else None)
    self.dtype = jnp.dtype(config.dtype)
    self.frame_aligned = config.layout == "animate2"
    self.key_log_scale = config.key_log_scale

  def __call__(self, x: jax.Array, *, time_mod: jax.Array, context: jax.Array, rope: RopeTables,
               image_context: jax.Array | None, cached: KeysValues | None = None) -> tuple[jax.Array, KeysValues]:
    """x `[B, L, D]` fp32 residual stream; time_mod `[B, 1 or L, 6, D]` fp32 (per sample or per token);
    rope for x's tokens.

    `cached` keys and values (`[B, Lc, N, K]` each, e.g. the motion cache) are attended to by x's
    queries beside x's own: all of them, or with the animate2 layout frame by frame
    (`frame_aligned_attention`). Returns the new x `[B, L, D]` fp32 and x's own self-attention keys and
    values `[B, L, N, K]` (what `encode_motion` caches).
    """
    # each B (1 or L) D: broadcast over the tokens when the timestep is per sample
    shift, scale, gate, ffn_shift, ffn_scale, ffn_gate = (
        self.modulation[...].astype(jnp.float32) + time_mod).transpose(2, 0, 1, 3)
    h = (self.norm_self(x) * (1 + scale) + shift).astype(self.dtype)
    own = self.self_attn.keys_values(h, rope=rope)
    if self.frame_aligned:
      attended = self.self_attn(h, rope=rope, keys_values=own, frame_keys_values=cached,
                                key_log_scale=self.key_log_scale)
    else:
      keys_values = own if cached is None else tuple(jnp.concatenate(pair, axis=1) for pair in zip(own, cached))
      attended = self.self_attn(h, rope=rope, keys_values=keys_values)
    x = x + attended.astype(jnp.float32) * gate
    h = self.norm_cross(x).astype(self.dtype)
    x = x + self.cross_attn(h, context=context, image_context=image_context).astype(jnp.float32)
    h = (self.norm_ffn(x) * (1 + ffn_scale) + ffn_shift).astype(self.dtype)
    return x + self.ffn(h).astype(jnp.float32) * ffn_gate, own


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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MotionCache:
  """Self-attention keys and values of the motion tokens, per layer: the canvas's motion (right)
  half (`motion_cache`) or the driving video (`animate2`).

  k, v: `[layers, B, Lm, N, K]` (logical axes layers, batch, tokens, act_heads, kv), after the
  key RMSNorm and RoPE at the motion tokens' positions; `grid`: their token grid `(F, H, W)`.
  diffusers caches Animate-2's keys before RoPE and rotates them at the same driving positions
  in every step; rotating once here gives the same keys (RoPE of a key depends only on its
  position) and saves that work per step and layer.
  """

  k: jax.Array
  v: jax.Array
  grid: tuple[int, int, int] = dataclasses.field(metadata=dict(static=True))


@dataclasses.dataclass(frozen=True)
class _Conditioning:
  """Per-call inputs every block reads."""

  temb: jax.Array  # B (1 or L) D fp32, for the head: one per sample or per token
  time_mod: jax.Array  # B (1 or L) 6 D fp32
  context: jax.Array  # B Lt D text tokens
  image_tokens: jax.Array | None  # B Li D CLIP tokens (I2V)


class WanDiT(nnx.Module):
  """Wan2.1 DiT: `model(latents, timestep, text, image_context=None) -> velocity`.

  With the `motion_cache` or `animate2` layout: `cache = model.encode_motion(motion_latents, text)`
  once per sample, then `model(latents, timestep, text, motion=cache)` per step (module docstring).
  """

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

    self.blocks = build_stack(lambda rngs: Block(config, rngs=rngs), config.num_layers, rngs=rngs)
    self.norm_out = LayerNorm(dim, eps=config.eps, affine=False, param_dtype=pdtype, rngs=rngs)
    self.head_modulation = param(rngs, lambda key, shape, dt: jax.random.normal(key, shape, dt) / dim**0.5,
                                 (2, dim), (None, "embed"), pdtype)
    self.head = Dense(dim, math.prod(config.patch_size) * config.out_channels, names=("embed", None),
                      dtype=dtype, param_dtype=pdtype, rngs=rngs)

  def __call__(self, latents: jax.Array, timestep: jax.Array, text: jax.Array, *,
               image_context: jax.Array | None = None, motion: MotionCache | None = None,
               unconditional: bool | jax.Array = False) -> jax.Array:
    """Predicts the flow velocity.

    latents `[B, F, H, W, C_in]`; timestep `[B]` in 0..1000, or `[B, L]` one per token (L = F*H*W
    of the token grid, ordered F, H, W as the tokens; TI2V's first frame at 0); text `[B, Lt, text_dim]` (UMT5
    states; zero-padded to `text_len` when set); image_context `[B, Li, image_dim]` CLIP tokens
    for I2V models. With `motion` (from `encode_motion`) and the `motion_cache` layout, latents
    are the canvas's left half only; its queries attend to the cached motion keys too, and its
    RoPE positions are the canvas's left columns. With the `animate2` layout (`motion` required),
    latents hold the reference frame and then one frame per cached driving frame (module
    docstring). A cache of Bm samples serves latents that repeat them (B a multiple of Bm: one
    driving pass for the [cond; uncond] guidance batch), tiled one layer at a time. `unconditional` (a bool, or `[B]` bools so that one call
    batches both guidance branches): those samples skip the blocks `unconditional_skip_layers`. Returns
    `[B, F, H, W, C_out]` fp32.
    """
    config = self.config
    grid = self._check_inputs(latents, image_context)
    batch = latents.shape[0]
    if config.layout == "animate2" and motion is None:
      raise ValueError("model.layout='animate2' needs motion=model.encode_motion(driving, text_d, ...)")
    if motion is not None:
      fits = (grid[0] - 1, *grid[1:]) if config.layout == "animate2" else grid
      if motion.grid != fits or motion.k.shape[0] != config.num_layers or batch % motion.k.shape[1]:
        raise ValueError(f"latents {latents.shape} (token grid {grid}) do not fit the motion cache of grid "
                         f"{motion.grid}, shape {motion.k.shape}: it must have token grid {fits} "
                         f"(layout {config.layout!r}) and hold [num_layers={config.num_layers}, a divisor of "
                         f"B={batch}, ...]")
    if jnp.shape(unconditional) not in ((), (batch,)):
      raise ValueError(f"unconditional has shape {jnp.shape(unconditional)}: expected a bool or [B={batch}] bools")
    skip = None
    if config.unconditional_skip_layers and not (isinstance(unconditional, bool) and not unconditional):
      skip = jnp.broadcast_to(jnp.asarray(unconditional, bool), (batch,))
    conditioning = self._conditioning(timestep, text, image_context, grid)
    rope = rope_tables(grid, config.head_dim, theta=config.rope_theta)
    cached = None if motion is None else (motion.k, motion.v)
    x, _ = self._run_blocks(self._patchify(latents), conditioning, rope, cached=cached, collect=False, skip=skip)

    shift, scale = (self.head_modulation[...].astype(jnp.float32) + conditioning.temb[:, :, None]).transpose(2, 0, 1, 3)
    x = (self.norm_out(x) * (1 + scale) + shift).astype(jnp.dtype(self.config.dtype))
    return self._unpatchify(self.head(x).astype(jnp.float32), grid)

  def encode_motion(self, motion_latents: jax.Array, text: jax.Array, *, timestep: jax.Array | None = None,
                    image_context: jax.Array | None = None) -> MotionCache:
    """Runs the motion tokens alone and caches every layer's self-attention keys/values.

    motion_latents `[B, F, H, W, C_in]`: with `motion_cache`, the right half of the DiT input, by
    default the clean driving latents as the noisy channels (mask 1, condition = driving latents),
    at RoPE positions of the canvas's right columns, W/2 tokens on; with `animate2`, the driving
    latents plus 4 all-ones mask channels and the driving latents again as condition, at RoPE
    positions `refer_offset_*` and `refer_stride`. timestep `[B]` or `[B, L]` (default `model.motion_timestep`
    for all: 1 for Animate-2); text and image_context as in `__call__` (their own: the driving
    prompt and CLIP tokens; with `motion_cache`, batch the unconditional prompt in too when
    sampling with guidance). Returns the `MotionCache` for `__call__(latents, ..., motion=cache)`;
    the motion tokens' own output is never computed.
    """
    config = self.config
    grid = self._check_inputs(motion_latents, image_context)
    if timestep is None:
      timestep = jnp.full((motion_latents.shape[0],), config.motion_timestep, jnp.float32)
    conditioning = self._conditioning(timestep, text, image_context, grid)
    if config.layout == "animate2":
      offsets = (config.refer_offset_t, config.refer_offset_h, config.refer_offset_w)
      offset, stride = tuple(size if o == -1 else o for o, size in zip(offsets, grid)), (config.refer_stride, 1, 1)
    else:
      offset, stride = (0, 0, grid[2]), (1, 1, 1)
    rope = rope_tables(grid, config.head_dim, theta=config.rope_theta, offset=offset, stride=stride)
    _, (k, v) = self._run_blocks(self._patchify(motion_latents), conditioning, rope, cached=None, collect=True)
    return MotionCache(k, v, grid)

  def _check_inputs(self, latents: jax.Array, image_context: jax.Array | None) -> tuple[int, int, int]:
    """Validates latents `[B, F, H, W, C_in]` and the image branch; returns the token grid (F, H, W)."""
    config = self.config
    _, frames, height, width, channels = latents.shape
    pt, ph, pw = config.patch_size
    if channels != config.in_channels or frames % pt or height % ph or width % pw:
      raise ValueError(f"latents {latents.shape} must be [B, F, H, W, {config.in_channels}] with F, H, W "
                       f"divisible by patch_size={config.patch_size}")
    if (self.image_embed is None) != (image_context is None):
      raise ValueError(f"image_context (CLIP tokens [B, Li, image_dim]) is needed exactly when model.image_dim "
                       f"is set; image_dim={config.image_dim}, got {None if image_context is None else image_context.shape}")
    return frames // pt, height // ph, width // pw

  def _conditioning(self, timestep: jax.Array, text: jax.Array, image_context: jax.Array | None,
                    grid: tuple[int, int, int]) -> _Conditioning:
    """Timestep `[B]` or `[B, L]` (L: the tokens of `grid`), text and CLIP tokens -> what the blocks read."""
    config = self.config
    tokens = math.prod(grid)
    if timestep.ndim not in (1, 2) or timestep.ndim == 2 and timestep.shape[1] != tokens:
      raise ValueError(f"timestep has shape {timestep.shape}: expected [B] or [B, L={tokens}] (one per token of "
                       f"the {grid} token grid)")
    if config.text_len is not None:
      if text.shape[1] > config.text_len:
        raise ValueError(f"text {text.shape} has more than model.text_len={config.text_len} tokens")
      text = jnp.pad(text, ((0, 0), (0, config.text_len - text.shape[1]), (0, 0)))
    timestep = timestep if timestep.ndim == 2 else timestep[:, None]  # B (1 or L)
    temb = self.time_embed(timestep_sinusoid(timestep, config.freq_dim))  # B (1 or L) D fp32
    time_mod = self.time_proj(jax.nn.silu(temb)).reshape(*timestep.shape, 6, config.dim)
    if timestep.shape[1] > 1:  # per token: split over devices as the tokens are
      temb, time_mod = constrain(temb, ("batch", "tokens", "act_embed")), constrain(
          time_mod, ("batch", "tokens", None, "act_embed"))
    image_tokens = self.image_embed(image_context) if self.image_embed is not None else None
    return _Conditioning(temb, time_mod, constrain(self.text_embed(text), ("batch", "kv", "act_embed")), image_tokens)

  def _run_blocks(self, tokens: jax.Array, conditioning: _Conditioning, rope: RopeTables, *,
                  cached: KeysValues | None, collect: bool, skip: jax.Array | None = None
                  ) -> tuple[jax.Array, KeysValues | None]:
    """Scans the blocks over tokens `[B, L, D]` fp32.

    `cached`: per-layer keys/values `[layers, B, Lc, N, K]` the queries also attend to. `skip`
    `[B]` bool: those samples pass the blocks `unconditional_skip_layers` unchanged. Returns the
    tokens and, when `collect`, every layer's own keys/values `[layers, B, L, N, K]` (else None).
    """
    # Tokens and the RoPE tables of the whole grid are split over devices alike (parallel/).
    tokens, rope = constrain(tokens, ("batch", "tokens", "act_embed")), constrain(rope, ("tokens", None))

    skipped_layers = jnp.asarray(self.config.unconditional_skip_layers, jnp.int32)

    def apply_block(block: Block, x: jax.Array, layer) -> tuple[jax.Array, KeysValues | None]:
      layer_cached, index = layer
      # A cache of fewer samples is tiled a layer at a time: tiling it whole would double it.
      layer_cached = jax.tree.map(lambda c: jnp.tile(c, (x.shape[0] // c.shape[0], 1, 1, 1)), layer_cached)
      out, own = block(x, time_mod=conditioning.time_mod, context=conditioning.context, rope=rope,
                       image_context=conditioning.image_tokens, cached=layer_cached)
      if skip is not None:  # a per-sample select, so both guidance branches share one call
        out = jnp.where((skip & jnp.any(index == skipped_layers))[:, None, None], x, out)
      return constrain(out, ("batch", "tokens", "act_embed")), (own if collect else None)

    return scan_stack(self.blocks, apply_block, tokens, (cached, jnp.arange(self.config.num_layers)),
                      remat=self.config.remat)

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
