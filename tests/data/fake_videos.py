"""Small generated video folders in the CONTRACTS.md format."""

from pathlib import Path

import numpy as np

from dreamactor_jax.data.keypoints import Pose, write_pose_npz
from dreamactor_jax.media import write_video

# A standing figure in a 1 x 1 box (x, y), COCO-18 order; scaled into each video.
FIGURE = np.array([[0.5, 0.15], [0.5, 0.3], [0.35, 0.3], [0.3, 0.45], [0.28, 0.6], [0.65, 0.3], [0.7, 0.45],
                   [0.72, 0.6], [0.42, 0.6], [0.42, 0.75], [0.42, 0.9], [0.58, 0.6], [0.58, 0.75], [0.58, 0.9],
                   [0.47, 0.12], [0.53, 0.12], [0.44, 0.14], [0.56, 0.14]], np.float32)


def figure_pose(frames: int, height: int, width: int, shift: float = 0.0) -> Pose:
  """One person whose figure drifts right by `shift` of the width over the clip; hands and face present."""
  pose = Pose.empty(frames, 1)
  for t in range(frames):
    xy = FIGURE * np.array([width * 0.6, height], np.float32) + np.array([width * (0.2 + shift * t / frames), 0])
    pose.body[t, 0, :, :2], pose.body[t, 0, :, 2] = xy, 1.0
    for side, wrist in ((0, 7), (1, 4)):
      pose.hands[t, 0, side, :, :2] = xy[wrist] + np.linspace(0, 3, 21)[:, None]
      pose.hands[t, 0, side, :, 2] = 0.9
    pose.face[t, 0, :, :2] = xy[0] + np.stack([np.cos(np.arange(68)), np.sin(np.arange(68))], -1)
    pose.face[t, 0, :, 2] = 0.8
  return pose


def write_example(folder: Path, video_id: str, frames: int, height: int, width: int, *, seed: int,
                  pose: bool = True, caption: str | None = None) -> None:
  """A video of a moving bright square on a per-video colour, with keypoints and a caption sidecar."""
  rng = np.random.default_rng(seed)
  video = np.empty((frames, height, width, 3), np.uint8)
  video[:] = rng.integers(30, 200, 3, dtype=np.uint8)
  for t in range(frames):
    video[t, 4:12, 2 + t % (width - 12):10 + t % (width - 12)] = 250
  path = folder / f"{video_id}.mp4"
  path.parent.mkdir(parents=True, exist_ok=True)
  write_video(path, video, fps=24)
  if pose:
    write_pose_npz(folder / f"{video_id}.pose.npz", figure_pose(frames, height, width, shift=0.1))
  if caption is not None:
    (folder / f"{video_id}.txt").write_text(caption)


# id: (frames, height, width, has keypoints); four landscape 48x80-ish, three portrait, one square.
VIDEOS = {
    "land/a": (14, 48, 80, True), "land/b": (11, 50, 84, True), "land/c": (12, 48, 82, True),
    "land/d": (13, 46, 80, True), "port/e": (12, 80, 48, True), "port/f": (11, 84, 50, True),
    "port/g": (12, 80, 48, True), "square/h": (12, 64, 64, True), "nopose": (12, 48, 80, False),
}
