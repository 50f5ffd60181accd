"""Start transition: frame counts, padding to 1 + 4k, the one-line error, training blanking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.animation import (blank_start, cut_lead_in, is_valid_frame_count, lead_in_frames,
                                      prepend_lead_in, transition_frames)


@pytest.mark.parametrize("fps, seconds, frames", [(25, 1.0, 25), (30, 0.5, 15), (29.97, 1.0, 30), (25, 0.5, 13),
                                                  (24, 0.0, 0), (7.5, 1.0, 8)])
def test_transition_frames_round_half_up(fps, seconds, frames):
  assert transition_frames(fps, seconds) == frames


def test_lead_in_counts():
  assert lead_in_frames(48, fps=25) == 25  # 25 + 48 = 73 = 1 + 4 * 18
  assert lead_in_frames(48, fps=25, fit="error") == 25
  assert lead_in_frames(50, fps=25) == 27  # 75 -> padded to 77: two more blank frames
  assert lead_in_frames(81, fps=30, seconds=0.0) == 0
  assert lead_in_frames(80, fps=30, seconds=0.0) == 1
  for frames in range(1, 40):
    for fps in (7.0, 24.0, 25.0, 29.97):
      lead = lead_in_frames(frames, fps, seconds=1.0)
      assert is_valid_frame_count(lead + frames) and 0 <= lead - transition_frames(fps, 1.0) <= 3


def test_lead_in_errors():
  with pytest.raises(ValueError, match=r"^driving 50 \+ start transition 25 \(1.0 s at 25 fps\) = 75 frames; "
                                       r"Wan needs 1 \+ 4k frames \(nearest: 73 or 77\); "
                                       r"trim the driving video or use fit='pad'$"):
    lead_in_frames(50, fps=25, fit="error")
  with pytest.raises(ValueError, match="fit='crop'; expected 'pad' or 'error'"):
    lead_in_frames(50, fps=25, fit="crop")
  with pytest.raises(ValueError, match="fps > 0"):
    lead_in_frames(50, fps=0)
  with pytest.raises(ValueError, match="driving video has 0 frames"):
    lead_in_frames(0, fps=25)


def test_prepend_and_cut():
  driving = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 6, 16, 32, 3)), jnp.float32)
  lead = lead_in_frames(6, fps=3.0)  # 3 -> 9 frames
  extended = prepend_lead_in(driving, lead)
  assert lead == 3 and extended.shape == (2, 9, 16, 32, 3)
  np.testing.assert_array_equal(extended[:, :3], 0.0)
  np.testing.assert_array_equal(cut_lead_in(extended, lead), driving)


def test_training_blanking_per_sample_fps():
  driving = jnp.ones((3, 9, 16, 16, 3))
  fps = jnp.asarray([25.0, 10.0, 4.0])
  blanked = jax.jit(blank_start, static_argnames="seconds")(driving, fps, seconds=0.3)
  counts = [transition_frames(float(f), 0.3) for f in fps]  # 8 (7.5 rounds up), 3, 1
  assert counts == [8, 3, 1]
  for b, count in enumerate(counts):
    np.testing.assert_array_equal(blanked[b, :count], 0.0)
    np.testing.assert_array_equal(blanked[b, count:], 1.0)
  np.testing.assert_array_equal(blank_start(driving, 25.0, seconds=0.0), driving)
  np.testing.assert_array_equal(blank_start(driving, 25.0, blank=-1.0)[:, :], -1.0)  # 1 s at 25 fps covers all 9
