"""The sampling checkpoint ("bundle"): one folder holding everything `sample.py --checkpoint` and
`sampling.animate.animate` needs, written by the trainer, or from converted models with `save_bundle` or

    python -m dreamactor_jax.sampling.bundle --out bundles/animate2 --dit ckpt/animate2 --vae ckpt/vae \
        --clip ckpt/clip --umt5 ckpt/umt5 --tokenizer umt5-xxl/ --preset base   # Wan-Animate-2 (docs/animate2.md)
    python -m dreamactor_jax.sampling.bundle --out bundles/a14b --dit ckpt/i2v-a14b --vae ckpt/vae \
        --umt5 ckpt/umt5 --tokenizer umt5-xxl/ --size 480x832            # Wan2.2 A14B's two experts (convert a14b)

    <bundle>/animation.json        what sampling needs from training (below); written last
    <bundle>/dit/                  the DiT: a `save_model` folder (config.json + Orbax params), may hold LoRA;
                                   or Wan2.2 A14B's two experts and their boundary (checkpoints/experts.py)
    <bundle>/vae/                  the Wan VAE (`convert vae` or `save_model`), or the demo's patch codec
    <bundle>/clip/                 the CLIP vision tower: exactly when the DiT has an image branch (image_dim)
    <bundle>/umt5/, tokenizer/     the UMT5 encoder (`convert t5`) and a transformers tokenizer folder: text "umt5"
    <bundle>/prompts.safetensors   a `PromptCache`: required for text "cache", optional for "umt5" (read first)

animation.json:

    {"format": 1,
     "stage": "pose" | "rgb",            stage 1 reads rendered skeleton videos, stage 2 any RGB video
     "layout": "full" | "motion_cache" | "animate2",  the DiT's layout (sampling's default)
     "preset": "base" | "distilled",     animate2 only: animate.PRESETS' sections, below the two below
     "fps": 16.0,                        frame rate of its training clips (after the frame stride)
     "size": [480, 832],                 the (H, W) it was trained at: sampling's default resolution
     "text": "umt5" | "cache" | "none",  where text comes from; none: zeros [text_len, text_dim], no prompt
     "text_len": 512,                    text tokens the DiT reads (zero-padded)
     "animation": {...}, "sampling": {...},   the dreamactor_jax/configs/base.py sections it was trained with
     "pose": {...}}                      stage 1: how its skeletons were drawn (config.data.pose; absent: defaults)

Every failure is one line naming the bundle and the missing or wrong part (`BundleError`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from absl import flags
from flax import nnx

from dreamactor_jax import cli
from dreamactor_jax.checkpoints.experts import denoiser_config, expert_folders, is_experts, read_boundary
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.orbax_model import load_codec, load_codec_config, load_dit, load_model, save_model
from dreamactor_jax.models.config import check_choice
from dreamactor_jax.models.dit import Layout, WanDiT
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.models.lora import merge_lora, rebuild
from dreamactor_jax.models.text_encoder import TEXT_LEN, UMT5Config, UMT5Encoder, encode_prompts, load_tokenizer
from dreamactor_jax.sampling import offload
from dreamactor_jax.sampling.animate import PRESETS, AnimateOptions, Models
from dreamactor_jax.sampling.prompt_cache import PromptCache, TextEmbedder

FORMAT = 1
INFO_FILE = "animation.json"
PROMPTS_FILE = "prompts.safetensors"
Stage = Literal["pose", "rgb"]
TextSource = Literal["umt5", "cache", "none"]
# A part given to save_bundle: a model in memory, or a folder to copy (or link).
Part = nnx.Module | str | os.PathLike


class BundleError(ValueError):
  """A bundle that is incomplete or inconsistent; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class BundleInfo:
  """The contents of animation.json (module docstring)."""

  stage: Stage
  size: tuple[int, int]
  fps: float
  text: TextSource = "umt5"
  layout: Layout = "full"
  text_len: int = TEXT_LEN
  animation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  sampling: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  preset: str | None = None
  pose: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # data.skeleton.PoseDrawing's fields

  def __post_init__(self):
    for key, choices in (("stage", Stage), ("text", TextSource), ("layout", Layout)):
      check_choice(key, getattr(self, key), choices)
    checks = [("preset", self.preset in PRESETS if self.layout == "animate2" else self.preset is None,
               f"one of {sorted(PRESETS)} with layout 'animate2', none otherwise"),
              ("size", len(self.size) == 2 and all(isinstance(s, int) and s > 0 for s in self.size),
               "[H, W], positive integers (multiples of the model's size_multiple, checked when it loads)"),
              ("fps", isinstance(self.fps, (int, float)) and self.fps > 0, "a positive number"),
              ("text_len", isinstance(self.text_len, int) and self.text_len > 0, "a positive integer")]
    for key, ok, expected in checks:
      if not ok:
        raise ValueError(f"{key}={getattr(self, key)!r}; expected {expected}")
    for name in ("animation", "sampling"):
      _check_section(name, getattr(self, name))
    if not isinstance(self.pose, Mapping):
      raise ValueError(f"pose={self.pose!r}; expected an object of skeleton drawing settings")
    object.__setattr__(self, "size", tuple(self.size))
    for name, preset in (PRESETS[self.preset] if self.preset else {}).items():  # the preset, below the bundle's own
      object.__setattr__(self, name, {**preset, **_plain(getattr(self, name))})

  @classmethod
  def from_json(cls, values: Any) -> BundleInfo:
    """The inverse of `to_json`, from parsed animation.json; raises ValueError (or TypeError for an
    unknown key) naming what is wrong. A bundle from before "pose" was recorded gets the defaults."""
    if not isinstance(values, dict):
      raise ValueError(f"expected a JSON object, found {type(values).__name__}")
    values = dict(values)
    if values.pop("format", None) != FORMAT:
      raise ValueError(f"format is not {FORMAT}")
    return cls(**values)

  def to_json(self) -> dict[str, Any]:
    values = {key: value for key, value in dataclasses.asdict(self).items() if key != "preset" or value}
    return {"format": FORMAT, **values, "size": list(self.size),
            "animation": _plain(self.animation), "sampling": _plain(self.sampling), "pose": _plain(self.pose)}

  def options(self, **overrides) -> AnimateOptions:
    """The sampling defaults it was trained with (`AnimateOptions.from_config`), then `overrides`."""
    return AnimateOptions.from_config(self.animation, self.sampling, **{"layout": self.layout, **overrides})


def _check_section(name: str, section: Any) -> None:
  """An animation.json section: a mapping whose AnimateOptions fields have their defaults' types."""
  if not isinstance(section, Mapping):
    raise ValueError(f"{name}={section!r}; expected an object of {name} settings")
  defaults = AnimateOptions()
  for key, value in section.items():
    if not hasattr(defaults, key):
      continue  # training-only fields ride along
    default = getattr(defaults, key)
    if default is None and value is None:
      continue  # an optional number left unset (low_noise_guidance)
    expected = float if default is None else type(default)
    numeric = expected is float and isinstance(value, int)
    if (isinstance(value, bool) and expected is not bool) or not (isinstance(value, expected) or numeric):
      raise ValueError(f"{name}.{key}={value!r}; expected {expected.__name__}")


def _plain(section: Any) -> dict[str, Any]:
  """A config section (ConfigDict or dict, nested either way) as JSON-ready dicts and lists."""
  def jsonable(value: Any) -> Any:  # a ConfigDict inside a dict (sampling.train) keeps its values
    return value.to_dict() if hasattr(value, "to_dict") else list(value)

  return json.loads(json.dumps(dict(section.to_dict() if hasattr(section, "to_dict") else section), default=jsonable))


def read_info(folder: str | os.PathLike) -> BundleInfo:
  """animation.json of a bundle; a missing folder, a bare DiT folder or a bad file raise BundleError."""
  folder = Path(folder)
  path = folder / INFO_FILE
  if not folder.is_dir():
    raise BundleError(f"checkpoint {folder} does not exist; expected a bundle folder (animation.json, dit/, vae/, ...)")
  if not path.is_file():
    bare = (folder / "config.json").is_file() and (folder / "params").is_dir()
    raise BundleError(f"checkpoint {folder} has no {INFO_FILE}" + (
        " (it is a bare model folder; a sampling checkpoint is a bundle: animation.json, dit/, vae/, ...; "
        "see dreamactor_jax/sampling/bundle.py)" if bare
        else "; expected a bundle folder (animation.json, dit/, vae/, ...)"))
  try:
    info = BundleInfo.from_json(json.loads(path.read_text()))
    info.options()  # the sampling settings it holds are valid together
    return info
  except (ValueError, TypeError) as e:
    raise BundleError(f"{path}: {e}".splitlines()[0]) from None


def _require(folder: Path, part: str, why: str) -> Path:
  path = folder / part
  if not path.exists():
    raise BundleError(f"checkpoint {folder}: missing {part} ({why})")
  return path


def _umt5_encoder(folder: Path, text_len: int):
  """Loads UMT5 and its tokenizer; returns prompts -> trimmed embeddings (TextEmbedder drops it after use)."""
  encoder, _ = load_model(folder / "umt5", UMT5Encoder, UMT5Config)
  return functools.partial(encode_prompts, encoder, load_tokenizer(folder / "tokenizer"), max_length=text_len)


def text_embedder(folder: str | os.PathLike, info: BundleInfo | None = None) -> TextEmbedder:
  """The bundle's prompt source (the text encoder is loaded only when a prompt is not cached)."""
  folder = Path(folder)
  info = read_info(folder) if info is None else info
  text_dim = denoiser_config(_require(folder, "dit", "the DiT")).text_dim
  cache, load_encoder = None, None
  if info.text == "cache":
    cache = PromptCache(_require(folder, PROMPTS_FILE, "the prompt cache of text 'cache'"))
  elif info.text == "umt5":
    _require(folder, "umt5", "the UMT5 text encoder of text 'umt5'")
    _require(folder, "tokenizer", "the UMT5 tokenizer of text 'umt5'")
    load_encoder = functools.partial(_umt5_encoder, folder, info.text_len)
    if (folder / PROMPTS_FILE).exists():
      cache = PromptCache(folder / PROMPTS_FILE)
  return TextEmbedder(text_dim, info.text_len, cache=cache, load_encoder=load_encoder, source=f"checkpoint {folder}")


def size_multiple(folder: str | os.PathLike) -> int:
  """A bundle's `Models.size_multiple` from its config files alone: frame sides are multiples of it."""
  folder = Path(folder)
  dit_config = denoiser_config(_require(folder, "dit", "the DiT"))
  return dit_config.pixel_multiple(load_codec_config(_require(folder, "vae", "the VAE")).space_factor)


def load_bundle(folder: str | os.PathLike, *, lora: str | os.PathLike | None = None, dtype: str | None = None,
                prompts: Sequence[str] = ()) -> Models:
  """The models of a bundle, ready for `animate.animate`.

  `prompts` are encoded first (UMT5 is loaded, used and freed before the DiT loads). `lora`: a
  `save_lora` folder applied to the bundle's DiT; adapters are merged for sampling. `dtype`
  ("bfloat16" on accelerators) recasts the DiT's parameters and compute dtype. Wan2.2 A14B's two
  experts are loaded one after the other, each moved to pinned host memory before the next
  (`sampling.offload`): the device holds one expert at a time, from loading on.
  """
  folder = Path(folder)
  info = read_info(folder)
  text = text_embedder(folder, info)
  text.prepare(prompts)
  dit_folder = _require(folder, "dit", "the DiT")
  experts = {}
  if is_experts(dit_folder):
    if lora is not None:
      raise BundleError(f"checkpoint {folder}: its DiT is two experts (Wan2.2 A14B); LoRA adapters fit one DiT")
    dit, low_noise_dit = (_load_dit(path, None, dtype, host=True) for path in expert_folders(dit_folder))
    experts = dict(low_noise_dit=low_noise_dit, boundary=read_boundary(dit_folder))
  else:
    dit = _load_dit(dit_folder, lora, dtype, host=False)
  vae, _ = load_codec(_require(folder, "vae", "the VAE"))
  clip = None
  if dit.config.image_dim is not None:
    clip, _ = load_model(_require(folder, "clip", f"the CLIP encoder its DiT's image branch (image_dim="
                                              f"{dit.config.image_dim}) reads"), CLIPVisionEncoder, CLIPVisionConfig)
  return Models(dit=dit, vae=vae, text=text, clip=clip, size=info.size, options=info.options(),
                name=f"checkpoint {folder}", **experts)


def _load_dit(folder: Path, lora: str | os.PathLike | None, dtype: str | None, *, host: bool) -> WanDiT:
  """A DiT folder's model with its adapters merged, recast to `dtype`; with `host`, its weights in
  pinned host memory."""
  dit, _ = load_dit(folder, lora=lora, dtype=dtype)
  dit = merge_lora(dit)
  if dtype is not None and dit.config.dtype != dtype:
    dit = rebuild(WanDiT, dataclasses.replace(dit.config, dtype=dtype), model_params(dit))
  if host:
    graphdef, state = nnx.split(dit)
    dit = nnx.merge(graphdef, offload.place(state, "pinned_host"))
  return dit


def _write_part(out: Path, name: str, part: Part, *, link: bool) -> None:
  target = out / name
  if isinstance(part, nnx.Module):
    save_model(target, model_params(part), part.config)
  elif link:
    target.symlink_to(Path(part).absolute(), target_is_directory=Path(part).is_dir())
  elif Path(part).is_dir():
    shutil.copytree(part, target)
  else:
    shutil.copy2(part, target)


def save_bundle(out: str | os.PathLike, info: BundleInfo, *, dit: Part, vae: Part, clip: Part | None = None,
                umt5: Part | None = None, tokenizer: str | os.PathLike | None = None,
                prompts: str | os.PathLike | None = None, link: bool = False) -> Path:
  """Writes a bundle: each model part is a model in memory (saved with `save_model`) or a folder to
  copy (`link=True`: symlink); `tokenizer` a tokenizer folder, `prompts` a PromptCache file.
  animation.json is written last, so a folder holding it is complete. Returns the folder."""
  out = Path(out)
  dit_config = dit.config if isinstance(dit, nnx.Module) else denoiser_config(dit)
  if (dit_config.image_dim is None) != (clip is None):
    raise BundleError(f"bundle {out}: the DiT has image_dim={dit_config.image_dim}; give clip exactly when it is set")
  needs = {"umt5": {"umt5": umt5, "tokenizer": tokenizer}, "cache": {"prompts": prompts}, "none": {}}[info.text]
  for name, part in needs.items():
    if part is None:
      raise BundleError(f"bundle {out}: text {info.text!r} needs {name}")
  if (out / INFO_FILE).exists():
    raise BundleError(f"bundle {out} exists already")
  out.mkdir(parents=True, exist_ok=True)
  for name, part in (("dit", dit), ("vae", vae), ("clip", clip), ("umt5", umt5), ("tokenizer", tokenizer),
                     (PROMPTS_FILE, prompts)):
    if part is not None:
      _write_part(out, name, part, link=link)
  tmp = out / f"{INFO_FILE}.partial"
  tmp.write_text(json.dumps(info.to_json(), indent=2))
  os.replace(tmp, out / INFO_FILE)
  return out


FLAGS = flags.FlagValues()
flags.DEFINE_string("out", None, "Bundle folder to write (must not exist).", required=True, flag_values=FLAGS)
flags.DEFINE_string("dit", None, "DiT folder (`convert dit` or training's save_model), or Wan2.2 A14B's two experts "
                    "(`convert a14b`); its config's layout is the bundle's.", required=True, flag_values=FLAGS)
flags.DEFINE_string("vae", None, "VAE folder (`convert vae`).", required=True, flag_values=FLAGS)
flags.DEFINE_string("clip", None, "CLIP folder (`convert clip`): needed when the DiT has an image branch.",
                    flag_values=FLAGS)
flags.DEFINE_string("umt5", None, "UMT5 folder (`convert t5`); with --tokenizer: text 'umt5'.", flag_values=FLAGS)
flags.DEFINE_string("tokenizer", None, "transformers tokenizer folder of UMT5 (e.g. google/umt5-xxl).",
                    flag_values=FLAGS)
flags.DEFINE_string("prompts", None, "PromptCache file (prompt_cache.py): text 'cache' without --umt5, read first "
                    "with it; it must hold every prompt sampling uses.", flag_values=FLAGS)
flags.DEFINE_enum("preset", None, sorted(PRESETS), "Wan-Animate-2 sampling preset (animate.PRESETS; default base): "
                  "base 40 steps, guidance 3; distilled 10 steps, no guidance.", flag_values=FLAGS)
flags.DEFINE_enum("stage", "rgb", list(typing.get_args(Stage)), "What drives it: rendered pose videos (stage 1) or "
                  "any RGB video.", flag_values=FLAGS)
cli.define_size("size", None, "HxW sampling default: the trained size (Wan-Animate-2: the target area, default "
                "800x640).", FLAGS)
flags.DEFINE_float("fps", None, "Frame rate of its training clips (default 24 for Wan-Animate-2, else 16).",
                   lower_bound=0.001, flag_values=FLAGS)
flags.DEFINE_bool("link", False, "Symlink the part folders instead of copying them.", flag_values=FLAGS)


def _write_from_flags() -> None:
  """`python -m dreamactor_jax.sampling.bundle`: a bundle from converted parts (module docstring)."""
  args = cli.namespace(FLAGS)
  out = Path(args.out)
  for flag in ("dit", "vae", "clip", "umt5", "tokenizer", "prompts"):
    path = getattr(args, flag)
    if path is not None and not Path(path).exists():
      raise BundleError(f"--{flag}: {path} does not exist")
  if (args.umt5 is None) != (args.tokenizer is None):
    raise BundleError("--umt5 and --tokenizer: give both (text 'umt5') or neither")
  if out.exists():
    raise BundleError(f"--out: {out} exists already; expected a new folder")
  layout = denoiser_config(args.dit).layout
  animate2 = layout == "animate2"
  if args.preset is not None and not animate2:
    raise BundleError(f"--preset: the DiT at {args.dit} has layout {layout!r}; presets are for Wan-Animate-2 "
                      "DiTs (layout 'animate2')")
  if args.size is None and not animate2:
    raise BundleError("--size: expected HxW, the size the DiT was trained at (e.g. 480x832)")
  text = "umt5" if args.umt5 else "cache" if args.prompts else "none"
  info = BundleInfo(stage=args.stage, size=tuple(args.size or (800, 640)), fps=args.fps or (24.0 if animate2 else 16.0),
                    text=text, layout=layout, preset=(args.preset or "base") if animate2 else None)
  partial = out.with_name(f"{out.name}.partial")  # written aside, then renamed: `out` is whole or absent
  shutil.rmtree(partial, ignore_errors=True)
  save_bundle(partial, info, dit=args.dit, vae=args.vae, clip=args.clip, umt5=args.umt5, tokenizer=args.tokenizer,
              prompts=args.prompts, link=args.link)
  os.replace(partial, out)
  experts = f", two experts (boundary {read_boundary(out / 'dit')})" if is_experts(out / "dit") else ""
  print(f"wrote {out}: layout {info.layout}{experts}" + (f", preset {info.preset}" if info.preset else "") +
        f", text {info.text}, size {info.size[0]}x{info.size[1]}")


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_write_from_flags, FLAGS, None if argv is None else list(argv), doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
