"""Wan2.2 A14B's expert switch: what putting one expert from pinned host memory on the device costs.

  python benchmarks/expert_switch.py                                         # a tiny expert, this machine
  python benchmarks/expert_switch.py --model wan2.1-t2v-1.3b --dtype bf16    # a 1.3B-sized one (2.8 GB)
  python benchmarks/expert_switch.py --bandwidth 25 --bandwidth 50           # the 14B analytic at these GB/s

Measured: a DiT of `--model`'s size with A14B I2V's 36 input channels (numpy-drawn weights) is put
in pinned host memory as `sampling.offload` keeps an idle expert, then copied to the default device
with `offload.place(..., "device")` `--repeats` times, each copy dropped before the next as the
sampler drops the previous expert; the fastest copy is the switch. Analytic: a Wan2.2 A14B expert
(the 14B DiT with 36 input channels and no CLIP branch, counted abstractly) in bf16, moved at each
`--bandwidth` (host-to-device GB/s: about 25 for PCIe 4.0 x16, 50 for PCIe 5.0 x16 from pinned
memory). A segment switches twice (the high-noise expert in, then the low-noise one), against its
40 denoising steps of 16.1 s each at 480p x 81 on an H100 (docs/performance.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.checkpoints.model_state import abstract_params  # noqa: E402
from dreamactor_jax.configs import base  # noqa: E402
from dreamactor_jax.models import DiTConfig, WanDiT  # noqa: E402
from dreamactor_jax.sampling import offload  # noqa: E402

STEP_SECONDS, STEPS = 16.1, 40  # one 14B CFG step at 480p x 81 on an H100 (docs/performance.md), steps per segment
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}

FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_enum("model", "tiny", sorted(base.MODELS), "Size of the measured expert "
                           "(dreamactor_jax/configs/base.py), with 36 input channels.", flag_values=FLAGS)
_DTYPE = flags.DEFINE_enum("dtype", "fp32", sorted(DTYPES), "Parameter dtype of the measured expert.",
                           flag_values=FLAGS)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed copies; the fastest is kept.", lower_bound=1, flag_values=FLAGS)
_BANDWIDTH = flags.DEFINE_multi_float("bandwidth", [25.0, 50.0], "Host-to-device GB/s of the 14B analytic.",
                                      lower_bound=0.001, flag_values=FLAGS)


def expert_config(model: str, dtype: str) -> DiTConfig:
  """An A14B-I2V-shaped expert of `model`'s size: 36 input channels, no CLIP branch."""
  return DiTConfig.from_mapping({**base.MODELS[model], "in_channels": 36, "image_dim": None, "param_dtype": dtype})


def abstract_expert(config: DiTConfig) -> nnx.State:
  return abstract_params(lambda: WanDiT(config, rngs=nnx.Rngs(0)))[1]


def measure(config: DiTConfig, repeats: int) -> tuple[int, float]:
  """(bytes, fastest seconds) of putting the expert's pinned host copy on the default device."""
  rng = np.random.default_rng(0)
  state = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32).astype(s.dtype), abstract_expert(config))
  host = offload.place(state, "pinned_host")
  del state
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    on_device = jax.block_until_ready(offload.place(host, "device"))
    seconds.append(time.perf_counter() - start)
    del on_device  # as the sampler lets the previous expert go
  return offload.nbytes(host), min(seconds)


def benchmark() -> None:
  config = expert_config(_MODEL.value, DTYPES[_DTYPE.value])
  size, seconds = measure(config, _REPEATS.value)
  device = jax.devices()[0]
  print(f"measured, {_MODEL.value} expert ({_DTYPE.value}) pinned_host -> device on {device.platform} "
        f"({device.device_kind}): {size / 1e6:.3f} MB per switch in {seconds * 1e3:.3f} ms "
        f"({size / seconds / 1e9:.2f} GB/s), fastest of {_REPEATS.value}")
  expert = abstract_expert(expert_config("wan2.1-t2v-14b", "bfloat16"))
  params, size = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(expert)), offload.nbytes(expert)
  print(f"analytic, Wan2.2 A14B expert: {params / 1e9:.2f}B parameters, {size / 1e9:.2f} GB in bf16 per switch; "
        f"2 switches per segment of {STEPS} steps x {STEP_SECONDS} s (480p x 81, H100)")
  for bandwidth in _BANDWIDTH.value:
    switch = size / (bandwidth * 1e9)
    print(f"  at {bandwidth:g} GB/s: {switch:.2f} s per switch, {2 * switch:.2f} s per segment = "
          f"{200 * switch / (STEPS * STEP_SECONDS):.2f}% of its denoising")
  print(f"command: python benchmarks/expert_switch.py --model {_MODEL.value} --dtype {_DTYPE.value} "
        f"--repeats {_REPEATS.value} " + " ".join(f"--bandwidth {b:g}" for b in _BANDWIDTH.value))


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
