"""Converts PyTorch Wan2.1 checkpoints to ours and back.

  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/t2v-1.3b
  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-14B --out ckpt/t2v-14b --dtype bf16
  python -m dreamactor_jax.convert export-dit --src ckpt/t2v-1.3b --out exported --layout original

`--src` is a diffusers folder (sharded safetensors + index json + config.json), an original Wan
folder or file (safetensors, with or without the `model.diffusion_model.` prefix, or a `.pth` read
with `torch.load(weights_only=True)`). Layout and config are detected from tensor names and shapes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from flax import nnx

from dreamactor_jax.checkpoints import dit_torch
from dreamactor_jax.checkpoints.model_state import abstract_params, merge_params, model_params
from dreamactor_jax.checkpoints.orbax_dit import load_dit, save_dit
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.models.dit import DiTConfig, WanDiT, expand_input_channels

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "float32": "float32", "bfloat16": "bfloat16"}


def load_torch_dit(path: str | os.PathLike, *, dtype: str = "float32", compute_dtype: str | None = None,
                   num_heads: int | None = None, in_channels: int | None = None,
                   **overrides) -> tuple[WanDiT, DiTConfig]:
  """Loads a PyTorch DiT checkpoint (any layout) into a `WanDiT` in memory.

  `dtype` is the parameter dtype ("fp32"/"float32" or "bf16"/"bfloat16"), `compute_dtype` that of
  matmuls (default: the parameter dtype); `in_channels` widens the patch embedding with zeros (e.g.
  36 to start the in-context model from T2V); `overrides` set other runtime config fields
  (`remat`, `attention`).
  """
  dtype = DTYPES[dtype]
  tensors, layout, config = dit_torch.read_torch_dit(path, num_heads=num_heads)
  config = DiTConfig.from_mapping({**config.to_dict(), "param_dtype": dtype,
                                   "dtype": DTYPES[compute_dtype or dtype], **overrides})
  params = dit_torch.stream_params(tensors, layout, config, dtype=dtype, source=str(path))
  if in_channels is not None:
    params, config = expand_input_channels(params, config, in_channels)
  graphdef, state, _ = abstract_params(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  return merge_params(graphdef, state, params), config


def convert_dit(src: str | os.PathLike, out: str | os.PathLike, *, dtype: str = "float32",
                num_heads: int | None = None, in_channels: int | None = None) -> DiTConfig:
  """Converts a PyTorch DiT checkpoint to an Orbax folder, staging each parameter on disk.

  Each stacked parameter is filled layer by layer into a memory-mapped file beside the output,
  so RAM holds one tensor at a time whatever the model size.
  """
  dtype = DTYPES[dtype]
  tensors, layout, config = dit_torch.read_torch_dit(src, num_heads=num_heads)
  config = DiTConfig.from_mapping({**config.to_dict(), "param_dtype": dtype})
  Path(out).mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
  try:
    def allocate(path: str, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
      return np.lib.format.open_memmap(staging / f"{path}.npy", mode="w+", dtype=dt, shape=shape)

    params = dit_torch.stream_params(tensors, layout, config, dtype=dtype, allocate=allocate, source=str(src),
                                     progress=True)
    if in_channels is not None:
      params, config = expand_input_channels(params, config, in_channels)
    save_dit(out, params, config)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return config


def export_dit(src: str | os.PathLike, out: str | os.PathLike, *, layout: str = "diffusers",
               dtype: str = "float32") -> Path:
  """Writes an Orbax DiT folder (from `convert dit` or training) as a PyTorch checkpoint folder."""
  model, config = load_dit(src)
  return dit_torch.export_torch_dit(model_params(model), config, out, layout=layout, dtype=DTYPES[dtype],
                                    progress=True)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m dreamactor_jax.convert", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  dit = commands.add_parser("dit", help="PyTorch Wan2.1 DiT (diffusers or original layout) -> Orbax folder")
  dit.add_argument("--src", required=True, help="checkpoint file or folder (safetensors shards or .pth)")
  dit.add_argument("--out", required=True, help="output folder: params/ (Orbax) and config.json")
  dit.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="parameter dtype to store")
  dit.add_argument("--num-heads", type=int, default=None,
                   help="attention heads, when no config.json sits beside the weights (default dim/128)")
  dit.add_argument("--in-channels", type=int, default=None,
                   help="widen the patch embedding with zero weights, e.g. 36 to start the in-context model from T2V")
  export = commands.add_parser("export-dit", help="Orbax DiT folder -> PyTorch safetensors + config.json")
  export.add_argument("--src", required=True, help="folder written by `convert dit` or by training")
  export.add_argument("--out", required=True, help="output folder")
  export.add_argument("--layout", choices=["diffusers", "original"], default="diffusers",
                      help="tensor names of diffusers' WanTransformer3DModel or of the original Wan code")
  export.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="tensor dtype to write")
  args = parser.parse_args(argv)
  try:
    if args.command == "dit":
      config = convert_dit(args.src, args.out, dtype=args.dtype, num_heads=args.num_heads,
                           in_channels=args.in_channels)
      print(f"wrote {args.out}: {config}")
    else:
      print(f"wrote {export_dit(args.src, args.out, layout=args.layout, dtype=args.dtype)}")
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
