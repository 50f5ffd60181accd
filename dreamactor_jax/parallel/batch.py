"""Per-host batch assembly: each process loads its share of the examples (Grain's
`[process_index::process_count]`), and the global batch is made from the pieces without copies
between hosts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from dreamactor_jax.parallel.rules import ShardingPlan


def global_batch(local: Mapping[str, Any], plan: ShardingPlan) -> dict[str, Any]:
  """Host-local examples `{name: [b, ...]}` -> global arrays `[b * process_count, ...]` split on `batch`.

  Numeric entries become `jax.Array`s sharded over the `batch` mesh axes (other axes replicated);
  strings (video ids) stay host-local numpy. The global batch must divide the batch mesh axes.
  """
  batch_size = plan.axis_size("batch")
  out = {}
  for name, value in local.items():
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
      out[name] = value
      continue
    global_size = value.shape[0] * jax.process_count()
    if global_size % batch_size:
      raise ValueError(f"global batch {global_size} ({name!r}: {value.shape[0]} per host x {jax.process_count()} "
                       f"hosts) is not divisible by mesh axes {plan.mesh_axes('batch')} of size {batch_size} "
                       f"(parallel.rules.batch)")
    sharding = plan.sharding(("batch",) + (None,) * (value.ndim - 1))
    out[name] = jax.make_array_from_process_local_data(sharding, value, (global_size, *value.shape[1:]))
  return out
