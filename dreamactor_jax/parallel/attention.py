"""Sequence-parallel attention with `jax.shard_map`: Ulysses (all-to-all) and ring (ppermute).

Activations outside attention are `[B, L, N, K]` with tokens split over the `tokens` mesh axes
(`context`). Attention needs every key for every query, so it runs inside a `shard_map`:

- `ulysses`: two all-to-alls swap the token split for a head split around a local attention core
  (every device sees all tokens of N / (tensor * context) heads), then swap back. Needs the heads
  to divide; 4 all-to-alls of q, k, v, out per layer, cheap on a TPU torus or NVLink.
- `ring`: queries stay put; key/value blocks travel round the context ring with `ppermute` while
  each device attends to the block it holds, merging blocks with their log-sum-exp (online
  softmax). The next block's transfer is issued before the current block's compute, so XLA's
  async collective-permute overlaps them. No head constraint; c - 1 transfers of k and v.

Keys and values whose token axis is not split (cross-attention to text/image: logical `kv`) are
whole on every device: each device attends locally, no communication. Token counts need not
divide the context size, nor align with frames or canvas halves: q, k, v are zero-padded to a
multiple of it and padded keys are masked (padded queries are cut off). Batch and heads must
divide their mesh axes. Both strategies are differentiable (shard_map transposes all-to-all and
ppermute; the cores carry their own gradients).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from dreamactor_jax.parallel.rules import ShardingPlan

# core(q, k, v, kv_len) -> out, on local [b, l, n, K] blocks; kv_len (None or an int32 scalar,
# possibly traced) is how many leading keys are real, the rest being padding to mask.
Core = Callable[[jax.Array, jax.Array, jax.Array, jax.Array | None], jax.Array]
# The same, also returning the log-sum-exp of each query's scores `[b, l, n]` fp32 (natural log).
CoreWithLse = Callable[[jax.Array, jax.Array, jax.Array, jax.Array | None], tuple[jax.Array, jax.Array]]


def sharded_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, plan: ShardingPlan, kv_tokens: str,
                      core: Core | CoreWithLse, core_with_lse: CoreWithLse, return_lse: bool = False
                      ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Attention of global q `[B, Lq, N, K]` to k, v `[B, Lk, N, K]` laid out by `plan` -> `[B, Lq, N, K]`.

  q's axes are logical (`batch`, `tokens`, `act_heads`); k and v's token axis is `kv_tokens`
  (`tokens` for self-attention layouts, `kv` for cross-attention context). With `return_lse`,
  `core` returns (out, lse) too and so does this: lse `[B, Lq, N]` fp32, laid out like q.
  """
  batch, q_len, heads, _ = q.shape
  kv_len = k.shape[1]
  for name, size, what in (("batch", batch, "batch size"), ("act_heads", heads, "head count")):
    if size % plan.axis_size(name):
      raise ValueError(f"{what} {size} is not divisible by mesh axes {plan.mesh_axes(name)} of size "
                       f"{plan.axis_size(name)} (parallel.rules.{name})")
  token_axes, kv_axes = plan.mesh_axes("tokens"), plan.mesh_axes(kv_tokens)
  context = plan.axis_size("tokens")
  if kv_axes and kv_axes != token_axes:
    raise ValueError(f"parallel.rules.{kv_tokens}={kv_axes} must be () or the same as parallel.rules.tokens={token_axes}")
  q_spec = plan.spec(("batch", "tokens", "act_heads", None))
  kv_spec = plan.spec(("batch", kv_tokens, "act_heads", None))

  lse_spec = plan.spec(("batch", "tokens", "act_heads"))

  q = _pad_tokens(q, context)
  if not kv_axes:
    local = lambda q, k, v: core(q, k, v, None)
  else:
    k, v = _pad_tokens(k, context), _pad_tokens(v, context)
    valid = None if k.shape[1] == kv_len else jnp.int32(kv_len)
    if plan.sequence_parallel == "ulysses":
      local_heads = heads // plan.axis_size("act_heads")
      if local_heads % context:
        raise ValueError(f"parallel.sequence_parallel='ulysses' splits the {local_heads} heads per device "
                         f"over context={context}, which does not divide them; use 'ring' or another mesh")
      local = lambda q, k, v: _ulysses(q, k, v, valid, axes=token_axes, core=core, return_lse=return_lse)
    else:
      local = lambda q, k, v: _ring(q, k, v, kv_len, axes=token_axes, size=context, core_with_lse=core_with_lse,
                                    return_lse=return_lse)
  # check_vma off: Pallas kernels (splash) declare no varying-axis types. The transpose then sums
  # the cotangents of inputs not split on an axis (cross-attention keys) over it, as it must.
  out_specs = (q_spec, lse_spec) if return_lse else q_spec
  result = jax.shard_map(local, mesh=plan.mesh, in_specs=(q_spec, kv_spec, kv_spec), out_specs=out_specs,
                         check_vma=False)(q, k, v)
  return jax.tree.map(lambda x: x[:, :q_len], result)


def merge_partials(partials: list[tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
  """Attention of the same queries over disjoint key sets -> attention over their union.

  Each partial is (out `[B, L, N, K]`, lse `[B, L, N]` fp32). out = sum_p exp(lse_p - lse) out_p
  with lse = logsumexp_p lse_p; returns (out fp32, lse).
  """
  lse = jax.nn.logsumexp(jnp.stack([part_lse for _, part_lse in partials]), axis=0)
  out = sum(part.astype(jnp.float32) * jnp.exp(part_lse - lse)[..., None] for part, part_lse in partials)
  return out, lse


def _ulysses(q, k, v, kv_len, *, axes: tuple[str, ...], core: Core | CoreWithLse, return_lse: bool):
  """Local blocks `[b, l/c, n, K]` -> all tokens of n/c heads -> core -> back to `[b, l/c, n, K]`."""
  to_heads = lambda x: jax.lax.all_to_all(x, axes, split_axis=2, concat_axis=1, tiled=True)
  result = core(to_heads(q), to_heads(k), to_heads(v), kv_len)
  # lse `[b, l, n/c]` swaps back like out: its heads are axis 2 too.
  return jax.tree.map(lambda x: jax.lax.all_to_all(x, axes, split_axis=1, concat_axis=2, tiled=True), result)


def _ring(q, k, v, kv_len: int, *, axes: tuple[str, ...], size: int, core_with_lse: CoreWithLse, return_lse: bool):
  """Local q `[b, lq, n, K]` against every k/v block `[b, lk, n, K]` as they pass round the ring.

  Device i starts with block i and receives block i - s at step s. Blocks merge by log-sum-exp
  (`merge_partials`), in fp32. Returns out, or (out, lse) with `return_lse`.
  """
  index = jax.lax.axis_index(axes)
  block = k.shape[1]
  send_next = [(i, (i + 1) % size) for i in range(size)]
  out = lse = None
  for step in range(size):
    # Issue the transfer of the next block before this block's compute, so the two overlap.
    k_next, v_next = (jax.lax.ppermute(x, axes, send_next) for x in (k, v)) if step + 1 < size else (None, None)
    source = (index - step) % size
    valid = None if block * size == kv_len else jnp.clip(kv_len - source * block, 0, block).astype(jnp.int32)
    part = core_with_lse(q, k, v, valid)
    out, lse = (part[0].astype(jnp.float32), part[1]) if out is None else merge_partials([(out, lse), part])
    k, v = k_next, v_next
  return (out.astype(q.dtype), lse) if return_lse else out.astype(q.dtype)


def _pad_tokens(x: jax.Array, multiple: int) -> jax.Array:
  """Zero-pads the token axis (1) of `[B, L, N, K]` up to a multiple of `multiple`."""
  pad = -x.shape[1] % multiple
  return x if pad == 0 else jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))
