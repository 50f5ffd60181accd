"""Segment planning over long videos and stitching that keeps given frames exactly."""

import numpy as np
import pytest

from dreamactor_jax.animation import (Segment, given_frames, is_valid_frame_count, output_buffer, plan_segments,
                                      stitch, zigzag_pad)


def test_plans():
  assert plan_segments(81, 33, 5) == [Segment(0, 33, 1), Segment(28, 61, 5), Segment(56, 81, 5)]
  assert plan_segments(21, 33, 5) == [Segment(0, 21, 1)]  # short: one segment
  assert plan_segments(33, 33, 5, first_given=5) == [Segment(0, 33, 5)]
  # overlap 2 (not 1 + 4m): the last segment moves back 2 frames to be 13 = 1 + 4 * 3 long, given 4
  assert plan_segments(41, 17, 2) == [Segment(0, 17, 1), Segment(15, 32, 2), Segment(28, 41, 4)]


@pytest.mark.parametrize("segment_frames, overlap", [(length, overlap) for length in (5, 9, 17, 33)
                                                     for overlap in (1, 2, 3, 4, 5, 9) if overlap < length])
def test_plan_invariants(segment_frames, overlap):
  for num_frames in range(5, 90, 4):
    plan = plan_segments(num_frames, segment_frames, overlap)
    generated = np.zeros(num_frames, int)
    generated[0] = 1  # the reference
    for segment in plan:
      assert is_valid_frame_count(segment.frames) and segment.frames <= segment_frames
      assert 1 <= segment.given < segment.frames
      assert generated[segment.start:segment.start + segment.given].all()  # given = frames already in the output
      assert not generated[segment.start + segment.given:segment.stop].any()
      generated[segment.start + segment.given:segment.stop] += 1
    assert (generated == 1).all() and plan[-1].stop == num_frames  # every frame made exactly once


@pytest.mark.parametrize("num_frames, segment_frames, overlap", [(81, 33, 5), (41, 17, 2), (45, 9, 5)])
def test_stitching_keeps_given_frames_exactly(num_frames, segment_frames, overlap):
  rng = np.random.default_rng(num_frames)
  reference = rng.uniform(-1, 1, (2, 1, 4, 6, 3)).astype(np.float32)
  plan = plan_segments(num_frames, segment_frames, overlap)
  output = output_buffer(reference, num_frames)
  origin = np.full(num_frames, -1)  # which segment generated each frame
  for index, segment in enumerate(plan):
    given = given_frames(output, segment).copy()
    assert given.shape[1] == segment.given
    if index:  # a later segment continues from the previous segment's last frames
      previous = plan[index - 1]
      np.testing.assert_array_equal(given[:, -overlap:], output[:, previous.stop - overlap:previous.stop])
    # the model returns its given frames only approximately (VAE round trip): perturb them
    video = rng.uniform(-1, 1, (2, segment.frames, 4, 6, 3)).astype(np.float32)
    video[:, :segment.given] = given + 0.01
    before = output.copy()
    stitch(output, video, segment)
    np.testing.assert_array_equal(output[:, :segment.start + segment.given], before[:, :segment.start + segment.given])
    np.testing.assert_array_equal(output[:, segment.start + segment.given:segment.stop], video[:, segment.given:])
    origin[segment.start + segment.given:segment.stop] = index
  np.testing.assert_array_equal(output[:, :1], reference)  # the reference frame, untouched
  assert (origin[1:] >= 0).all()


def test_errors():
  with pytest.raises(ValueError, match=r"segment_frames = 80 frames; Wan needs 1 \+ 4k frames \(nearest: 77 or 81\)"):
    plan_segments(81, 80, 5)
  with pytest.raises(ValueError, match="overlap=33 must be between 1 and segment_frames - 1 = 32"):
    plan_segments(81, 33, 33)
  with pytest.raises(ValueError, match="long video = 80 frames"):
    plan_segments(80, 33, 5)
  with pytest.raises(ValueError, match="first_given=5 must be between 1 and 4"):
    plan_segments(5, 33, 1, first_given=5)
  output = np.zeros((1, 9, 2, 2, 3), np.float32)
  with pytest.raises(ValueError, match=r"video has shape \(1, 4, 2, 2, 3\); expected \(1, 5, 2, 2, 3\)"):
    stitch(output, np.zeros((1, 4, 2, 2, 3), np.float32), Segment(0, 5, 1))


def test_padded_plans_follow_the_references():
  """Wan-Animate-2: full segments advancing by segment_frames - overlap, the reference not a frame;
  the padded length is DiffSynth's `clip_len + (num_clips - 1) * step` (diffusers' count too)."""
  assert plan_segments(10, 81, 1, first_given=0, last="pad") == [Segment(0, 81, 0)]
  assert plan_segments(81, 81, 1, first_given=0, last="pad") == [Segment(0, 81, 0)]
  assert plan_segments(82, 81, 1, first_given=0, last="pad") == [Segment(0, 81, 0), Segment(80, 161, 1)]
  for num_frames in range(1, 60):
    for length, overlap in ((9, 1), (13, 4), (5, 2)):
      plan = plan_segments(num_frames, length, overlap, first_given=0, last="pad")
      step = length - overlap
      clips = 1 if num_frames <= length else (num_frames - length + step - 1) // step + 1
      assert len(plan) == clips and plan[-1].stop == length + (clips - 1) * step >= num_frames
      assert all(s.frames == length and s.given == (overlap if i else 0) for i, s in enumerate(plan))
      assert all(b.start == a.stop - overlap for a, b in zip(plan, plan[1:]))


def test_zigzag_pad():
  video = np.arange(4)[None, :, None] * np.ones((2, 1, 3))
  np.testing.assert_array_equal(zigzag_pad(video, 11)[0, :, 0], [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2])
  np.testing.assert_array_equal(zigzag_pad(video, 4), video)
  np.testing.assert_array_equal(zigzag_pad(video[:, :1], 3)[1, :, 0], [0, 0, 0])
  with pytest.raises(ValueError, match=r"cannot zigzag-pad 4 frames to fewer \(3\)"):
    zigzag_pad(video, 3)


def test_padded_plan_errors():
  with pytest.raises(ValueError, match="long video = 0 frames; expected at least 1"):
    plan_segments(0, 81, 1, first_given=0, last="pad")
  with pytest.raises(ValueError, match="first_given=81 must be between 0 and 80"):
    plan_segments(10, 81, 1, first_given=81, last="pad")
  with pytest.raises(ValueError, match="first_given=0 must be between 1 and 32"):
    plan_segments(81, 33, 1, first_given=0)
  with pytest.raises(ValueError, match="last='trim'; expected 'shorten' or 'pad'"):
    plan_segments(81, 33, 1, last="trim")
