"""Bridges between NNX models and flat `{dotted.path: array}` parameter dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import numpy as np
from flax import nnx


def abstract_params(build: Callable[[], nnx.Module]) -> tuple[nnx.GraphDef, nnx.State, dict[str, jax.ShapeDtypeStruct]]:
  """Builds a model abstractly (no memory); returns its graphdef, state and flat param shapes."""
  graphdef, state = nnx.split(nnx.eval_shape(build))
  return graphdef, state, flatten(nnx.to_pure_dict(state))


def flatten(tree: Mapping, prefix: str = "") -> dict:
  """Nested dict -> `{"a.b.c": leaf}`."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + "."))
    else:
      flat[path] = value
  return flat


def unflatten(flat: Mapping[str, object]) -> dict:
  """`{"a.b.c": leaf}` -> nested dict (inverse of `flatten`)."""
  tree: dict = {}
  for path, value in flat.items():
    *parents, leaf = path.split(".")
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def merge_params(graphdef: nnx.GraphDef, state: nnx.State, flat: Mapping[str, np.ndarray | jax.Array]) -> nnx.Module:
  """A concrete model from its graphdef, abstract state and flat parameter arrays."""
  nnx.replace_by_pure_dict(state, unflatten({k: jax.numpy.asarray(v) for k, v in flat.items()}))
  return nnx.merge(graphdef, state)


def model_params(model: nnx.Module) -> dict[str, jax.Array]:
  """Flat parameter arrays of a model."""
  return flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
