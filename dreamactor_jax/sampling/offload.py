"""Weights kept in host memory while idle, put on the device when used: Wan2.2 A14B's two experts,
of which only the active one is on the device (docs/sampling.md, "Wan2.2 A14B").

An array moves between the accelerator's memory ("device") and page-locked host memory
("pinned_host") keeping its sharding: on several devices each shard goes to and from its own
device's host, so a sharded expert is offloaded sharded. Pinned pages are what the DMA engines copy
from at the bus's speed (pageable numpy memory goes through a staging copy). The host copy stays
while the device copy is made and dropped, so a switch costs one host-to-device copy of the expert
(`nbytes`), and no copy back.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import numpy as np

Memory = Literal["device", "pinned_host"]


def place(tree: Any, memory: Memory, shardings: Any = None) -> Any:
  """`tree`'s arrays in `memory`, with `shardings` (a tree like `tree`'s, e.g. `plan.param_shardings`)
  or else each array's own sharding (a numpy array: the default device's)."""
  if shardings is None:
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda a: a.sharding if isinstance(a, jax.Array) else default, tree)
  return jax.device_put(tree, jax.tree.map(lambda s: s.with_memory_kind(memory), shardings))


def nbytes(tree: Any) -> int:
  """Bytes of `tree`'s arrays: what moving it to one device copies (a replicated shard copies once per device)."""
  return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree))
