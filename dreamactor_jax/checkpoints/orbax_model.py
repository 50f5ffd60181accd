"""Our own model checkpoints: an Orbax parameter tree plus config.json, in one folder.

Works for every model whose class is built as `Model(config, rngs=...)` from a config dataclass
with `from_mapping`/`to_dict` (the DiT, the VAE, UMT5, CLIP).
"""

from __future__ import annotations

import functools
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


def save_model(out: str | os.PathLike, params: Mapping[str, np.ndarray | jax.Array], config) -> Path:
  """Writes `out/params` (Orbax, atomic) and `out/config.json`. Arrays may be memory-mapped."""
  out = Path(out).absolute()
  out.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(out / "params", unflatten(params), force=True)
  tmp = out / "config.json.partial"
  tmp.write_text(json.dumps(config.to_dict(), indent=2))
  os.replace(tmp, out / "config.json")
  return out


def load_config(ckpt: str | os.PathLike, config_class):
  path = Path(ckpt) / "config.json"
  if not path.exists():
    raise CheckpointError(f"{ckpt}: no config.json; is this a folder written by `convert` or training?")
  try:
    return config_class.from_mapping(json.loads(path.read_text()))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{path}: not a {config_class.__name__} ({e})") from None


def load_model(ckpt: str | os.PathLike, model_class, config_class, *, dtype: str | None = None, **overrides):
  """Restores `(model, config)` from `save_model`'s folder; `dtype` recasts the parameters,
  `overrides` set runtime fields of the config (compute dtype, remat, attention, ...)."""
  config = load_config(ckpt, config_class)
  config = config_class.from_mapping({**config.to_dict(), **overrides, **({"param_dtype": dtype} if dtype else {})})
  graphdef, state, shapes = abstract_params(lambda: model_class(config, rngs=nnx.Rngs(0)))
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


load_dit = functools.partial(load_model, model_class=WanDiT, config_class=DiTConfig)
