"""Our own model checkpoints: an Orbax parameter tree plus config.json, in one folder.

Works for every model whose class is built as `Model(config, rngs=...)` from a config dataclass
with `from_mapping`/`to_dict` (the DiT, the VAE or patch codec, UMT5, CLIP). LoRA-aware: a folder may hold a
model with its adapters, a base model to which fresh adapters are added on load, or (`save_lora`)
adapters alone, restored on top of a base folder.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from dreamactor_jax.checkpoints.model_state import abstract_params, flatten, merge_params, unflatten
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.models.dit import DiTConfig, WanDiT
from dreamactor_jax.models.lora import init_lora_params, lora_params
from dreamactor_jax.models.patch_codec import PatchCodec, PatchCodecConfig
from dreamactor_jax.models.vae import VAEConfig, WanVAE


def save_model(out: str | os.PathLike, params: Mapping[str, np.ndarray | jax.Array], config) -> Path:
  """Writes `out/params` (Orbax) and `out/config.json`. Arrays may be memory-mapped.

  Both are written in a staging folder inside `out` first; a model already in `out` is moved aside
  only once the new one is complete, so a failed or killed save leaves the old model whole.
  """
  out = Path(out).absolute()
  out.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(staging / "params", unflatten(params))
    (staging / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if (out / "params").exists():
      (out / "params").rename(staging / "replaced")  # deleted with the staging folder
    (staging / "params").rename(out / "params")
    os.replace(staging / "config.json", out / "config.json")
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out


def load_config(ckpt: str | os.PathLike, config_class):
  path = Path(ckpt) / "config.json"
  if not path.exists():
    raise CheckpointError(f"{ckpt}: no config.json; is this a folder written by `convert` or training?")
  try:
    return config_class.from_mapping(json.loads(path.read_text()))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{path}: not a {config_class.__name__} ({e})") from None


def _check_params(folder: Path) -> Path:
  """`folder/params`, after the checks that give one line where Orbax would fail obscurely: a
  missing folder, an unparsable `_METADATA`, an empty data file (Orbax fails on it from several
  threads at once, each printing a traceback)."""
  params = folder.absolute() / "params"
  if not params.is_dir():
    raise CheckpointError(f"{params}: no such folder; expected the Orbax parameters written by `convert` or training")
  try:
    metadata = json.loads((params / "_METADATA").read_bytes())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{params / '_METADATA'}: expected Orbax's JSON tree metadata "
                          f"({type(e).__name__}: {e})".splitlines()[0]) from None
  if not isinstance(metadata, dict) or "tree_metadata" not in metadata:
    raise CheckpointError(f"{params / '_METADATA'}: expected Orbax's JSON tree metadata (no tree_metadata)")
  for path in sorted(params.rglob("*")):
    if path.is_file() and path.stat().st_size == 0:
      raise CheckpointError(f"{path}: empty Orbax data file; expected the bytes of saved parameters "
                            "(the checkpoint is incomplete: convert or save it again)")
  return params


def _stored_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
  params = _check_params(folder)
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.metadata(params)
  if stored.item_metadata is None:
    raise CheckpointError(f"{params}: Orbax cannot read the parameter tree; expected a checkpoint written by "
                          "`convert` or training")
  return {k: tuple(v.shape) for k, v in flatten(dict(stored.item_metadata.tree)).items()}


def _restore(folder: Path, shapes: Mapping[str, jax.ShapeDtypeStruct], what: str) -> dict[str, jax.Array]:
  """The flat parameters of `folder/params`, which must be exactly `shapes` (cast to their dtypes)."""
  stored = _stored_shapes(folder)
  expected = {k: tuple(v.shape) for k, v in shapes.items()}
  if stored != expected:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
    raise CheckpointError(f"{folder}: params do not match {what}: missing {missing}, unexpected {unexpected}, "
                          f"wrong shape {wrong}")
  target = unflatten({k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in shapes.items()})
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      return flatten(checkpointer.restore(folder.absolute() / "params", target))
  except Exception as e:  # Orbax wraps tensorstore's error (corrupt or truncated data) in a bare Exception
    cause = e
    while cause.__cause__ is not None:
      cause = cause.__cause__
    raise CheckpointError(f"{folder / 'params'}: cannot read the saved parameters "
                          f"({type(cause).__name__}: {cause})".splitlines()[0]) from None


def load_model(ckpt: str | os.PathLike, model_class, config_class, *, dtype: str | None = None,
               lora: str | os.PathLike | None = None, lora_seed: int = 0, **overrides):
  """Restores `(model, config)` from `save_model`'s folder; `dtype` recasts the parameters,
  `overrides` set runtime fields of the config (compute dtype, remat, attention, ...).

  LoRA (models with `nnx.LoRAParam` adapters: the DiT): a folder saved with adapters restores
  them; `lora_rank=r` (and `lora_alpha`, `lora_targets`, `lora_dtype`) on a folder without adapters
  adds fresh ones (B zero, A drawn from `lora_seed`: the function is unchanged); `lora=folder`
  takes the adapters and their `lora_*` config from a `save_lora` folder, the base from `ckpt`.
  """
  ckpt = Path(ckpt)
  config = load_config(ckpt, config_class)
  stored = _stored_shapes(ckpt)
  if stored and all(k.endswith((".lora_a", ".lora_b")) for k in stored):
    raise CheckpointError(f"{ckpt} holds only LoRA adapters (save_lora); load it as load_dit(base_folder, lora=...)")
  stored_rank = getattr(config, "lora_rank", 0)
  lora_overrides = sorted(k for k in overrides if k.startswith("lora_"))
  if stored_rank and (lora_overrides or lora is not None):
    raise CheckpointError(f"{ckpt} holds LoRA adapters (lora_rank={stored_rank} in its config.json); load it without "
                          f"{'lora=' if lora is not None else ', '.join(lora_overrides)}, then merge_lora() for a "
                          "plain model")
  values = config.to_dict()
  if lora is not None:
    lora = Path(lora)
    values.update({k: v for k, v in load_config(lora, config_class).to_dict().items() if k.startswith("lora_")})
  config = config_class.from_mapping({**values, **overrides, **({"param_dtype": dtype} if dtype else {})})
  graphdef, state, shapes = abstract_params(lambda: model_class(config, rngs=nnx.Rngs(0)))
  adapters = set(flatten(nnx.to_pure_dict(nnx.filter_state(state, nnx.LoRAParam))))
  base_shapes = {k: v for k, v in shapes.items() if k not in adapters}
  if lora is not None:
    params = {**_restore(ckpt, base_shapes, "the base model"),
              **_restore(lora, {k: shapes[k] for k in adapters}, f"the adapters of {config_class.__name__}")}
  elif adapters and not adapters & set(stored):
    params = {**_restore(ckpt, base_shapes, "config.json"), **init_lora_params(model_class, config, seed=lora_seed)}
  else:
    params = _restore(ckpt, shapes, "config.json")
  return merge_params(graphdef, state, params), config


def save_lora(out: str | os.PathLike, model) -> Path:
  """Writes only the adapters of a LoRA model (and its config.json): `load_dit(base, lora=out)` reads them."""
  adapters = lora_params(model)
  if not adapters:
    raise ValueError("save_lora: the model has no LoRA adapters (lora_rank=0)")
  return save_model(out, adapters, model.config)


load_dit = functools.partial(load_model, model_class=WanDiT, config_class=DiTConfig)


def _codec_classes(ckpt: str | os.PathLike) -> tuple[type, type]:
  """(model, config) classes of a codec folder: the `PatchCodec` when its config.json says
  `"codec": "patch"` (the demo's), else the Wan VAE."""
  path = Path(ckpt) / "config.json"
  patch = path.is_file() and json.loads(path.read_text()).get("codec") == "patch"
  return (PatchCodec, PatchCodecConfig) if patch else (WanVAE, VAEConfig)


def load_codec(ckpt: str | os.PathLike) -> tuple[WanVAE | PatchCodec, VAEConfig | PatchCodecConfig]:
  """The latent codec of a `save_model` folder (`_codec_classes`)."""
  return load_model(ckpt, *_codec_classes(ckpt))


def load_codec_config(ckpt: str | os.PathLike) -> VAEConfig | PatchCodecConfig:
  """The config of a codec folder alone (`_codec_classes`), without its parameters."""
  return load_config(ckpt, _codec_classes(ckpt)[1])
