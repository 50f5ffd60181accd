"""Pose extraction for a folder of raw videos with a DWPose-style ONNX model that the user supplies.

  pip install 'dreamactor_jax[pose]'
  python -m dreamactor_jax.data.pose --src videos/ --model dw-ll_ucoco_384.onnx

Writes `<id>.pose.npz` beside each video (CONTRACTS.md; what `data.build` reads), skipping videos
that already have one, so a stopped run continues. The model is a top-down SimCC pose network as
DWPose and RTMPose export it: input `[1, 3, H, W]` float32 (pixels normalised by the ImageNet
mean/std), outputs `simcc_x [1, K, W * r]` and `simcc_y [1, K, H * r]` (r = 2 for DWPose).
K = 133 (COCO-WholeBody: body, feet, face, hands; mapped to OpenPose's 18 body, 2 x 21 hand and
68 face points) or K = 17 (COCO body only).

Each frame is one person box: the whole frame, padded by 1.25 and widened to the model's aspect
ratio, as rtmlib does when it is given no detector box. Multi-person videos need a detector, which
is left out. rtmlib itself is not used: it requires the GUI builds of opencv-python and
opencv-contrib-python (libGL, absent on headless machines, and two packages that both install
`cv2`); the pre/post-processing here is its small numpy equivalent on onnxruntime.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image
from tqdm import tqdm

from dreamactor_jax import cli
from dreamactor_jax.data.build import find_videos
from dreamactor_jax.data.keypoints import Pose, wholebody_to_openpose, write_pose_npz
from dreamactor_jax.data.video import read_video

log = logging.getLogger(__name__)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
BOX_PADDING = 1.25
# COCO-17 body -> OpenPose COCO-18 (1, the neck, is the shoulders' mean).
_COCO17_TO_COCO18 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)


class PoseEstimator:
  """One ONNX SimCC pose model: `estimator(frame [H, W, 3] uint8) -> (body, hands, face)` of one person."""

  def __init__(self, model: str | os.PathLike, *, channel_order: str = "rgb", threads: int = 0):
    try:
      import onnxruntime
    except ImportError:
      raise ImportError("pose extraction needs onnxruntime: pip install 'dreamactor_jax[pose]'") from None
    if not Path(model).is_file():
      raise FileNotFoundError(f"--model {model} does not exist; give a local DWPose/RTMPose .onnx file")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    self.session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    (model_input,) = self.session.get_inputs()
    shape = model_input.shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
      raise ValueError(f"{model}: input {model_input.name} has shape {shape}; expected [1, 3, H, W] with fixed H, W")
    if len(self.session.get_outputs()) != 2:
      raise ValueError(f"{model}: has {len(self.session.get_outputs())} outputs; expected simcc_x and simcc_y")
    self.input_name, self.input_size = model_input.name, (shape[2], shape[3])  # (H, W)
    keypoints = self.session.get_outputs()[0].shape[1]
    if isinstance(keypoints, int) and keypoints not in (133, 17):
      raise ValueError(f"{model}: gives {keypoints} keypoints; expected 133 (COCO-WholeBody) or 17 (COCO)")
    if channel_order not in ("rgb", "bgr"):
      raise ValueError(f"--channel-order {channel_order!r}; expected rgb or bgr")
    self.channel_order = channel_order

  def box(self, height: int, width: int) -> tuple[float, float, float, float]:
    """The source box `(x0, y0, x1, y1)` fed to the model: the frame, padded, at the model's aspect."""
    in_h, in_w = self.input_size
    box_w, box_h = width * BOX_PADDING, height * BOX_PADDING
    if box_w / box_h > in_w / in_h:
      box_h = box_w * in_h / in_w
    else:
      box_w = box_h * in_w / in_h
    cx, cy = width / 2, height / 2
    return cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2

  def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """body `[1, 18, 3]`, hands `[1, 2, 21, 3]`, face `[1, 68, 3]` in frame pixels, confidence 0..1."""
    in_h, in_w = self.input_size
    box = self.box(*frame.shape[:2])
    crop = Image.fromarray(frame).transform((in_w, in_h), Image.EXTENT, box, Image.BILINEAR)  # black outside
    pixels = np.asarray(crop, np.float32)
    if self.channel_order == "bgr":
      pixels = pixels[..., ::-1]
    pixels = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    simcc_x, simcc_y = self.session.run(None, {self.input_name: pixels.transpose(2, 0, 1)[None]})
    ratio_x, ratio_y = simcc_x.shape[-1] / in_w, simcc_y.shape[-1] / in_h
    x = simcc_x[0].argmax(-1) / ratio_x  # [K] in model-input pixels
    y = simcc_y[0].argmax(-1) / ratio_y
    score = np.clip(np.minimum(simcc_x[0].max(-1), simcc_y[0].max(-1)), 0.0, 1.0)
    points = np.stack([box[0] + x * (box[2] - box[0]) / in_w, box[1] + y * (box[3] - box[1]) / in_h], -1)
    keypoints, scores = points[None].astype(np.float32), score[None].astype(np.float32)
    if keypoints.shape[1] == 133:
      return wholebody_to_openpose(keypoints, scores)
    if keypoints.shape[1] == 17:
      padded = np.zeros((1, 133, 2), np.float32)
      padded_scores = np.zeros((1, 133), np.float32)
      padded[:, :17], padded_scores[:, :17] = keypoints, scores
      return wholebody_to_openpose(padded, padded_scores)
    raise ValueError(f"the model gives {keypoints.shape[1]} keypoints; expected 133 (COCO-WholeBody) or 17 (COCO)")


def extract_video(estimator: PoseEstimator, path: str | os.PathLike) -> Pose:
  """Keypoints of every frame of a video: body `[T, 1, 18, 3]`, hands `[T, 1, 2, 21, 3]`, face `[T, 1, 68, 3]`."""
  _, frames = read_video(path)
  parts = [estimator(np.asarray(frame)) for frame in frames]
  if not parts:
    raise ValueError("no frames")
  body, hands, face = (np.stack([p[i] for p in parts]) for i in range(3))
  return Pose(body, hands, face)


def extract_folder(src: str | os.PathLike, model: str | os.PathLike, *, overwrite: bool = False,
                   channel_order: str = "rgb", progress: bool = True) -> dict[str, str]:
  """Writes `<id>.pose.npz` for each video of `src` lacking one; returns `{path: reason}` of skipped videos."""
  estimator = PoseEstimator(model, channel_order=channel_order)
  skipped = {}
  videos = find_videos(Path(src))
  for path in tqdm(videos.values(), desc="extract poses", unit="video", disable=not progress):
    out = path.with_name(path.stem + ".pose.npz")
    if out.exists() and not overwrite:
      continue
    try:
      pose = extract_video(estimator, path)
    except Exception as e:  # a bad video (av raises many types) is skipped, not the whole run
      skipped[str(path)] = f"{type(e).__name__}: {e}".splitlines()[0]
      log.warning("skipping %s: %s", path, skipped[str(path)])
      continue
    write_pose_npz(out, pose)
  return skipped


FLAGS = flags.FlagValues()
_SRC = flags.DEFINE_string("src", None, "Video folder; .pose.npz files are written beside the videos.", required=True,
                           flag_values=FLAGS)
_MODEL = flags.DEFINE_string("model", None, "Local DWPose/RTMPose SimCC .onnx file.", required=True,
                             flag_values=FLAGS)
_CHANNEL_ORDER = flags.DEFINE_enum("channel-order", "rgb", ["rgb", "bgr"], "Channel order the model was trained on "
                                   "(rtmlib and DWPose's annotator feed bgr).", flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo videos that already have keypoints.", flag_values=FLAGS)


def run() -> None:
  try:
    skipped = extract_folder(_SRC.value, _MODEL.value, overwrite=_OVERWRITE.value, channel_order=_CHANNEL_ORDER.value)
  except ImportError as e:
    raise ValueError(f"--model={_MODEL.value}: {e}") from None  # the optional onnxruntime
  if skipped:
    log.warning("skipped %d videos (listed above)", len(skipped))


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
