"""Import of PyTorch Wan2.1 and Wan-Animate-2 DiT checkpoints (diffusers or original layout) and
export back (dit_keys.py has the names).

Import is strict: every tensor must be used, present and of the right shape, or one error lists
the missing, unexpected and mis-shaped names. Tensors stream one at a time from memory-mapped
files into the destination (memory or a disk-backed staging array), so a 14B checkpoint never has
two copies in RAM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dreamactor_jax.checkpoints import dit_keys, torch_import
from dreamactor_jax.checkpoints.dit_keys import Layout
from dreamactor_jax.checkpoints.tensor_files import open_tensors, write_safetensors
from dreamactor_jax.models.dit import DiTConfig
from dreamactor_jax.models.text_encoder import TEXT_LEN

# diffusers' WanAnimate2Transformer3DModel fixes the CLIP width of its image branch.
ANIMATE2_IMAGE_DIM = 1280


def _config_hints(src: Path) -> dict:
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  return json.loads(config_file.read_text()) if config_file.exists() else {}


def read_torch_dit(src: str | os.PathLike, *, num_heads: int | None = None) -> tuple[dict[str, np.ndarray], Layout, DiTConfig]:
  """Opens a DiT checkpoint lazily; returns its tensors (original prefix stripped), layout and config.

  A Wan-Animate-2 checkpoint (told by its names; a config.json class must agree) gives a config
  with `layout="animate2"`.
  """
  src = Path(src)
  stored = open_tensors(src)
  tensors = {name: stored[full] for name, full in dit_keys.strip_prefix(stored).items()}
  hints = _config_hints(src)
  layout, animate2 = dit_keys.detect_layout(tensors, str(src), class_name=hints.get("_class_name"))
  if num_heads is not None:
    hints["num_heads"] = num_heads
  return tensors, layout, dit_keys.infer_config(tensors, layout, animate2=animate2, hints=hints, source=str(src))


def export_config(config: DiTConfig, layout: Layout) -> dict:
  """The config.json each layout's own loader expects.

  Wan-Animate-2 gets the arguments of diffusers' `WanAnimate2Transformer3DModel` in both layouts:
  that class takes the original Wan names, and its single-file loader reads the official file.
  """
  if config.layout == "animate2":
    if config.image_dim not in (None, ANIMATE2_IMAGE_DIM):
      raise ValueError(f"Wan-Animate-2 export needs image_dim {ANIMATE2_IMAGE_DIM} or None, got {config.image_dim}")
    return {"_class_name": "WanAnimate2Transformer3DModel", "patch_size": list(config.patch_size),
            "text_len": config.text_len or TEXT_LEN, "in_dim": config.in_channels, "dim": config.dim,
            "ffn_dim": config.ffn_dim, "freq_dim": config.freq_dim, "text_dim": config.text_dim,
            "out_dim": config.out_channels, "num_heads": config.num_heads, "num_layers": config.num_layers,
            "cross_attn_norm": True, "eps": config.eps, "use_img_emb": config.image_dim is not None,
            **{key: getattr(config, key) for key in dit_keys.ANIMATE2_DRIVING_FIELDS}}
  if layout == "diffusers":
    return {"_class_name": "WanTransformer3DModel", "patch_size": list(config.patch_size),
            "num_attention_heads": config.num_heads, "attention_head_dim": config.head_dim,
            "in_channels": config.in_channels, "out_channels": config.out_channels, "text_dim": config.text_dim,
            "freq_dim": config.freq_dim, "ffn_dim": config.ffn_dim, "num_layers": config.num_layers,
            "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": config.eps,
            "image_dim": config.image_dim, "added_kv_proj_dim": config.dim if config.image_dim else None,
            "rope_max_seq_len": 1024}
  model_type = "i2v" if config.image_dim else "ti2v" if config.condition == "timestep" else "t2v"
  return {"_class_name": "WanModel", "model_type": model_type,
          "patch_size": list(config.patch_size), "dim": config.dim, "ffn_dim": config.ffn_dim,
          "freq_dim": config.freq_dim, "text_dim": config.text_dim, "in_dim": config.in_channels,
          "out_dim": config.out_channels, "num_heads": config.num_heads, "num_layers": config.num_layers,
          "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": config.eps}


def export_torch_dit(params: Mapping[str, np.ndarray | jax.Array], config: DiTConfig, out: str | os.PathLike, *,
                     layout: Layout = "diffusers", dtype: str = "float32", progress: bool = False) -> Path:
  """Writes our parameters as a PyTorch checkpoint folder: one safetensors file plus config.json.

  A model with LoRA adapters is exported merged: `merge_lora(model)` first (`convert export-dit` does).
  """
  if config.lora_rank:
    raise ValueError(f"export_torch_dit takes a plain model; this config has lora_rank={config.lora_rank}: "
                     "export model_params(merge_lora(model)) and its config")
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  specs = dit_keys.tensor_specs(config, layout, list(params))
  shapes, tensors = torch_import.iter_torch_tensors(params, specs, jnp.dtype(dtype))
  weights = out / "diffusion_pytorch_model.safetensors"
  write_safetensors(weights, shapes, tqdm(tensors, total=len(shapes), desc="export", unit="tensor",
                                          disable=not progress))
  tmp = out / "config.json.partial"
  tmp.write_text(json.dumps(export_config(config, layout), indent=2))
  os.replace(tmp, out / "config.json")
  return weights
