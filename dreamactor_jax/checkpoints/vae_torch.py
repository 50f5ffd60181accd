"""Import of PyTorch Wan2.1 VAE checkpoints: diffusers `AutoencoderKLWan` folders and the original
`Wan2.1_VAE.pth` (`wan/modules/vae.py`), for any base_dim, stage count and blocks per stage.

Our module tree follows diffusers'; the original code keeps flat `nn.Sequential`s, so its names
come from rules (residual.0/2/3/6, middle.0/1/2, head.0/2, and the decoder's stages flattened into
`upsamples.{n}`) computed from the config rather than from a table written for base_dim 96.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from dreamactor_jax.checkpoints import torch_import
from dreamactor_jax.checkpoints.tensor_files import CheckpointError, open_tensors
from dreamactor_jax.checkpoints.torch_import import TensorSpec
from dreamactor_jax.models.vae import VAEConfig

Layout = Literal["diffusers", "original"]
_LEAVES = {"kernel": "weight", "bias": "bias", "scale": "gamma"}
_ORIGINAL_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                      "conv_shortcut": "shortcut"}
_ORIGINAL_MID = {"resnets.0": "0", "attentions.0": "1", "resnets.1": "2"}


def _diffusers_module(module: str) -> str:
  module = re.sub(r"head\.(norm_out|conv_out)$", r"\1", module)
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
  module = module.replace("encoder.down_blocks.", "encoder.downsamples.")
  per_stage = config.num_res_blocks + 2  # residual blocks + the upsampler

  def flat(m: re.Match) -> str:
    stage, rest = int(m.group(1)), m.group(2)
    index = config.num_res_blocks + 1 if rest.startswith("upsampler") else int(rest.split(".")[1])
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
    torch_module = _diffusers_module(module) if layout == "diffusers" else _original_module(module, config)
    specs.append(TensorSpec(path, (f"{torch_module}.{_LEAVES[leaf]}",), _kind(path)))
  return specs


# One tensor name that only each layout has.
_PROBES = {"diffusers": "encoder.conv_in.weight",
            "original": "encoder.downsamples.0.residual.2.weight"}


def detect_layout(names: Mapping[str, object], source: str) -> Layout:
  return torch_import.detect_layout(names, _PROBES, model="Wan2.1 VAE", source=source)


def infer_config(tensors: Mapping[str, np.ndarray], layout: Layout, *, hints: Mapping[str, object],
                 source: str) -> VAEConfig:
  """A VAEConfig from the encoder's tensor shapes (a diffusers config.json may also give the latent stats)."""
  # Features of later VAEs (Wan2.2's residual blocks and patchify, attention in the stages).
  for key in ("is_residual", "patch_size", "attn_scales", "decoder_base_dim"):
    if hints.get(key):
      raise CheckpointError(f"{source}: config.json has {key}={hints[key]}; only the Wan2.1 VAE is supported")
  blocks = "encoder.down_blocks" if layout == "diffusers" else "encoder.downsamples"
  conv1 = ".conv1.weight" if layout == "diffusers" else ".residual.2.weight"
  count = 1 + max((int(m.group(1)) for m in map(re.compile(rf"^{re.escape(blocks)}\.(\d+)\.").match, tensors) if m),
                  default=-1)
  kinds = ["res" if f"{blocks}.{n}{conv1}" in tensors else
           "down3d" if f"{blocks}.{n}.time_conv.weight" in tensors else "down2d" for n in range(count)]
  if "down2d" not in kinds and "down3d" not in kinds:
    raise CheckpointError(f"{source}: cannot find the encoder's downsampling blocks under {blocks}.*")
  num_res_blocks = next(n for n, kind in enumerate(kinds) if kind != "res")
  stage_outputs = [tensors[f"{blocks}.{n}{conv1}"].shape[0] for n, kind in enumerate(kinds)
                   if kind == "res" and (n + 1 == count or kinds[n + 1] != "res")]
  base_key = "encoder.conv_in.weight" if layout == "diffusers" else "encoder.conv1.weight"
  base_dim = tensors[base_key].shape[0]
  z_key = "post_quant_conv.weight" if layout == "diffusers" else "conv2.weight"
  config = {
      "base_dim": base_dim, "z_dim": tensors[z_key].shape[0], "num_res_blocks": num_res_blocks,
      "dim_mult": tuple(out // base_dim for out in stage_outputs),
      "temporal_downsample": tuple(kind == "down3d" for kind in kinds if kind != "res"),
  }
  for ours, theirs in (("latents_mean", "latents_mean"), ("latents_std", "latents_std")):
    if hints.get(theirs) is not None:
      config[ours] = tuple(hints[theirs])
  return VAEConfig.from_mapping(config)


def read_torch_vae(src: str | os.PathLike) -> tuple[dict[str, np.ndarray], Layout, VAEConfig]:
  """Opens a VAE checkpoint lazily; returns its tensors, layout and config."""
  src = Path(src)
  tensors = open_tensors(src)
  layout = detect_layout(tensors, str(src))
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  hints = json.loads(config_file.read_text()) if config_file.exists() and layout == "diffusers" else {}
  return tensors, layout, infer_config(tensors, layout, hints=hints, source=str(src))
