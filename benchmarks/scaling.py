"""Scaling planner: which TPU slice (or GPU) fits a training or sampling configuration, before renting it.

Compiles the real sharded training step of a stage config (`dreamactor_jax/configs/stage1.py`: the in-context
objective of `training/objective.py`, the optimizer of `training/optimizer.py`, through
`training/step.py` with the mesh, rules and sequence-parallel attention of `parallel/`) ahead of
time for a TPU topology, using only abstract shapes (no arrays, no TPU: libtpu's compiler runs on any Linux
machine), and reports the compiler's per-chip peak memory against the chip's HBM, the mesh and
sharding it chose, the FLOPs of one step and the MFU a given step time would imply.

  pip install -e '.[tpu]'    # libtpu, the TPU compiler; one libtpu process at a time
  python benchmarks/scaling.py train --model 14b --chips v5p-8,v5p-64,v5p-256 --resolution 480p --trainable full
  python benchmarks/scaling.py train --model 14b --chips v5e-64 --resolution 720p --trainable lora
  python benchmarks/scaling.py train --model animate2 --chips v5p-1,v5p-8,v5p-16,v5p-32,v5p-64,v6e-8,v6e-64 --trainable full
  python benchmarks/scaling.py train --model 5b --chips v5p-8,v5p-1 --resolution 480p,704x1280   # TI2V-5B, 16x VAE
  python benchmarks/scaling.py sample --model 1.3b,14b --resolution 480p
  python benchmarks/scaling.py sample --model 14b --layout animate2 --resolution 480p,720p,800x640 --chips v5p-1,v5p-8,v6e-8
  python benchmarks/scaling.py train --model 1.3b --chips gpu-1   # on a GPU machine: compiled, run and timed
  python benchmarks/scaling.py report --json results.jsonl   # tables of every row the runs appended

Training (`dreamactor_jax/configs/stage1.py:<model>`: bf16 compute, full rematerialisation per block, the in-context
canvas with the video width doubled, 36 input channels, the CLIP branch for 14B; `--model 5b`: TI2V-5B
reading the 48 latent channels of Wan2.2's VAE alone (16x16 pixels per latent, per-token timesteps); `--model animate2`:
Wan-Animate-2-14B's step, the driving pass and the generation pass with its leading reference frame
in one differentiable function, both sequence-parallel): `--trainable lora`
is the paper's recipe as configured (bf16 base frozen, rank-256 fp32 LoRA on the FFNs, AdamW state
for the adapters only); `--trainable full` trains every weight (fp32 master weights and AdamW
moments). One sample per data x fsdp group (global batch = chips / (context x tensor)); a one-chip
v5p compile (95 GiB) stands in for one GPU and an 8-chip one for an 8-GPU node, so the table says
whether the same step fits 80 GB and 141 GB GPUs. Sampling: bf16
weights (adapters merged), one DiT evaluation of the CFG batch (cond + uncond = 2), compiled for
TPU slices (default one v5p chip, 95 GiB: the nearest compiler we can run here to one 80 GB or
141 GB GPU, so its peak stands in for theirs; slices shard the weights and split the tokens over
`context`, as `sample.py` does) and, labelled as a fallback, for XLA:CPU, whose memory analysis
overstates (bf16 widened to f32, no rematerialisation); `--platform gpu` runs it on the local GPU
and reads the allocator's peak. The motion layouts (`--layout motion_cache`, `--layout animate2`:
`--model 14b` is Wan-Animate-2-14B's shape) compile two programs: the driving pass that writes
the per-layer key/value cache, and the CFG step with that cache resident. Beside the compiler's
peaks the table gives the weights and cache per device (and diffusers' cache for Animate-2) and an
analytic peak: weights + cache + one block's activations (`step_activation_bytes`).

FLOPs: "model" FLOPs are the analytic matmul FLOPs of the step without recomputation (the MFU
convention: forward, plus backward for activations and trainable weights); "traced" FLOPs count
every matmul of the compiled program, rematerialisation and attention kernels included, from its
jaxpr (XLA's own cost analysis counts a loop body once and skips Pallas kernels).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
import typing
from pathlib import Path

# Compile-only use never touches a TPU, so libtpu's one-process lock (taken by any JAX process of
# an environment with libtpu installed) need not stop the planner.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import animation, cli  # noqa: E402
from dreamactor_jax.animation.frames import is_valid_frame_count  # noqa: E402
from dreamactor_jax.configs import stage1  # noqa: E402
from dreamactor_jax.models import DiTConfig, WanDiT  # noqa: E402
from dreamactor_jax.models.dit import LAYOUTS  # noqa: E402
from dreamactor_jax.models.stack import RematPolicy  # noqa: E402
from dreamactor_jax.models.text_encoder import TEXT_LEN  # noqa: E402
from dreamactor_jax.models.vae import VAE_SIZES  # noqa: E402
from dreamactor_jax.parallel import make_plan  # noqa: E402
from dreamactor_jax.training.latent_batch import LatentBatch  # noqa: E402
from dreamactor_jax.training.objective import animation_loss  # noqa: E402
from dreamactor_jax.training.optimizer import make_optimizer  # noqa: E402
from dreamactor_jax.training.step import (abstract_train_state, batch_shardings, create_train_state,  # noqa: E402
                                          jit_train_step)


@dataclasses.dataclass(frozen=True)
class Chip:
  """An accelerator: how to name its TPU topologies, its memory and its peak dense bf16 FLOP/s (vendor docs)."""

  topology: str
  chip_config: str
  hbm_bytes: float
  peak_flops: float
  shapes: dict[int, str]


GPU_HBM_BYTES = 80e9  # an 80 GB H100 or A100: 74.5 GiB, leaving room for the CUDA context
CHIPS = {
    "v5p": Chip("v5:{}", "megacore", 95 * 2**30, 459e12, {1: "1x1x1", 4: "2x2x1", 8: "2x2x2", 16: "2x2x4",
                                                          32: "2x4x4", 64: "4x4x4", 256: "4x8x8"}),
    "v5e": Chip("v5e:{}", "default", 16 * 2**30, 197e12, {1: "1x1", 4: "2x2", 8: "2x4", 64: "8x8", 256: "16x16"}),
    "v6e": Chip("v6e:{}", "default", 32 * 2**30, 918e12, {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8",
                                                           64: "8x8", 256: "16x16"}),
    # The local GPUs, measured rather than compiled for (`--chips gpu-1`): an 80 GB H100 SXM.
    "gpu": Chip("", "", GPU_HBM_BYTES, 989e12, {n: f"local x{n}" for n in (1, 2, 4, 8)}),
}
# Video height, width of the driving video; --resolution also takes any <height>x<width>.
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280)}
CLIP_TOKENS = 257
GPUS = {"80 GB": GPU_HBM_BYTES, "141 GB": 141e9}  # one H100/A100 80 GB, one H200 141 GB


# The smallest frame-size multiple of the planned models (Wan2.1's VAE x8, patch 2); canvas_latents checks each
# model's own (Wan2.2's 16x VAE: 32).
VAE_SPACE = VAE_SIZES["wan2.1"].space_factor
SIZE_MULTIPLE = DiTConfig().pixel_multiple(VAE_SPACE)


def video_size(resolution: str) -> tuple[int, int]:
  """(height, width) in pixels of a RESOLUTIONS name or `<height>x<width>` (multiples of SIZE_MULTIPLE)."""
  if resolution in RESOLUTIONS:
    return RESOLUTIONS[resolution]
  size = cli.parse_size(resolution)
  animation.check_frame_size("--resolution", size, SIZE_MULTIPLE)
  return size


def _is_resolution(name: str) -> bool:
  try:
    return bool(video_size(name))
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class SamplingGrids:
  """Latent grids (F, H, W) of one sampling step: what is denoised, and what the driving pass
  encodes into the cache (None without one), for a cache of `cache_batch` samples."""

  denoised: tuple[int, int, int]
  driving: tuple[int, int, int] | None
  cache_batch: int


def topology_devices(chip: str, count: int):
  """Compile-only devices of a `chip` slice with `count` chips (needs libtpu)."""
  from jax.experimental import topologies  # noqa: PLC0415

  spec = CHIPS[chip]
  if count not in spec.shapes:
    raise ValueError(f"--chips {chip}-{count}: known {chip} slice sizes are {sorted(spec.shapes)}")
  shape = spec.shapes[count]
  sizes = [int(size) for size in shape.split("x")] + [1] * (4 - len(shape.split("x")))
  # Hosts of 2x2 chips; wrap-around links on the axes that span a whole pod (v5p from 4, 2D pods at 16).
  wrap = tuple(size >= (4 if chip == "v5p" else 16) for size in sizes[:3])
  topology = topologies.get_topology_desc(
      topology_name=spec.topology.format(shape), platform="tpu", chip_config_name=spec.chip_config,
      chips_per_host_bounds=tuple(min(size, bound) for size, bound in zip(sizes, (2, 2, 1))), num_slices=1, wrap=wrap)
  return topology.devices


def choose_mesh(chips: int, heads: int, context: int | None, tensor: int = 1) -> dict[str, int]:
  """`tensor` chips split the heads and FFN width; context parallel over the largest divisor of the
  heads left per chip and the chips up to 8 (Ulysses needs it to divide them; 8 chips is a host or a
  torus ring); fsdp over the rest."""
  if heads % tensor or chips % tensor:
    raise ValueError(f"--tensor {tensor}: must divide the {heads} heads and the {chips} chips")
  if context is None:
    context = max(c for c in range(1, 9) if (heads // tensor) % c == 0 and (chips // tensor) % c == 0)
  if chips % (context * tensor):
    raise ValueError(f"--context {context} x --tensor {tensor} does not divide {chips} chips")
  return {"data": 1, "fsdp": chips // (context * tensor), "context": context, "tensor": tensor}


def space_factor(config: DiTConfig) -> int:
  """Pixels per latent of the VAE the DiT reads: Wan2.2's 16 for TI2V (`condition="timestep"`), else Wan2.1's 8."""
  return VAE_SIZES["wan2.2" if config.condition == "timestep" else "wan2.1"].space_factor


def canvas_latents(resolution: str, frames: int, factor: int = 8) -> tuple[int, int, int]:
  """Latent (F, H, W) of the in-context canvas: the video's width doubled (CONTRACTS "Canvas"), `factor`
  pixels per latent (TI2V-5B's 16: 480p or 704x1280, Wan2.2's 720p)."""
  height, width = video_size(resolution)
  if height % (2 * factor) or width % (2 * factor):
    raise ValueError(f"--resolution {resolution}: the {factor}x VAE and 2x2 patches need multiples of {2 * factor}")
  return (frames - 1) // 4 + 1, height // factor, 2 * width // factor


def stage_config(size: str, trainable: str, *, layout: str | None = None, remat: str | None = None):
  """`dreamactor_jax/configs/stage1.py:<size>` for `trainable` "lora" (as configured) or "full" (no
  adapters, fp32 weights)."""
  config = stage1.get_config(size)
  if trainable == "full":
    config.model.update(lora_rank=0, param_dtype="float32")
  elif not config.model.lora_rank:
    raise ValueError(f"--trainable lora: dreamactor_jax/configs/stage1.py:{size} has no LoRA (model.lora_rank=0)")
  if layout:
    config.model.layout = layout
  if remat:
    config.model.remat = remat
  return config


def model_flops(config: DiTConfig, grid: tuple[int, int, int], batch: int, trainable: str,
                driving: tuple[int, int, int] | None = None) -> float:
  """Analytic matmul FLOPs of one training step on latent `grid` (the canvas, or Animate-2's
  generation stream), no recomputation: forward, plus backward for activations (x1) and, when
  training every weight, for weights (x1); LoRA adapters' own FLOPs (rank << width) are left out.
  With a `driving` grid (animate2) the driving pass runs too and generation frame j >= 1 also
  attends to driving frame j - 1."""
  dim, ffn, layers, patch = config.dim, config.ffn_dim, config.num_layers, math.prod(config.patch_size)
  text, image = TEXT_LEN, CLIP_TOKENS if config.image_dim else 0

  def forward(tokens: int, pairs: int, channels_out: int) -> int:
    """One pass of `tokens` queries, `pairs` query-key pairs of self-attention."""
    weights_per_layer = (4 * tokens * dim * dim + 2 * tokens * dim * dim + 4 * (text + image) * dim * dim
                         + 2 * tokens * dim * ffn)  # multiply-adds: self q k v o, cross q o, cross k v, FFN
    scores_per_layer = 2 * pairs * dim + 2 * tokens * (text + image) * dim  # q.k and p.v
    outside = (tokens * patch * (config.in_channels + channels_out) * dim + text * (config.text_dim + dim) * dim
               + image * ((config.image_dim or 0) + dim) * (config.image_dim or 0))
    if config.condition == "timestep":  # the timestep embedding and its 6 modulations, once per token
      outside += tokens * (config.freq_dim + dim + 6 * dim) * dim
    return 2 * (layers * (weights_per_layer + scores_per_layer) + outside)

  tokens = math.prod(grid) // patch
  total = forward(tokens, tokens * tokens, config.out_channels)
  if driving is not None:  # the driving pass computes no output of its own
    driving_tokens, frame_tokens = math.prod(driving) // patch, tokens * config.patch_size[0] // grid[0]
    frame_pairs = (tokens - frame_tokens) * frame_tokens
    total += forward(driving_tokens, driving_tokens * driving_tokens, 0) + 2 * layers * 2 * frame_pairs * dim
  return (3 if trainable == "full" else 2) * batch * total


def traced_flops(jaxpr) -> float:
  """Matmul FLOPs of a (closed) jaxpr over the whole mesh: dot_general, scan bodies times their
  length, shard_map bodies times their shard count, splash attention kernels by their shapes."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
    elif name == "pallas_call":
      total += _pallas_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * traced_flops(eqn.params["jaxpr"])
    elif name == "shard_map":
      mesh = eqn.params["mesh"]
      shards = math.prod(mesh.shape[axis] for axis in eqn.params["newly_manual_axes"])
      total += shards * traced_flops(eqn.params["jaxpr"])
    else:
      for sub in _sub_jaxprs(eqn.params):
        total += traced_flops(sub)
  return total


def _sub_jaxprs(params):
  for value in params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for item in values:
      if isinstance(item, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr)):
        yield item


def _pallas_flops(eqn) -> float:
  """Splash attention kernels: fwd 2 matmuls, dq 3, dkv 4, each 2 B N Lq Lk K."""
  label = str(eqn.params.get("name_and_src_info", eqn.params.get("name", "")))
  floats = [v.aval.shape for v in eqn.invars if jnp.issubdtype(v.aval.dtype, jnp.floating) and v.aval.ndim >= 3]
  if "splash" not in label or len(floats) < 2:
    return 0.0
  q, k = floats[0], floats[1]
  matmuls = 3 if "_dq" in label else 4 if "_dkv" in label else 2
  return matmuls * 2 * math.prod(q[:-1]) * k[-2] * q[-1]


def _hbm_used(message: str) -> float | None:
  """Bytes the compiler (TPU) or allocator (GPU) said it needed (at least), from its out-of-memory message."""
  units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
  for pattern in (r"Used ([\d.]+)([KMGT]?) of [\d.]+[KMGT]? hbm", r"\(([\d.]+)([KMGT]?)\) exceeds available HBM",
                  r"trying to allocate ([\d.]+)([KMGT])iB"):  # the last: XLA:GPU's allocator
    match = re.search(pattern, message)
    if match:
      return float(match.group(1)) * units[match.group(2)]
  return None


def plan_training(args, size: str, target: str, resolution: str) -> dict:
  """One training step compiled for a TPU slice (abstract shapes); on `gpu-N` also run on the local
  GPUs (weights drawn there, a random batch, the mean of 3 steps after a warm-up, the allocator's peak)."""
  chip, count = target.split("-")
  devices = jax.devices("gpu")[:int(count)] if chip == "gpu" else topology_devices(chip, int(count))
  config = stage_config(size, args.trainable, layout=args.layout, remat=args.remat)
  model_cfg = DiTConfig.from_mapping(config.model)
  mesh = choose_mesh(len(devices), model_cfg.num_heads, args.context, args.tensor)
  plan = make_plan(mesh, {**config.parallel, "sequence_parallel": args.sequence_parallel}, devices=devices)
  make_model = lambda: WanDiT(model_cfg, rngs=nnx.Rngs(0))
  optimizer = make_optimizer(config.optimizer)
  trainable = nnx.LoRAParam if args.trainable == "lora" else nnx.Param
  graphdef, abstract = abstract_train_state(make_model, optimizer, trainable)
  shardings = plan.param_shardings(abstract)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  if model_cfg.layout == "animate2":  # the generation stream (reference frame, then the clip), the driving clip
    grids = sampling_grids("animate2", resolution, args.frames)
    grid, driving_grid = grids.denoised, grids.driving
  else:  # the whole canvas (motion_cache splits it inside the loss)
    grid, driving_grid = canvas_latents(resolution, args.frames, space_factor(model_cfg)), None
  batch = abstract_latent_batch(model_cfg, plan.axis_size("batch"), grid, driving_grid)
  batch_size = batch.target.shape[0]
  batch_sharding = batch_shardings(batch, plan)
  batch = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), batch, batch_sharding)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=plan.sharding(()))
  loss_fn = functools.partial(animation_loss, sigmas=dict(config.sampling.train), region=config.animation.loss_region,
                              layout=model_cfg.layout)
  step = jit_train_step(graphdef, optimizer, plan, shardings, batch_sharding, loss_fn=loss_fn)
  start = time.perf_counter()
  traced = step.trace(state, batch, key)
  tokens = lambda grid: math.prod(grid) // math.prod(model_cfg.patch_size)
  row = {"kind": "train", "model": size, "target": target, "resolution": resolution, "frames": args.frames,
         "tokens": tokens(grid), "driving_tokens": driving_grid and tokens(driving_grid), "trainable": args.trainable, "layout": model_cfg.layout, "remat": model_cfg.remat, "mesh": mesh,
         "sequence_parallel": args.sequence_parallel, "global_batch": batch_size,
         "params": sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params) + jax.tree.leaves(abstract.frozen)),
         "trained_params": sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params)),
         "hbm_gib": CHIPS[chip].hbm_bytes / 2**30, "traced_flops": traced_flops(traced.jaxpr),
         "model_flops": model_flops(model_cfg, grid, batch_size, args.trainable, driving_grid),
         "peak_flops": CHIPS[chip].peak_flops * len(devices),
         "ffn_sharding": {"/".join(map(str, path)): str(s.get_value().spec) for part in (shardings.params, shardings.frozen)
                          for path, s in nnx.to_flat_state(part) if "ffn" in path}}
  row["trace_s"] = time.perf_counter() - start
  result = compile_peak(traced.lower(), "tpu")
  compiled = result.pop("compiled")
  row.update(result)
  if compiled is not None:
    row["xla_cost_flops_per_chip"] = compiled.cost_analysis().get("flops")
    if chip == "gpu":
      row.update(measure_train_step(compiled, make_model, optimizer, trainable, shardings, batch, key.sharding))
  row["compile_s"] = time.perf_counter() - start
  return row


def abstract_latent_batch(config: DiTConfig, batch: int, grid: tuple[int, int, int],
                          driving: tuple[int, int, int] | None) -> LatentBatch:
  """A `LatentBatch` of abstract bf16 arrays: `batch` samples on latent `grid` (F, H, W) and, for
  animate2, a driving clip on the `driving` grid with its own prompt and CLIP tokens."""
  abstract = lambda *shape: jax.ShapeDtypeStruct((batch, *shape), jnp.bfloat16)
  text = lambda: abstract(TEXT_LEN, config.text_dim)
  image = lambda: abstract(CLIP_TOKENS, config.image_dim) if config.image_dim else None
  z = config.out_channels  # the VAE's latent channels (48 for TI2V-5B)
  latents = LatentBatch(target=abstract(*grid, z), condition=abstract(*grid, z), mask=abstract(*grid, 4),
                        text=text(), image=image())
  if driving is None:
    return latents
  return dataclasses.replace(latents, driving=abstract(*driving, z), driving_text=text(), driving_image=image())


def measure_train_step(compiled, make_model, optimizer, trainable, shardings, batch, key_sharding) -> dict:
  """Seconds per step of `compiled` on real arrays (mean of 3 after one warm-up) and the peak bytes."""
  state = jax.jit(lambda: create_train_state(make_model, optimizer, trainable), out_shardings=shardings)()
  keys = iter(jax.random.split(jax.random.key(1), 16))
  arrays = jax.tree.map(lambda x: jax.device_put(jax.random.normal(next(keys), x.shape, x.dtype), x.sharding), batch)
  key = jax.device_put(jax.random.key(2), key_sharding)
  times = []
  for _ in range(4):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, arrays, key))
    times.append(time.perf_counter() - start)
  device = jax.tree.leaves(state)[0].devices().pop()
  return {"measured_step_s": sum(times[1:]) / 3, "peak_bytes": device.memory_stats()["peak_bytes_in_use"],
          "device": device.device_kind}


def sampling_grids(layout: str, resolution: str, frames: int, factor: int = 8) -> SamplingGrids:
  """Latent grids of one sampling segment of `frames` video frames, by attention layout (`factor`
  pixels per latent)."""
  latent = canvas_latents(resolution, frames, factor)
  latent = (latent[0], latent[1], latent[2] // 2)  # one half of the canvas
  if layout == "animate2":  # a leading reference-image frame, then the video; one driving cache for both branches
    return SamplingGrids(denoised=(latent[0] + 1, *latent[1:]), driving=latent, cache_batch=1)
  if layout == "motion_cache":  # the canvas's halves; the pipeline caches the [prompt; negative] batch
    return SamplingGrids(denoised=latent, driving=latent, cache_batch=2)
  return SamplingGrids(denoised=canvas_latents(resolution, frames, factor), driving=None, cache_batch=0)


def step_activation_bytes(config: DiTConfig, tokens: int, batch: int) -> int:
  """Analytic live activations of one block of a bf16 forward over `tokens` tokens (per device) and
  `batch` samples: the fp32 residual stream in and out (8 D bytes a token), the modulated input, q,
  k, v and the attention output in bf16 (10 D), two fp32 attention partials merged by log-sum-exp
  (8 D), the FFN's hidden layer before and after its activation in bf16 (4 ffn). Flash-style
  kernels keep no score matrix."""
  return batch * tokens * (26 * config.dim + 4 * config.ffn_dim)


def diffusers_cache_bytes(config: DiTConfig, driving_tokens: int) -> int:
  """diffusers' `WanAnimate2KVCache`: pre-RoPE keys and values of every layer, one driving clip, bf16."""
  return config.num_layers * 2 * driving_tokens * config.dim * 2


def sample_target(target: str) -> tuple[list, str]:
  """Devices and the compiler's name for a sampling target: a TPU slice `<chip>-<n>` (compile only),
  `cpu` (XLA:CPU, fallback, compile only) or `gpu` (the local GPU, run and measured)."""
  if target in ("cpu", "gpu"):
    devices = jax.devices(target)[:1]
    return devices, "XLA:CPU (fallback)" if target == "cpu" else f"{devices[0].device_kind} (measured)"
  chip, count = target.split("-")
  return list(topology_devices(chip, int(count))), f"TPU {target} ({CHIPS[chip].shapes[int(count)]})"


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a tree of sharded abstract arrays (its largest shard of each)."""
  return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def compile_peak(lowered, platform: str) -> dict:
  """Compiles `lowered`; its per-device peak bytes (TPU: the compiler's; XLA:CPU: arguments +
  outputs + temporaries, an upper bound) or, when the TPU compiler refuses it for want of HBM, the
  bytes its message says it needed."""
  try:
    compiled = lowered.compile()
  except Exception as error:  # noqa: BLE001 (the compiler's refusal is a result)
    message = str(error)
    if "RESOURCE_EXHAUSTED" not in message and "hbm" not in message.lower():
      raise
    return dict(compiled=None, fits=False, peak_bytes=_hbm_used(message), error=message.splitlines()[0][:300])
  memory = compiled.memory_analysis()
  peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
          if platform == "cpu" else memory.peak_memory_in_bytes)
  return dict(compiled=compiled, fits=True, peak_bytes=peak, argument_bytes=memory.argument_size_in_bytes)


def plan_sampling(args, size: str, resolution: str, target: str) -> dict:
  """One sampling step of the CFG batch (cond + uncond = 2), bf16, weights sharded by the plan and
  tokens over `context` on a slice (as `sample.py` does), compiled ahead of time for `target`
  (`sample_target`). Motion layouts (`motion_cache`, `animate2`) compile two programs: the driving
  pass that writes the cache, and the denoising step with that cache resident as an argument. On
  `gpu` both also run once on the local device (random weights drawn there), peak bytes measured."""
  devices, compiler = sample_target(target)
  platform = "tpu" if "-" in target else target
  stage = stage_config(size, "full", layout=args.layout)
  stage.model.update(param_dtype="bfloat16", remat="none")  # adapters merged into bf16 weights
  if stage.model.layout == "animate2":  # Wan-Animate-2's settings (ANIMATE2.md), as its importer reads them
    stage.model.update(motion_timestep=1.0, text_len=TEXT_LEN, unconditional_skip_layers=(9,))
  config = DiTConfig.from_mapping(stage.model)
  if args.sequence_parallel == "ulysses" and config.num_heads % len(devices):
    raise ValueError(f"--chips {target}: ulysses splits the {config.num_heads} heads over context={len(devices)}, "
                     "which does not divide them; use --sequence-parallel ring")
  plan = make_plan({"context": len(devices)}, {**stage.parallel, "sequence_parallel": args.sequence_parallel},
                   devices=devices)
  graphdef, params = nnx.split(nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0))))
  param_sharding = plan.param_shardings(params)
  params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params, param_sharding)
  grids = sampling_grids(config.layout, resolution, args.frames, space_factor(config))
  replicated = plan.sharding(())

  def inputs(batch: int, grid: tuple[int, int, int]) -> tuple:
    """Abstract latents, timestep (TI2V: one per token), text and CLIP tokens of `batch` samples
    (replicated: they are small)."""
    abstract = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=replicated)
    timestep = (batch, tokens(grid)) if config.condition == "timestep" else (batch,)
    return (abstract((batch, *grid, config.in_channels), jnp.bfloat16), abstract(timestep, jnp.float32),
            abstract((batch, TEXT_LEN, config.text_dim), jnp.bfloat16),
            abstract((batch, CLIP_TOKENS, config.image_dim), jnp.bfloat16) if config.image_dim else None)

  # The unconditional half of the CFG batch skips the configured blocks (Animate-2: block 9).
  branches = dict(unconditional=np.array([False, True])) if config.layout == "animate2" else {}

  def drive(params, latents, text, image):
    with plan.activate():
      return nnx.merge(graphdef, params).encode_motion(latents, text, image_context=image)

  def step(params, latents, timestep, text, image, motion):
    with plan.activate():
      return nnx.merge(graphdef, params)(latents, timestep, text, image_context=image, motion=motion, **branches)

  tokens = lambda grid: math.prod(grid) // math.prod(config.patch_size)
  row = {"kind": "sample", "model": size, "layout": config.layout, "resolution": resolution, "frames": args.frames,
         "target": target, "compiler": compiler, "mesh": {"context": len(devices)},
         "sequence_parallel": args.sequence_parallel, "tokens": tokens(grids.denoised),
         "weights_bytes": per_device_bytes(params), "hbm_bytes": CHIPS[target.split("-")[0]].hbm_bytes
         if platform == "tpu" else None}
  start = time.perf_counter()
  step_inputs = inputs(2, grids.denoised)
  cache = drive_inputs = None
  if grids.driving is not None:
    latents, _, text, image = inputs(grids.cache_batch, grids.driving)
    drive_inputs = (latents, text, image)
    driving = compile_peak(jax.jit(drive).lower(params, *drive_inputs), platform)
    # The cache as the driving pass leaves it (its shardings), resident while the steps run.
    cache = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                         jax.eval_shape(drive, params, *drive_inputs),
                         driving["compiled"].output_shardings if driving["compiled"] else replicated)
    row.update(driving_tokens=tokens(grids.driving), cache_bytes=per_device_bytes(cache),
               cache_total_bytes=sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache)),
               driving_peak_bytes=driving["peak_bytes"], driving_fits=driving["fits"])
    if config.layout == "animate2":
      row["diffusers_cache_bytes"] = diffusers_cache_bytes(config, tokens(grids.driving))
  denoise = compile_peak(jax.jit(step).lower(params, *step_inputs, cache), platform)
  row.update(step_peak_bytes=denoise["peak_bytes"], step_fits=denoise["fits"], compile_s=time.perf_counter() - start,
             analytic_peak_bytes=row["weights_bytes"] + row.get("cache_bytes", 0)
             + step_activation_bytes(config, -(-row["tokens"] // len(devices)), 2))
  if platform == "gpu":
    row.update(measure_sampling(config, param_sharding, drive, drive_inputs, step, step_inputs, cache, devices[0]))
  peaks = [row[key] for key in ("driving_peak_bytes", "step_peak_bytes") if row.get(key) is not None]
  row.update(peak_bytes=max(peaks) if peaks else None, fits=row.get("driving_fits", True) and denoise["fits"])
  return row


def measure_sampling(config: DiTConfig, param_sharding, drive, drive_inputs, step, step_inputs, cache,
                     device) -> dict:
  """Runs the driving pass (motion layouts) and one step twice on the local GPU (random weights
  drawn there, zero inputs): the allocator's peak over both and the seconds of each second call."""
  weights = jax.jit(lambda: nnx.state(WanDiT(config, rngs=nnx.Rngs(0))), out_shardings=param_sharding)()
  zeros = lambda tree: [None if x is None else jnp.zeros(x.shape, x.dtype, device=x.sharding) for x in tree]
  seconds = {}

  def timed(name: str, fn, *arrays):
    jax.block_until_ready(fn(*arrays))
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*arrays))
    seconds[name] = time.perf_counter() - start
    return result

  motion = None if cache is None else timed("driving_s", jax.jit(drive), weights, *zeros(drive_inputs))
  timed("step_s", jax.jit(step), weights, *zeros(step_inputs), motion)
  peak = device.memory_stats()["peak_bytes_in_use"]
  return {**seconds, "step_peak_bytes": peak, "driving_peak_bytes": peak if cache is not None else None}


def gpu_fits(peak_bytes: float, fits: bool) -> list[str]:
  """Whether a program of `peak_bytes` per device fits each of GPUS: "yes?" where the TPU compiler
  refused its 95 GiB and said it needs at least `peak_bytes`, less than that GPU has."""
  return [f"{name} GPU: {'no' if peak_bytes > size else 'yes' if fits else 'yes?'}" for name, size in GPUS.items()]


def train_table(rows: list[dict], step_time: float) -> str:
  """One line per (model, slice, video, trainable); v5p rows also say whether as many 80 GB and
  141 GB GPUs hold the same step (the v5p compile standing in for them)."""
  lines = [f"| model | slice (chips) | video | tokens (+ driving) | trains | mesh (fsdp x context x tensor), attention "
           f"| batch | peak GiB/chip (HBM) | fits | as many GPUs | model PFLOP/step | traced PFLOP/step "
           f"| MFU at {step_time:g} s/step | s/step at 40% MFU | measured s/step (MFU) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    peak = "?" if row.get("peak_bytes") is None else f"{'>' if not row['fits'] else ''}{row['peak_bytes'] / 2**30:.1f}"
    mfu = row["model_flops"] / (step_time * row["peak_flops"])
    trains = f"{row['trainable']} ({row['trained_params'] / 1e9:.2f}B)"
    trains += f", remat {row['remat']}" if row.get("remat", "full") != "full" else ""
    trains += ", motion_cache" if row.get("layout") == "motion_cache" else ""
    chip, count = row["target"].split("-")
    tokens = f"{row['tokens']:,}" + (f" + {row['driving_tokens']:,}" if row.get("driving_tokens") else "")
    mesh = " x ".join(str(row["mesh"].get(axis, 1)) for axis in ("fsdp", "context", "tensor"))
    gpus = ", ".join(gpu_fits(row["peak_bytes"], row["fits"])) if chip == "v5p" and row.get("peak_bytes") else ""
    lines.append(f"| {row['model']} | {chip} {CHIPS[chip].shapes[int(count)]} ({count}) | {row['resolution']} x {row['frames']} | {tokens} | "
                 f"{trains} | {mesh} {row['sequence_parallel']} | {row['global_batch']} | "
                 f"{peak} ({row['hbm_gib']:.0f}) | {'yes' if row['fits'] else 'no'} | {gpus} | "
                 f"{row['model_flops'] / 1e15:.1f} | {row['traced_flops'] / 1e15:.1f} | {100 * mfu:.0f}% | "
                 f"{row['model_flops'] / (0.4 * row['peak_flops']):.1f} | {measured(row)} |")
  return "\n".join(lines)


def measured(row: dict) -> str:
  if "measured_step_s" not in row:
    return ""
  return f"{row['measured_step_s']:.2f} ({100 * row['model_flops'] / (row['measured_step_s'] * row['peak_flops']):.0f}%)"


def sample_table(rows: list[dict]) -> str:
  """One line per (model, video, target): per-device GiB of the weights, the driving cache (motion
  layouts: per device, its total, and diffusers' for Animate-2), the compiler's (or measured) peak of
  the driving pass and of one CFG step with the cache resident, the analytic weights + cache +
  activations, where it fits (the chip's HBM; one-device rows also one 80 GB / 141 GB GPU) and, on
  a GPU, the measured seconds. ">" marks a figure the TPU compiler gave when it refused the chip:
  at least that much, so "yes?" where it would fit a GPU."""
  gib = lambda value: "" if value is None else f"{value / 2**30:.1f}"
  lines = ["| model (layout) | video | tokens denoised + driving | target (compiler) | weights | driving cache "
           "(total; diffusers') | peak: driving pass | peak: CFG step (batch 2) | analytic peak | fits "
           "| measured s: driving pass, CFG step |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    refused = ">" if row.get("fits") is False else ""
    cache = ""
    if row.get("cache_bytes") is not None:
      theirs = f"; {gib(row['diffusers_cache_bytes'])}" if row.get("diffusers_cache_bytes") else ""
      cache = f"{gib(row['cache_bytes'])} ({gib(row['cache_total_bytes'])}{theirs})"
    fits = []
    if row.get("hbm_bytes"):
      fits.append(f"{row['target'].split('-')[0]} {row['hbm_bytes'] / 2**30:.0f} GiB: {'yes' if row['fits'] else 'no'}")
    if row.get("mesh", {}).get("context", 1) == 1 and row.get("peak_bytes") is not None:
      fits += gpu_fits(row["peak_bytes"], row["fits"])
    driving = row.get("driving_tokens")
    step_peak = row.get("step_peak_bytes", row.get("peak_bytes"))
    seconds = ", ".join(f"{row[key]:.2f}" for key in ("driving_s", "step_s", "call_s") if row.get(key) is not None)
    lines.append(f"| {row['model']} ({row.get('layout', 'full')}) | {row['resolution']} x {row['frames']} | "
                 f"{row['tokens']:,}{f' + {driving:,}' if driving else ''} | {row['compiler']} | "
                 f"{gib(row.get('weights_bytes'))} | {cache} | "
                 f"{refused if row.get('driving_fits') is False else ''}{gib(row.get('driving_peak_bytes'))} | "
                 f"{refused if row.get('step_fits') is False else ''}{gib(step_peak)} | "
                 f"{gib(row.get('analytic_peak_bytes'))} | {', '.join(fits)} | {seconds} |")
  return "\n".join(lines)


def _command_flags(kind: str) -> flags.FlagValues:
  """The flags of `train`, `sample` or `report`, in a FlagValues of their own."""
  values = flags.FlagValues()
  flags.DEFINE_string("json", None, "Append every result as a JSON line to this file" + (
      " (report: read the rows from it)." if kind == "report" else "."), required=kind == "report",
                      flag_values=values)
  flags.DEFINE_float("step-time", 30.0, "Seconds per step for the MFU column.", lower_bound=0, flag_values=values)
  if kind == "report":
    return values
  flags.DEFINE_string("model", "14b", "Comma-separated sizes of dreamactor_jax/configs/stage1.py: "
                      + ", ".join(stage1.SIZES) + " (animate2: Wan-Animate-2-14B's step).", flag_values=values)
  flags.DEFINE_string("chips", None, "TPU slices as <generation>-<chips>, e.g. v5p-64,v5e-256,v6e-8 (chips, not GCP's "
                      "v5p TensorCore count: 8 v5p chips are GCP's v5p-16); train: gpu-N: N local GPUs, the step also "
                      "run and timed there (default: train v5p-8,v5p-64,v5p-256; sample v5p-1, the one-GPU stand-in, "
                      "tokens over `context` on slices).", flag_values=values)
  cli.require(values, "chips", lambda text: all(chip in CHIPS and count.isdigit() for chip, _, count in
                                                (target.partition("-") for target in text.split(","))),
              f"expected <generation>-<chips>, generations {', '.join(CHIPS)}, e.g. v5p-8")
  flags.DEFINE_list("resolution", ["480p"], "Comma-separated: " + ", ".join(RESOLUTIONS) + " or <height>x<width>, "
                    "e.g. 800x640.", flag_values=values)
  cli.require(values, "resolution", lambda names: all(map(_is_resolution, names)),
              f"expected {', '.join(RESOLUTIONS)} or HxW, multiples of {SIZE_MULTIPLE}")
  flags.DEFINE_integer("frames", 81, "Video frames (1 + 4k).", lower_bound=1, flag_values=values)
  cli.require(values, "frames", is_valid_frame_count, "expected 1 + 4k frames")
  flags.DEFINE_enum("trainable", "lora", ["lora", "full"], "The config's LoRA, or all weights.", flag_values=values)
  flags.DEFINE_enum("layout", None, list(LAYOUTS), "model.layout (default: config's); sample: motion layouts plan "
                    "the driving pass too.", flag_values=values)
  flags.DEFINE_enum("remat", None, list(typing.get_args(RematPolicy)), "model.remat of the training step (default: "
                    "the config's, full).", flag_values=values)
  flags.DEFINE_integer("context", None, "Context-parallel size (default: see choose_mesh).", lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer("tensor", 1, "Train: tensor-parallel size (heads and FFN width).", lower_bound=1,
                       flag_values=values)
  flags.DEFINE_enum("sequence-parallel", "ulysses", ["ulysses", "ring"], "Sharded attention over `context`.",
                    flag_values=values)
  flags.DEFINE_enum("platform", "tpu", ["tpu", "cpu", "gpu"], "Sample: compile for the --chips TPU slices or "
                    "XLA:CPU, or measure on the local GPU.", flag_values=values)
  return values


def report(args) -> None:
  rows = [json.loads(line) for line in Path(args.json).read_text().splitlines() if line.strip()]
  print(train_table([row for row in rows if row["kind"] == "train"], args.step_time))
  print()
  print(sample_table([row for row in rows if row["kind"] == "sample"]))


def plan(kind: str, args) -> None:
  rows = []
  for model in args.model.split(","):
    for resolution in args.resolution:
      if kind == "train":
        targets = (args.chips or "v5p-8,v5p-64,v5p-256").split(",")
      else:
        targets = (args.chips or "v5p-1").split(",") if args.platform == "tpu" else [args.platform]
      for target in targets:
        if kind == "train":
          row = plan_training(args, model, target, resolution)
        else:
          row = plan_sampling(args, model, resolution, target)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ffn_sharding"}), file=sys.stderr, flush=True)
        if args.json:
          with Path(args.json).open("a") as f:
            f.write(json.dumps(row) + "\n")
  print(train_table(rows, args.step_time) if kind == "train" else sample_table(rows))
  print(f"\ncommand: python benchmarks/scaling.py {' '.join(sys.argv[1:])}")


def _command(kind: str, summary: str) -> cli.Command:
  values = _command_flags(kind)
  body = (lambda: report(cli.namespace(values))) if kind == "report" else (lambda: plan(kind, cli.namespace(values)))
  return cli.Command(summary, values, body)


COMMANDS = {
    "train": _command("train", "compile (or on gpu-N run) the sharded training step per model, slice and resolution"),
    "sample": _command("sample", "compile (or on --platform gpu run) one guided sampling step and the driving pass"),
    "report": _command("report", "the tables of every row in --json"),
}


def main(argv: list[str] | None = None) -> int:
  return cli.run_command(COMMANDS, argv, program="python benchmarks/scaling.py", doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
