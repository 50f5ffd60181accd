import numpy as np
import pytest

from dreamactor_jax.data.keypoints import Pose
from dreamactor_jax.data.skeleton import (BODY_COLORS, HAND_EDGE_COLORS, HAND_JOINT_COLOR, PoseDrawing, render_frame,
                                          render_pose)


def test_render_known_keypoints_gives_openpose_colours_at_known_places():
  height, width = 120, 160  # unit 1: limbs 2 pixels wide, joint discs of radius 1
  pose = Pose.empty(2, 1)
  pose.body[:, 0, 1] = [40, 60, 1.0]  # neck
  pose.body[:, 0, 2] = [100, 60, 1.0]  # right shoulder: limb 0 (neck -> r_shoulder) is horizontal
  pose.body[:, 0, 3] = [100, 100, 0.2]  # right elbow below the threshold: neither it nor its limb is drawn
  pose.hands[:, 0, 1, 0] = [20, 20, 1.0]  # right hand: wrist -> thumb base, edge 0
  pose.hands[:, 0, 1, 1] = [20, 50, 1.0]
  pose.face[:, 0, 0] = [140, 100, 0.9]
  video = render_pose(pose, height, width, threshold=0.3)
  assert video.shape == (2, height, width, 3) and video.dtype == np.uint8
  frame = video[1]
  np.testing.assert_array_equal(frame[60, 40], BODY_COLORS[1])  # joint discs in full colour
  np.testing.assert_array_equal(frame[60, 100], BODY_COLORS[2])
  np.testing.assert_array_equal(frame[60, 70], np.round(0.6 * np.array(BODY_COLORS[0])))  # limb at 60%
  assert not frame[80:, 95:106].any()  # the elbow and its limb are absent
  np.testing.assert_array_equal(frame[35, 20], HAND_EDGE_COLORS[0])
  np.testing.assert_array_equal(frame[50, 20], HAND_JOINT_COLOR)
  np.testing.assert_array_equal(frame[100, 140], [255, 255, 255])
  lit = frame.any(-1)
  assert lit.sum() < 0.03 * height * width and not lit[:, :15].any()  # black everywhere else
  np.testing.assert_array_equal(video[0], video[1])


def test_line_width_scales_with_frame_size():
  body = np.zeros((1, 18, 3), np.float32)
  for size in (64, 480):
    body[0, 1] = [size * 0.2, size / 2, 1]
    body[0, 2] = [size * 0.8, size / 2, 1]
    frame = render_frame(body, np.zeros((1, 2, 21, 3)), np.zeros((1, 68, 3)), size, size)
    column = frame[:, size // 2].any(-1)
    assert column.sum() == (2 if size == 64 else 8)  # OpenPose's 8-pixel limbs at 480p, never below 1


def test_pose_drawing_reads_a_section_with_defaults_and_names_bad_keys():
  assert PoseDrawing.from_mapping(None) == PoseDrawing() == PoseDrawing(threshold=0.3, bbox_normalize=True,
                                                                          bbox_fill=0.9)
  assert PoseDrawing.from_mapping({"bbox_fill": 0.5}) == PoseDrawing(bbox_fill=0.5)  # an older section: defaults
  with pytest.raises(ValueError, match=r"pose has unknown keys \['fill'\]"):
    PoseDrawing.from_mapping({"fill": 0.5})
  with pytest.raises(ValueError, match=r"pose.bbox_fill=1.5; expected a number in \(0, 1\]"):
    PoseDrawing(bbox_fill=1.5)
  with pytest.raises(ValueError, match="pose.threshold='high'; expected a number in"):
    PoseDrawing.from_mapping({"threshold": "high"})
