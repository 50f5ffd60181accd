"""Converts PyTorch Wan2.1, Wan2.2 A14B and Wan-Animate-2 checkpoints to ours and back.

  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/t2v-1.3b
  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-14B --out ckpt/t2v-14b --dtype bf16
  python -m dreamactor_jax.convert dit --src Wan2.2-Animate-2-14B-Diffusers/transformer --out ckpt/animate2
  python -m dreamactor_jax.convert a14b --src Wan2.2-I2V-A14B-Diffusers --out ckpt/i2v-a14b --dtype bf16
  python -m dreamactor_jax.convert export-dit --src ckpt/t2v-1.3b --out exported --layout original
  python -m dreamactor_jax.convert export-dit --src ckpt/t2v-1.3b --lora runs/stage1/lora --out stage1-merged
  python -m dreamactor_jax.convert vae --src Wan2.1-T2V-1.3B/Wan2.1_VAE.pth --out ckpt/vae
  python -m dreamactor_jax.convert t5 --src Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth --out ckpt/umt5 --dtype bf16
  python -m dreamactor_jax.convert clip --src Wan2.1-I2V-14B-480P/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth --out ckpt/clip

`--src` is a diffusers folder (sharded safetensors + index json + config.json), an original Wan
folder or file (safetensors, with or without the `model.diffusion_model.` prefix, or a `.pth` read
with `torch.load(weights_only=True)`). Layout and config are detected from tensor names and shapes.
Wan-Animate-2 is told apart by its names (the official `wan_animate_2_bf16*.safetensors` wraps each
block as `blocks.N.block.`; its diffusers folder names attention `self_attn.to_q`), which a
config.json class must not contradict; `export-dit` writes such a model back in its own two layouts.
`a14b` converts Wan2.2 A14B's two experts into one folder with their boundary (checkpoints/experts.py):
`--src` is diffusers' pipeline folder (transformer/, transformer_2/, model_index.json) or the official
one (high_noise_model/, low_noise_model/).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

from absl import flags

from dreamactor_jax import cli
from dreamactor_jax.checkpoints import dit_torch
from dreamactor_jax.checkpoints.experts import convert_experts
from dreamactor_jax.checkpoints.importers import DTYPES, convert_to_orbax, load_torch
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.orbax_model import load_dit
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.models.lora import merge_lora


# The loaders the README names, one per family: `load_torch_dit(path, dtype="bf16")` is
# `checkpoints.load_torch("dit", path, dtype="bf16")`.
load_torch_dit = functools.partial(load_torch, "dit")
load_torch_vae = functools.partial(load_torch, "vae")
load_torch_umt5 = functools.partial(load_torch, "t5")
load_torch_clip = functools.partial(load_torch, "clip")


def export_dit(src: str | os.PathLike, out: str | os.PathLike, *, layout: str = "diffusers",
               dtype: str = "float32", lora: str | os.PathLike | None = None) -> Path:
  """Writes an Orbax DiT folder (from `convert dit` or training) as a PyTorch checkpoint folder.

  LoRA adapters (held by `src`, or a `save_lora` folder `lora` over the base `src`) are merged into
  the kernels first, so the export is a plain Wan2.1 DiT computing the adapted function.
  """
  model = merge_lora(load_dit(src, lora=lora)[0])
  return dit_torch.export_torch_dit(model_params(model), model.config, out, layout=layout, dtype=DTYPES[dtype],
                                    progress=True)


def check_writable(out: Path) -> None:
  """Raises unless `out` is, or can be made, a folder this process can write into; by trying, since
  permissions do not tell (root ignores them, a read-only mount does not)."""
  existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
  if not existing.is_dir():
    raise CheckpointError(f"{existing}: is a file; expected a folder for the output {out}")
  try:
    tempfile.TemporaryFile(dir=existing).close()
  except OSError as e:
    raise CheckpointError(f"{out}: expected a folder this process can write ({e.strerror})") from None


# command -> (what it converts, what --src is)
COMMANDS = {
    "dit": ("PyTorch Wan2.1 or Wan-Animate-2 DiT (diffusers or original layout) -> Orbax folder",
            "checkpoint file or folder (safetensors shards or .pth)"),
    "a14b": ("PyTorch Wan2.2 A14B, its two experts (diffusers or original layout) -> one folder of both and "
             "their boundary", "diffusers pipeline folder (transformer/, transformer_2/) or the official release "
             "(high_noise_model/, low_noise_model/)"),
    "vae": ("PyTorch Wan2.1 VAE (diffusers AutoencoderKLWan folder or Wan2.1_VAE.pth) -> Orbax folder",
            "diffusers vae/ folder or Wan2.1_VAE.pth"),
    "t5": ("PyTorch UMT5 encoder (transformers UMT5EncoderModel or Wan's T5 .pth) -> Orbax folder",
           "transformers text_encoder/ folder or models_t5_umt5-xxl-enc-bf16.pth"),
    "clip": ("PyTorch CLIP ViT-H/14 vision tower (transformers or Wan's open-clip .pth) -> Orbax folder",
             "transformers image_encoder/ folder or models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"),
    "export-dit": ("Orbax DiT folder -> PyTorch safetensors + config.json",
                   "folder written by `convert dit` or by training"),
}


def _command_flags(command: str) -> flags.FlagValues:
  """The flags of one sub-command, in a `FlagValues` of its own."""
  values = flags.FlagValues()
  flags.DEFINE_string("src", None, COMMANDS[command][1], required=True, flag_values=values)
  flags.DEFINE_string("out", None, "output folder" if command == "export-dit" else
                      "output folder: params/ (Orbax) and config.json", required=True, flag_values=values)
  flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "tensor dtype to write" if command == "export-dit" else
                    "parameter dtype to store", flag_values=values)
  if command == "dit":
    flags.DEFINE_integer("num-heads", None, "attention heads, when no config.json sits beside the weights "
                         "(default dim/128)", lower_bound=1, flag_values=values)
    flags.DEFINE_integer("in-channels", None, "widen the patch embedding with zero weights, e.g. 36 to start the "
                         "in-context model from T2V", lower_bound=1, flag_values=values)
  if command == "a14b":
    flags.DEFINE_float("boundary", None, "share of the 1000 training timesteps from which the high-noise expert "
                       "denoises (default: model_index.json's boundary_ratio, or wan/configs' for the official "
                       "release: 0.9 I2V, 0.875 T2V)", flag_values=values)
  if command == "export-dit":
    flags.DEFINE_string("lora", None, "folder of LoRA adapters alone (training's save_lora) to merge over --src; "
                        "adapters saved inside --src are merged anyway", flag_values=values)
    flags.DEFINE_enum("layout", "diffusers", ["diffusers", "original"], "tensor names of diffusers' "
                      "WanTransformer3DModel or of the original Wan code; for a Wan-Animate-2 model, "
                      "WanAnimate2Transformer3DModel or the official file", flag_values=values)
  return values


def _convert(command: str, values: flags.FlagValues) -> None:
  src, out, dtype = values["src"].value, Path(values["out"].value), values["dtype"].value
  check_writable(out)
  if command == "export-dit":
    print(f"wrote {export_dit(src, out, layout=values['layout'].value, dtype=dtype, lora=values['lora'].value)}")
    return
  if command == "a14b":
    config, boundary = convert_experts(src, out, dtype=dtype, boundary=values["boundary"].value)
    print(f"wrote {out}: two experts of {config}, boundary {boundary}")
    return
  options = {}
  if command == "dit":
    options = {"num_heads": values["num-heads"].value, "in_channels": values["in-channels"].value}
  print(f"wrote {out}: {convert_to_orbax(command, src, out, dtype=dtype, **options)}")


def _command(name: str) -> cli.Command:
  values = _command_flags(name)
  return cli.Command(COMMANDS[name][0], values, functools.partial(_convert, name, values))


CLI_COMMANDS = {name: _command(name) for name in COMMANDS}


def main(argv: list[str] | None = None) -> int:
  return cli.run_command(CLI_COMMANDS, argv, program="python -m dreamactor_jax.convert", doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
