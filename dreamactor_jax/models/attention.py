"""The one attention function every model calls.

Inputs are `[B, L, N, K]` (batch, tokens, heads, head dim), unmasked, scaled by 1/sqrt(K)
(WAN.md: "Attention"). The score matrix of full attention at 480p is tens of GB, so every backend
gets a memory-bounded path: cuDNN flash attention on GPU, and elsewhere a blockwise kernel with an
online softmax whose working set is one `[B, N, block_q, block_kv]` tile.
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
              block_q: int = 512, block_kv: int = 1024) -> jax.Array:
  """Softmax attention. q `[B, Lq, N, K]`, k and v `[B, Lk, N, K]` -> `[B, Lq, N, K]` in q's dtype."""
  if implementation == "auto":
    implementation = _pick_implementation(q, k)
  if implementation == "blockwise":
    return _blockwise_attention(q, k, v, block_q=min(block_q, q.shape[1]), block_kv=min(block_kv, k.shape[1]))
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation).astype(q.dtype)


def _pick_implementation(q: jax.Array, k: jax.Array) -> str:
  backend = jax.default_backend()
  if backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128:
    return "cudnn"
  batch, q_len, heads, _ = q.shape
  if batch * heads * q_len * k.shape[1] * 4 <= _FULL_SCORES_LIMIT:
    return "xla"
  return "blockwise"


@functools.partial(jax.jit, static_argnames=("block_q", "block_kv"))
def _blockwise_attention(q, k, v, *, block_q: int, block_kv: int):
  """Flash-style attention: scan over key blocks with a running max and sum, per query block."""
  batch, q_len, heads, head_dim = q.shape
  kv_len = k.shape[1]
  dtype = q.dtype
  num_q, num_kv = -(-q_len // block_q), -(-kv_len // block_kv)
  # B N L K layout so each tile is a contiguous batched matmul; scale folded into q.
  q = jnp.moveaxis(_pad(q * (1.0 / math.sqrt(head_dim)), num_q * block_q), 2, 1)
  k = jnp.moveaxis(_pad(k, num_kv * block_kv), 2, 1).reshape(batch, heads, num_kv, block_kv, head_dim)
  v = jnp.moveaxis(_pad(v, num_kv * block_kv), 2, 1).reshape(batch, heads, num_kv, block_kv, head_dim)
  key_valid = (jnp.arange(num_kv * block_kv) < kv_len).reshape(num_kv, block_kv)

  def one_query_block(q_block):  # B N bq K
    def step(carry, kv):
      running_max, running_sum, acc = carry
      k_block, v_block, valid = kv
      scores = jnp.einsum("bnqk,bnsk->bnqs", q_block, k_block, preferred_element_type=jnp.float32)
      scores = jnp.where(valid, scores, -jnp.inf)
      new_max = jnp.maximum(running_max, scores.max(-1, keepdims=True))
      probs = jnp.exp(scores - new_max)
      correction = jnp.exp(running_max - new_max)
      running_sum = running_sum * correction + probs.sum(-1, keepdims=True)
      acc = acc * correction + jnp.einsum("bnqs,bnsk->bnqk", probs.astype(dtype), v_block,
                                          preferred_element_type=jnp.float32)
      return (new_max, running_sum, acc), None

    stats_shape = (*q_block.shape[:-1], 1)
    init = (jnp.full(stats_shape, -jnp.inf, jnp.float32), jnp.zeros(stats_shape, jnp.float32),
            jnp.zeros(q_block.shape, jnp.float32))
    kv_blocks = (jnp.moveaxis(k, 2, 0), jnp.moveaxis(v, 2, 0), key_valid)
    (_, running_sum, acc), _ = jax.lax.scan(step, init, kv_blocks)
    return (acc / running_sum).astype(dtype)

  q_blocks = jnp.moveaxis(q.reshape(batch, heads, num_q, block_q, head_dim), 2, 0)
  out = jax.lax.map(one_query_block, q_blocks)  # nq B N bq K
  out = jnp.moveaxis(out, 0, 2).reshape(batch, heads, num_q * block_q, head_dim)[:, :, :q_len]
  return jnp.moveaxis(out, 1, 2)


def _pad(x: jax.Array, length: int) -> jax.Array:
  """Zero-pads the token axis (1) of `[B, L, N, K]` to `length`."""
  return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))
