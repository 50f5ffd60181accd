"""Wan-Animate-2 DiT: ours (jax.jit) vs diffusers' `WanAnimate2Transformer3DModel`, same random weights and inputs.

  python benchmarks/animate2.py --preset tiny
  python benchmarks/animate2.py --preset mid       # dim 1536, 12 heads, 10 layers; minutes on a CPU
  python benchmarks/animate2.py --preset gpu14b --weights /tmp/animate2-14b   # on a GPU: 14B, 480p x 81, bf16
  python benchmarks/animate2.py --preset tiny --dtype bf16 --diffusers compiled   # gpu14b's code path, tiny

The weights are drawn once by diffusers and saved with `save_pretrained` (to `--weights`, reused
when it already holds them, else a temporary folder); ours loads that folder through
`load_torch_dit`. Each side then runs in its own process, so its peak memory is its own: the
allocator's peak on a GPU, else the peak resident memory while the passes run (weights included).

Timed per side: the driving pass (once per segment) and one denoising step with guidance. Ours
runs the step as one call on the batch [cond; uncond], the uncond half skipping the configured
blocks; diffusers makes its pipeline's two calls, the second with `is_uncondtion=True`. s/video is
the DiT's share of one 81-frame segment: the driving pass plus `--steps` steps. By default diffusers
runs its flex path compiled (`compile_repeated_blocks()`, as it asks) on a GPU and eagerly on a CPU
(`--diffusers`); either way it compiles its flex block mask, which takes minutes on a CPU, once per
shape. Prints both, the ratio diffusers / ours (above 1: we are faster), the largest difference of
the two guided outputs relative to diffusers' largest value, and the command.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Preset:
  """A model shape (diffusers' config names) and the latent grid (F, H, W) of the driving clip;
  the denoised latents have one more (reference) frame."""

  dim: int
  heads: int
  layers: int
  ffn: int
  text_dim: int
  driving: tuple[int, int, int]
  dtype: str = "fp32"


# Animate-2 skips block 9 in the unconditional branch, so every preset has at least 10 blocks.
PRESETS = {
    "tiny": Preset(dim=48, heads=3, layers=10, ffn=40, text_dim=20, driving=(3, 6, 10)),
    # 192 x 320 video, 13 frames: 1,200 denoised + 960 driving tokens.
    "mid": Preset(dim=1536, heads=12, layers=10, ffn=8960, text_dim=4096, driving=(4, 24, 40)),
    # Wan2.2-Animate-2-14B (ANIMATE2.md) at 480 x 832, 81 frames: 34,320 denoised + 32,760 driving tokens.
    "gpu14b": Preset(dim=5120, heads=40, layers=40, ffn=13824, text_dim=4096, driving=(21, 60, 104), dtype="bf16"),
}
TEXT_TOKENS, CLIP_TOKENS, CLIP_DIM = 512, 257, 1280


def save_random_weights(preset: Preset, folder: Path) -> None:
  """diffusers' Animate-2 transformer with seeded random weights (its own init), saved to `folder`."""
  import torch  # noqa: PLC0415 (only this process and the diffusers worker need torch)
  from diffusers import WanAnimate2Transformer3DModel  # noqa: PLC0415

  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  dtype = torch.bfloat16 if preset.dtype == "bf16" else torch.float32
  default = torch.get_default_dtype()
  torch.set_default_dtype(dtype)  # draws a 14B model in bf16 straight away
  try:
    with torch.device(device):
      model = WanAnimate2Transformer3DModel(dim=preset.dim, ffn_dim=preset.ffn, num_heads=preset.heads,
                                            num_layers=preset.layers, text_dim=preset.text_dim)
  finally:
    torch.set_default_dtype(default)
  model.save_pretrained(folder)


def make_inputs(preset: Preset, path: Path) -> None:
  """Channels-last inputs of both passes, batch 1, written to `path` (.npz).

  driving `[1, Fd, H, W, 36]`: driving latents, an all-ones mask, driving latents again;
  latents `[1, 1 + Fd, H, W, 36]`: noise, the mask (1 on the reference frame), the reference latents
  on frame 0; text_driving/text/text_negative `[1, 512, text_dim]`; clip_driving/clip `[1, 257, 1280]`.
  """
  rng = np.random.default_rng(0)
  normal = lambda *shape: rng.standard_normal(shape, np.float32)
  frames, height, width = preset.driving
  driving = normal(1, frames, height, width, 16)
  mask = np.zeros((1, frames + 1, height, width, 4), np.float32)
  mask[:, 0] = 1
  reference = np.zeros((1, frames + 1, height, width, 16), np.float32)
  reference[:, 0] = normal(1, height, width, 16)
  np.savez(path, driving=np.concatenate([driving, np.ones_like(driving[..., :4]), driving], -1),
           latents=np.concatenate([normal(1, frames + 1, height, width, 16), mask, reference], -1),
           text_driving=normal(1, TEXT_TOKENS, preset.text_dim), text=normal(1, TEXT_TOKENS, preset.text_dim),
           text_negative=normal(1, TEXT_TOKENS, preset.text_dim), clip_driving=normal(1, CLIP_TOKENS, CLIP_DIM),
           clip=normal(1, CLIP_TOKENS, CLIP_DIM), timestep=np.array([500.0], np.float32))


class PeakResident:
  """The largest resident set size seen while the block runs (sampled every 2 ms), in bytes."""

  def __enter__(self):
    self.peak, self._done = 0, threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()
    return self

  def _poll(self) -> None:
    page = resource.getpagesize()
    while not self._done.is_set():
      with open("/proc/self/statm") as statm:
        self.peak = max(self.peak, int(statm.read().split()[1]) * page)
      time.sleep(0.002)

  def __exit__(self, *exc) -> None:
    self._done.set()
    self._thread.join()


def measure(drive, step, repeats: int, peak_bytes) -> dict:
  """Times `drive()` (the driving pass, which returns the cache) and `step(cache)` (one CFG step,
  which returns the velocity): one warm-up of each (compilation, block masks), then the best of
  `repeats`. The peak is `peak_bytes(resident)` over the timed calls, `resident` the largest resident
  set size seen meanwhile (on a CPU it includes memory the allocators kept from the warm-up)."""
  step(drive())
  seconds = {"drive_s": float("inf"), "step_s": float("inf")}
  with PeakResident() as resident:
    for _ in range(repeats):
      start = time.perf_counter()
      cache = drive()
      middle = time.perf_counter()
      velocity = step(cache)
      seconds = {"drive_s": min(seconds["drive_s"], middle - start),
                 "step_s": min(seconds["step_s"], time.perf_counter() - middle)}
  return dict(seconds, peak_bytes=peak_bytes(resident.peak), velocity=velocity)


def run_ours(preset: Preset, folder: Path, inputs_path: Path, repeats: int) -> dict:
  """Our driving pass (`encode_motion`) and one CFG step (batch [cond; uncond]) -> times, peak, output."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from dreamactor_jax.convert import load_torch_dit  # noqa: PLC0415

  model, _ = load_torch_dit(folder, dtype=preset.dtype)
  graphdef, state = nnx.split(model)
  x = {name: jnp.asarray(value) for name, value in np.load(inputs_path).items()}
  both = lambda a, b: jnp.concatenate([a, b])
  step_inputs = (both(x["latents"], x["latents"]), both(x["timestep"], x["timestep"]),
                 both(x["text"], x["text_negative"]), both(x["clip"], x["clip"]))
  branches = np.array([False, True])  # the uncond half skips the configured blocks

  @jax.jit
  def drive(state, driving, text, image):
    return nnx.merge(graphdef, state).encode_motion(driving, text, image_context=image)

  @jax.jit
  def step(state, latents, timestep, text, image, motion):
    return nnx.merge(graphdef, state)(latents, timestep, text, image_context=image, motion=motion,
                                      unconditional=branches)

  device = jax.devices()[0]
  result = measure(lambda: jax.block_until_ready(drive(state, x["driving"], x["text_driving"], x["clip_driving"])),
                   lambda cache: jax.block_until_ready(step(state, *step_inputs, cache)), repeats,
                   lambda resident: device.memory_stats()["peak_bytes_in_use"] if device.platform == "gpu" else resident)
  velocity = np.asarray(result.pop("velocity"), np.float32)
  return dict(result, device=device.device_kind, cond=velocity[0], uncond=velocity[1])


def run_diffusers(preset: Preset, folder: Path, inputs_path: Path, repeats: int, compiled: bool) -> dict:
  """diffusers' driving pass (`kv_cache_mode="extract"`) and its two guided calls ("cached"), as its
  modular pipeline makes them -> times, peak, outputs (channels last)."""
  import torch  # noqa: PLC0415
  from diffusers import WanAnimate2Transformer3DModel  # noqa: PLC0415
  from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache  # noqa: PLC0415

  device = "cuda" if torch.cuda.is_available() else "cpu"
  dtype = torch.bfloat16 if preset.dtype == "bf16" else torch.float32
  model = WanAnimate2Transformer3DModel.from_pretrained(folder, torch_dtype=dtype).to(device).eval()
  if compiled:  # uncompiled, flex attention falls back to an eager kernel that materialises the scores
    model.compile_repeated_blocks()
  x = {name: torch.from_numpy(value).to(device) for name, value in np.load(inputs_path).items()}
  channels_first = lambda t: t[0].permute(3, 0, 1, 2).to(dtype)  # 1 F H W C -> C F H W
  frames, height, width = preset.driving
  grid = torch.tensor([[frames, height // 2, width // 2]])
  cache = WanAnimate2KVCache(preset.layers)
  driving, latents = channels_first(x["driving"]), channels_first(x["latents"])
  drive_tokens, step_tokens = frames * height * width // 4, (frames + 1) * height * width // 4

  def drive():  # the cache stays inside `cache`
    model([driving[:16]], timestep=x["timestep"], encoder_hidden_states=[x["text_driving"][0].to(dtype)],
          condition_latents=[driving[16:]], kv_cache=cache, kv_cache_mode="extract", seq_len=drive_tokens,
          encoder_hidden_states_image=x["clip_driving"].to(dtype), offset_grid_sizes=grid)

  def branch(text: str, unconditional: bool):
    return model([latents[:16]], timestep=x["timestep"], encoder_hidden_states=[x[text][0].to(dtype)],
                 condition_latents=[latents[16:]], kv_cache=cache, kv_cache_mode="cached", seq_len=step_tokens,
                 encoder_hidden_states_image=x["clip"].to(dtype), reference_grid_sizes=grid,
                 origin_len=4 * (frames - 1) + 1, origin_area=[8 * height, 8 * width],
                 is_uncondtion=unconditional).sample[0]

  def synchronized(fn):
    def run(*args):
      with torch.no_grad():
        result = fn(*args)
      if device == "cuda":
        torch.cuda.synchronize()
      return result
    return run

  result = measure(synchronized(drive), synchronized(lambda _: (branch("text", False), branch("text_negative", True))),
                   repeats, lambda resident: torch.cuda.max_memory_allocated() if device == "cuda" else resident)
  channels_last = lambda t: t.float().cpu().numpy().transpose(1, 2, 3, 0)
  cond, uncond = result.pop("velocity")
  return dict(result, device=f"torch {torch.__version__}, {device}", cond=channels_last(cond),
              uncond=channels_last(uncond))


def in_own_process(fn, *args) -> dict:
  """`fn(*args)` in a fresh spawned process: separate allocators and peaks."""
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    return pool.submit(fn, *args).result()


FLAGS = flags.FlagValues()
_PRESET = flags.DEFINE_enum("preset", "tiny", sorted(PRESETS), "Model shape and latent grid.", flag_values=FLAGS)
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed runs after one warm-up; the best is kept.", lower_bound=1,
                                flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("steps", 40, "Denoising steps of s/video (Animate-2 base: 40).", lower_bound=1,
                              flag_values=FLAGS)
_DIFFUSERS = flags.DEFINE_enum("diffusers", None, ["compiled", "eager"], "diffusers' blocks compiled "
                               "(compile_repeated_blocks, its flex path) or eager (default: compiled on a GPU, "
                               "eager on a CPU).", flag_values=FLAGS)
_DTYPE = flags.DEFINE_enum("dtype", None, ["fp32", "bf16"], "Weights and compute dtype (default: the preset's; "
                           "tiny --dtype bf16 runs gpu14b's code path at a tiny size).", flag_values=FLAGS)
_WEIGHTS = flags.DEFINE_string("weights", None, "Folder of the random diffusers weights: written if absent, reused "
                               "if present (default: a temporary folder).", flag_values=FLAGS)


def benchmark() -> None:
  preset = dataclasses.replace(PRESETS[_PRESET.value], **({"dtype": _DTYPE.value} if _DTYPE.value else {}))
  compiled = _DIFFUSERS.value == "compiled"
  if _DIFFUSERS.value is None:
    import torch  # noqa: PLC0415

    compiled = torch.cuda.is_available()
  with tempfile.TemporaryDirectory() as tmp:
    folder = Path(_WEIGHTS.value or Path(tmp) / "transformer")
    if not (folder / "config.json").exists():
      in_own_process(save_random_weights, preset, folder)
    make_inputs(preset, Path(tmp) / "inputs.npz")
    ours = in_own_process(run_ours, preset, folder, Path(tmp) / "inputs.npz", _REPEATS.value)
    theirs = in_own_process(run_diffusers, preset, folder, Path(tmp) / "inputs.npz", _REPEATS.value, compiled)

  frames, height, width = preset.driving
  steps = _STEPS.value
  print(f"preset={_PRESET.value} dtype={preset.dtype} device={ours['device']} dim={preset.dim} layers={preset.layers} "
        f"driving {frames}x{height}x{width} latents: {(frames + 1) * height * width // 4:,} denoised + "
        f"{frames * height * width // 4:,} driving tokens")
  for name, side in (("ours (jax.jit)", ours),
                     (f"diffusers ({'compiled' if compiled else 'eager'}, {theirs['device']})", theirs)):
    print(f"{name}: driving pass {side['drive_s']:.3f} s, CFG step {side['step_s']:.3f} s, "
          f"s/video ({steps} steps) {side['drive_s'] + steps * side['step_s']:.1f} s, "
          f"peak {side['peak_bytes'] / 2**30:.2f} GiB")
  print(f"ratio diffusers/ours: CFG step {theirs['step_s'] / ours['step_s']:.2f}x, "
        f"driving pass {theirs['drive_s'] / ours['drive_s']:.2f}x, peak memory {theirs['peak_bytes'] / ours['peak_bytes']:.2f}x")
  for branch in ("cond", "uncond"):
    error = np.abs(ours[branch] - theirs[branch]).max() / np.abs(theirs[branch]).max()
    print(f"{branch}: max |ours - diffusers| / max |diffusers| = {error:.2e}")
  print(f"command: python benchmarks/animate2.py {' '.join(sys.argv[1:])}")


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
