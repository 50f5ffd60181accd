"""Layer stacks shared by the DiT and the encoders: blocks built once per layer with `nnx.vmap`
(parameters stacked on a leading `layers` axis) and run with one `jax.lax.scan`, optionally
rematerialised, so an N-layer model traces one block (STYLE.md, "Layer stacks").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import jax
from flax import nnx

# "full" recomputes the whole block in the backward pass; the others name a jax.checkpoint_policies
# policy (which activations to keep).
RematPolicy = Literal["none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable"]

BlockT = TypeVar("BlockT", bound=nnx.Module)
Carry = TypeVar("Carry")


def build_stack(make_block: Callable[[nnx.Rngs], BlockT], num_layers: int, *, rngs: nnx.Rngs) -> BlockT:
  """`num_layers` blocks from `make_block(rngs)`, each with its own keys, as one module whose
  parameters carry a leading `[layers]` axis (logical name `layers`)."""

  @nnx.split_rngs(splits=num_layers)
  @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
  def make_blocks(rngs: nnx.Rngs) -> BlockT:
    return make_block(rngs)

  return make_blocks(rngs)


def scan_stack(blocks: nnx.Module, apply_block: Callable[[Any, Carry, Any], tuple[Carry, Any]], carry: Carry,
               per_layer: Any = None, *, remat: RematPolicy = "none") -> tuple[Carry, Any]:
  """Runs the stacked `blocks` in order: `carry, out_i = apply_block(block_i, carry, per_layer_i)`.

  `per_layer`: a pytree whose leaves have a leading `[layers]` axis (or None). Returns the final
  carry and the `out_i` stacked on a leading `[layers]` axis. A plain `jax.lax.scan` over the
  split stack (not `nnx.scan`): it accepts parameters of any trace level, e.g. `jax.grad` of the
  adapters alone with the frozen base closed over.
  """
  graphdef, stacked = nnx.split(blocks)

  def step(carry: Carry, layer: tuple[nnx.State, Any]) -> tuple[Carry, Any]:
    params, inputs = layer
    return apply_block(nnx.merge(graphdef, params), carry, inputs)

  if remat != "none":
    policy = None if remat == "full" else getattr(jax.checkpoint_policies, remat)
    step = jax.checkpoint(step, policy=policy, prevent_cse=False)
  return jax.lax.scan(step, carry, (stacked, per_layer))
