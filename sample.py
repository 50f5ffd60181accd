r"""Animate a reference image with a driving video (DreamActor-M2 on Wan2.1; dreamactor_jax/sampling/animate.py).

  python sample.py          # the demo: assets/demo/model, assets/demo/reference.png, assets/demo/driving.mp4
  python sample.py --checkpoint ckpt/stage2 --reference me.png --driving dance.mp4 --prompt "a robot dancing" \
      --output out/dance.mp4 --steps 40 --guidance 5 --resolution 480x832
  python sample.py --checkpoint ckpt/stage1 --driving pose.mp4 ...   # stage 1: a rendered skeleton video drives

Writes <output> (mp4 at the driving video's fps), <output>_preview.mp4 (reference | driving | result
side by side, enlarged nearest-neighbour to at least 256 px tall) and <output>_sheet.png (frames of that
preview, top to bottom). Settings come from dreamactor_jax/configs/base.py, then the checkpoint's
animation.json (its training settings), then --config.* overrides, then the flags below. Errors print
one `error: ...` line and exit with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
from absl import flags

from dreamactor_jax import animation, cli, media, parallel
from dreamactor_jax.sampling.animate import AnimateOptions, animate, fit_inputs
from dreamactor_jax.sampling.bundle import BundleInfo, load_bundle, read_info, size_multiple

ROOT = Path(__file__).resolve().parent
DEMO = Path("assets/demo")

FLAGS = flags.FlagValues()
_CONFIG = cli.define_config(
    FLAGS, str(ROOT / "dreamactor_jax/configs/base.py"),
    "Config file; its `animation` and `sampling` sections apply, below the checkpoint's animation.json, e.g. "
    "--config.sampling.shift=5 or --config.animation.segment_frames=41.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", str(DEMO / "model"),
    "Sampling checkpoint: a bundle folder (animation.json, dit/, vae/, optional clip/, umt5/ + tokenizer/, "
    "prompts.safetensors; format in dreamactor_jax/sampling/bundle.py).", flag_values=FLAGS)
_REFERENCE = flags.DEFINE_string(
    "reference", str(DEMO / "reference.png"),
    "Reference image of the character (png/jpg/webp/bmp). Any size or aspect: it is fitted inside the video "
    "size without stretching and padded grey; RGBA is composited over white, grayscale made RGB.",
    flag_values=FLAGS)
_DRIVING = flags.DEFINE_string(
    "driving", str(DEMO / "driving.mp4"),
    "Driving video (mp4/webm/mov/...) or a folder of frames sorted by name (then give --fps). A stage-1 (pose) "
    "checkpoint takes a pose video: rendered OpenPose skeletons on black; a stage-2 (rgb) one any RGB video.",
    flag_values=FLAGS)
_FPS = flags.DEFINE_float("fps", None, "Frame rate of a --driving folder of frames; overrides a video file's rate.",
                          flag_values=FLAGS)
_PROMPT = flags.DEFINE_string(
    "prompt", "", "Text prompt, e.g. '<the character> dancing'. Checkpoints trained without text (text: none) "
    "refuse a non-empty prompt. The negative prompt is --config.sampling.negative_prompt.", flag_values=FLAGS)
_LORA = flags.DEFINE_string("lora", None, "A save_lora folder of adapters put on the checkpoint's DiT (merged).",
                            flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("steps", None, "Denoising steps (default: the checkpoint's sampling.steps).",
                              lower_bound=1, flag_values=FLAGS)
_GUIDANCE = flags.DEFINE_float(
    "guidance", None, "Classifier-free guidance scale on the text, uncond + g (cond - uncond); 1 turns it off "
    "(default: the checkpoint's sampling.guidance). Wan2.2 A14B: the high-noise expert's.", flag_values=FLAGS)
_LOW_NOISE_GUIDANCE = flags.DEFINE_float(
    "low_noise_guidance", None, "Wan2.2 A14B: the low-noise expert's guidance scale (default: the checkpoint's "
    "sampling.low_noise_guidance, else --guidance).", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise.", flag_values=FLAGS)
_FRAMES = flags.DEFINE_integer("frames", None, "Animate only the first N driving frames (default: all).",
                               lower_bound=1, flag_values=FLAGS)
_RESOLUTION = cli.define_size(
    "resolution", None, "Working size HxW, multiples of the model's size multiple (16 for Wan2.1), e.g. 480x832 "
    "(default: the checkpoint's trained size, turned to the driving video's orientation). Driving frames are scaled "
    "to cover it and centre-cropped.",
    flag_values=FLAGS)
_LAYOUT = flags.DEFINE_enum(
    "layout", None, ["full", "motion_cache"],
    "Attention layout (default: the checkpoint's). full: the paper's attention over the whole canvas. "
    "motion_cache: the driving half runs once per segment, each step only the generated half (about 2x "
    "faster per step; for checkpoints trained in that layout).", flag_values=FLAGS)
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "DiT parameter and compute dtype (default: as stored); bfloat16 on GPU/TPU.",
                           flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string(
    "output", "animation.mp4", "Output mp4; <output>_preview.mp4 and <output>_sheet.png are written beside it.",
    flag_values=FLAGS)
MAX_SIDE = 4096  # far above any trained size (Wan: 1280); a larger canvas only exhausts memory
cli.require(FLAGS, "guidance", cli.finite, "expected a finite number (1 turns guidance off)")
cli.require(FLAGS, "low_noise_guidance", cli.finite, "expected a finite number (1 turns guidance off)")
cli.require(FLAGS, "fps", lambda fps: cli.finite(fps) and fps > 0, "expected a finite frame rate above 0")
cli.require(FLAGS, "resolution", lambda size: max(size) <= MAX_SIDE, f"expected at most {MAX_SIDE} per side")


def sampling_options(info: BundleInfo, config, override_values: dict) -> AnimateOptions:
  """base config < the checkpoint's animation.json < --config.* overrides < flags."""
  sections = {name: {**dict(config[name]), **getattr(info, name)} for name in ("animation", "sampling")}
  for key, value in override_values.items():
    section, _, field = key.partition(".")
    if section in sections and field:
      sections[section][field] = value
  flag_values = {"steps": _STEPS.value, "guidance": _GUIDANCE.value, "low_noise_guidance": _LOW_NOISE_GUIDANCE.value,
                 "layout": _LAYOUT.value}
  overrides = {"layout": info.layout, "seed": _SEED.value, **{k: v for k, v in flag_values.items() if v is not None}}
  return AnimateOptions.from_config(sections["animation"], sections["sampling"], **overrides)


def sampling_plan(config, override_values: dict) -> parallel.ShardingPlan | None:
  """Several devices: the DiT's weights sharded and one sample's tokens split over them (every device
  on the `context` axis, unless --config.mesh.* says otherwise); one device: None."""
  if jax.device_count() == 1:
    return None
  mesh = dict(config.mesh) if any(key.startswith("mesh.") for key in override_values) else {"context": -1}
  return parallel.make_plan(mesh, config.parallel)


def check_exists(path: str, flag: str) -> Path:
  if not Path(path).exists():
    raise FileNotFoundError(f"{path} does not exist (--{flag})")
  return Path(path)


def run() -> None:
  output = media.check_video_output(_OUTPUT.value, "--output")
  info = read_info(_CHECKPOINT.value)
  if _RESOLUTION.value is not None:
    animation.check_frame_size("--resolution", _RESOLUTION.value, size_multiple(_CHECKPOINT.value))
  reference = media.read_image(check_exists(_REFERENCE.value, "reference"))
  driving = media.read_video(check_exists(_DRIVING.value, "driving"), fps=_FPS.value, max_frames=_FRAMES.value)
  overrides = cli.config_overrides(FLAGS)
  options = sampling_options(info, _CONFIG.value, overrides)
  plan = sampling_plan(_CONFIG.value, overrides)
  models = load_bundle(_CHECKPOINT.value, lora=_LORA.value, dtype=_DTYPE.value,
                       prompts=options.prompts(_PROMPT.value))
  guidance = f"guidance {options.guidance}"
  if models.low_noise_dit is not None:
    low_noise = options.guidance if options.low_noise_guidance is None else options.low_noise_guidance
    guidance = f"two experts split at boundary {models.boundary}, guidance {options.guidance} then {low_noise}"
  print(f"{_CHECKPOINT.value}: stage {info.stage} ({'pose video' if info.stage == 'pose' else 'RGB video'} "
        f"drives), layout {options.layout}, {options.steps} steps, {guidance}; "
        f"{len(driving.frames)} driving frames at {driving.fps:g} fps")
  video = animate(models, reference, driving.frames, _PROMPT.value, fps=driving.fps, options=options,
                  size=_RESOLUTION.value, progress=True, plan=plan)
  height, width = video.shape[1:3]
  media.write_video(output, video, driving.fps)
  reference_frame, driving_frames = fit_inputs(reference, driving.frames, height, width, options)
  preview = media.enlarge(media.side_by_side([media.to_uint8(reference_frame), driving_frames, video]))
  preview_path = media.write_video(output.with_name(f"{output.stem}_preview.mp4"), preview, driving.fps)
  sheet_path = media.write_image(output.with_name(f"{output.stem}_sheet.png"), media.contact_sheet(preview))
  print(f"wrote {output} ({len(video)} frames, {height}x{width}, {driving.fps:g} fps), {preview_path}, {sheet_path}")


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
