"""Start transition: frame counts, the tail padding to 1 + 4k, the one-line error, training blanking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.animation import (Timeline, blank_start, cut_to_driving, extend_driving, is_valid_frame_count,
                                      plan_timeline, transition_frames)


@pytest.mark.parametrize("fps, seconds, frames", [(25, 1.0, 25), (30, 0.5, 15), (29.97, 1.0, 30), (25, 0.5, 13),
                                                  (24, 0.0, 0), (7.5, 1.0, 8)])
def test_transition_frames_round_half_up(fps, seconds, frames):
  assert transition_frames(fps, seconds) == frames


def test_timeline_counts():
  assert plan_timeline(48, fps=25) == Timeline(lead=25, driving=48, tail=0)  # 73 = 1 + 4 * 18
  assert plan_timeline(48, fps=25, fit="error") == Timeline(25, 48, 0)
  assert plan_timeline(50, fps=25) == Timeline(25, 50, 2)  # 75 -> 77: the last frame twice more
  assert plan_timeline(81, fps=30, seconds=0.0) == Timeline(0, 81, 0)
  assert plan_timeline(80, fps=30, seconds=0.0).frames == 81
  for frames in range(1, 40):
    for fps in (7.0, 24.0, 25.0, 29.97):
      timeline = plan_timeline(frames, fps, seconds=1.0)
      assert timeline.lead == transition_frames(fps, 1.0) and 0 <= timeline.tail <= 3
      assert is_valid_frame_count(timeline.frames)


def test_timeline_errors():
  with pytest.raises(ValueError, match=r"^driving 50 \+ start transition 25 \(1.0 s at 25 fps\) = 75 frames; "
                                       r"Wan needs 1 \+ 4k frames \(nearest: 73 or 77\); "
                                       r"trim the driving video or use fit='pad'$"):
    plan_timeline(50, fps=25, fit="error")
  with pytest.raises(ValueError, match="fit='crop'; expected 'pad' or 'error'"):
    plan_timeline(50, fps=25, fit="crop")
  with pytest.raises(ValueError, match="fps > 0"):
    plan_timeline(50, fps=0)
  with pytest.raises(ValueError, match="driving video has 0 frames"):
    plan_timeline(0, fps=25)
  with pytest.raises(ValueError, match="driving video has 6 frames; the timeline was planned for 5"):
    extend_driving(jnp.zeros((1, 6, 16, 16, 3)), plan_timeline(5, fps=3.0))


def test_extend_and_cut():
  driving = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 7, 16, 32, 3)), jnp.float32)
  timeline = plan_timeline(7, fps=3.0)  # 3 + 7 = 10 -> 13: the last frame 3 more times
  extended = extend_driving(driving, timeline, blank=-0.5)
  assert timeline == Timeline(3, 7, 3) and extended.shape == (2, 13, 16, 32, 3)
  np.testing.assert_array_equal(extended[:, :3], -0.5)
  np.testing.assert_array_equal(extended[:, 3:10], driving)
  np.testing.assert_array_equal(extended[:, 10:], np.repeat(driving[:, -1:], 3, axis=1))
  np.testing.assert_array_equal(cut_to_driving(extended, timeline), driving)


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
