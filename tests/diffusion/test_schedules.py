"""Sigma grids: Wan's shift, diffusers' UniPC and Euler grids (exact), the original Wan grid."""

import numpy as np
import pytest
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from dreamactor_jax.diffusion import sampling_schedule, shift_sigmas, timesteps_of


def test_shift():
  np.testing.assert_allclose(shift_sigmas(np.array([0.0, 0.5, 1.0]), 3.0), [0.0, 0.75, 1.0])
  np.testing.assert_allclose(shift_sigmas(np.array([0.2, 0.7]), 1.0), [0.2, 0.7])
  assert timesteps_of(0.25) == 250.0


@pytest.mark.parametrize("steps, shift", [(10, 3.0), (40, 5.0), (1, 3.0), (7, 1.0)])
def test_unipc_grid_matches_diffusers(steps, shift):
  scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                      solver_order=2, solver_type="bh2", predict_x0=True)
  scheduler.set_timesteps(steps)
  ours = sampling_schedule(steps, shift, "unipc")
  np.testing.assert_array_equal(ours.sigmas, scheduler.sigmas.numpy())
  np.testing.assert_array_equal(ours.timesteps, scheduler.timesteps.numpy())
  assert ours.steps == steps and ours.sigmas[-1] == 0


@pytest.mark.parametrize("steps, shift", [(10, 3.0), (40, 5.0), (1, 3.0), (7, 1.0)])
def test_euler_grid_matches_diffusers(steps, shift):
  scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
  scheduler.set_timesteps(steps)
  ours = sampling_schedule(steps, shift, "euler")
  np.testing.assert_array_equal(ours.sigmas, scheduler.sigmas.numpy())
  np.testing.assert_array_equal(ours.timesteps, scheduler.timesteps.numpy())


def test_wan_grid():
  """wan/utils/fm_solvers_unipc.py: linspace(sigma_max = 1 - 1/1000 in fp32, 0, N + 1)[:-1], shifted, int timesteps."""
  ours = sampling_schedule(4, 5.0, "wan")
  base = np.linspace(float(np.float32(0.999)), 0.0, 5)[:-1]
  expected = 5.0 * base / (1 + 4.0 * base)
  np.testing.assert_array_equal(ours.sigmas, np.append(expected, 0.0).astype(np.float32))
  np.testing.assert_array_equal(ours.timesteps, np.floor(expected * 1000))
  assert ours.timesteps.tolist() == [999.0, 937.0, 833.0, 624.0]
  assert ours.sigmas[0] < sampling_schedule(4, 5.0, "unipc").sigmas[0]  # Wan starts at 0.999, diffusers at 1 - 1e-6


def test_flowmatch_grid():
  """DiffSynth-Studio's FlowMatchScheduler("Wan"): linspace(1, 0, N + 1)[:-1], shifted, float timesteps
  (what its Wan-Animate-2 examples sample with at shift 5)."""
  ours = sampling_schedule(4, 5.0, "flowmatch")
  np.testing.assert_allclose(ours.sigmas, [1.0, 15 / 16, 5 / 6, 5 / 8, 0.0], rtol=1e-7)
  np.testing.assert_allclose(ours.timesteps, [1000.0, 937.5, 2500 / 3, 625.0], rtol=1e-7)


def test_errors():
  with pytest.raises(ValueError, match="sigma grid 'karras'; expected 'wan', 'unipc', 'euler' or 'flowmatch'"):
    sampling_schedule(10, 3.0, "karras")
  with pytest.raises(ValueError, match="sampling steps = 0"):
    sampling_schedule(0)
  with pytest.raises(ValueError, match="shift = 0"):
    sampling_schedule(10, 0.0)
