"""Wan2.2 A14B's denoiser on disk: two Wan-14B DiTs that split the noise levels at a boundary
(docs/conversion.md, "Wan2.2 A14B"). One folder holds both:

    <folder>/experts.json   {"boundary": 0.9}: the high-noise expert denoises timesteps >= boundary * 1000
    <folder>/high_noise/    a DiT folder (`save_model`: config.json + params/)
    <folder>/low_noise/     a DiT folder: the timesteps below the boundary

`convert_experts` writes it from diffusers' pipeline folder (transformer/ is the high-noise expert,
transformer_2/ the low-noise one, model_index.json's `boundary_ratio` the boundary) or from the
official release (high_noise_model/, low_noise_model/; the boundary is wan/configs' for the
`model_type` in their config.json). A bundle holds the folder as its dit/ (bundle.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dreamactor_jax.checkpoints.importers import convert_to_orbax
from dreamactor_jax.checkpoints.orbax_model import load_config
from dreamactor_jax.checkpoints.tensor_files import CheckpointError
from dreamactor_jax.models.dit import DiTConfig

EXPERTS_FILE = "experts.json"
HIGH_NOISE, LOW_NOISE = "high_noise", "low_noise"
# The official release stores no boundary; wan/configs/wan_{i2v,t2v}_A14B.py set it per model type.
OFFICIAL_BOUNDARIES = {"i2v": 0.900, "t2v": 0.875}


def is_experts(folder: str | os.PathLike) -> bool:
  """Whether `folder` is a two-expert folder (it has experts.json) rather than one DiT."""
  return (Path(folder) / EXPERTS_FILE).is_file()


def check_boundary(boundary: object, source: str) -> float:
  """`boundary` as a float strictly between 0 and 1, or a CheckpointError naming `source`."""
  if isinstance(boundary, bool) or not isinstance(boundary, (int, float)) or not 0 < boundary < 1:
    raise CheckpointError(f"{source}: boundary={boundary!r}; expected a number between 0 and 1 (the share of the "
                          "1000 training timesteps from which the high-noise expert denoises, e.g. 0.9)")
  return float(boundary)


def read_boundary(folder: str | os.PathLike) -> float:
  """The boundary in `folder/experts.json`, checked."""
  path = Path(folder) / EXPERTS_FILE
  try:
    values = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: expected JSON {{\"boundary\": ...}} ({type(e).__name__}: {e})".splitlines()[0]
                          ) from None
  return check_boundary(values.get("boundary") if isinstance(values, dict) else None, str(path))


def expert_folders(folder: str | os.PathLike) -> tuple[Path, Path]:
  """The high- and low-noise DiT folders of a two-expert folder, which must both exist."""
  folders = Path(folder) / HIGH_NOISE, Path(folder) / LOW_NOISE
  for path in folders:
    if not (path / "config.json").is_file():
      raise CheckpointError(f"{path}: no config.json; a two-expert folder holds {HIGH_NOISE}/ and {LOW_NOISE}/ DiTs")
  return folders


def denoiser_config(folder: str | os.PathLike) -> DiTConfig:
  """The DiT config of a DiT folder, or of a two-expert folder's high-noise expert (both experts
  share the architecture)."""
  return load_config(expert_folders(folder)[0] if is_experts(folder) else folder, DiTConfig)


def torch_experts(src: str | os.PathLike) -> tuple[Path, Path, float | None]:
  """The high- and low-noise DiT checkpoints of a PyTorch A14B release, and its boundary (None when
  the release does not say it)."""
  src = Path(src)
  index = src / "model_index.json"
  if index.is_file() and (src / "transformer").is_dir() and (src / "transformer_2").is_dir():
    boundary = json.loads(index.read_text()).get("boundary_ratio")
    if boundary is None:
      raise CheckpointError(f"{index}: no boundary_ratio; expected a two-expert (Wan2.2 A14B) pipeline folder")
    return src / "transformer", src / "transformer_2", check_boundary(boundary, str(index))
  high, low = src / "high_noise_model", src / "low_noise_model"
  if high.is_dir() and low.is_dir():
    config = high / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    return high, low, OFFICIAL_BOUNDARIES.get(model_type)
  raise CheckpointError(f"{src}: expected a Wan2.2 A14B folder: diffusers' (model_index.json, transformer/, "
                        "transformer_2/) or the official release's (high_noise_model/, low_noise_model/)")


def convert_experts(src: str | os.PathLike, out: str | os.PathLike, *, dtype: str = "float32",
                    boundary: float | None = None, **read_options) -> tuple[DiTConfig, float]:
  """A PyTorch A14B release (`torch_experts`) -> a two-expert folder `out`; returns the experts'
  config and the boundary (`boundary` overrides the release's). Each expert is converted as
  `convert dit` converts one (`read_options` alike); `out` is replaced only once both are whole."""
  high, low, found = torch_experts(src)
  if boundary is None and found is None:
    raise CheckpointError(f"{high / 'config.json'}: no model_type 'i2v' or 't2v' to take the boundary of "
                          "wan/configs from; give it (--boundary, e.g. 0.9)")
  boundary = check_boundary(found if boundary is None else boundary, str(src))
  out = Path(out)
  partial = out.with_name(f"{out.name}.partial")
  shutil.rmtree(partial, ignore_errors=True)
  configs = [convert_to_orbax("dit", path, partial / name, dtype=dtype, **read_options)
             for path, name in ((high, HIGH_NOISE), (low, LOW_NOISE))]
  if configs[0] != configs[1]:
    raise CheckpointError(f"{src}: the experts' architectures differ ({configs[0]} vs {configs[1]}); "
                          "expected two DiTs of one shape")
  (partial / EXPERTS_FILE).write_text(json.dumps({"boundary": boundary}, indent=2))
  if out.exists():
    replaced = out.with_name(f"{out.name}.replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    out.rename(replaced)
    partial.rename(out)
    shutil.rmtree(replaced)
  else:
    partial.rename(out)
  return configs[0], boundary
