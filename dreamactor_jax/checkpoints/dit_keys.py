"""Names and layouts of Wan2.1 DiT tensors in PyTorch checkpoints (WAN.md, "Checkpoint key names").

Two layouts exist: diffusers (`WanTransformer3DModel`) and the original Wan code
(`wan/modules/model.py`, optionally prefixed `model.diffusion_model.`). Each of our parameters maps
to one tensor per layout (per layer for the stacked blocks), with a fixed transform between our
channels-last layout and PyTorch's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

from dreamactor_jax.checkpoints import torch_import
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.checkpoints.torch_import import TensorSpec
from dreamactor_jax.models.dit import DiTConfig

Layout = Literal["diffusers", "original"]
ORIGINAL_PREFIX = "model.diffusion_model."

# Our module path -> (diffusers module, original module). "{i}" is the block index.
_MODULES: dict[str, tuple[str, str]] = {
    "time_embed.up": ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    "time_embed.down": ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    "time_proj": ("condition_embedder.time_proj", "time_projection.1"),
    "text_embed.up": ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    "text_embed.down": ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    "image_embed.norm_in": ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    "image_embed.mlp.up": ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    "image_embed.mlp.down": ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    "image_embed.norm_out": ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    "blocks.self_attn.q": ("blocks.{i}.attn1.to_q", "blocks.{i}.self_attn.q"),
    "blocks.self_attn.k": ("blocks.{i}.attn1.to_k", "blocks.{i}.self_attn.k"),
    "blocks.self_attn.v": ("blocks.{i}.attn1.to_v", "blocks.{i}.self_attn.v"),
    "blocks.self_attn.out": ("blocks.{i}.attn1.to_out.0", "blocks.{i}.self_attn.o"),
    "blocks.self_attn.norm_q": ("blocks.{i}.attn1.norm_q", "blocks.{i}.self_attn.norm_q"),
    "blocks.self_attn.norm_k": ("blocks.{i}.attn1.norm_k", "blocks.{i}.self_attn.norm_k"),
    "blocks.cross_attn.q": ("blocks.{i}.attn2.to_q", "blocks.{i}.cross_attn.q"),
    "blocks.cross_attn.k": ("blocks.{i}.attn2.to_k", "blocks.{i}.cross_attn.k"),
    "blocks.cross_attn.v": ("blocks.{i}.attn2.to_v", "blocks.{i}.cross_attn.v"),
    "blocks.cross_attn.out": ("blocks.{i}.attn2.to_out.0", "blocks.{i}.cross_attn.o"),
    "blocks.cross_attn.norm_q": ("blocks.{i}.attn2.norm_q", "blocks.{i}.cross_attn.norm_q"),
    "blocks.cross_attn.norm_k": ("blocks.{i}.attn2.norm_k", "blocks.{i}.cross_attn.norm_k"),
    "blocks.cross_attn.image_k": ("blocks.{i}.attn2.add_k_proj", "blocks.{i}.cross_attn.k_img"),
    "blocks.cross_attn.image_v": ("blocks.{i}.attn2.add_v_proj", "blocks.{i}.cross_attn.v_img"),
    "blocks.cross_attn.norm_image_k": ("blocks.{i}.attn2.norm_added_k", "blocks.{i}.cross_attn.norm_k_img"),
    # The affine cross-attention norm is norm2 in diffusers but norm3 in the original (WAN.md).
    "blocks.norm_cross": ("blocks.{i}.norm2", "blocks.{i}.norm3"),
    "blocks.ffn.up": ("blocks.{i}.ffn.net.0.proj", "blocks.{i}.ffn.0"),
    "blocks.ffn.down": ("blocks.{i}.ffn.net.2", "blocks.{i}.ffn.2"),
    "head": ("proj_out", "head.head"),
}
# Our parameters that are whole tensors rather than module.leaf pairs.
_TENSORS: dict[str, tuple[str, str]] = {
    "patch_embed": ("patch_embedding.weight", "patch_embedding.weight"),
    "patch_bias": ("patch_embedding.bias", "patch_embedding.bias"),
    "blocks.modulation": ("blocks.{i}.scale_shift_table", "blocks.{i}.modulation"),
    "head_modulation": ("scale_shift_table", "head.modulation"),
}
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias"}
# Tensors the original checkpoints carry that no computation reads.
_IGNORED = re.compile(r"^(blocks\.\d+\.attn2\.norm_added_q\.weight|freqs)$")


def tensor_specs(config: DiTConfig, layout: Layout, param_paths: list[str]) -> list[TensorSpec]:
  """The PyTorch tensor behind each of our parameter paths (dotted, as in `nnx.state`)."""
  column = 0 if layout == "diffusers" else 1
  specs = []
  for path in param_paths:
    if path in _TENSORS:
      template = _TENSORS[path][column]
      kind = {"patch_embed": "conv3d", "patch_bias": "vector"}.get(path, "table")
    else:
      module, leaf = path.rsplit(".", 1)
      if module not in _MODULES or leaf not in _LEAVES:
        raise KeyError(f"no PyTorch name for parameter {path}")
      template = f"{_MODULES[module][column]}.{_LEAVES[leaf]}"
      kind = "linear" if leaf == "kernel" else "vector"
    specs.append(TensorSpec.from_template(path, template, kind, config.num_layers))
  return specs


def strip_prefix(names: Mapping[str, object]) -> dict[str, str]:
  """Maps names without the original `model.diffusion_model.` prefix to the stored names."""
  return {name.removeprefix(ORIGINAL_PREFIX): name for name in names}


# One tensor name that only each layout has.
_PROBES = {"diffusers": "blocks.0.attn1.to_q.weight",
            "original": "blocks.0.self_attn.q.weight"}


def detect_layout(names: Mapping[str, object], source: str) -> Layout:
  return torch_import.detect_layout(names, _PROBES, model="Wan2.1 DiT", source=source)


def is_ignored(name: str) -> bool:
  return bool(_IGNORED.match(name))


def infer_config(tensors: Mapping[str, object], layout: Layout, *, hints: Mapping[str, object],
                 source: str) -> DiTConfig:
  """A DiTConfig from tensor shapes; head count and eps come from `hints` (a config.json)."""
  column = 0 if layout == "diffusers" else 1

  def shape(path: str) -> tuple[int, ...]:
    name = _TENSORS[path][column] if path in _TENSORS else f"{_MODULES[path][column]}.weight"
    name = name.format(i=0)
    if name not in tensors:
      raise CheckpointError(f"{source}: missing tensor {name}, needed to infer the model config")
    return tuple(tensors[name].shape)

  if len(shape("patch_embed")) != 5:
    raise CheckpointError(f"{source}: patch embedding has shape {shape('patch_embed')}, expected a Conv3d "
                          "weight [dim, in_channels, pt, ph, pw]")
  dim, in_channels, *patch_size = shape("patch_embed")
  num_layers = 1 + max(int(m.group(1)) for m in map(re.compile(r"^blocks\.(\d+)\.").match, tensors) if m)
  image_key = f"{_MODULES['image_embed.norm_in'][column]}.weight"
  num_heads = hints.get("num_heads") or hints.get("num_attention_heads")
  if num_heads is None:
    if dim % 128:
      raise CheckpointError(f"{source}: cannot infer the head count of dim={dim}; "
                            "pass num_heads or put a config.json beside the weights")
    num_heads = dim // 128  # every released Wan2.1 model uses head_dim 128
  return DiTConfig(
      dim=dim, num_heads=int(num_heads), num_layers=num_layers, ffn_dim=shape("blocks.ffn.up")[0],
      in_channels=in_channels, out_channels=shape("head")[0] // math.prod(patch_size),
      text_dim=shape("text_embed.up")[1], freq_dim=shape("time_embed.up")[1], patch_size=tuple(patch_size),
      image_dim=tensors[image_key].shape[0] if image_key in tensors else None,
      eps=float(hints.get("eps", 1e-6)))
