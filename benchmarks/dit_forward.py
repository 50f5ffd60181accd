"""DiT forward: ours (jax.jit) vs diffusers (PyTorch) on the same config, weights and inputs.

  python benchmarks/dit_forward.py --preset tiny
  python benchmarks/dit_forward.py --preset mid          # dim 1536, 2 layers, 480p: 32,760 tokens
  python benchmarks/dit_forward.py --preset mid --dtype bf16   # on a GPU: cuDNN vs SDPA

Prints both times, their ratio (diffusers / ours: above 1 means we are faster), our achieved
FLOP/s and its fraction of this machine's measured matmul peak in the same dtype.
"""

from __future__ import annotations

import sys
import tempfile
import typing
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.checkpoints.model_state import model_params  # noqa: E402
from dreamactor_jax.convert import load_torch_dit  # noqa: E402
from dreamactor_jax.models.attention import Implementation  # noqa: E402

# Latent grids: 480x832 video, 81 frames -> 21 x 60 x 104 latents -> 21 x 30 x 52 tokens.
PRESETS = {
    "tiny": dict(dim=48, heads=3, layers=2, ffn=40, text_dim=20, grid=(3, 10, 14), text_len=512),
    "mid": dict(dim=1536, heads=12, layers=2, ffn=8960, text_dim=4096, grid=(21, 60, 104), text_len=512),
}


def forward_flops(p: dict) -> float:
  """Matmul FLOPs of one forward (attention included), batch 1."""
  frames, height, width = p["grid"]
  tokens, dim, text = frames * height * width // 4, p["dim"], p["text_len"]
  per_layer = (2 * tokens * dim * dim * 4  # self q k v o
               + 4 * tokens * tokens * dim  # self scores + values
               + 2 * tokens * dim * dim * 2 + 2 * text * dim * dim * 2  # cross q o, k v
               + 4 * tokens * text * dim  # cross scores + values
               + 2 * tokens * dim * p["ffn"] * 2)
  return p["layers"] * per_layer + 2 * text * (p["text_dim"] + dim) * dim


def best_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_peak(dtype, device) -> float:
  """FLOP/s of a large square matmul in jax (the ceiling our forward can reach).

  On accelerators one product takes well under a millisecond, so 20 are queued per timing.
  """
  n, count = (4096, 1) if device.platform == "cpu" else (8192, 20)
  a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), dtype), device)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()

  def run():
    for _ in range(count - 1):
      f(a)
    f(a).block_until_ready()

  return 2 * n**3 * count / best_time(run, 3)


FLAGS = flags.FlagValues()
flags.DEFINE_enum("preset", "tiny", sorted(PRESETS), "Model and input size.", flag_values=FLAGS)
flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "Params and compute dtype.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 1, "Timed runs after one warm-up; the best is kept.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("attention", "auto", list(typing.get_args(Implementation)), "Our attention implementation.",
                  flag_values=FLAGS)


def benchmark() -> None:
  args = cli.namespace(FLAGS)
  p = PRESETS[args.preset]
  from diffusers import WanTransformer3DModel

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
  torch.manual_seed(0)
  torch_model = WanTransformer3DModel(num_attention_heads=p["heads"], attention_head_dim=p["dim"] // p["heads"],
                                      text_dim=p["text_dim"], ffn_dim=p["ffn"], num_layers=p["layers"]).eval()
  with tempfile.TemporaryDirectory() as tmp:
    torch_model.save_pretrained(tmp)
    model, config = load_torch_dit(tmp, dtype=args.dtype, attention=args.attention)
  torch_model = torch_model.to(device=device, dtype=torch_dtype)

  frames, height, width = p["grid"]
  rng = np.random.default_rng(0)
  latents = rng.standard_normal((1, frames, height, width, 16), np.float32)
  text = rng.standard_normal((1, p["text_len"], p["text_dim"]), np.float32)
  timestep = np.array([500.0], np.float32)

  torch_inputs = dict(hidden_states=torch.from_numpy(latents.transpose(0, 4, 1, 2, 3).copy()).to(device, torch_dtype),
                      timestep=torch.from_numpy(timestep).to(device),
                      encoder_hidden_states=torch.from_numpy(text).to(device, torch_dtype), return_dict=False)

  def run_torch():
    with torch.no_grad():
      out = torch_model(**torch_inputs)[0]
    if device == "cuda":
      torch.cuda.synchronize()
    return out

  graphdef, state = nnx.split(model)
  jax_inputs = [jnp.asarray(latents), jnp.asarray(timestep), jnp.asarray(text)]

  @jax.jit
  def run_jax(state, latents, timestep, text):
    return nnx.merge(graphdef, state)(latents, timestep, text)

  start = time.perf_counter()
  ours_out = np.asarray(run_jax(state, *jax_inputs))
  compile_and_first = time.perf_counter() - start
  ours = best_time(lambda: run_jax(state, *jax_inputs).block_until_ready(), args.repeats)
  ref_out = run_torch().float().cpu().numpy().transpose(0, 2, 3, 4, 1)
  theirs = best_time(run_torch, args.repeats)

  flops = forward_flops(p)
  peak = matmul_peak(jnp.bfloat16 if args.dtype == "bf16" else jnp.float32, jax.devices()[0])
  err = np.abs(ours_out - ref_out).max() / np.abs(ref_out).max()
  print(f"preset={args.preset} dtype={args.dtype} device={jax.devices()[0].device_kind} "
        f"tokens={frames * height * width // 4} params={sum(v.size for v in model_params(model).values()) / 1e6:.1f}M")
  print(f"ours (jax.jit, attention={args.attention}): {ours:.3f} s   (first call incl. compile {compile_and_first:.1f} s)")
  print(f"diffusers (torch {torch.__version__}, {device}): {theirs:.3f} s")
  print(f"ratio diffusers/ours: {theirs / ours:.2f}x")
  print(f"ours: {flops / ours / 1e9:.1f} GFLOP/s = {flops / ours / peak:.0%} of measured {args.dtype} matmul "
        f"peak {peak / 1e9:.1f} GFLOP/s; diffusers {flops / theirs / 1e9:.1f} GFLOP/s")
  print(f"max |ours - diffusers| / max |diffusers| = {err:.2e}")


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
