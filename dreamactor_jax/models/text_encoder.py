"""The UMT5 text encoder of Wan2.1 in Flax NNX, and prompt encoding as Wan does it (WAN.md, "UMT5-XXL
encoder").

T5 v1.1 encoder blocks: pre-RMSNorm (no mean subtraction, no bias) self-attention with unscaled
scores plus a relative position bias that EACH layer learns for itself (UMT5, unlike T5's shared
one), then a pre-RMSNorm gated-GELU FFN `down(gelu_tanh(gate(x)) * up(x))`; no biases, no dropout.
Padding keys are masked; padded queries still produce (unused) outputs, as in the reference. The
residual stream and norms are fp32, the matmuls in `dtype`. The stack is built and run by
models/stack.py, as the DiT's is.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.config import ModelConfig
from dreamactor_jax.models.layers import Dense, RMSNorm, gelu_tanh, param
from dreamactor_jax.models.stack import RematPolicy, build_stack, scan_stack

if TYPE_CHECKING:
  from transformers import PreTrainedTokenizerBase

# Wan pads every prompt's encoding to this many tokens: the DiT's text context length (WAN.md).
TEXT_LEN = 512


@dataclasses.dataclass(frozen=True)
class UMT5Config(ModelConfig):
  """Architecture and numerics of a UMT5 encoder. The released size: `UMT5_XXL`."""

  vocab_size: int
  dim: int
  ffn_dim: int
  num_heads: int
  head_dim: int
  num_layers: int
  num_buckets: int = 32
  max_distance: int = 128
  eps: float = 1e-6
  param_dtype: str = "float32"
  dtype: str = "float32"  # compute dtype of matmuls and attention
  remat: RematPolicy = "none"


# Wan's umt5_xxl() in wan/modules/t5.py (dim_attn 4096 = 64 heads x 64; T5RelativeEmbedding's
# max_dist 128), whose encoder ships as models_t5_umt5-xxl-enc-bf16.pth; WAN.md "UMT5-XXL encoder".
UMT5_XXL = UMT5Config(vocab_size=256384, dim=4096, ffn_dim=10240, num_heads=64, head_dim=64, num_layers=24)


def relative_buckets(q_len: int, k_len: int, *, num_buckets: int, max_distance: int) -> np.ndarray:
  """Bidirectional T5 position buckets `[Lq, Lk]` int32 of `key position - query position`.

  Half the buckets are for keys after the query. Within a half, distances below half of it get
  their own bucket, longer ones share log-spaced buckets up to `max_distance`. Computed in
  float32 with truncation, as the PyTorch references do, so the boundaries agree exactly.
  """
  relative = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
  half = num_buckets // 2
  max_exact = half // 2
  distance = np.abs(relative)
  # max(., 1) only keeps log away from 0, whose bucket comes from the exact branch anyway.
  log_ratio = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact))
  log_ratio = log_ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
  far = np.minimum(max_exact + log_ratio.astype(np.int64), half - 1)
  return ((relative > 0) * half + np.where(distance < max_exact, distance, far)).astype(np.int32)


class SelfAttention(nnx.Module):
  """Multi-head self-attention with unscaled scores plus this layer's relative position bias."""

  def __init__(self, config: UMT5Config, *, rngs: nnx.Rngs):
    inner = config.num_heads * config.head_dim
    dtype, pdtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    dense = lambda fan_in, fan_out, names: Dense(fan_in, fan_out, names=names, dtype=dtype, param_dtype=pdtype,
                                                 rngs=rngs, use_bias=False)
    self.q, self.k, self.v = (dense(config.dim, inner, ("embed", "heads")) for _ in range(3))
    self.o = dense(inner, config.dim, ("heads", "embed"))
    self.position_bias = param(rngs, nnx.initializers.normal(config.dim**-0.5), (config.num_buckets, config.num_heads),
                               (None, "heads"), pdtype)
    self.num_heads = config.num_heads

  def __call__(self, x: jax.Array, *, buckets: jax.Array, key_valid: jax.Array) -> jax.Array:
    """x `[B, L, D]`; buckets `[L, L]` int; key_valid `[B, L]` bool -> `[B, L, D]`."""
    heads = lambda t: t.reshape(*t.shape[:-1], self.num_heads, -1)  # B L (N K) -> B L N K
    q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
    position_bias = self.position_bias[...].astype(jnp.float32)[buckets].transpose(2, 0, 1)  # N Lq Lk
    # The references add the dtype's most negative number at padded keys: their weight is exactly 0.
    bias = jnp.where(key_valid[:, None, None, :], position_bias[None], jnp.finfo(jnp.float32).min)  # B N Lq Lk
    out = attention(q, k, v, bias=bias, scale=1.0)
    return self.o(out.reshape(*out.shape[:-2], -1))


class GatedFFN(nnx.Module):
  """`down(gelu_tanh(gate(x)) * up(x))`: transformers' wi_0, wi_1, wo; Wan's gate.0, fc1, fc2."""

  def __init__(self, config: UMT5Config, *, rngs: nnx.Rngs):
    dtype, pdtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
    dense = lambda fan_in, fan_out, names: Dense(fan_in, fan_out, names=names, dtype=dtype, param_dtype=pdtype,
                                                 rngs=rngs, use_bias=False)
    self.gate = dense(config.dim, config.ffn_dim, ("embed", "mlp"))
    self.up = dense(config.dim, config.ffn_dim, ("embed", "mlp"))
    self.down = dense(config.ffn_dim, config.dim, ("mlp", "embed"))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(gelu_tanh(self.gate(x)) * self.up(x))


class Block(nnx.Module):
  """`x += attn(norm_attn(x)); x += ffn(norm_ffn(x))` on the fp32 residual stream."""

  def __init__(self, config: UMT5Config, *, rngs: nnx.Rngs):
    pdtype = jnp.dtype(config.param_dtype)
    self.norm_attn = RMSNorm(config.dim, eps=config.eps, param_dtype=pdtype, rngs=rngs)
    self.attn = SelfAttention(config, rngs=rngs)
    self.norm_ffn = RMSNorm(config.dim, eps=config.eps, param_dtype=pdtype, rngs=rngs)
    self.ffn = GatedFFN(config, rngs=rngs)

  def __call__(self, x: jax.Array, *, buckets: jax.Array, key_valid: jax.Array) -> jax.Array:
    """x `[B, L, D]` fp32 -> `[B, L, D]` fp32."""
    x = x + self.attn(self.norm_attn(x), buckets=buckets, key_valid=key_valid).astype(jnp.float32)
    return x + self.ffn(self.norm_ffn(x)).astype(jnp.float32)


class UMT5Encoder(nnx.Module):
  """UMT5 encoder: `encoder(input_ids, attention_mask) -> [B, L, D]` fp32 hidden states."""

  def __init__(self, config: UMT5Config, *, rngs: nnx.Rngs):
    self.config = config
    pdtype = jnp.dtype(config.param_dtype)
    self.token_embedding = param(rngs, nnx.initializers.normal(1.0), (config.vocab_size, config.dim),
                                 ("vocab", "embed"), pdtype)

    self.blocks = build_stack(lambda rngs: Block(config, rngs=rngs), config.num_layers, rngs=rngs)
    self.norm = RMSNorm(config.dim, eps=config.eps, param_dtype=pdtype, rngs=rngs)

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """input_ids `[B, L]` int; attention_mask `[B, L]` (1 = token, 0 = padding) -> `[B, L, D]` fp32.

    Returns the states after the final RMSNorm at every position, padding included.
    """
    config = self.config
    length = input_ids.shape[1]
    buckets = jnp.asarray(relative_buckets(length, length, num_buckets=config.num_buckets,
                                           max_distance=config.max_distance))
    key_valid = attention_mask > 0
    x = jnp.take(self.token_embedding[...], input_ids, axis=0).astype(jnp.float32)

    def apply_block(block: Block, x: jax.Array, _) -> tuple[jax.Array, None]:
      return block(x, buckets=buckets, key_valid=key_valid), None

    x, _ = scan_stack(self.blocks, apply_block, x, remat=config.remat)
    return self.norm(x)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
  """The UMT5 tokenizer from a local folder (Wan ships it as `google/umt5-xxl/` beside the weights)."""
  path = Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"tokenizer folder {path} does not exist; pass the folder holding the UMT5 tokenizer "
                            "files (spiece.model or tokenizer.json), e.g. Wan2.1-T2V-14B/google/umt5-xxl")
  from transformers import AutoTokenizer

  try:
    return AutoTokenizer.from_pretrained(str(path))
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot load a tokenizer ({e})".splitlines()[0]) from None


def clean_prompt(text: str) -> str:
  """Wan's `clean='whitespace'`: ftfy (when installed), HTML unescaped twice, whitespace collapsed."""
  try:
    import ftfy

    text = ftfy.fix_text(text)
  except ImportError:  # without ftfy, mojibake and curly quotes stay as typed (Wan straightens them)
    pass
  text = html.unescape(html.unescape(text)).strip()
  return re.sub(r"\s+", " ", text).strip()


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef: nnx.GraphDef, state: nnx.State, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
  return nnx.merge(graphdef, state)(input_ids, attention_mask)


def encode_prompts(encoder: UMT5Encoder, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *,
                   max_length: int = TEXT_LEN) -> list[np.ndarray]:
  """Encodes prompts as Wan does; returns one fp32 `[L_i, D]` array per prompt, trimmed to its tokens.

  Each prompt is cleaned, tokenized with the tokenizer's EOS appended, truncated and padded to
  `max_length`, encoded with the padding masked, and cut back to its true length (mask sum).
  """
  tokens = tokenizer([clean_prompt(p) for p in prompts], padding="max_length", truncation=True,
                     max_length=max_length, add_special_tokens=True, return_tensors="np")
  mask = np.asarray(tokens["attention_mask"], np.int32)
  graphdef, state = nnx.split(encoder)
  states = np.asarray(_encode(graphdef, state, jnp.asarray(tokens["input_ids"], jnp.int32), jnp.asarray(mask)))
  return [states[i, :length].copy() for i, length in enumerate(mask.sum(1))]


def pad_prompt_embeddings(embeddings: Sequence[np.ndarray], length: int = TEXT_LEN) -> np.ndarray:
  """Zero-pads trimmed `[L_i, D]` embeddings to `[B, length, D]`, the text input the DiT reads."""
  if not embeddings:
    raise ValueError("pad_prompt_embeddings needs at least one embedding")
  dim = embeddings[0].shape[-1]
  out = np.zeros((len(embeddings), length, dim), embeddings[0].dtype)
  for i, embedding in enumerate(embeddings):
    if embedding.ndim != 2 or embedding.shape[0] > length or embedding.shape[1] != dim:
      raise ValueError(f"embedding {i} has shape {embedding.shape}, expected [L <= {length}, {dim}]")
    out[i, :embedding.shape[0]] = embedding
  return out
