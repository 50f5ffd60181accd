import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dreamactor_jax.data.keypoints import read_pose
from dreamactor_jax.data.pose import main
from tests.data.fake_videos import write_example

IN_H, IN_W = 48, 32  # DWPose's input is 384 x 288: same 4:3 shape, 8x smaller


def simcc_model(path, peaks: dict[int, tuple[int, int, float, float]], keypoints: int = 133):
  """A DWPose-signature ONNX graph whose SimCC outputs peak at fixed bins: {k: (x_bin, y_bin, x_val, y_val)}."""
  simcc_x = np.zeros((1, keypoints, 2 * IN_W), np.float32)
  simcc_y = np.zeros((1, keypoints, 2 * IN_H), np.float32)
  for k, (bx, by, vx, vy) in peaks.items():
    simcc_x[0, k, bx], simcc_y[0, k, by] = vx, vy
  nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
           helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
  nodes += [helper.make_node("Add", ["nothing", f"{name}_peaks"], [name]) for name in ("simcc_x", "simcc_y")]
  graph = helper.make_graph(
      nodes, "tiny_simcc", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, IN_H, IN_W])],
      [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, list(simcc_x.shape)),
       helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, list(simcc_y.shape))],
      [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
       onnx.numpy_helper.from_array(simcc_x, "simcc_x_peaks"), onnx.numpy_helper.from_array(simcc_y, "simcc_y_peaks")])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
  model.ir_version = 9
  onnx.checker.check_model(model)
  onnx.save(model, path)
  return path


def test_pose_cli_writes_keypoints_the_builder_reads(tmp_path):
  # COCO-WholeBody: 0 nose, 5/6 left/right shoulder, 112 right-hand root.
  model = simcc_model(tmp_path / "tiny.onnx", {0: (32, 48, 0.9, 0.9), 6: (16, 40, 0.8, 0.6),
                                               5: (48, 40, 1.5, 1.5), 112: (8, 64, 0.7, 0.7)})
  src = tmp_path / "videos"
  write_example(src, "clip", 3, 48, 80, seed=0, pose=False)
  (src / "broken.mp4").write_bytes(b"not a video")
  assert main(["--src", str(src), "--model", str(model)]) == 0
  pose = read_pose(src / "clip.mp4")
  assert pose.body.shape == (3, 1, 18, 3) and pose.hands.shape == (3, 1, 2, 21, 3)
  # An 80 x 48 frame, padded 1.25x and widened to the model's 2:3, is the box x -10..90, y -51..99;
  # a bin b of r = 2 bins per input pixel maps to box_x0 + b / 2 * box_w / IN_W.
  np.testing.assert_allclose(pose.body[:, 0, 0], [[40, 24, 0.9]] * 3, rtol=1e-5)  # nose: the centre
  np.testing.assert_allclose(pose.body[:, 0, 2], [[15, 11.5, 0.6]] * 3, rtol=1e-5)  # r_shoulder, min score
  np.testing.assert_allclose(pose.body[:, 0, 5], [[65, 11.5, 1.0]] * 3, rtol=1e-5)  # clipped to 1
  np.testing.assert_allclose(pose.body[:, 0, 1], [[40, 11.5, 0.6]] * 3, rtol=1e-5)  # neck
  np.testing.assert_allclose(pose.hands[:, 0, 1, 0], [[2.5, 49, 0.7]] * 3, rtol=1e-5)
  assert not pose.face[..., 2].any() and not (src / "broken.pose.npz").exists()
  written = (src / "clip.pose.npz").stat().st_mtime_ns
  main(["--src", str(src), "--model", str(model)])  # resumable: clip already has keypoints
  assert (src / "clip.pose.npz").stat().st_mtime_ns == written


def test_pose_cli_refuses_models_of_another_signature(tmp_path, capsys):
  src = tmp_path / "videos"
  src.mkdir()
  assert main(["--src", str(src), "--model", str(tmp_path / "missing.onnx")]) == 2
  assert re.fullmatch("error: --model .*missing.onnx does not exist; give a local DWPose/RTMPose .onnx file\n",
                      capsys.readouterr().err)
  model = simcc_model(tmp_path / "k5.onnx", {}, keypoints=5)
  assert main(["--src", str(src), "--model", str(model)]) == 2
  assert re.search("k5.onnx: gives 5 keypoints; expected 133 \\(COCO-WholeBody\\) or 17", capsys.readouterr().err)
