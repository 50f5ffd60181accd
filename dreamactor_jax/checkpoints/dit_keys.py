"""Names and layouts of Wan2.1 DiT tensors in PyTorch checkpoints (WAN.md, "Checkpoint key names").

Two layouts exist: diffusers (`WanTransformer3DModel`) and the original Wan code
(`wan/modules/model.py`, optionally prefixed `model.diffusion_model.`). Each of our parameters maps
to one tensor per layout (per layer for the stacked blocks), with a fixed transform between our
channels-last layout and PyTorch's.

Wan-Animate-2 (a model whose config has `layout="animate2"`) has the same parameters under other
names (ANIMATE2.md, "Layouts"): its official file keeps the original names but wraps each block as
`blocks.N.block.`; its diffusers folder (`WanAnimate2Transformer3DModel`) keeps the original names
too, except the attention projections, which take diffusers' names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.checkpoints.torch_import import TensorSpec
from dreamactor_jax.models.dit import DiTConfig
from dreamactor_jax.models.text_encoder import TEXT_LEN

Layout = Literal["diffusers", "original"]
ORIGINAL_PREFIX = "model.diffusion_model."
# The diffusers class named by a config.json, and whether it is Wan-Animate-2.
_CLASS_IS_ANIMATE2 = {"WanTransformer3DModel": False, "WanAnimate2Transformer3DModel": True}

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
# Wan-Animate-2 diffusers: original attention projection names -> diffusers' (inside self_attn/cross_attn).
_ANIMATE2_ATTENTION = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "k_img": "add_k_proj",
                       "v_img": "add_v_proj", "norm_k_img": "norm_added_k"}
# Wan-Animate-2's driving-pass RoPE settings, config.json fields of the same name as ours.
ANIMATE2_DRIVING_FIELDS = ("refer_offset_t", "refer_offset_h", "refer_offset_w", "refer_stride")
ANIMATE2_SKIPPED_BLOCK = 9  # by the unconditional branch of both references
# Latent channels of the Wan2.2 VAE. A DiT that reads and writes exactly these is Wan2.2 TI2V-5B, the
# one such release, conditioned by per-token timesteps (its official config.json says model_type
# "ti2v"; its diffusers transformer config says nothing, the pipeline's expand_timesteps does).
TI2V_CHANNELS = 48
# Tensors the original checkpoints carry that no computation reads.
_IGNORED = re.compile(r"^(blocks\.\d+\.attn2\.norm_added_q\.weight|freqs)$")


def _template(key: str, layout: Layout, animate2: bool) -> str:
  """The PyTorch name of one of our modules (`_MODULES`) or whole tensors (`_TENSORS`); "{i}" is the block."""
  names = _TENSORS.get(key) or _MODULES[key]
  if not animate2:
    return names[0 if layout == "diffusers" else 1]
  original = names[1]
  if layout == "original":
    return original.replace("blocks.{i}.", "blocks.{i}.block.")
  parent, _, leaf = original.rpartition(".")
  if parent.endswith((".self_attn", ".cross_attn")) and leaf in _ANIMATE2_ATTENTION:
    return f"{parent}.{_ANIMATE2_ATTENTION[leaf]}"
  return original


def tensor_specs(config: DiTConfig, layout: Layout, param_paths: list[str]) -> list[TensorSpec]:
  """The PyTorch tensor behind each of our parameter paths (dotted, as in `nnx.state`)."""
  animate2 = config.layout == "animate2"
  specs = []
  for path in param_paths:
    if path in _TENSORS:
      template = _template(path, layout, animate2)
      kind = {"patch_embed": "conv3d", "patch_bias": "vector"}.get(path, "table")
    else:
      module, leaf = path.rsplit(".", 1)
      if module not in _MODULES or leaf not in _LEAVES:
        raise KeyError(f"no PyTorch name for parameter {path}")
      template = f"{_template(module, layout, animate2)}.{_LEAVES[leaf]}"
      kind = "linear" if leaf == "kernel" else "vector"
    specs.append(TensorSpec.from_template(path, template, kind, config.num_layers))
  return specs


def strip_prefix(names: Mapping[str, object]) -> dict[str, str]:
  """Maps names without the original `model.diffusion_model.` prefix to the stored names."""
  return {name.removeprefix(ORIGINAL_PREFIX): name for name in names}


# What marks each naming, (layout, animate2): its block self-attention query (or, official
# Wan-Animate-2, the block wrapper). Exactly one must occur.
_MARKERS = {("diffusers", False): re.compile(r"blocks\.\d+\.attn1\.to_q\."),
            ("original", False): re.compile(r"blocks\.\d+\.self_attn\.q\."),
            ("diffusers", True): re.compile(r"blocks\.\d+\.self_attn\.to_q\."),
            ("original", True): re.compile(r"blocks\.\d+\.block\.")}


def _naming(layout: Layout, animate2: bool) -> str:
  return f"{'Wan-Animate-2' if animate2 else 'Wan2.1'} {layout}"


def detect_layout(names: Mapping[str, object], source: str, *, class_name: str | None = None
                  ) -> tuple[Layout, bool]:
  """The layout of a DiT checkpoint and whether it is Wan-Animate-2, from its tensor names.

  `class_name` (a config.json `_class_name`) must agree when it is a diffusers DiT class.
  """
  found = [naming for naming, marker in _MARKERS.items() if any(marker.match(name) for name in names)]
  if not found:
    raise CheckpointError(f"{source}: not a Wan2.1 DiT checkpoint (no block self-attention named as in "
                          "diffusers or the original Wan code)")
  if len(found) > 1:
    raise CheckpointError(f"{source}: mixes the tensor names of {' and '.join(_naming(*n) for n in found)}; "
                          "expected one layout")
  layout, animate2 = found[0]
  if class_name in _CLASS_IS_ANIMATE2 and _CLASS_IS_ANIMATE2[class_name] != animate2:
    raise CheckpointError(f"{source}: config.json names {class_name} but the tensors are named as in "
                          f"{_naming(layout, animate2)}")
  return layout, animate2


def is_ignored(name: str) -> bool:
  return bool(_IGNORED.match(name))


def infer_config(tensors: Mapping[str, object], layout: Layout, *, animate2: bool = False,
                 hints: Mapping[str, object], source: str) -> DiTConfig:
  """A DiTConfig from tensor shapes; head count, eps and the Wan-Animate-2 driving offsets come
  from `hints` (a config.json). TI2V (`condition="timestep"`): 48 channels in and out, or the
  official model_type "ti2v"."""

  def shape(key: str) -> tuple[int, ...]:
    name = _template(key, layout, animate2) + ("" if key in _TENSORS else ".weight")
    name = name.format(i=0)
    if name not in tensors:
      raise CheckpointError(f"{source}: missing tensor {name}, needed to infer the model config")
    return tuple(tensors[name].shape)

  if len(shape("patch_embed")) != 5:
    raise CheckpointError(f"{source}: patch embedding has shape {shape('patch_embed')}, expected a Conv3d "
                          "weight [dim, in_channels, pt, ph, pw]")
  dim, in_channels, *patch_size = shape("patch_embed")
  num_layers = 1 + max(int(m.group(1)) for m in map(re.compile(r"^blocks\.(\d+)\.").match, tensors) if m)
  image_key = f"{_template('image_embed.norm_in', layout, animate2)}.weight"
  num_heads = hints.get("num_heads") or hints.get("num_attention_heads")
  if num_heads is None:
    if dim % 128:
      raise CheckpointError(f"{source}: cannot infer the head count of dim={dim}; "
                            "pass num_heads or put a config.json beside the weights")
    num_heads = dim // 128  # every released Wan2.1 model uses head_dim 128
  # Wan-Animate-2 runs the driving clip through the same DiT at timestep 1 with its own RoPE
  # offsets, pads text to 512 tokens, and its unconditional branch skips block 9 where there is
  # one (ANIMATE2.md, "Forward: two passes").
  animate2_fields = dict(
      layout="animate2", motion_timestep=1.0, text_len=int(hints.get("text_len", TEXT_LEN)),
      unconditional_skip_layers=(ANIMATE2_SKIPPED_BLOCK,) if num_layers > ANIMATE2_SKIPPED_BLOCK else (),
      **{key: int(hints[key]) for key in ANIMATE2_DRIVING_FIELDS if key in hints}) if animate2 else {}
  out_channels = shape("head")[0] // math.prod(patch_size)
  ti2v = hints.get("model_type") == "ti2v" or in_channels == out_channels == TI2V_CHANNELS
  return DiTConfig(
      dim=dim, num_heads=int(num_heads), num_layers=num_layers, ffn_dim=shape("blocks.ffn.up")[0],
      in_channels=in_channels, out_channels=out_channels, condition="timestep" if ti2v else "channels",
      text_dim=shape("text_embed.up")[1], freq_dim=shape("time_embed.up")[1], patch_size=tuple(patch_size),
      image_dim=tensors[image_key].shape[0] if image_key in tensors else None,
      eps=float(hints.get("eps", 1e-6)), **animate2_fields)
