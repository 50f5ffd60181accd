"""Noise levels of Wan's flow matching (WAN.md, "Flow matching and sampling").

sigma = 1 is pure noise, sigma = 0 the data; the DiT's timestep is 1000 * sigma. Wan shifts sigmas
towards noise with `shift * s / (1 + (shift - 1) * s)` (5.0 for T2V, 3.0 for 480p I2V).

Sampling grids (N steps; every grid ends at sigma = 0 after its N values):
- "wan": the original Wan sampler (wan/utils/fm_solvers_unipc.py): linspace(0.999, 0, N + 1)[:-1],
  shifted; timesteps truncated to integers.
- "unipc": diffusers' UniPCMultistepScheduler with use_flow_sigmas (what diffusers' Wan pipelines
  run): linspace(1, 1/1000, N + 1)[:-1], shifted, the first value lowered by 1e-6 when it is 1;
  timesteps truncated to integers.
- "euler": diffusers' FlowMatchEulerDiscreteScheduler(shift=s): N values from 1 to the shifted
  1/1000, shifted again (diffusers shifts its training table's end, then the grid); float timesteps.
- "flowmatch": DiffSynth-Studio's FlowMatchScheduler("Wan"), which Wan-Animate-2's examples sample
  with (Euler): linspace(1, 0, N + 1)[:-1], shifted; float timesteps.
Grids are built on the host in float64, as the references do, and stored as float32.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import numpy as np

NUM_TRAIN_TIMESTEPS = 1000
SigmaGrid = Literal["wan", "unipc", "euler", "flowmatch"]


def shift_sigmas(sigmas, shift: float):
  """Wan's shift `s * sigma / (1 + (s - 1) * sigma)`; numpy or jax arrays, shape kept."""
  return shift * sigmas / (1 + (shift - 1) * sigmas)


def timesteps_of(sigmas):
  """The DiT's timestep for noise level sigma: 1000 * sigma."""
  return sigmas * NUM_TRAIN_TIMESTEPS


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Schedule:
  """A sampling grid: sigmas `[N + 1]` float32 ending at 0, and the DiT timesteps `[N]` float32 of
  the N model calls (integers where the reference truncates them)."""

  sigmas: jax.Array | np.ndarray
  timesteps: jax.Array | np.ndarray

  @property
  def steps(self) -> int:
    return self.timesteps.shape[0]


def sampling_schedule(steps: int, shift: float = 5.0, grid: SigmaGrid = "wan") -> Schedule:
  """The grid of `steps` model calls for `shift`, as the named reference builds it (module docstring)."""
  if steps < 1:
    raise ValueError(f"sampling steps = {steps}; expected at least 1")
  if shift <= 0:
    raise ValueError(f"shift = {shift}; expected > 0")
  if grid == "wan":
    sigma_max = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))  # its training table, kept in float32
    sigmas = shift_sigmas(np.linspace(sigma_max, 0.0, steps + 1)[:-1], shift)
    timesteps = np.trunc(timesteps_of(sigmas))
  elif grid == "unipc":
    sigmas = shift_sigmas(np.linspace(1.0, 1.0 / NUM_TRAIN_TIMESTEPS, steps + 1)[:-1], shift)
    if abs(sigmas[0] - 1.0) < 1e-6:
      sigmas[0] -= 1e-6  # diffusers: keeps log(1 - sigma) finite in UniPC's first steps
    timesteps = np.trunc(timesteps_of(sigmas))
  elif grid == "euler":
    first = np.float32(1.0) / np.float32(NUM_TRAIN_TIMESTEPS)  # the end of its float32 training table
    sigma_min = float(shift_sigmas(first, np.float32(shift)).astype(np.float32))
    sigmas = shift_sigmas(np.linspace(1.0, sigma_min, steps), shift)
    timesteps = timesteps_of(sigmas.astype(np.float32))
  elif grid == "flowmatch":
    sigmas = shift_sigmas(np.linspace(1.0, 0.0, steps + 1)[:-1], shift)
    timesteps = timesteps_of(sigmas)
  else:
    raise ValueError(f"sigma grid {grid!r}; expected 'wan', 'unipc', 'euler' or 'flowmatch'")
  sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
  return Schedule(sigmas=sigmas, timesteps=np.asarray(timesteps, np.float32))
