"""Import of PyTorch Wan VAE checkpoints: diffusers `AutoencoderKLWan` folders and the original
`Wan2.1_VAE.pth` (`wan/modules/vae.py`) or `Wan2.2_VAE.pth` (`wan/modules/vae2_2.py`), for any
base_dim, stage count and blocks per stage.

Our module tree follows diffusers'; the original code keeps flat `nn.Sequential`s, so its names
come from rules (residual.0/2/3/6, middle.0/1/2, head.0/2; Wan2.1's decoder stages flattened into
`upsamples.{n}`, Wan2.2's stages as `downsamples.{i}.downsamples.{j}` / `upsamples.{i}.upsamples.{j}`)
computed from the config rather than from a table written for one size. The variant (Wan2.1 or
Wan2.2's residual stages with pixel folding) is read from the tensor names and shapes.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from dreamactor_jax.checkpoints import torch_import
from dreamactor_jax.checkpoints.tensor_files import CheckpointError, open_tensors
from dreamactor_jax.checkpoints.torch_import import TensorSpec
from dreamactor_jax.models.vae import VAE_SIZES, VAEConfig

Layout = Literal["diffusers", "original"]
_LEAVES = {"kernel": "weight", "bias": "bias", "scale": "gamma"}
_ORIGINAL_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                      "conv_shortcut": "shortcut"}
_ORIGINAL_MID = {"resnets.0": "0", "attentions.0": "1", "resnets.1": "2"}


def _diffusers_module(module: str, config: VAEConfig) -> str:
  module = re.sub(r"head\.(norm_out|conv_out)$", r"\1", module)
  if not config.residual_stages:  # Wan2.1's up blocks keep a list of one upsampler
    module = re.sub(r"upsampler\.", "upsamplers.0.", module)
  return re.sub(r"\.conv$", ".resample.1", module)  # the Resample's 2D conv


def _original_module(module: str, config: VAEConfig) -> str:
  top = {"quant_conv": "conv1", "post_quant_conv": "conv2", "encoder.conv_in": "encoder.conv1",
         "decoder.conv_in": "decoder.conv1"}
  if module in top:
    return top[module]
  module = re.sub(r"head\.norm_out$", "head.0", module)
  module = re.sub(r"head\.conv_out$", "head.2", module)
  module = re.sub(r"mid_block\.(resnets\.\d|attentions\.0)", lambda m: f"middle.{_ORIGINAL_MID[m.group(1)]}", module)
  blocks = config.num_res_blocks
  if config.residual_stages:  # one Sequential per stage: its residual blocks, then the resampler
    module = re.sub(r"encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsampler)",
                    lambda m: f"encoder.downsamples.{m.group(1)}.downsamples.{m.group(3) or blocks}", module)
    module = re.sub(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsampler)",
                    lambda m: f"decoder.upsamples.{m.group(1)}.upsamples.{m.group(3) or blocks + 1}", module)
  else:
    module = module.replace("encoder.down_blocks.", "encoder.downsamples.")
    per_stage = blocks + 2  # residual blocks + the upsampler

    def flat(m: re.Match) -> str:
      stage, rest = int(m.group(1)), m.group(2)
      index = blocks + 1 if rest.startswith("upsampler") else int(rest.split(".")[1])
      return f"decoder.upsamples.{stage * per_stage + index}"

    module = re.sub(r"decoder\.up_blocks\.(\d+)\.(resnets\.\d+|upsampler)", flat, module)
  module = re.sub(r"\.(norm1|conv1|norm2|conv2|conv_shortcut)$", lambda m: "." + _ORIGINAL_RESIDUAL[m.group(1)], module)
  return re.sub(r"\.conv$", ".resample.1", module)


def _kind(path: str) -> torch_import.Kind:
  if path.endswith(".scale"):
    return "gamma2d" if ".attentions." in path else "gamma3d"
  if path.endswith(".bias"):
    return "vector"
  if ".attentions." in path:
    return "conv1x1"
  return "conv2d" if path.endswith(".conv.kernel") else "conv3d"  # a Resample's conv is 2D


def tensor_specs(config: VAEConfig, layout: Layout, param_paths: list[str]) -> list[TensorSpec]:
  """The PyTorch tensor behind each of our parameter paths (dotted, as in `nnx.state`)."""
  specs = []
  for path in param_paths:
    module, leaf = path.rsplit(".", 1)
    torch_module = _diffusers_module(module, config) if layout == "diffusers" else _original_module(module, config)
    specs.append(TensorSpec(path, (f"{torch_module}.{_LEAVES[leaf]}",), _kind(path)))
  return specs


# One tensor name that only each layout has (either variant).
_PROBES = {"diffusers": "encoder.conv_in.weight", "original": "encoder.conv1.weight"}


def detect_layout(names: Mapping[str, object], source: str) -> Layout:
  return torch_import.detect_layout(names, _PROBES, model="Wan VAE", source=source)


def _count(tensors: Mapping[str, object], prefix: str) -> int:
  """How many numbered children `{prefix}.{n}.*` the tensors hold."""
  pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
  return 1 + max((int(m.group(1)) for m in map(pattern.match, tensors) if m), default=-1)


def _block_kind(tensors: Mapping[str, object], prefix: str, layout: Layout) -> str | None:
  """"res" (its first conv's output width tells the stage's), "down3d", "down2d" or None."""
  if f"{prefix}{'.conv1' if layout == 'diffusers' else '.residual.2'}.weight" in tensors:
    return "res"
  if f"{prefix}.time_conv.weight" in tensors:
    return "down3d"
  return "down2d" if f"{prefix}.resample.1.weight" in tensors else None


def _encoder_stages(tensors: Mapping[str, object], layout: Layout, residual: bool) -> list[list[tuple[str, str]]]:
  """The encoder's blocks, `(kind, tensor prefix)`, grouped by stage (residual blocks, then a downsampling)."""
  top = "encoder.down_blocks" if layout == "diffusers" else "encoder.downsamples"
  if residual:
    stages = []
    for i in range(_count(tensors, top)):
      if layout == "diffusers":
        prefixes = [f"{top}.{i}.resnets.{j}" for j in range(_count(tensors, f"{top}.{i}.resnets"))]
        prefixes.append(f"{top}.{i}.downsampler")
      else:
        prefixes = [f"{top}.{i}.downsamples.{j}" for j in range(_count(tensors, f"{top}.{i}.downsamples"))]
      stages.append([(kind, p) for p in prefixes if (kind := _block_kind(tensors, p, layout))])
    return stages
  stages = [[]]
  for n in range(_count(tensors, top)):  # Wan2.1: one flat list; a stage ends with its downsampling
    stages[-1].append((_block_kind(tensors, f"{top}.{n}", layout), f"{top}.{n}"))
    if stages[-1][-1][0] != "res":
      stages.append([])
  return stages


def infer_config(tensors: Mapping[str, np.ndarray], layout: Layout, *, hints: Mapping[str, object],
                 source: str) -> VAEConfig:
  """A VAEConfig from the tensor names and shapes (a diffusers config.json may also give the latent stats)."""
  if hints.get("attn_scales"):
    raise CheckpointError(f"{source}: config.json has attn_scales={hints['attn_scales']}; "
                          "Wan VAEs have attention only in the middle blocks")
  diffusers = layout == "diffusers"
  residual = any(name.startswith("encoder.down_blocks.0.resnets." if diffusers else "encoder.downsamples.0.downsamples.")
                 for name in tensors)
  stages = _encoder_stages(tensors, layout, residual)
  res_counts = [sum(kind == "res" for kind, _ in stage) for stage in stages]
  downs = [stage[-1][0] if stage and stage[-1][0] != "res" else None for stage in stages]
  if len(stages) < 2 or None in downs[:-1] or downs[-1] or len(set(res_counts)) != 1 or not res_counts[0]:
    raise CheckpointError(f"{source}: cannot read the encoder's stages (residual blocks {res_counts}, "
                          f"downsamplings {downs}); expected as many residual blocks in every stage and a "
                          "downsampling after each but the last")
  conv1 = ".conv1.weight" if diffusers else ".residual.2.weight"
  stage_outputs = [tensors[stage[res_counts[0] - 1][1] + conv1].shape[0] for stage in stages]
  conv_in = tensors["encoder.conv_in.weight" if diffusers else "encoder.conv1.weight"]
  base_dim, pixel_channels = conv_in.shape[:2]
  patch_size = math.isqrt(pixel_channels // 3)
  if 3 * patch_size ** 2 != pixel_channels:
    raise CheckpointError(f"{source}: the encoder's first conv reads {pixel_channels} channels; expected 3 p^2 "
                          "(RGB with p x p pixel blocks folded in)")
  dim_mult = tuple(out // base_dim for out in stage_outputs)
  decoder_width = tensors["decoder.conv_out.weight" if diffusers else "decoder.head.2.weight"].shape[1] // dim_mult[0]
  z_dim = tensors["post_quant_conv.weight" if diffusers else "conv2.weight"].shape[0]
  config = {
      "base_dim": base_dim, "z_dim": z_dim, "num_res_blocks": res_counts[0], "dim_mult": dim_mult,
      "temporal_downsample": tuple(down == "down3d" for down in downs[:-1]),
      "decoder_base_dim": None if decoder_width == base_dim else decoder_width,
      "patch_size": patch_size, "residual_stages": residual,
  }
  # Latent statistics: config.json's, else those of the released VAE of this variant and width.
  released = next((c for c in VAE_SIZES.values() if (c.residual_stages, c.z_dim) == (residual, z_dim)), VAEConfig())
  for key in ("latents_mean", "latents_std"):
    config[key] = tuple(hints[key]) if hints.get(key) is not None else getattr(released, key)
  return VAEConfig.from_mapping(config)


def read_torch_vae(src: str | os.PathLike) -> tuple[dict[str, np.ndarray], Layout, VAEConfig]:
  """Opens a VAE checkpoint lazily; returns its tensors, layout and config."""
  src = Path(src)
  tensors = open_tensors(src)
  layout = detect_layout(tensors, str(src))
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  hints = json.loads(config_file.read_text()) if config_file.exists() and layout == "diffusers" else {}
  return tensors, layout, infer_config(tensors, layout, hints=hints, source=str(src))
