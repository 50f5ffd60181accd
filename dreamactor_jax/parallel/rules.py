"""Logical axis names, the rules table mapping them to mesh axes, and the sharding plan.

Models name tensor axes logically (weights: `layers`, `embed`, `heads`, `mlp`, ...; activations:
`batch`, `tokens`, `act_embed`, `act_heads`, `kv`). One table, `config.parallel.rules` (MaxText's
`logical_axis_rules`), maps each name to a tuple of mesh axes. A `ShardingPlan` holds the mesh, that
table and the sequence-parallel strategy; `plan.activate()` makes it the current plan while a
function is traced, so that `constrain` and the attention function see it.

Resolution of one tensor's names: each name's mesh axes, dropping axes of size 1 and axes an
earlier dimension of the same tensor already uses (`[embed, embed]` shards only the first).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dreamactor_jax.parallel.mesh import MESH_AXES, make_mesh

SequenceParallel = Literal["ulysses", "ring"]
AxisNames = Sequence[str | None]

# The logical names models use. Weights carry them as `out_sharding` metadata (models/layers.py);
# activations get them from `constrain` and the attention function.
WEIGHT_AXES = ("layers", "embed", "heads", "mlp", "norm", "text", "image", "modulation", "lora")
ACTIVATION_AXES = ("batch", "tokens", "act_embed", "act_heads", "kv")

_current: contextvars.ContextVar[ShardingPlan | None] = contextvars.ContextVar("sharding_plan", default=None)


@dataclasses.dataclass(frozen=True)
class ShardingPlan:
  """How a computation is laid out on `mesh`: logical rules plus the sequence-parallel strategy."""

  mesh: Mesh
  rules: Mapping[str, tuple[str, ...]]
  sequence_parallel: SequenceParallel = "ulysses"

  def __post_init__(self):
    for name, axes in self.rules.items():
      unknown = [axis for axis in axes if axis not in self.mesh.axis_names]
      if unknown:
        raise ValueError(f"parallel.rules.{name}={tuple(axes)} names unknown mesh axes {unknown}; "
                         f"the mesh axes are {list(self.mesh.axis_names)}")
    if self.sequence_parallel not in ("ulysses", "ring"):
      raise ValueError(f"parallel.sequence_parallel={self.sequence_parallel!r}: expected 'ulysses' or 'ring'")

  def __hash__(self) -> int:  # hashable, so a plan can be a static argument of jit
    return hash((self.mesh, tuple(sorted(self.rules.items())), self.sequence_parallel))

  @property
  def platform(self) -> str:
    """'cpu', 'gpu' or 'tpu': the backend the mesh's devices belong to (compile-only ones too)."""
    platform = self.mesh.devices.flat[0].platform
    return "gpu" if platform in ("cuda", "rocm") else platform

  def mesh_axes(self, name: str | None) -> tuple[str, ...]:
    """Mesh axes of one logical name, without axes of size 1; raises if the table lacks the name."""
    if name is None:
      return ()
    if name not in self.rules:
      raise ValueError(f"no rule for logical axis {name!r} in parallel.rules (known: {sorted(self.rules)})")
    return tuple(axis for axis in self.rules[name] if self.mesh.shape[axis] > 1)

  def axis_size(self, name: str | None) -> int:
    """How many shards logical axis `name` is split into."""
    return math.prod(self.mesh.shape[axis] for axis in self.mesh_axes(name))

  def spec(self, names: AxisNames) -> PartitionSpec:
    """The mesh `PartitionSpec` of a tensor whose axes have logical `names`."""
    used: set[str] = set()
    entries = []
    for name in names:
      axes = tuple(axis for axis in self.mesh_axes(name) if axis not in used)
      used.update(axes)
      entries.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*entries)

  def sharding(self, names: AxisNames) -> NamedSharding:
    return NamedSharding(self.mesh, self.spec(names))

  def param_shardings(self, state: Any) -> Any:
    """NamedShardings for an `nnx.State` (or abstract state) from each Variable's logical names.

    Variables without `out_sharding` metadata are replicated. Use as jit in/out shardings.
    """
    logical = nnx.get_partition_spec(state)
    return jax.tree.map(lambda spec: self.sharding(tuple(spec)), logical,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))

  @contextlib.contextmanager
  def activate(self) -> Iterator[ShardingPlan]:
    """Makes this the current plan, which `constrain` and the attention function read.

    Enter it inside the function being jitted (the plan is then part of what is traced, and a
    jitted function never mixes plans); shardings name `mesh` explicitly, so no mesh context is
    needed inside jit (`jax.set_mesh` is only allowed outside it).
    """
    token = _current.set(self)
    try:
      yield self
    finally:
      _current.reset(token)


def current_plan() -> ShardingPlan | None:
  """The plan made current by `ShardingPlan.activate`, or None (unsharded)."""
  return _current.get()


def constrain(tree: Any, names: AxisNames) -> Any:
  """Pins every array of `tree` to the current plan's sharding of `names`; no-op without a plan.

  Used at block boundaries, e.g. `constrain(x, ("batch", "tokens", "act_embed"))` for `[B, L, D]`.
  """
  plan = current_plan()
  if plan is None:
    return tree
  sharding = plan.sharding(names)
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def rules_from_config(rules: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
  """`config.parallel.rules` (`{logical: (mesh axes...)}`) as plain tuples, checking the axis names."""
  table = {}
  for name, axes in rules.items():
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    unknown = [axis for axis in axes if axis not in MESH_AXES]
    if unknown:
      raise ValueError(f"parallel.rules.{name}={axes} names unknown mesh axes {unknown}; "
                       f"the mesh axes are {list(MESH_AXES)}")
    table[name] = axes
  return table


def make_plan(mesh_config: Mapping[str, int], parallel_config: Mapping[str, Any],
              devices: Sequence[jax.Device] | None = None) -> ShardingPlan:
  """The plan of `config.mesh` and `config.parallel` over `devices` (default: all devices)."""
  return ShardingPlan(make_mesh(mesh_config, devices), rules_from_config(parallel_config["rules"]),
                      parallel_config["sequence_parallel"])
