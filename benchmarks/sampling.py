"""Sampling speed: seconds per denoising step and per video, full and motion_cache layouts, beside
diffusers' WanImageToVideoPipeline on the same config and weights.

  python benchmarks/sampling.py --preset tiny
  python benchmarks/sampling.py --preset mid      # dim 1536, 2 layers, 480x832 x 5 frames: 6,240 canvas tokens
  python benchmarks/sampling.py --device-report   # GPU: a Wan2.1-1.3B-shaped DiT at 480x832 x 81 frames, bf16
  python benchmarks/sampling.py --device-report --preset tiny --steps 3   # the same report on CPU, tiny

Comparison mode: a random diffusers I2V transformer (36 input channels, CLIP branch) and VAE are
built offline and imported with our importers, so both sides hold identical weights. Both sample one
canvas video (H x 2W, the driving video's width doubled) with UniPC, CFG on text (ours: prompt and
negative prompt in one batched call; diffusers: two calls per step), 512 text and 257 image tokens.
diffusers runs its own pipeline (prompt embeddings given, CLIP and VAE encode of the condition, loop,
decode). Per step: the shortest interval between the ends of consecutive steps (diffusers'
`callback_on_step_end`, our `animate` step hook; for diffusers also from its first transformer call
to the first step's end, as it compiles nothing), so no compilation is inside and a burst of other
jobs on a shared machine does not count; per video: the fastest of `--repeats` calls (with one
call, ours includes compilation).

Device report: our pipeline alone on the default device (numpy-drawn random weights); per step, per
video and peak memory for both layouts.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import typing
from pathlib import Path

import jax
import numpy as np
from absl import flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.checkpoints.model_state import abstract_params, merge_params  # noqa: E402
from dreamactor_jax.models import (CLIPVisionConfig, CLIPVisionEncoder, DiTConfig, VAEConfig,  # noqa: E402
                                   WanDiT, WanVAE)
from dreamactor_jax.models.attention import Implementation  # noqa: E402
from dreamactor_jax.models.text_encoder import TEXT_LEN  # noqa: E402
from dreamactor_jax.sampling.animate import AnimateOptions, Models, animate  # noqa: E402
from dreamactor_jax.sampling.prompt_cache import TextEmbedder  # noqa: E402

# Video (H, W) and frames; the canvas is H x 2W. CLIP: a 1-layer tower of the model's image width
# (only its 257 tokens matter for the DiT's cost). VAE: a reduced one on CPU (its cost is per video).
PRESETS = {
    "tiny": dict(dim=48, heads=3, layers=2, ffn=40, text_dim=20, freq_dim=32, image_dim=16, size=(64, 64), frames=9,
                 steps=10, vae_dim=8),
    "mid": dict(dim=1536, heads=12, layers=2, ffn=8960, text_dim=4096, freq_dim=256, image_dim=1280,
                size=(480, 832), frames=5, steps=3, vae_dim=8),
    # Wan2.1-T2V-1.3B widened to the canvas's 36 input channels (no image branch), released VAE size.
    "1.3b": dict(dim=1536, heads=12, layers=30, ffn=8960, text_dim=4096, freq_dim=256, image_dim=None,
                 size=(480, 832), frames=81, steps=10, vae_dim=96),
}
GUIDANCE = 5.0


def dit_config(p: dict, dtype: str, attention: str) -> DiTConfig:
  return DiTConfig(dim=p["dim"], num_heads=p["heads"], num_layers=p["layers"], ffn_dim=p["ffn"], in_channels=36,
                   text_dim=p["text_dim"], freq_dim=p["freq_dim"], image_dim=p["image_dim"], param_dtype=dtype,
                   dtype=dtype, attention=attention)


def clip_config(p: dict) -> CLIPVisionConfig:
  return CLIPVisionConfig(dim=p["image_dim"], ffn_dim=p["image_dim"], num_heads=max(1, p["image_dim"] // 80),
                          num_layers=1)


def random_model(build, seed: int = 0):
  """`build()`'s model with numpy-drawn parameters (normal x 0.02, norm scales 1): no init programs to compile."""
  rng = np.random.default_rng(seed)
  graphdef, state, shapes = abstract_params(build)
  return merge_params(graphdef, state, {
      path: (rng.standard_normal(s.shape, np.float32) * 0.02 + (1.0 if path.endswith(("scale", "gamma")) else 0.0))
      .astype(s.dtype) for path, s in shapes.items()})


def text_embedder(text_dim: int, seed: int = 0) -> TextEmbedder:
  """Random prompt embeddings (20 tokens for the prompt, 8 for the negative), as UMT5 would give."""
  rng = np.random.default_rng(seed)
  table = {"a character dancing": rng.standard_normal((20, text_dim)).astype(np.float32),
           "": rng.standard_normal((8, text_dim)).astype(np.float32)}
  return TextEmbedder(text_dim, TEXT_LEN, load_encoder=lambda: lambda prompts: [table[p] for p in prompts])


def inputs(p: dict, seed: int = 0):
  rng = np.random.default_rng(seed)
  height, width = p["size"]
  return (rng.integers(0, 256, (height, width, 3), np.uint8),
          rng.integers(0, 256, (p["frames"], height, width, 3), np.uint8))


def timed_calls(call, repeats: int) -> dict:
  """Runs `call(hook)` `repeats` times; `call` calls `hook()` at each step's end (and may at the first
  step's start). Per step: the shortest interval between consecutive hooks over all calls; per
  video: the fastest call; first: the first call's time to its first hook."""
  steps, videos, first = [], [], None
  for _ in range(repeats):
    stamps = []
    start = time.perf_counter()
    call(lambda *_: stamps.append(time.perf_counter()))
    videos.append(time.perf_counter() - start)
    steps += list(np.diff(stamps))
    first = stamps[0] - start if first is None else first
  return dict(step=min(steps, default=float("nan")), video=min(videos), first=first, load=os.getloadavg()[0])


def time_ours(models: Models, p: dict, layout: str, steps: int, repeats: int) -> dict:
  reference, driving = inputs(p)
  options = AnimateOptions(steps=steps, guidance=GUIDANCE, grid="unipc", start_seconds=0.0,
                           segment_frames=p["frames"], overlap_frames=1, layout=layout)
  return timed_calls(lambda hook: animate(models, reference, driving, "a character dancing", fps=16.0,
                                          options=options, progress=hook), repeats)


def warmth(args) -> str:
  return "fastest of 2+ calls, warm" if args.repeats > 1 else "one call, our compilation included"


def peak_memory() -> str:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return f"peak device memory {stats['peak_bytes_in_use'] / 2**30:.1f} GiB"
  return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"


def token_counts(p: dict) -> str:
  frames, (height, width) = 1 + (p["frames"] - 1) // 4, p["size"]
  left = frames * (height // 16) * (width // 16)
  image = f", image {clip_config(p).num_tokens}" if p["image_dim"] else ""
  return f"tokens: canvas {2 * left:,} (full), left half {left:,} (motion_cache), text {TEXT_LEN}{image}"


def device_report(args, p: dict) -> None:
  dtype = "bfloat16" if args.dtype == "bf16" else "float32"
  config = dit_config(p, dtype, args.attention)
  start = time.perf_counter()
  dit = random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  vae = random_model(lambda: WanVAE(VAEConfig(base_dim=p["vae_dim"]), rngs=nnx.Rngs(1)))
  clip = random_model(lambda: CLIPVisionEncoder(clip_config(p), rngs=nnx.Rngs(2))) if p["image_dim"] else None
  models = Models(dit=dit, vae=vae, text=text_embedder(p["text_dim"]), clip=clip, size=p["size"])
  params = sum(v.size for v in jax.tree.leaves(nnx.state(dit, nnx.Param)))
  print(f"device={jax.devices()[0].device_kind} preset={args.preset} dtype={args.dtype} DiT {params / 1e9:.2f}B "
        f"params ({time.perf_counter() - start:.1f} s to build); {p['size'][0]}x{p['size'][1]} x {p['frames']} frames; "
        f"{token_counts(p)}; {args.steps} steps, CFG {GUIDANCE} batched")
  for layout in ("full", "motion_cache"):
    r = time_ours(models, p, layout, args.steps, args.repeats)
    print(f"{layout:>12}: {r['step']:.3f} s/step   {r['video']:.1f} s/video ({args.steps} steps; {warmth(args)}; "
          f"first step done {r['first']:.1f} s into the first call)   {peak_memory()}")
  print(f"command: python benchmarks/sampling.py {' '.join(sys.argv[1:])}")


def compare(args, p: dict) -> None:
  import torch
  import transformers
  from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
  from PIL import Image

  from dreamactor_jax.convert import load_torch_dit, load_torch_vae

  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  torch.manual_seed(0)
  torch_dit = WanTransformer3DModel(num_attention_heads=p["heads"], attention_head_dim=p["dim"] // p["heads"],
                                    in_channels=36, out_channels=16, text_dim=p["text_dim"], freq_dim=p["freq_dim"],
                                    ffn_dim=p["ffn"], num_layers=p["layers"], image_dim=p["image_dim"],
                                    added_kv_proj_dim=p["dim"]).eval()
  torch_vae = AutoencoderKLWan(base_dim=p["vae_dim"]).eval()
  with tempfile.TemporaryDirectory() as tmp:
    torch_dit.save_pretrained(Path(tmp) / "dit")
    torch_vae.save_pretrained(Path(tmp) / "vae")
    dit, _ = load_torch_dit(Path(tmp) / "dit", attention=args.attention)
    vae, _ = load_torch_vae(Path(tmp) / "vae")
  clip = random_model(lambda: CLIPVisionEncoder(clip_config(p), rngs=nnx.Rngs(2)))
  text = text_embedder(p["text_dim"])
  models = Models(dit=dit, vae=vae, text=text, clip=clip, size=p["size"])
  print(f"preset={args.preset} fp32 device={jax.devices()[0].device_kind} DiT dim {p['dim']}, {p['layers']} layers; "
        f"{p['size'][0]}x{p['size'][1]} x {p['frames']} frames (canvas {p['size'][0]}x{2 * p['size'][1]}); "
        f"{token_counts(p)}; {args.steps} UniPC steps, CFG {GUIDANCE}")
  ours = {layout: time_ours(models, p, layout, args.steps, args.repeats) for layout in ("full", "motion_cache")}

  scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                      num_train_timesteps=1000)
  vision = transformers.CLIPVisionConfig(hidden_size=p["image_dim"], intermediate_size=p["image_dim"],
                                         num_hidden_layers=1, num_attention_heads=clip_config(p).num_heads,
                                         image_size=224, patch_size=14)
  processor = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)()  # no torchvision
  pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=torch_vae, scheduler=scheduler,
                                 image_processor=processor,
                                 image_encoder=transformers.CLIPVisionModel(vision).eval(), transformer=torch_dit)
  prompt, negative = (torch.from_numpy(t)[None] for t in text(["a character dancing", ""]))
  reference, _ = inputs(p)
  height, width = p["size"]
  image = Image.fromarray(np.concatenate([reference, reference], axis=1))

  def call(hook):
    started = []

    def on_first_step(module, inputs):  # diffusers compiles nothing: its first step counts too
      if not started:
        started.append(hook())

    handle = torch_dit.register_forward_pre_hook(on_first_step)
    try:
      with torch.no_grad():
        pipe(image=image, prompt_embeds=prompt, negative_prompt_embeds=negative, height=height, width=2 * width,
             num_frames=p["frames"], num_inference_steps=args.steps, guidance_scale=GUIDANCE, output_type="np",
             callback_on_step_end=lambda pipeline, step, timestep, tensors: hook() or {})
    finally:
      handle.remove()

  theirs = timed_calls(call, args.repeats)

  print(f"{'':>24} {'s/step':>8} {'s/video':>9}   (per video: {warmth(args)}; load = 1-min load average after)")
  for layout, r in ours.items():
    print(f"{'ours ' + layout:>24} {r['step']:8.4g} {r['video']:9.2f}   (first step done {r['first']:.2f} s into the "
          f"first call; load {r['load']:.1f})")
  print(f"{'diffusers I2V pipeline':>24} {theirs['step']:8.4g} {theirs['video']:9.2f}   (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load {theirs['load']:.1f})")
  print(f"per step, diffusers / ours: full {theirs['step'] / ours['full']['step']:.2f}x, motion_cache "
        f"{theirs['step'] / ours['motion_cache']['step']:.2f}x; full / motion_cache "
        f"{ours['full']['step'] / ours['motion_cache']['step']:.2f}x")
  print(f"command: python benchmarks/sampling.py {' '.join(sys.argv[1:])}")


FLAGS = flags.FlagValues()
flags.DEFINE_enum("preset", None, sorted(PRESETS), "Model and video size (default: tiny; 1.3b with --device-report).",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "Denoising steps (default: the preset's).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("repeats", None, "Calls per layout and side (default: 2 for tiny, else 1); see timed_calls.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("torch-threads", None, "Torch intra-op threads (default: 1 for tiny, where OpenMP's spinning "
                     "threads are 10-100x slower on a shared 2-core machine; else torch's default).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_bool("device-report", False, "Our pipeline alone on the default device.", flag_values=FLAGS)
flags.DEFINE_enum("dtype", None, ["fp32", "bf16"], "DiT dtype in --device-report (default bf16); the comparison "
                  "runs fp32.", flag_values=FLAGS)
flags.DEFINE_enum("attention", "auto", list(typing.get_args(Implementation)), "Our attention implementation.",
                  flag_values=FLAGS)


def benchmark() -> None:
  args = cli.namespace(FLAGS)
  args.preset = args.preset or ("1.3b" if args.device_report else "tiny")
  p = PRESETS[args.preset]
  if not args.device_report and p["image_dim"] is None:
    raise cli.UsageError(f"--preset={args.preset}: is for --device-report (diffusers' I2V pipeline needs an image "
                         "branch)")
  args.steps = args.steps or p["steps"]
  args.repeats = args.repeats or (2 if args.preset == "tiny" else 1)
  args.torch_threads = args.torch_threads or (1 if args.preset == "tiny" else None)
  if args.device_report:
    args.dtype = args.dtype or "bf16"
    device_report(args, p)
  else:
    compare(args, p)


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
