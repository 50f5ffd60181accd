"""The one attention function every model calls.

Inputs are `[B, L, N, K]` (batch, tokens, heads, head dim), unmasked, scaled by 1/sqrt(K)
(WAN.md: "Attention"). The score matrix of full attention at 480p is tens of GB, so every backend
gets a memory-bounded path: cuDNN flash attention on GPU, and elsewhere a blockwise kernel with an
online softmax whose working set is one `[B, N, block_q, block_kv]` tile. The UMT5 text encoder
(unscaled scores plus a position bias and key mask, at 512 tokens) uses the XLA kernel with `bias`.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp

Implementation = Literal["auto", "xla", "cudnn", "blockwise"]

# Below this many score-matrix bytes the plain XLA kernel is used by "auto".
_FULL_SCORES_LIMIT = 1 << 28


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: Implementation = "auto",
              block_q: int = 1024, block_kv: int = 2048, bias: jax.Array | None = None,
              scale: float | None = None) -> jax.Array:
  """Softmax attention. q `[B, Lq, N, K]`, k and v `[B, Lk, N, K]` -> `[B, Lq, N, K]` in q's dtype.

  `bias` (broadcastable to `[B, N, Lq, Lk]`, added to the fp32 scores) carries position biases and
  key masks, as UMT5 needs; `scale` multiplies q.k (default 1/sqrt(K); UMT5 uses 1). A bias means
  the full score matrix exists anyway, so "auto" then picks the XLA kernel.
  """
  if implementation == "auto":
    implementation = "xla" if bias is not None else _pick_implementation(q, k)
  if implementation == "blockwise":
    if bias is not None:
      raise ValueError("attention(implementation='blockwise') takes no bias; use 'xla' or 'auto'")
    return _blockwise_attention(q, k, v, block_q=min(block_q, q.shape[1]), block_kv=min(block_kv, k.shape[1]),
                                scale=scale)
  return jax.nn.dot_product_attention(q, k, v, bias=bias, scale=scale,
                                      implementation=implementation).astype(q.dtype)


def _pick_implementation(q: jax.Array, k: jax.Array) -> str:
  backend = jax.default_backend()
  if backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128:
    return "cudnn"
  batch, q_len, heads, _ = q.shape
  if batch * heads * q_len * k.shape[1] * 4 <= _FULL_SCORES_LIMIT:
    return "xla"
  return "blockwise"


def _fitting_block(length: int, block: int) -> int:
  """A block size near `block` dividing `length` (so no padding or key mask), else `block`."""
  for size in range(block, block // 2, -1):
    if length % size == 0:
      return size
  return block


@functools.partial(jax.jit, static_argnames=("block_q", "block_kv", "scale"))
def _blockwise_attention(q, k, v, *, block_q: int, block_kv: int, scale: float | None = None):
  """Flash-style attention: scan over key blocks with a running max and sum, per query block."""
  batch, q_len, heads, head_dim = q.shape
  kv_len = k.shape[1]
  dtype = q.dtype
  block_q, block_kv = _fitting_block(q_len, block_q), _fitting_block(kv_len, block_kv)
  num_q, num_kv = -(-q_len // block_q), -(-kv_len // block_kv)
  # exp2 with log2(e) folded into the query scale saves a multiply per score.
  scale = 1 / math.sqrt(head_dim) if scale is None else scale
  q = _pad(q * (math.log2(math.e) * scale), num_q * block_q)
  q_blocks = q.reshape(batch, num_q, block_q, heads, head_dim).transpose(1, 0, 3, 2, 4)  # nq B N bq K
  # Keys as B N K S so each score tile is a plain [bq, K] x [K, bkv] matmul.
  k_blocks = _pad(k, num_kv * block_kv).reshape(batch, num_kv, block_kv, heads, head_dim).transpose(1, 0, 3, 4, 2)
  v_blocks = _pad(v, num_kv * block_kv).reshape(batch, num_kv, block_kv, heads, head_dim).transpose(1, 0, 3, 2, 4)
  padded_keys = num_kv * block_kv != kv_len
  key_valid = (jnp.arange(num_kv * block_kv) < kv_len).reshape(num_kv, block_kv)

  def one_query_block(q_block):  # B N bq K
    def step(carry, kv):
      running_max, running_sum, acc = carry
      k_block, v_block, valid = kv
      scores = jnp.einsum("bnqk,bnks->bnqs", q_block, k_block, preferred_element_type=jnp.float32)
      if padded_keys:
        scores = jnp.where(valid, scores, -jnp.inf)
      new_max = jnp.maximum(running_max, scores.max(-1, keepdims=True))
      probs = jnp.exp2(scores - new_max)
      correction = jnp.exp2(running_max - new_max)
      running_sum = running_sum * correction + probs.sum(-1, keepdims=True)
      acc = acc * correction + jnp.einsum("bnqs,bnsk->bnqk", probs.astype(dtype), v_block,
                                          preferred_element_type=jnp.float32)
      return (new_max, running_sum, acc), None

    stats_shape = (*q_block.shape[:-1], 1)
    init = (jnp.full(stats_shape, -jnp.inf, jnp.float32), jnp.zeros(stats_shape, jnp.float32),
            jnp.zeros(q_block.shape, jnp.float32))
    (_, running_sum, acc), _ = jax.lax.scan(step, init, (k_blocks, v_blocks, key_valid))
    return (acc / running_sum).astype(dtype)

  out = jax.lax.map(one_query_block, q_blocks)  # nq B N bq K
  return out.transpose(1, 0, 3, 2, 4).reshape(batch, num_q * block_q, heads, head_dim)[:, :q_len]


def _pad(x: jax.Array, length: int) -> jax.Array:
  """Zero-pads the token axis (1) of `[B, L, N, K]` to `length`."""
  return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))
