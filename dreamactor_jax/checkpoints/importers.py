"""One import path for every PyTorch model family: read -> strict key check -> stream -> model.

A family is described by an `Importer` (how to open its files and infer the config, which PyTorch
tensor feeds each parameter); loading into memory (`load_torch`) and converting to an Orbax folder
with disk-staged parameters (`convert_to_orbax`) are then the same code for the DiT, the VAE and
the encoders.

  model, config = load_torch("dit", "Wan2.1-T2V-1.3B-Diffusers/transformer", dtype="bf16")
  vae, _ = load_torch("vae", "Wan2.1_VAE.pth", mode="single")
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from dreamactor_jax.checkpoints import clip_torch, dit_keys, dit_torch, torch_import, umt5_torch, vae_torch
from dreamactor_jax.checkpoints.model_state import abstract_params, merge_params
from dreamactor_jax.checkpoints.orbax_model import save_model
from dreamactor_jax.models.dit import DiTConfig, WanDiT, expand_input_channels
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.models.text_encoder import UMT5Config, UMT5Encoder
from dreamactor_jax.models.vae import VAEConfig, WanVAE

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "float32": "float32", "bfloat16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class Importer:
  """How one model family is read from PyTorch checkpoints."""

  name: str  # as in messages: "DiT"
  model_class: type  # built as model_class(config, rngs=...)
  config_class: type
  read: Callable[..., tuple[dict[str, np.ndarray], str, Any]]  # (src, **options) -> (tensors, layout, config)
  specs: Callable[[Any, str, list[str]], list[torch_import.TensorSpec]]  # (config, layout, our param paths)
  ignored: Callable[[str], bool] = lambda name: False
  # Options that edit the imported parameters: name -> f(params, config, value) -> (params, config).
  edits: Mapping[str, Callable] = dataclasses.field(default_factory=dict)


IMPORTERS: dict[str, Importer] = {
    "dit": Importer("DiT", WanDiT, DiTConfig, dit_torch.read_torch_dit, dit_keys.tensor_specs, dit_keys.is_ignored,
                    edits={"in_channels": expand_input_channels}),
    "vae": Importer("VAE", WanVAE, VAEConfig, vae_torch.read_torch_vae, vae_torch.tensor_specs),
    "t5": Importer("UMT5 encoder", UMT5Encoder, UMT5Config, umt5_torch.read_torch_umt5, umt5_torch.tensor_specs,
                   umt5_torch.is_ignored),
    "clip": Importer("CLIP vision encoder", CLIPVisionEncoder, CLIPVisionConfig, clip_torch.read_torch_clip,
                     clip_torch.tensor_specs, clip_torch.is_ignored),
}


def tensor_specs(kind: str, config, layout: str) -> tuple[list[torch_import.TensorSpec], dict[str, tuple[int, ...]]]:
  """The PyTorch tensor behind each parameter of a `kind` model, and our parameter shapes."""
  importer = IMPORTERS[kind]
  _, _, shapes = abstract_params(lambda: importer.model_class(config, rngs=nnx.Rngs(0)))
  shapes = {path: tuple(s.shape) for path, s in shapes.items()}
  return importer.specs(config, layout, list(shapes)), shapes


def read_params(kind: str, src: str | os.PathLike, *, dtype: str = "float32",
                allocate: torch_import.Allocate | None = None, progress: bool = False,
                **read_options) -> tuple[dict[str, np.ndarray], Any]:
  """Our flat parameters (strictly checked) and config from a PyTorch checkpoint of family `kind`.

  `read_options` go to the family's reader, except its `edits` (e.g. the DiT's `in_channels`),
  applied to the parameters afterwards when not None.
  """
  importer = IMPORTERS[kind]
  dtype = DTYPES[dtype]
  edits = {name: read_options.pop(name) for name in list(read_options) if name in importer.edits}
  tensors, layout, config = importer.read(src, **read_options)
  config = importer.config_class.from_mapping({**config.to_dict(), "param_dtype": dtype})
  specs, shapes = tensor_specs(kind, config, layout)
  torch_import.check_keys(tensors, specs, shapes, model=importer.name, source=str(src), ignored=importer.ignored)
  params = torch_import.stream_params(tensors, specs, shapes, dtype=np.dtype(dtype), allocate=allocate,
                                      progress=progress)
  for name, value in edits.items():
    if value is not None:
      params, config = importer.edits[name](params, config, value)
  return params, config


def load_torch(kind: str, src: str | os.PathLike, *, dtype: str = "float32", compute_dtype: str | None = None,
               **options) -> tuple[Any, Any]:
  """Loads a PyTorch checkpoint of family `kind` ("dit", "vae", "t5", "clip") into our model in
  memory; returns `(model, config)`.

  `dtype` is the parameter dtype ("fp32"/"float32" or "bf16"/"bfloat16"), `compute_dtype` that of
  matmuls (default: the parameter dtype). `options` are, by name, what the family's reader takes
  (dit, clip: `num_heads` when no config.json gives it; t5: `max_distance`), its edits (dit:
  `in_channels` widens the patch embedding with zeros, e.g. 36 to start the in-context model from
  T2V), or else runtime config fields (`remat`, `attention`, the VAE's `mode`, ...).
  """
  importer = IMPORTERS[kind]
  readable = set(inspect.signature(importer.read).parameters) | set(importer.edits)
  read_options = {name: value for name, value in options.items() if name in readable}
  overrides = {name: value for name, value in options.items() if name not in readable}
  params, config = read_params(kind, src, dtype=dtype, **read_options)
  return build(kind, params, config, dtype=DTYPES[compute_dtype or dtype], **overrides)


def build(kind: str, params: dict[str, np.ndarray], config, **overrides):
  """The model of family `kind` holding `params`; `overrides` set runtime config fields."""
  importer = IMPORTERS[kind]
  config = importer.config_class.from_mapping({**config.to_dict(), **overrides})
  graphdef, state, _ = abstract_params(lambda: importer.model_class(config, rngs=nnx.Rngs(0)))
  return merge_params(graphdef, state, params), config


def convert_to_orbax(kind: str, src: str | os.PathLike, out: str | os.PathLike, *, dtype: str = "float32",
                     **read_options):
  """PyTorch checkpoint -> Orbax folder (`params/` + config.json), each parameter staged on disk.

  Parameters are filled tensor by tensor into memory-mapped files beside the output, so RAM holds
  one tensor at a time whatever the model size. `read_options` as for `read_params` (e.g. the
  DiT's `in_channels`). A model already in `out` is replaced only once the new one is complete.
  Returns the config.
  """
  Path(out).mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
  try:
    def allocate(path: str, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
      return np.lib.format.open_memmap(staging / f"{path}.npy", mode="w+", dtype=dt, shape=shape)

    params, config = read_params(kind, src, dtype=dtype, allocate=allocate, progress=True, **read_options)
    save_model(out, params, config)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return config
