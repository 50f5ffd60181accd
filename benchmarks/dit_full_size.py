"""One forward of a full-size DiT with random weights on this machine, with time and peak RSS.

  python benchmarks/dit_full_size.py --model wan2.1-t2v-1.3b --frames 5   # 17 video frames at 480p

The model is initialised inside jit (no host copy of the weights), then called once compiled.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax.configs import base  # noqa: E402
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.models import DiTConfig, WanDiT  # noqa: E402


FLAGS = flags.FlagValues()
flags.DEFINE_enum("model", "wan2.1-t2v-1.3b", sorted(base.MODELS), "Size from dreamactor_jax/configs/base.py.",
                  flag_values=FLAGS)
flags.DEFINE_integer("frames", 5, "Latent frames (video frames = 4 * (frames - 1) + 1).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("height", 60, "Latent height (video height / 8).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("width", 104, "Latent width (video width / 8).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Params and compute dtype.", flag_values=FLAGS)


def benchmark() -> None:
  args = cli.namespace(FLAGS)
  config = DiTConfig.from_mapping({**base.get_config(args.model).model, "param_dtype": args.dtype, "dtype": args.dtype})
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0))))
  state = jax.jit(lambda: nnx.split(WanDiT(config, rngs=nnx.Rngs(0)))[1])()
  count = sum(x.size for x in jax.tree.leaves(state))

  @jax.jit
  def forward(state, latents, timestep, text, image):
    return nnx.merge(graphdef, state)(latents, timestep, text, image_context=image)

  key = jax.random.key(0)
  latents = jax.random.normal(key, (1, args.frames, args.height, args.width, config.in_channels))
  text = jax.random.normal(key, (1, 512, config.text_dim))
  image = jax.random.normal(key, (1, 257, config.image_dim)) if config.image_dim else None
  start = time.perf_counter()
  compiled = forward.lower(state, latents, jnp.array([500.0]), text, image).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  out = compiled(state, latents, jnp.array([500.0]), text, image).block_until_ready()
  run_s = time.perf_counter() - start
  peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  tokens = args.frames * args.height * args.width // 4
  print(f"{args.model} {args.dtype}: {count / 1e9:.2f}B params, {tokens} tokens, output {out.shape}, "
        f"finite={bool(jnp.isfinite(out).all())}")
  print(f"compile {compile_s:.1f} s, forward {run_s:.1f} s, peak RSS {peak_gib:.1f} GiB")


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
