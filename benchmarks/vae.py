"""Wan VAEs: our encode/decode time against diffusers' AutoencoderKLWan, and peak memory.

  python benchmarks/vae.py speed --frames 5 --height 128 --width 128
  python benchmarks/vae.py speed --vae wan2.2 --frames 5 --height 128 --width 128
  python benchmarks/vae.py memory --frames 81 --height 480 --width 832 --run
  python benchmarks/vae.py memory --vae wan2.2 --frames 81 --height 704 --width 1280
  python benchmarks/vae.py convs

`speed` builds the released VAE config (`--vae`: Wan2.1 or Wan2.2) with random weights in diffusers, loads the same weights
into ours through the importer, and times encode and decode of one clip (ours jitted, timed after
compilation; both on all CPU threads; the fastest of `--repeats` runs each). `memory` compiles decode ahead of time in both
formulations and prints XLA's buffer sizes; `--run` also decodes in a fresh process with the
chunked path and reports its peak RSS. `convs` times the 3x3x3 convolution alone at the decoder's
shapes (ours as `models/vae.py` runs it vs torch's conv3d), where the VAE spends its time.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.animation.frames import is_valid_frame_count  # noqa: E402
from dreamactor_jax.models import vae_conv  # noqa: E402
from dreamactor_jax.models.vae import VAE_SIZES, VAEConfig, WanVAE  # noqa: E402

GIB = 1 << 30


def _timed(fn, *args) -> tuple[float, object]:
  start = time.perf_counter()
  out = fn(*args)
  if isinstance(out, jax.Array):
    out.block_until_ready()
  return time.perf_counter() - start, out


def _diffusers_kwargs(config: VAEConfig) -> dict:
  """AutoencoderKLWan's arguments for one of our configs."""
  return dict(base_dim=config.base_dim, decoder_base_dim=config.decoder_base_dim, z_dim=config.z_dim,
              dim_mult=list(config.dim_mult), num_res_blocks=config.num_res_blocks,
              temperal_downsample=list(config.temporal_downsample), is_residual=config.residual_stages,
              patch_size=config.patch_size if config.patch_size > 1 else None, in_channels=config.pixel_channels,
              out_channels=config.pixel_channels, scale_factor_spatial=config.space_factor,
              latents_mean=list(config.latents_mean), latents_std=list(config.latents_std))


def speed(args: SimpleNamespace) -> None:
  import torch
  from diffusers import AutoencoderKLWan

  from dreamactor_jax.convert import load_torch_vae

  torch.manual_seed(0)
  reference = AutoencoderKLWan(**_diffusers_kwargs(VAE_SIZES[args.vae])).eval()
  with tempfile.TemporaryDirectory() as folder:
    reference.save_pretrained(folder)
    vae, _ = load_torch_vae(folder)
  encode = nnx.jit(lambda model, video: model.encode(video))
  decode = nnx.jit(lambda model, latents: model.decode(latents))
  video = np.random.default_rng(0).uniform(-1, 1, (1, args.frames, args.height, args.width, 3)).astype(np.float32)
  compile_time, latents = _timed(encode, vae, jnp.asarray(video))
  compile_time += _timed(decode, vae, latents)[0]
  ours_encode = min(_timed(encode, vae, jnp.asarray(video))[0] for _ in range(args.repeats))
  ours_decode = min(_timed(decode, vae, latents)[0] for _ in range(args.repeats))
  with torch.no_grad():
    torch_video = torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())
    torch_latents = reference.encode(torch_video).latent_dist.mode()
    theirs_encode = min(_timed(reference.encode, torch_video)[0] for _ in range(args.repeats))
    theirs_decode = min(_timed(reference.decode, torch_latents)[0] for _ in range(args.repeats))
  print(f"clip {args.frames}x{args.height}x{args.width}, {args.vae} VAE config, fp32, {jax.devices()[0].device_kind}, "
        f"torch threads {torch.get_num_threads()}; our compile {compile_time:.1f} s")
  for name, ours, theirs in (("encode", ours_encode, theirs_encode), ("decode", ours_decode, theirs_decode)):
    print(f"{name}: ours {ours:.2f} s, diffusers {theirs:.2f} s, speed ratio (diffusers/ours) {theirs / ours:.2f}")


# The decoder's residual-block convolutions on a 5-frame 128x128 clip: (frames with history, H, W, channels).
CONV_SHAPES = ((4, 16, 16, 384), (6, 32, 32, 384), (6, 64, 64, 192), (6, 128, 128, 96))


def convs(args: SimpleNamespace) -> None:
  import torch

  rng = np.random.default_rng(0)
  print(f"3x3x3 convolution, 'valid' in time, 'same' in space, fp32, {jax.devices()[0].device_kind}, "
        f"torch threads {torch.get_num_threads()}; the fastest of {args.repeats} runs each")
  for frames, height, width, channels in CONV_SHAPES:
    x = rng.standard_normal((1, frames, height, width, channels), np.float32)
    kernel = rng.standard_normal((3, 3, 3, channels, channels), np.float32) * 0.02
    flops = 2 * (frames - 2) * height * width * channels * channels * 27
    ours_fn = jax.jit(lambda x, kernel: vae_conv._conv3d(x, kernel, time_stride=1))
    ours_args = jnp.asarray(x), jnp.asarray(kernel)
    ours_fn(*ours_args).block_until_ready()
    ours = min(_timed(ours_fn, *ours_args)[0] for _ in range(args.repeats))
    torch_x = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy())
    torch_kernel = torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy())
    with torch.no_grad():
      run = lambda: torch.nn.functional.conv3d(torch_x, torch_kernel, padding=(0, 1, 1))  # noqa: E731
      run()
      theirs = min(_timed(run)[0] for _ in range(args.repeats))
    print(f"{frames - 2} frames {height}x{width}x{channels}: ours {flops / ours / 1e9:.0f} GFLOP/s, "
          f"torch {flops / theirs / 1e9:.0f} GFLOP/s, speed ratio (torch/ours) {theirs / ours:.2f}")


def _decode_fn(config: VAEConfig, latent_shape: tuple[int, ...]):
  graphdef, state = nnx.split(nnx.eval_shape(lambda: WanVAE(config, rngs=nnx.Rngs(0))))

  def run(state, latents):
    return nnx.merge(graphdef, state).decode(latents)

  return jax.jit(run), state, jax.ShapeDtypeStruct(latent_shape, jnp.float32)


def _latent_shape(args: SimpleNamespace) -> tuple[int, ...]:
  config = VAE_SIZES[args.vae]
  space = config.space_factor
  return (1, 1 + (args.frames - 1) // config.time_factor, args.height // space, args.width // space, config.z_dim)


def memory(args: SimpleNamespace) -> None:
  latent_shape = _latent_shape(args)
  print(f"decode of {args.frames}x{args.height}x{args.width} (latents {latent_shape}), {args.vae} VAE config, fp32")
  for mode in ("single", "chunked"):
    fn, state, latents = _decode_fn(dataclasses.replace(VAE_SIZES[args.vae], mode=mode), latent_shape)
    stats = fn.lower(state, latents).compile().memory_analysis()
    peak = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    print(f"{mode:8s} XLA buffers: temporaries {stats.temp_size_in_bytes / GIB:.2f} GiB, "
          f"arguments {stats.argument_size_in_bytes / GIB:.2f} GiB, output {stats.output_size_in_bytes / GIB:.2f} GiB, "
          f"total {peak / GIB:.2f} GiB")
  if args.run:
    command = [sys.executable, __file__, "_decode", "--vae", args.vae, "--frames", str(args.frames),
               "--height", str(args.height), "--width", str(args.width)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"chunked decode run: {time.perf_counter() - start:.0f} s wall, peak RSS {peak_rss / GIB:.2f} GiB")


def _decode_once(args: SimpleNamespace) -> None:
  """Child process of `memory --run`: random weights, one chunked decode."""
  config = dataclasses.replace(VAE_SIZES[args.vae], mode="chunked")
  fn, _, latents = _decode_fn(config, _latent_shape(args))
  vae = WanVAE(config, rngs=nnx.Rngs(0))
  noise = jax.random.normal(jax.random.key(0), latents.shape, latents.dtype)
  jax.block_until_ready(fn(nnx.state(vae), noise))


def _command_flags(*names: str) -> flags.FlagValues:
  """A sub-command's flags, those of `names`."""
  values = flags.FlagValues()
  definitions = {
      "vae": lambda: flags.DEFINE_enum("vae", "wan2.1", sorted(VAE_SIZES), "Which released VAE config.",
                                       flag_values=values),
      "frames": lambda: flags.DEFINE_integer("frames", 5, "Video frames, 1 + 4k.", flag_values=values),
      "height": lambda: flags.DEFINE_integer("height", 128, "Frame height in pixels, a multiple of the VAE's "
                                             "space factor (wan2.1: 8, wan2.2: 16).", flag_values=values),
      "width": lambda: flags.DEFINE_integer("width", 128, "Frame width in pixels, as --height.", flag_values=values),
      "repeats": lambda: flags.DEFINE_integer("repeats", 3, "Timed runs of each; the fastest counts.", lower_bound=1,
                                              flag_values=values),
      "run": lambda: flags.DEFINE_bool("run", False, "Also run the chunked decode and measure peak RSS.",
                                       flag_values=values),
  }
  for name in names:
    definitions[name]()
  if "frames" in names:
    cli.require(values, "frames", is_valid_frame_count, "expected 1 + 4k frames")
  return values


def _clip_command(body, summary: str, *names: str) -> cli.Command:
  """A command on one clip: `--frames`, `--height`, `--width` checked against `--vae` before `body` runs."""
  values = _command_flags("vae", "frames", "height", "width", *names)

  def checked() -> None:
    args = cli.namespace(values)
    space = VAE_SIZES[args.vae].space_factor
    for name in ("height", "width"):
      if getattr(args, name) <= 0 or getattr(args, name) % space:
        raise cli.UsageError(f"--{name}={getattr(args, name)}: expected a positive multiple of {space}, the "
                             f"{args.vae} VAE's space factor")
    body(args)

  return cli.Command(summary, values, checked)


def _convs_command() -> cli.Command:
  values = _command_flags("repeats")
  return cli.Command("the decoder's 3x3x3 convolutions alone, ours vs torch's conv3d", values,
                     lambda: convs(cli.namespace(values)))


COMMANDS = {
    "speed": _clip_command(speed, "encode and decode time, ours vs diffusers' AutoencoderKLWan", "repeats"),
    "memory": _clip_command(memory, "XLA's decode buffers, single pass vs chunked (--run: measured)", "run"),
    "convs": _convs_command(),
    "_decode": _clip_command(_decode_once, "one chunked decode (the child process of memory --run)"),
}


def main(argv: list[str] | None = None) -> int:
  return cli.run_command(COMMANDS, argv, program="python benchmarks/vae.py", doc=__doc__)


if __name__ == "__main__":
  os.environ.setdefault("TQDM_DISABLE", "1")
  sys.exit(main())
