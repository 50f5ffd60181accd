"""The one attention function every model calls.

Inputs are `[B, L, N, K]` (batch, tokens, heads, head dim), unmasked, scaled by 1/sqrt(K)
(WAN.md: "Attention"). The score matrix of full attention at 480p is tens of GB, so every backend
gets a memory-bounded core: cuDNN flash attention on GPU, Pallas splash attention on TPU, and
elsewhere a blockwise kernel with an online softmax whose working set is one head's
`[B, 1, block_q, block_kv]` tile, forward and backward (its gradient recomputes tiles from the
saved log-sum-exp, as flash attention does). The UMT5 text encoder (unscaled scores plus a
position bias and key mask, at 512 tokens) uses the XLA kernel with `bias`.

With `return_lse`, attention also returns each query's log-sum-exp, so attentions of the same
queries over disjoint key sets merge exactly (`merge_partials`, re-exported from parallel/attention.py): how the Wan-Animate-2 layout adds
per-frame driving keys to full self-attention without a mask (models/dit.py).

Under a sharding plan (`parallel.ShardingPlan.activate`), the core runs inside `shard_map` with
tokens split over the context axis (Ulysses or ring, `parallel/attention.py`); model code calls
`attention()` the same way either way.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp

from dreamactor_jax.parallel.attention import merge_partials, sharded_attention
from dreamactor_jax.parallel.rules import current_plan

Implementation = Literal["auto", "xla", "cudnn", "splash", "blockwise"]
# Logical name of the key/value token axis: `tokens` when keys come from the sequence itself
# (split like the queries under context parallelism), `kv` for cross-attention context.
KVTokens = Literal["tokens", "kv"]

# Below this many score-matrix bytes the plain XLA kernel is used by "auto".
_FULL_SCORES_LIMIT = 1 << 28
# Score given to masked (padding) keys: finite, so a block with no real key yields a finite
# log-sum-exp (weight 0 once merged with real blocks) instead of NaN.
_MASKED = -1e30


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, implementation: Implementation = "auto",
              block_q: int = 1024, block_kv: int = 4096, bias: jax.Array | None = None,
              scale: float | None = None, kv_tokens: KVTokens = "tokens", return_lse: bool = False
              ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Softmax attention. q `[B, Lq, N, K]`, k and v `[B, Lk, N, K]` -> `[B, Lq, N, K]` in q's dtype.

  `bias` (broadcastable to `[B, N, Lq, Lk]`, added to the fp32 scores) carries position biases and
  key masks, as UMT5 needs; `scale` multiplies q.k (default 1/sqrt(K); UMT5 uses 1). A bias means
  the full score matrix exists anyway, so "auto" then picks the XLA kernel (and a sharding plan
  leaves its partitioning to XLA). `kv_tokens` names the key token axis for the sharding plan.

  `return_lse`: returns (out, lse) with lse `[B, Lq, N]` fp32, the natural log of each query's sum
  of exp(scores). Only the blockwise kernel differentiates through lse: cuDNN's, splash's and
  XLA's lse carry no gradient (their backward would drop it silently), so differentiating it raises;
  train through it with implementation="blockwise".
  """
  plan = current_plan()
  if bias is not None:
    if return_lse:
      raise ValueError("attention(bias=...) does not return the log-sum-exp; drop return_lse or the bias")
    if implementation not in ("auto", "xla", "cudnn"):
      raise ValueError(f"attention(implementation={implementation!r}) takes no bias; use 'xla' or 'auto'")
    return jax.nn.dot_product_attention(q, k, v, bias=bias, scale=scale,
                                        implementation="xla" if implementation == "auto" else implementation
                                        ).astype(q.dtype)
  platform = plan.platform if plan is not None else jax.default_backend()
  options = dict(implementation=implementation, platform=platform, block_q=block_q, block_kv=block_kv, scale=scale,
                 return_lse=return_lse)
  if plan is not None and plan.mesh.size > 1:
    return sharded_attention(q, k, v, plan=plan, kv_tokens=kv_tokens, return_lse=return_lse,
                             core=functools.partial(_core, **options),
                             core_with_lse=functools.partial(_core_with_lse, block_q=block_q, block_kv=block_kv,
                                                             scale=scale, one_head=platform == "cpu"))
  return _core(q, k, v, None, **options)


def _core(q, k, v, kv_len, *, implementation: Implementation, platform: str, block_q: int, block_kv: int,
          scale: float | None, return_lse: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Unsharded attention; keys at positions >= kv_len (int32 scalar or None: all real) are masked.

  Returns out, or (out, lse `[B, Lq, N]` fp32) with `return_lse`.
  """
  if implementation == "auto":
    implementation = _pick_implementation(q, k, platform, return_lse=return_lse)
  if implementation == "blockwise":
    out, lse = _core_with_lse(q, k, v, kv_len, block_q=block_q, block_kv=block_kv, scale=scale,
                              one_head=platform == "cpu")
    return (out, lse) if return_lse else out
  lengths = None if kv_len is None else jnp.full((q.shape[0],), kv_len, jnp.int32)
  if not return_lse:
    if implementation == "splash":
      return _splash_attention(q, k, v, kv_len, scale=scale, interpret=platform != "tpu")
    return jax.nn.dot_product_attention(q, k, v, scale=scale, key_value_seq_lengths=lengths,
                                        implementation=implementation).astype(q.dtype)
  if implementation == "splash":
    out, lse = _splash_attention(q, k, v, kv_len, scale=scale, interpret=platform != "tpu", return_lse=True)
  elif implementation == "cudnn":
    out, lse = _cudnn_with_lse(q, k, v, lengths, scale=scale)
  else:
    out, lse = jax.nn.dot_product_attention(q, k, v, scale=scale, key_value_seq_lengths=lengths,
                                            implementation=implementation, return_residual=True)
  return out.astype(q.dtype), _without_gradient(lse.astype(jnp.float32), q, k, v)


@jax.custom_vjp
def _without_gradient(lse: jax.Array, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """lse, from a kernel whose backward ignores it: differentiating it with respect to q, k or v
  raises (XLA's lse is a stop_gradient, so the guard hangs on the inputs, not on lse)."""
  return lse


def _without_gradient_fwd(lse, q, k, v):
  return lse, None


def _without_gradient_bwd(_, cotangent):
  raise NotImplementedError("the log-sum-exp of cuDNN, splash and XLA attention has no gradient (their backward "
                            "drops it); differentiate attention(return_lse=True), e.g. the animate2 layout, with "
                            "implementation='blockwise' (model.attention='blockwise')")


_without_gradient.defvjp(_without_gradient_fwd, _without_gradient_bwd)


def _cudnn_with_lse(q, k, v, kv_lengths, *, scale: float | None) -> tuple[jax.Array, jax.Array]:
  """cuDNN flash attention with its fp32 softmax statistics (the log-sum-exp, `[B, N, Lq]`).

  `jax.nn.dot_product_attention(return_residual=True)` calls this same cuDNN wrapper but casts the
  statistics to the input dtype: in bf16, a log-sum-exp near 10 is then up to 0.03 off, a 3% error
  in the weights of a merge. The wrapper is called here as jax.nn calls it, minus that cast.
  """
  from jax._src.cudnn import fused_attention_stablehlo as cudnn  # noqa: PLC0415 (GPU only; see docstring)

  batch, q_len = q.shape[:2]
  q_lengths = None if kv_lengths is None else jnp.full((batch,), q_len, jnp.int32)
  out, lse = cudnn.dot_product_attention(
      q, k, v, None, None, q_lengths, kv_lengths, scale=1 / math.sqrt(q.shape[-1]) if scale is None else scale,
      mask_type=cudnn.MaskType.NO_MASK if kv_lengths is None else cudnn.MaskType.PADDING, return_residual=True)
  return out.astype(q.dtype), lse.transpose(0, 2, 1).astype(jnp.float32)


def _pick_implementation(q: jax.Array, k: jax.Array, platform: str | None = None, *, return_lse: bool = False) -> str:
  platform = platform or jax.default_backend()
  if platform == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128:
    return "cudnn"
  if platform == "tpu":
    return "splash"
  batch, q_len, heads, _ = q.shape
  # XLA's log-sum-exp is in the input dtype and carries no gradient: the blockwise kernel's does.
  if not return_lse and batch * heads * q_len * k.shape[1] * 4 <= _FULL_SCORES_LIMIT:
    return "xla"
  return "blockwise"


def _round_up(length: int, multiple: int) -> int:
  return -(-length // multiple) * multiple


def _splash_attention(q, k, v, kv_len, *, scale: float | None, interpret: bool, return_lse: bool = False):
  """Pallas splash attention (TPU; `interpret` runs it anywhere, slowly). Pads tokens to its tiles
  and masks padded keys with segment ids (queries segment 0, padded keys segment 1). Returns out,
  or (out, lse `[B, Lq, N]` fp32) with `return_lse`."""
  from jax.experimental.pallas.ops.tpu import splash_attention as splash  # noqa: PLC0415 (TPU only)

  batch, q_len, heads, head_dim = q.shape
  key_len = k.shape[1]
  # Tiles of up to 512 tokens, multiples of the 128-lane width.
  block_q, block_kv = min(512, _round_up(q_len, 128)), min(512, _round_up(key_len, 128))
  q_pad, kv_pad = _round_up(q_len, block_q), _round_up(key_len, block_kv)
  scale = 1 / math.sqrt(head_dim) if scale is None else scale
  heads_first = lambda x, length: _pad(x, length).transpose(0, 2, 1, 3)  # B L N K -> B N L K
  limit = key_len if kv_len is None else kv_len
  segment_ids = None
  if kv_len is not None or kv_pad != key_len:
    segment_ids = splash.SegmentIds(q=jnp.zeros((q_pad,), jnp.int32),
                                    kv=(jnp.arange(kv_pad) >= limit).astype(jnp.int32))
  sizes = splash.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv, block_q_dkv=block_q,
                            block_kv_dkv=block_kv, block_kv_dkv_compute=block_kv, block_q_dq=block_q,
                            block_kv_dq=block_kv)
  mask = splash.MultiHeadMask([splash.FullMask((q_pad, kv_pad))] * heads)
  kernel = splash.make_splash_mha_single_device(mask, block_sizes=sizes, interpret=interpret,
                                                save_residuals=return_lse)
  result = jax.vmap(kernel, in_axes=(0, 0, 0, None))(heads_first(q * scale, q_pad).astype(q.dtype),
                                                     heads_first(k, kv_pad), heads_first(v, kv_pad), segment_ids)
  out = (result[0] if return_lse else result).transpose(0, 2, 1, 3)[:, :q_len].astype(q.dtype)
  if return_lse:
    return out, result[1][0].transpose(0, 2, 1)[:, :q_len].astype(jnp.float32)  # B N L -> B L N
  return out


def _fitting_block(length: int, block: int) -> int:
  """A block size near `block` dividing `length` (so no padding or key mask), else `block`."""
  block = min(block, length)
  for size in range(block, block // 2, -1):
    if length % size == 0:
      return size
  return block


@functools.partial(jax.jit, static_argnames=("block_q", "block_kv", "scale", "one_head"))
def _core_with_lse(q, k, v, kv_len, *, block_q: int, block_kv: int, scale: float | None, one_head: bool
                   ) -> tuple[jax.Array, jax.Array]:
  """Blockwise attention returning (out `[B, Lq, N, K]`, log-sum-exp `[B, Lq, N]` fp32).

  `one_head`: tiles of one head, heads in turn (`_heads_in_turn`, for CPU caches), else all heads.
  """
  head_dim = q.shape[-1]
  scale = 1 / math.sqrt(head_dim) if scale is None else scale
  return _flash(q, k, v, kv_len, scale, _fitting_block(q.shape[1], block_q), _fitting_block(k.shape[1], block_kv),
                one_head)


def _blocks(x: jax.Array, block: int) -> jax.Array:
  """`[B, L, N, K]` (or `[B, L, N]`) -> `[num_blocks, B, N, block, K]` (or `[..., block, 1]`), zero-padded."""
  if x.ndim == 3:
    x = x[..., None]
  batch, length, heads, depth = x.shape
  num = -(-length // block)
  x = _pad(x, num * block).reshape(batch, num, block, heads, depth)
  return x.transpose(1, 0, 3, 2, 4)


def _unblocks(x: jax.Array, length: int) -> jax.Array:
  """Inverse of `_blocks`: `[num, B, N, block, K]` -> `[B, length, N, K]`."""
  num, batch, heads, block, depth = x.shape
  return x.transpose(1, 0, 3, 2, 4).reshape(batch, num * block, heads, depth)[:, :length]


def _key_mask(num_kv: int, block_kv: int, key_len: int, kv_len) -> tuple[jax.Array | None, jax.Array]:
  """Per key block, which keys are real `[num_kv, block_kv]`, or None when all are."""
  limit = key_len if kv_len is None else jnp.minimum(kv_len, key_len)
  if kv_len is None and num_kv * block_kv == key_len:
    return None, jnp.zeros((num_kv, 1), bool)
  valid = jnp.arange(num_kv * block_kv).reshape(num_kv, block_kv) < limit
  return valid, valid


def _heads_in_turn(fn, arrays, one_head: bool):
  """`fn` on `[B, L, N, ...]` arrays; with `one_head`, on each head's `[B, L, 1, ...]` slices in turn.

  A one-head score tile stays in a CPU's cache where an all-heads tile goes through memory: on 2
  cores this took the kernel from 142 to ~170 GFLOP/s at 32k tokens (README "Performance").
  Accelerators keep all heads in one tile.
  """
  if not one_head:
    return fn(*arrays)
  outputs = jax.lax.map(lambda xs: fn(*xs), [jnp.moveaxis(x, 2, 0)[:, :, :, None] for x in arrays])
  return jax.tree.map(lambda y: jnp.moveaxis(y[:, :, :, 0], 0, 2), outputs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _flash(q, k, v, kv_len, scale: float, block_q: int, block_kv: int, one_head: bool):
  return _flash_forward(q, k, v, kv_len, scale, block_q, block_kv, one_head)


def _flash_forward(q, k, v, kv_len, scale, block_q, block_kv, one_head):
  forward = lambda *qkv: _flash_forward_tiles(*qkv, kv_len, scale, block_q, block_kv)
  return _heads_in_turn(forward, (q, k, v), one_head)


def _flash_forward_tiles(q, k, v, kv_len, scale, block_q, block_kv):
  """Scan over key blocks with a running max and sum, per query block; base-2 exponentials."""
  q_len, key_len, dtype = q.shape[1], k.shape[1], q.dtype
  # exp2 with log2(e) folded into the query scale saves a multiply per score.
  q_blocks = _blocks(q * (math.log2(math.e) * scale), block_q)  # nq B N bq K
  k_blocks = _blocks(k, block_kv).swapaxes(-1, -2)  # nk B N K bkv: each tile is a plain matmul
  v_blocks = _blocks(v, block_kv)
  valid, valid_xs = _key_mask(k_blocks.shape[0], block_kv, key_len, kv_len)

  def one_query_block(q_block):  # B N bq K
    def step(carry, kv):
      running_max, running_sum, acc = carry
      k_block, v_block, key_valid = kv
      scores = jnp.einsum("bnqk,bnks->bnqs", q_block, k_block, preferred_element_type=jnp.float32)
      if valid is not None:
        scores = jnp.where(key_valid, scores, _MASKED)
      new_max = jnp.maximum(running_max, scores.max(-1, keepdims=True))
      probs = jnp.exp2(scores - new_max)
      correction = jnp.exp2(running_max - new_max)
      running_sum = running_sum * correction + probs.sum(-1, keepdims=True)
      acc = acc * correction + jnp.einsum("bnqs,bnsk->bnqk", probs.astype(dtype), v_block,
                                          preferred_element_type=jnp.float32)
      return (new_max, running_sum, acc), None

    # *_like keeps q's varying mesh axes inside shard_map, as scan carries must.
    stats = jnp.zeros_like(q_block[..., :1], jnp.float32)
    init = (stats - jnp.inf, stats, jnp.zeros_like(q_block, jnp.float32))
    (running_max, running_sum, acc), _ = jax.lax.scan(step, init, (k_blocks, v_blocks, valid_xs))
    return (acc / running_sum).astype(dtype), (running_max + jnp.log2(running_sum)) * math.log(2)

  out, lse = jax.lax.map(one_query_block, q_blocks)  # nq B N bq K, nq B N bq 1
  return _unblocks(out, q_len), _unblocks(lse, q_len)[..., 0]


def _flash_fwd(q, k, v, kv_len, scale, block_q, block_kv, one_head):
  out, lse = _flash_forward(q, k, v, kv_len, scale, block_q, block_kv, one_head)
  return (out, lse), (q, k, v, kv_len, out, lse)


def _flash_bwd(scale, block_q, block_kv, one_head, residuals, cotangents):
  """Flash-attention backward: per key block, per query block, recompute p = exp(s - lse).

  With delta = rowsum(dout * out) - dlse: ds = p (dout v^T - delta), dq = scale ds k,
  dk = scale ds^T q, dv = p^T dout (the dlse term carries gradients of the returned lse).
  """
  q, k, v, kv_len, out, lse = residuals
  d_out, d_lse = cotangents
  delta = jnp.einsum("blnk,blnk->bln", d_out.astype(jnp.float32), out.astype(jnp.float32)) - d_lse
  backward = lambda *xs: _flash_backward_tiles(*xs, kv_len, scale, block_q, block_kv)
  return (*_heads_in_turn(backward, (q, k, v, d_out, lse, delta), one_head), None)


def _flash_backward_tiles(q, k, v, d_out, lse, delta, kv_len, scale, block_q, block_kv):
  """`_flash_bwd` for inputs `[B, L, N, K]` and lse, delta `[B, L, N]`: (dq, dk, dv)."""
  q_len, key_len, dtype = q.shape[1], k.shape[1], q.dtype
  q_blocks = _blocks(q * scale, block_q)  # nq B N bq K
  do_blocks = _blocks(d_out.astype(dtype), block_q)
  lse_blocks, delta_blocks = _blocks(lse, block_q), _blocks(delta, block_q)  # nq B N bq 1
  k_blocks, v_blocks = _blocks(k, block_kv), _blocks(v, block_kv)  # nk B N bkv K
  valid, valid_xs = _key_mask(k_blocks.shape[0], block_kv, key_len, kv_len)

  def one_key_block(dq, kv):
    k_block, v_block, key_valid = kv

    def step(carry, xs):
      dk, dv = carry
      q_block, do_block, lse_block, delta_block, dq_block = xs
      scores = jnp.einsum("bnqk,bnsk->bnqs", q_block, k_block, preferred_element_type=jnp.float32)
      if valid is not None:
        scores = jnp.where(key_valid, scores, _MASKED)
      probs = jnp.exp(scores - lse_block)
      dv = dv + jnp.einsum("bnqs,bnqk->bnsk", probs.astype(dtype), do_block, preferred_element_type=jnp.float32)
      d_probs = jnp.einsum("bnqk,bnsk->bnqs", do_block, v_block, preferred_element_type=jnp.float32)
      d_scores = (probs * (d_probs - delta_block)).astype(dtype)
      dq_block = dq_block + scale * jnp.einsum("bnqs,bnsk->bnqk", d_scores, k_block,
                                               preferred_element_type=jnp.float32)
      dk = dk + jnp.einsum("bnqs,bnqk->bnsk", d_scores, q_block, preferred_element_type=jnp.float32)
      return (dk, dv), dq_block

    zeros = jnp.zeros_like(k_block, jnp.float32)
    (dk, dv), dq = jax.lax.scan(step, (zeros, zeros), (q_blocks, do_blocks, lse_blocks, delta_blocks, dq))
    return dq, (dk, dv)

  dq = jnp.zeros_like(q_blocks, jnp.float32)
  dq, (dk, dv) = jax.lax.scan(one_key_block, dq, (k_blocks, v_blocks, valid_xs))
  return (_unblocks(dq, q_len).astype(dtype), _unblocks(dk, key_len).astype(k.dtype),
          _unblocks(dv, key_len).astype(v.dtype))


_flash.defvjp(_flash_fwd, _flash_bwd)


def _pad(x: jax.Array, length: int) -> jax.Array:
  """Zero-pads the token axis (1) of `[B, L, N, K]` to `length`."""
  return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))


def frame_aligned_attention(q: jax.Array, k: jax.Array, v: jax.Array, frame_k: jax.Array, frame_v: jax.Array, *,
                            key_log_scale: float = 0.0, implementation: Implementation = "auto") -> jax.Array:
  """Self-attention of F equal frames plus, per frame j >= 1, the F - 1 extra frames' frame j - 1.

  q, k, v `[B, F*T, N, K]` (T tokens a frame); frame_k, frame_v `[B, (F-1)*T, N, K]` -> `[B, F*T, N, K]`.
  Query frame j attends to all of k plus frame j - 1 of frame_k (frame 0: none), as the
  Wan-Animate-2 generation pass does. No mask: one attention over k, one per-frame attention with
  the frames folded into the batch, merged by log-sum-exp; memory stays linear in the tokens, and
  each part runs on the platform kernel (and its context-parallel split under a sharding plan).
  `key_log_scale` (DiffSynth's `log_scale`) adds that much to every query's scores of k's frame 1,
  as a third part of the merge.
  """
  batch, length, heads, depth = q.shape
  per_frame = length - frame_k.shape[1]
  if per_frame <= 0 or length % per_frame or frame_k.shape != frame_v.shape or k.shape[1] != length:
    raise ValueError(f"frame_aligned_attention: q {q.shape} and k {k.shape} must hold one frame more than frame_k "
                     f"{frame_k.shape} and frame_v {frame_v.shape}, of equally many tokens")
  frames = length // per_frame
  full = functools.partial(attention, implementation=implementation, return_lse=True)
  if key_log_scale:
    # Frame 1's keys apart from the others, their log-sum-exp shifted by the bias.
    first = slice(per_frame, 2 * per_frame)
    rest = lambda x: jnp.concatenate([x[:, :per_frame], x[:, 2 * per_frame:]], axis=1)
    biased_out, biased_lse = full(q, k[:, first], v[:, first])
    out, lse = merge_partials([full(q, rest(k), rest(v)), (biased_out, biased_lse + key_log_scale)])
  else:
    out, lse = full(q, k, v)
  fold = lambda x: x.reshape(batch * (frames - 1), per_frame, heads, depth)  # frames into the batch
  frame_out, frame_lse = full(fold(q[:, per_frame:]), fold(frame_k), fold(frame_v))
  later, _ = merge_partials([(out[:, per_frame:], lse[:, per_frame:]),
                             (frame_out.reshape(batch, -1, heads, depth), frame_lse.reshape(batch, -1, heads))])
  return jnp.concatenate([out[:, :per_frame].astype(jnp.float32), later], axis=1).astype(q.dtype)
