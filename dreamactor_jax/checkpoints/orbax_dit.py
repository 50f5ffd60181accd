"""Our own DiT checkpoint: an Orbax parameter tree plus config.json, in one folder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from dreamactor_jax.checkpoints.model_state import abstract_params, flatten, merge_params, unflatten
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.models.dit import DiTConfig, WanDiT


def save_dit(out: str | os.PathLike, params: Mapping[str, np.ndarray | jax.Array], config: DiTConfig) -> Path:
  """Writes `out/params` (Orbax, atomic) and `out/config.json`. Arrays may be memory-mapped."""
  out = Path(out).absolute()
  out.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(out / "params", unflatten(params), force=True)
  tmp = out / "config.json.partial"
  tmp.write_text(json.dumps(config.to_dict(), indent=2))
  os.replace(tmp, out / "config.json")
  return out


def load_dit_config(ckpt: str | os.PathLike) -> DiTConfig:
  path = Path(ckpt) / "config.json"
  if not path.exists():
    raise CheckpointError(f"{ckpt}: no config.json; is this a folder written by `convert dit`?")
  return DiTConfig.from_mapping(json.loads(path.read_text()))


def load_dit(ckpt: str | os.PathLike, *, dtype: str | None = None, **overrides) -> tuple[WanDiT, DiTConfig]:
  """Restores a model from `save_dit`'s folder; `dtype` recasts the parameters, `overrides` set
  runtime fields of the config (compute dtype, remat, attention)."""
  config = load_dit_config(ckpt)
  config = DiTConfig.from_mapping({**config.to_dict(), **overrides, **({"param_dtype": dtype} if dtype else {})})
  graphdef, state, shapes = abstract_params(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  target = unflatten({k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in shapes.items()})
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.metadata(Path(ckpt).absolute() / "params")
    stored_shapes = {k: tuple(v.shape) for k, v in flatten(dict(stored.item_metadata.tree)).items()}
    expected = {k: tuple(v.shape) for k, v in shapes.items()}
    if stored_shapes != expected:
      missing = sorted(set(expected) - set(stored_shapes))
      unexpected = sorted(set(stored_shapes) - set(expected))
      wrong = sorted(k for k in set(expected) & set(stored_shapes) if expected[k] != stored_shapes[k])
      raise CheckpointError(f"{ckpt}: params do not match config.json: missing {missing}, unexpected "
                            f"{unexpected}, wrong shape {wrong}")
    params = checkpointer.restore(Path(ckpt).absolute() / "params", target)
  return merge_params(graphdef, state, flatten(params)), config

