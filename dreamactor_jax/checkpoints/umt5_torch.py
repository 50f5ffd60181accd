"""Import of PyTorch UMT5 encoder checkpoints (WAN.md, "UMT5-XXL encoder").

Two layouts: transformers' `UMT5EncoderModel` (e.g. the `text_encoder/` folder of the diffusers Wan
repos, sharded safetensors + config.json) and Wan's own `T5Encoder` (`wan/modules/t5.py`), whose
weights ship as the pickle `models_t5_umt5-xxl-enc-bf16.pth`. The config comes from tensor shapes:
the relative bias table `[num_buckets, num_heads]` gives the head count, so no config.json is needed
(one beside the weights still supplies max distance and eps, which no shape shows).
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
from dreamactor_jax.models.text_encoder import UMT5Config

Layout = Literal["transformers", "original"]

# Our parameter path -> (transformers name, Wan T5Encoder name); "{i}" is the block index. In Wan's
# T5FeedForward `fc1(x) * gate(x)` with gate = Sequential(Linear, GELU): gate.0 is the GELU branch
# (transformers wi_0), fc1 the linear one (wi_1), fc2 the output (wo).
_NAMES: dict[str, tuple[str, str]] = {
    "token_embedding": ("shared.weight", "token_embedding.weight"),
    "blocks.norm_attn.scale": ("encoder.block.{i}.layer.0.layer_norm.weight", "blocks.{i}.norm1.weight"),
    "blocks.attn.q.kernel": ("encoder.block.{i}.layer.0.SelfAttention.q.weight", "blocks.{i}.attn.q.weight"),
    "blocks.attn.k.kernel": ("encoder.block.{i}.layer.0.SelfAttention.k.weight", "blocks.{i}.attn.k.weight"),
    "blocks.attn.v.kernel": ("encoder.block.{i}.layer.0.SelfAttention.v.weight", "blocks.{i}.attn.v.weight"),
    "blocks.attn.o.kernel": ("encoder.block.{i}.layer.0.SelfAttention.o.weight", "blocks.{i}.attn.o.weight"),
    "blocks.attn.position_bias": ("encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight",
                                  "blocks.{i}.pos_embedding.embedding.weight"),
    "blocks.norm_ffn.scale": ("encoder.block.{i}.layer.1.layer_norm.weight", "blocks.{i}.norm2.weight"),
    "blocks.ffn.gate.kernel": ("encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight", "blocks.{i}.ffn.gate.0.weight"),
    "blocks.ffn.up.kernel": ("encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight", "blocks.{i}.ffn.fc1.weight"),
    "blocks.ffn.down.kernel": ("encoder.block.{i}.layer.1.DenseReluDense.wo.weight", "blocks.{i}.ffn.fc2.weight"),
    "norm.scale": ("encoder.final_layer_norm.weight", "norm.weight"),
}
# transformers stores the tied copy of `shared` as encoder.embed_tokens; a full UMT5 checkpoint
# also carries a decoder and LM head the encoder never reads.
_IGNORED = re.compile(r"^(encoder\.embed_tokens\.weight|lm_head\.weight|decoder\..*)$")
_TIED_EMBEDDING = "encoder.embed_tokens.weight"


def tensor_specs(config: UMT5Config, layout: Layout, param_paths: list[str]) -> list[TensorSpec]:
  """The PyTorch tensor behind each of our parameter paths (dotted, as in `nnx.state`)."""
  column = 0 if layout == "transformers" else 1
  return [TensorSpec.from_template(path, _NAMES[path][column], "linear" if path.endswith(".kernel") else "vector",
                                   config.num_layers) for path in param_paths]


# One tensor name that only each layout has.
_PROBES = {"transformers": "encoder.block.0.layer.0.SelfAttention.q.weight",
            "original": "blocks.0.attn.q.weight"}


def detect_layout(names: Mapping[str, object], source: str) -> Layout:
  return torch_import.detect_layout(names, _PROBES, model="UMT5 encoder", source=source)


def is_ignored(name: str) -> bool:
  return bool(_IGNORED.match(name))


def infer_config(tensors: Mapping[str, np.ndarray], layout: Layout, *, hints: Mapping[str, object],
                 source: str) -> UMT5Config:
  """A UMT5Config from tensor shapes; max distance and eps from `hints` (a transformers config.json)."""
  column = 0 if layout == "transformers" else 1

  def shape(path: str, rank: int) -> tuple[int, ...]:
    name = _NAMES[path][column].format(i=0)
    if name not in tensors:
      raise CheckpointError(f"{source}: missing tensor {name}, needed to infer the model config")
    if len(tensors[name].shape) != rank:
      raise CheckpointError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, expected rank {rank}")
    return tuple(tensors[name].shape)

  if hints.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
    raise CheckpointError(f"{source}: config.json feed_forward_proj={hints['feed_forward_proj']!r}, "
                          "expected 'gated-gelu' (UMT5)")
  vocab_size, dim = shape("token_embedding", 2)
  num_buckets, num_heads = shape("blocks.attn.position_bias", 2)
  inner = shape("blocks.attn.q.kernel", 2)[0]
  if inner % num_heads:
    raise CheckpointError(f"{source}: q projection width {inner} is not a multiple of the {num_heads} heads "
                          "of the relative bias table")
  prefix = re.compile(r"^encoder\.block\.(\d+)\." if layout == "transformers" else r"^blocks\.(\d+)\.")
  num_layers = 1 + max(int(m.group(1)) for m in map(prefix.match, tensors) if m)
  return UMT5Config(vocab_size=vocab_size, dim=dim, ffn_dim=shape("blocks.ffn.gate.kernel", 2)[0],
                    num_heads=num_heads, head_dim=inner // num_heads, num_layers=num_layers,
                    num_buckets=num_buckets, max_distance=int(hints.get("relative_attention_max_distance", 128)),
                    eps=float(hints.get("layer_norm_epsilon", 1e-6)))


def read_torch_umt5(src: str | os.PathLike, *, max_distance: int | None = None
                    ) -> tuple[dict[str, np.ndarray], Layout, UMT5Config]:
  """Opens a UMT5 encoder checkpoint lazily; returns its tensors, layout and inferred config.

  `max_distance` (no tensor shape shows it) overrides config.json's, else UMT5's 128.
  """
  src = Path(src)
  tensors = dict(open_tensors(src))
  layout = detect_layout(tensors, str(src))
  if layout == "transformers" and "shared.weight" not in tensors and _TIED_EMBEDDING in tensors:
    tensors["shared.weight"] = tensors.pop(_TIED_EMBEDDING)  # saved with the tied name only
  config_file = (src if src.is_dir() else src.parent) / "config.json"
  hints = json.loads(config_file.read_text()) if config_file.exists() else {}
  if max_distance is not None:
    hints["relative_attention_max_distance"] = max_distance
  return tensors, layout, infer_config(tensors, layout, hints=hints, source=str(src))
