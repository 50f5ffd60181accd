"""Import of PyTorch CLIP vision towers (transformers or original Wan layout) into `CLIPVisionEncoder`.

Two layouts:
- transformers `CLIPVisionModel` / `CLIPVisionModelWithProjection` / `CLIPModel` (diffusers' Wan
  I2V folders keep it under `image_encoder/`): `[vision_model.]embeddings.*`, `pre_layrnorm`,
  `encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`. The
  `vision_model.` prefix is optional: transformers 5.x saves `CLIPVisionModel` without it.
- the original Wan file `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (`XLMRobertaCLIP`
  in `wan/modules/clip.py`): `visual.{patch_embedding.weight, cls_embedding [1, 1, D],
  pos_embedding [1, L, D], pre_norm}`, `visual.transformer.{i}.{norm1, attn.to_qkv, attn.proj,
  norm2, mlp.0, mlp.2}`, with q, k, v fused in `to_qkv` ([3 * D, D], rows ordered q, k, v).

Our model holds only the blocks Wan computes (all but the last, see `models/image_encoder.py`):
`read_torch_clip` leaves the last stored block out, and `is_ignored` names the other tensors no
computation reads (post-norm, projection/head, any text tower: `textual.*`, `log_scale`;
`text_model.*`, `text_projection`, `logit_scale`), so the strict key check reports everything else.
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
from dreamactor_jax.models.image_encoder import CLIPVisionConfig

Layout = Literal["transformers", "original"]
TRANSFORMERS_PREFIX = "vision_model."
# Wan's ViT-H/14: 1280 / 16 heads = 80 (ViT-B/L use 64: those need num_heads or a config.json).
_DEFAULT_HEAD_DIM = 80

# Our module path -> (transformers module, original module). "{i}" is the block index.
_MODULES: dict[str, tuple[str, str]] = {
    "norm_pre": ("pre_layrnorm", "visual.pre_norm"),
    "blocks.norm1": ("encoder.layers.{i}.layer_norm1", "visual.transformer.{i}.norm1"),
    "blocks.attn.q": ("encoder.layers.{i}.self_attn.q_proj", "visual.transformer.{i}.attn.to_qkv"),
    "blocks.attn.k": ("encoder.layers.{i}.self_attn.k_proj", "visual.transformer.{i}.attn.to_qkv"),
    "blocks.attn.v": ("encoder.layers.{i}.self_attn.v_proj", "visual.transformer.{i}.attn.to_qkv"),
    "blocks.attn.out": ("encoder.layers.{i}.self_attn.out_proj", "visual.transformer.{i}.attn.proj"),
    "blocks.norm2": ("encoder.layers.{i}.layer_norm2", "visual.transformer.{i}.norm2"),
    "blocks.mlp.up": ("encoder.layers.{i}.mlp.fc1", "visual.transformer.{i}.mlp.0"),
    "blocks.mlp.down": ("encoder.layers.{i}.mlp.fc2", "visual.transformer.{i}.mlp.2"),
}
# Our parameters that are whole tensors: (transformers name, kind), (original name, kind).
_TENSORS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "patch_embed": (("embeddings.patch_embedding.weight", "conv2d"), ("visual.patch_embedding.weight", "conv2d")),
    "class_embed": (("embeddings.class_embedding", "vector"), ("visual.cls_embedding", "vector")),
    "pos_embed": (("embeddings.position_embedding.weight", "vector"), ("visual.pos_embedding", "table")),
}
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias"}
# Original layout: which third of the fused `to_qkv` rows each projection reads (Wan views the
# output as [B, L, 3, N, K], so rows are q, then k, then v).
_QKV_PARTS = {"blocks.attn.q": "q", "blocks.attn.k": "k", "blocks.attn.v": "v"}
_FUSED_QKV = re.compile(r"^visual\.transformer\.\d+\.attn\.to_qkv\.(weight|bias)$")
_BLOCK = {"transformers": re.compile(r"^encoder\.layers\.(\d+)\."),
          "original": re.compile(r"^visual\.transformer\.(\d+)\.")}
# Stored tensors no computation reads, besides the last block; transformers names, then original
# ones. position_ids: a buffer that transformers < 4.31 saved.
_IGNORED = re.compile(r"^(post_layernorm\.(weight|bias)|visual_projection\.weight|embeddings\.position_ids"
                      r"|text_model\..*|text_projection\.weight|logit_scale"
                      r"|visual\.post_norm\.(weight|bias)|visual\.head(\.(weight|bias))?|textual\..*|log_scale)$")


def tensor_specs(config: CLIPVisionConfig, layout: Layout, param_paths: list[str]) -> list[TensorSpec]:
  """The PyTorch tensor behind each of our parameter paths (dotted, as in `nnx.state`).

  Original-layout q/k/v name a third of the fused tensor, e.g. `visual.transformer.0.attn.to_qkv.weight[k]`
  (see `split_fused_qkv`).
  """
  column = 0 if layout == "transformers" else 1
  specs = []
  for path in param_paths:
    if path in _TENSORS:
      template, kind = _TENSORS[path][column]
    else:
      module, leaf = path.rsplit(".", 1)
      if module not in _MODULES or leaf not in _LEAVES:
        raise KeyError(f"no PyTorch name for parameter {path}")
      part = f"[{_QKV_PARTS[module]}]" if layout == "original" and module in _QKV_PARTS else ""
      template = f"{_MODULES[module][column]}.{_LEAVES[leaf]}{part}"
      kind = "linear" if leaf == "kernel" else "vector"
    specs.append(TensorSpec.from_template(path, template, kind, config.num_layers))
  return specs


def split_fused_qkv(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Original layout as one tensor per parameter: views, no copies.

  Each fused `...attn.to_qkv.{weight,bias}` becomes `...[q]`, `...[k]`, `...[v]` (row thirds; a
  fused tensor of the wrong size shows up as a wrong-shaped third in the key report), and
  `visual.cls_embedding` `[1, 1, D]` becomes `[D]` as in transformers.
  """
  out = {}
  for name, tensor in tensors.items():
    if _FUSED_QKV.match(name) and tensor.ndim >= 1:
      for part, third in zip("qkv", np.array_split(tensor, 3)):
        out[f"{name}[{part}]"] = third
    elif name == "visual.cls_embedding" and tensor.ndim == 3 and tensor.shape[:2] == (1, 1):
      out[name] = tensor.reshape(tensor.shape[2:])
    else:
      out[name] = tensor
  return out


# One tensor name that only each layout has.
_PROBES = {"transformers": "embeddings.patch_embedding.weight",
            "original": "visual.patch_embedding.weight"}


def detect_layout(names: Mapping[str, object], source: str) -> Layout:
  return torch_import.detect_layout(names, _PROBES, model="CLIP vision", source=source)


def is_ignored(name: str) -> bool:
  """Stored tensors no computation reads (post-norm, projection/head, text tower) in either layout."""
  return bool(_IGNORED.match(name))


def _block_index(name: str, layout: Layout) -> int | None:
  match = _BLOCK[layout].match(name)
  return int(match.group(1)) if match else None


def _config_hints(src: Path) -> dict:
  """The vision fields of a transformers CLIP config.json beside the weights, else nothing.

  Wan's own folders hold the DiT's config.json next to the CLIP .pth: it must not set the heads.
  """
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  if not config_file.exists():
    return {}
  config = json.loads(config_file.read_text())
  if config.get("model_type") == "clip":
    return config.get("vision_config") or {}
  return config if config.get("model_type") == "clip_vision_model" else {}


def infer_config(tensors: Mapping[str, np.ndarray], layout: Layout, *, hints: Mapping[str, object],
                 source: str) -> CLIPVisionConfig:
  """A CLIPVisionConfig from tensor shapes; heads, eps and activation from `hints` (a config.json)."""
  column = 0 if layout == "transformers" else 1

  def shape(name: str) -> tuple[int, ...]:
    if name not in tensors:
      raise CheckpointError(f"{source}: missing tensor {name}, needed to infer the model config")
    return tuple(tensors[name].shape)

  patch_shape = shape(_TENSORS["patch_embed"][column][0])
  if len(patch_shape) != 4 or patch_shape[1] != 3 or patch_shape[2] != patch_shape[3]:
    raise CheckpointError(f"{source}: patch embedding has shape {patch_shape}, expected a Conv2d weight "
                          "[dim, 3, patch, patch]")
  dim, _, patch, _ = patch_shape
  pos_shape = shape(_TENSORS["pos_embed"][column][0])
  positions = pos_shape[-2] if len(pos_shape) >= 2 else 0
  grid = math.isqrt(max(positions - 1, 0))
  if grid < 1 or grid * grid != positions - 1:
    raise CheckpointError(f"{source}: position embedding has shape {pos_shape}, expected 1 + a square number "
                          "of patch positions")
  depth = 1 + max((i for i in (_block_index(name, layout) for name in tensors) if i is not None), default=-1)
  if depth < 2:
    raise CheckpointError(f"{source}: {depth} transformer blocks; Wan reads the penultimate block's "
                          "output, so at least 2 are needed")
  num_heads = hints.get("num_heads") or hints.get("num_attention_heads")
  if num_heads is None:
    if dim % _DEFAULT_HEAD_DIM:
      raise CheckpointError(f"{source}: cannot infer the head count of dim={dim}; "
                            "pass num_heads or put a transformers config.json beside the weights")
    num_heads = dim // _DEFAULT_HEAD_DIM
  activation = hints.get("hidden_act", "gelu")  # Wan's ViT-H/14 uses exact GELU
  if activation not in ("gelu", "quick_gelu"):
    raise CheckpointError(f"{source}: hidden_act={activation!r} is not supported; expected 'gelu' or 'quick_gelu'")
  up = f"{_MODULES['blocks.mlp.up'][column].format(i=0)}.weight"
  return CLIPVisionConfig(
      image_size=grid * patch, patch_size=patch, dim=dim, ffn_dim=shape(up)[0], num_heads=int(num_heads),
      num_layers=depth - 1, eps=float(hints.get("layer_norm_eps", 1e-5)), activation=activation)


def read_torch_clip(src: str | os.PathLike, *, num_heads: int | None = None
                    ) -> tuple[dict[str, np.ndarray], Layout, CLIPVisionConfig]:
  """Opens a CLIP checkpoint lazily; returns its tensors (in the names `clip_specs` uses), layout and config.

  transformers names lose the optional `vision_model.` prefix; original fused q/k/v are split into
  views (`split_fused_qkv`). `num_layers` of the config is the stored depth minus one, and the last
  stored block, which Wan never computes, is left out of the tensors.
  """
  src = Path(src)
  stored = open_tensors(src)
  tensors = {name.removeprefix(TRANSFORMERS_PREFIX): tensor for name, tensor in stored.items()}
  layout = detect_layout(tensors, str(src))
  if layout == "original":
    tensors = split_fused_qkv(tensors)
  hints = _config_hints(src) if layout == "transformers" else {}
  if num_heads is not None:
    hints["num_heads"] = num_heads
  config = infer_config(tensors, layout, hints=hints, source=str(src))
  tensors = {name: t for name, t in tensors.items() if _block_index(name, layout) != config.num_layers}
  return tensors, layout, config
