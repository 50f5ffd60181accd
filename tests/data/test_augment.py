import numpy as np
import pytest

from dreamactor_jax.data.augment import (LIMB_SEGMENT, SEGMENTS, appearance_augment, bone_scale_factors, clip_box,
                                         normalize_to_box, scale_bones)
from dreamactor_jax.data.keypoints import BODY_LIMBS, L_WRIST, NOSE, R_WRIST
from tests.data.fake_videos import figure_pose


def test_bone_scaling_keeps_joints_connected_and_lengths_within_bounds():
  pose = figure_pose(5, 100, 80, shift=0.2)
  pose.body[3, 0, 3, 2] = 0.0  # right elbow missing in frame 3: the wrist must still follow the shoulder
  factors = dict(zip(SEGMENTS, np.linspace(0.8, 1.2, len(SEGMENTS))))
  scaled = scale_bones(pose, factors)
  np.testing.assert_array_equal(scaled.body[..., 2], pose.body[..., 2])
  np.testing.assert_allclose(scaled.body[:, :, 1], pose.body[:, :, 1])  # the root (neck) stays
  lengths_changed = False
  for parent, child in BODY_LIMBS:
    both = (pose.body[:, 0, parent, 2] > 0) & (pose.body[:, 0, child, 2] > 0)
    old = pose.body[both, 0, child, :2] - pose.body[both, 0, parent, :2]
    new = scaled.body[both, 0, child, :2] - scaled.body[both, 0, parent, :2]
    # Same direction, length times the segment's factor: the child sits at the end of its bone.
    np.testing.assert_allclose(new, factors[LIMB_SEGMENT[parent, child]] * old, rtol=1e-5, atol=1e-4)
    ratio = np.linalg.norm(new, axis=-1) / np.linalg.norm(old, axis=-1)
    assert ((ratio >= 0.8 - 1e-5) & (ratio <= 1.2 + 1e-5)).all()
    lengths_changed |= not np.allclose(ratio, 1.0)
  assert lengths_changed
  # Frame 3: the wrist moved as far as its nearest present ancestor, the shoulder.
  np.testing.assert_allclose(scaled.body[3, 0, 4, :2] - pose.body[3, 0, 4, :2],
                             scaled.body[3, 0, 2, :2] - pose.body[3, 0, 2, :2], atol=1e-4)
  # Hands hang on the wrists (scaled about them by the hand factor); the face on the nose.
  for side, wrist in ((0, L_WRIST), (1, R_WRIST)):
    offset = pose.hands[:, 0, side, 5, :2] - pose.hands[:, 0, side, 0, :2]
    new_root = pose.hands[:, 0, side, 0, :2] + scaled.body[:, 0, wrist, :2] - pose.body[:, 0, wrist, :2]
    np.testing.assert_allclose(scaled.hands[:, 0, side, 0, :2], new_root, atol=1e-4)
    np.testing.assert_allclose(scaled.hands[:, 0, side, 5, :2] - new_root, factors["hand"] * offset, atol=1e-4)
  face_shift = scaled.face[:, 0, 0, :2] - (scaled.body[:, 0, NOSE, :2] +
                                            factors["head"] * (pose.face[:, 0, 0, :2] - pose.body[:, 0, NOSE, :2]))
  np.testing.assert_allclose(face_shift, 0, atol=1e-4)


def test_bone_scale_factors_are_seeded_and_drawn_on_30_percent():
  draws = [bone_scale_factors(np.random.default_rng([7, i])) for i in range(2000)]
  assert draws == [bone_scale_factors(np.random.default_rng([7, i])) for i in range(2000)]
  drawn = [d for d in draws if d is not None]
  assert 0.27 < len(drawn) / len(draws) < 0.33
  values = np.array([list(d.values()) for d in drawn])
  assert values.shape[1] == len(SEGMENTS) and values.min() >= 0.8 and values.max() <= 1.2
  assert values.min() < 0.82 and values.max() > 1.18


def test_box_normalisation_maps_the_clip_box_to_a_centred_box():
  pose = figure_pose(4, 100, 200, shift=0.3)
  out = normalize_to_box(pose, 64, 96, fill=0.5)
  x0, y0, x1, y1 = clip_box(out)
  assert (x0 + x1) / 2 == pytest.approx(48) and (y0 + y1) / 2 == pytest.approx(32)
  # The tall box fills half the height; aspect ratio kept.
  old = clip_box(pose)
  assert y1 - y0 == pytest.approx(32, rel=1e-5)
  assert (x1 - x0) / (y1 - y0) == pytest.approx((old[2] - old[0]) / (old[3] - old[1]), rel=1e-5)
  # Position and scale of the input are gone: a moved, enlarged copy normalises to the same points.
  moved = pose.map_points(lambda xy: xy * 1.7 + 30)
  np.testing.assert_allclose(normalize_to_box(moved, 64, 96, fill=0.5).body, out.body, atol=1e-3)


def assert_one_colour_map(before, after):
  """`after` is `before` under one per-pixel colour map: equal colours stay equal, and it recoloured."""
  before, after = before.reshape(-1, 3), after.reshape(-1, 3)
  colours, inverse = np.unique(before, axis=0, return_inverse=True)
  image = np.zeros_like(colours)
  image[inverse.ravel()] = after
  np.testing.assert_array_equal(image[inverse.ravel()], after)
  assert len(colours) > 50 and np.abs(after.astype(int) - before).mean() > 5


def test_appearance_augment_is_one_colour_map_and_no_geometry():
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (24, 40, 3), np.uint8)
  video = np.stack([frame, np.roll(frame, (3, 5), axis=(0, 1)), frame[::-1]])
  for seed in range(10):
    out = appearance_augment(video, np.random.default_rng(seed))
    assert out.shape == video.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], np.roll(out[0], (3, 5), axis=(0, 1)))  # per-pixel, same every frame
    np.testing.assert_array_equal(out[2], out[0][::-1])
    assert np.abs(out.astype(int) - video).mean() > 30  # strong: a hue rotation of 60-300 degrees at least
    np.testing.assert_array_equal(out, appearance_augment(video, np.random.default_rng(seed)))
