"""Import of PyTorch Wan2.1 DiT checkpoints (diffusers or original layout) and export back.

Import is strict: every tensor must be used, present and of the right shape, or one error lists
the missing, unexpected and mis-shaped names. Tensors stream one at a time from memory-mapped
files into the destination (memory or a disk-backed staging array), so a 14B checkpoint never has
two copies in RAM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from dreamactor_jax.checkpoints import dit_keys
from dreamactor_jax.checkpoints.dit_keys import Layout, TensorSpec
from dreamactor_jax.checkpoints.model_state import abstract_params
from dreamactor_jax.checkpoints.tensor_files import CheckpointError, open_tensors, write_safetensors
from dreamactor_jax.models.dit import DiTConfig, WanDiT

Allocate = Callable[[str, tuple[int, ...], np.dtype], np.ndarray]


def _config_hints(src: Path) -> dict:
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  return json.loads(config_file.read_text()) if config_file.exists() else {}


def read_torch_dit(src: str | os.PathLike, *, num_heads: int | None = None) -> tuple[dict[str, np.ndarray], Layout, DiTConfig]:
  """Opens a DiT checkpoint lazily; returns its tensors (original prefix stripped), layout and config."""
  src = Path(src)
  stored = open_tensors(src)
  tensors = {name: stored[full] for name, full in dit_keys.strip_prefix(stored).items()}
  layout = dit_keys.detect_layout(tensors, str(src))
  hints = _config_hints(src)
  if num_heads is not None:
    hints["num_heads"] = num_heads
  return tensors, layout, dit_keys.infer_config(tensors, layout, hints=hints, source=str(src))


def _check_keys(tensors: Mapping[str, np.ndarray], specs: list[TensorSpec],
                shapes: Mapping[str, jax.ShapeDtypeStruct], source: str) -> None:
  """Raises one CheckpointError naming every missing, unexpected and mis-shaped tensor."""
  expected, misshaped = set(), []
  for spec in specs:
    ours = shapes[spec.path].shape
    per_tensor = ours[1:] if len(spec.torch_names) > 1 else ours
    for name in spec.torch_names:
      expected.add(name)
      if name in tensors:
        stored = tuple(tensors[name].shape)
        if dit_keys.layout_shape(stored, spec.kind, to="ours") != per_tensor:
          wanted = dit_keys.layout_shape(per_tensor, spec.kind, to="torch")
          misshaped.append(f"{name}: {stored} vs expected {wanted}")
  missing = sorted(expected - set(tensors))
  unexpected = sorted(n for n in set(tensors) - expected if not dit_keys.is_ignored(n))
  misshaped.sort()
  if missing or unexpected or misshaped:
    parts = [f"{label} ({len(items)}): {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)) if items]
    raise CheckpointError(f"{source} does not match the DiT: " + "; ".join(parts))


def stream_params(tensors: Mapping[str, np.ndarray], layout: Layout, config: DiTConfig, *, dtype: str,
                  allocate: Allocate | None = None, source: str = "checkpoint",
                  progress: bool = False) -> dict[str, np.ndarray]:
  """Our flat parameters, filled tensor by tensor into arrays from `allocate(path, shape, dtype)`."""
  allocate = allocate or (lambda path, shape, dt: np.empty(shape, dt))
  _, _, shapes = abstract_params(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  specs = dit_keys.tensor_specs(list(shapes), config.num_layers, layout)
  _check_keys(tensors, specs, shapes, source)
  params = {}
  total = sum(len(s.torch_names) for s in specs)
  with tqdm(total=total, desc="import", unit="tensor", disable=not progress) as bar:
    for spec in specs:
      target = allocate(spec.path, shapes[spec.path].shape, jnp.dtype(dtype))
      if len(spec.torch_names) > 1:
        for layer, name in enumerate(spec.torch_names):
          target[layer] = dit_keys.to_ours(tensors[name], spec.kind)
          bar.update()
      else:
        target[...] = dit_keys.to_ours(tensors[spec.torch_names[0]], spec.kind)
        bar.update()
      params[spec.path] = target
  return params


def iter_torch_tensors(params: Mapping[str, np.ndarray | jax.Array], config: DiTConfig, layout: Layout,
                       dtype: np.dtype) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], Iterator[tuple[str, np.ndarray]]]:
  """PyTorch names with shapes, and a generator of the tensors in that order, for an export."""
  specs = dit_keys.tensor_specs(list(params), config.num_layers, layout)
  shapes = {}
  for spec in specs:
    per_layer = params[spec.path].shape[1:] if len(spec.torch_names) > 1 else params[spec.path].shape
    torch_shape = dit_keys.layout_shape(per_layer, spec.kind, to="torch")
    shapes.update({name: (torch_shape, dtype) for name in spec.torch_names})

  def generate():
    for spec in specs:
      value = params[spec.path]
      for layer, name in enumerate(spec.torch_names):
        part = value[layer] if len(spec.torch_names) > 1 else value
        yield name, dit_keys.to_torch(np.asarray(part), spec.kind)

  return shapes, generate()


def export_config(config: DiTConfig, layout: Layout) -> dict:
  """The config.json each layout's own loader expects."""
  if layout == "diffusers":
    return {"_class_name": "WanTransformer3DModel", "patch_size": list(config.patch_size),
            "num_attention_heads": config.num_heads, "attention_head_dim": config.head_dim,
            "in_channels": config.in_channels, "out_channels": config.out_channels, "text_dim": config.text_dim,
            "freq_dim": config.freq_dim, "ffn_dim": config.ffn_dim, "num_layers": config.num_layers,
            "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": config.eps,
            "image_dim": config.image_dim, "added_kv_proj_dim": config.dim if config.image_dim else None,
            "rope_max_seq_len": 1024}
  return {"_class_name": "WanModel", "model_type": "i2v" if config.image_dim else "t2v",
          "patch_size": list(config.patch_size), "dim": config.dim, "ffn_dim": config.ffn_dim,
          "freq_dim": config.freq_dim, "text_dim": config.text_dim, "in_dim": config.in_channels,
          "out_dim": config.out_channels, "num_heads": config.num_heads, "num_layers": config.num_layers,
          "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": config.eps}


def export_torch_dit(params: Mapping[str, np.ndarray | jax.Array], config: DiTConfig, out: str | os.PathLike, *,
                     layout: Layout = "diffusers", dtype: str = "float32", progress: bool = False) -> Path:
  """Writes our parameters as a PyTorch checkpoint folder: one safetensors file plus config.json."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  shapes, tensors = iter_torch_tensors(params, config, layout, jnp.dtype(dtype))
  weights = out / "diffusion_pytorch_model.safetensors"
  write_safetensors(weights, shapes, tqdm(tensors, total=len(shapes), desc="export", unit="tensor",
                                          disable=not progress))
  (out / "config.json").write_text(json.dumps(export_config(config, layout), indent=2))
  return weights
