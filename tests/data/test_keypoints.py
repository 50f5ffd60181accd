import json

import numpy as np
import pytest

from dreamactor_jax.data.keypoints import (Pose, read_pose, read_pose_json, read_pose_npz, wholebody_to_openpose,
                                           write_pose_npz)


def test_npz_round_trip_and_optional_parts(tmp_path):
  rng = np.random.default_rng(0)
  pose = Pose(*(rng.random(shape).astype(np.float32) for shape in [(3, 2, 18, 3), (3, 2, 2, 21, 3), (3, 2, 68, 3)]))
  write_pose_npz(tmp_path / "v.pose.npz", pose)
  back = read_pose(tmp_path / "v.mp4")
  for part in ("body", "hands", "face"):
    np.testing.assert_array_equal(getattr(back, part), getattr(pose, part))
  np.savez(tmp_path / "b.pose.npz", body=pose.body)
  only_body = read_pose_npz(tmp_path / "b.pose.npz")
  assert only_body.hands.shape == (3, 2, 2, 21, 3) and not only_body.hands.any()
  np.savez(tmp_path / "bad.pose.npz", body=pose.body[..., :2])
  with pytest.raises(ValueError, match=r"bad.pose.npz: body has shape \(3, 2, 18, 2\), expected \[T, P, 18, 3\]"):
    read_pose_npz(tmp_path / "bad.pose.npz")
  np.savez(tmp_path / "f.pose.npz", body=pose.body, face=pose.face[:2])
  with pytest.raises(ValueError, match="face has \\(2, 2\\) frames x persons, body has \\(3, 2\\)"):
    read_pose_npz(tmp_path / "f.pose.npz")
  assert read_pose(tmp_path / "none.mp4") is None


def test_openpose_json_body25_normalised_and_missing_people(tmp_path):
  body25 = np.arange(75, dtype=np.float32).reshape(25, 3) / 100 + 0.01  # all in 0..1, confidences > 0
  frames = [
      {"people": [{"pose_keypoints_2d": body25.ravel().tolist(), "face_keypoints_2d": [0.5, 0.5, 1.0] * 70}],
       "canvas_width": 200, "canvas_height": 100},
      {"people": []},
      {"people": [{"pose_keypoints_2d": [10.0, 20.0, 0.9] * 18,
                   "hand_right_keypoints_2d": [5.0, 6.0, 0.7] * 21},
                  {"pose_keypoints_2d": [1.0, 2.0, 0.5] * 18}]},
  ]
  (tmp_path / "v.pose.json").write_text(json.dumps({"frames": frames}))
  pose = read_pose(tmp_path / "v.webm")
  assert pose.body.shape == (3, 2, 18, 3) and pose.face.shape == (3, 2, 68, 3)
  coco = body25[[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]  # mid-hip and feet dropped
  np.testing.assert_allclose(pose.body[0, 0, :, 0], coco[:, 0] * 200, rtol=1e-6)
  np.testing.assert_allclose(pose.body[0, 0, :, 1], coco[:, 1] * 100, rtol=1e-6)
  np.testing.assert_allclose(pose.body[0, 0, :, 2], coco[:, 2])
  np.testing.assert_allclose(pose.face[0, 0, 0], [100, 50, 1])
  assert not pose.body[1].any() and not pose.body[0, 1].any()  # absent persons: confidence 0
  np.testing.assert_allclose(pose.hands[2, 0, 1, 3], [5, 6, 0.7], rtol=1e-6)  # pixels kept (> 1)
  assert not pose.hands[2, 0, 0].any()
  (tmp_path / "w.pose.json").write_text(json.dumps([{"people": [{"pose_keypoints_2d": [1, 2, 3, 4]}]}]))
  with pytest.raises(ValueError, match="pose_keypoints_2d has 4 numbers, expected x, y, confidence triples"):
    read_pose_json(tmp_path / "w.pose.json")


def test_wholebody_to_openpose_order():
  keypoints = np.stack([np.arange(133), np.arange(133) + 1000], -1)[None].astype(np.float32)
  scores = np.linspace(0.1, 1.0, 133)[None].astype(np.float32)
  body, hands, face = wholebody_to_openpose(keypoints, scores)
  assert body.shape == (1, 18, 3) and hands.shape == (1, 2, 21, 3) and face.shape == (1, 68, 3)
  # r_shoulder is COCO 6, l_ear COCO 3; the neck is the shoulders' mean, as sure as the less sure one.
  assert body[0, 2, 0] == 6 and body[0, 17, 0] == 3 and body[0, 1, 0] == 5.5
  assert body[0, 1, 2] == scores[0, 5]
  assert hands[0, 0, 0, 0] == 91 and hands[0, 1, 20, 0] == 132 and face[0, 67, 1] == 1090
