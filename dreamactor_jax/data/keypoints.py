"""Keypoints of the video-folder format: OpenPose COCO-18 body, 2 x 21 hand and 68 face points.

`Pose` holds one clip's keypoints in pixels of its frames, the third value a confidence in 0..1
(0 = absent): body `[T, P, 18, 3]`, hands `[T, P, 2, 21, 3]` (left, right), face `[T, P, 68, 3]`,
P persons. A part a file lacks is all zeros, so every `Pose` has all three arrays.

Readers: `.pose.npz` (CONTRACTS.md) and OpenPose/DWPose-style JSON: a list of frames (or
`{"frames": [...]}`), each `{"people": [{"pose_keypoints_2d": [x, y, c, ...], "hand_left_keypoints_2d",
"hand_right_keypoints_2d", "face_keypoints_2d"}], "canvas_width", "canvas_height"}`. BODY_25 bodies
are mapped to COCO-18 and OpenPose's 70 face points cut to 68. A frame whose canvas size is given
and whose present coordinates all lie in 0..1 is taken as normalised (controlnet/DWPose writes it
so) and scaled to pixels.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

BODY_JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
               "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
NOSE, NECK, R_WRIST, L_WRIST = 0, 1, 4, 7
# OpenPose's limbs (parent, child): the kinematic tree rooted at the neck, in OpenPose's colour order.
BODY_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# OpenPose hand: joint 0 is the wrist, then 4 joints per finger from thumb to little finger.
HAND_EDGES = tuple((0 if j % 4 == 0 else j, j + 1) for j in range(20))
# BODY_25 -> COCO-18: drop mid-hip (8) and the 6 foot points.
_BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# COCO-WholeBody-133 (DWPose output) body 0..16 -> COCO-18 (the neck, 1, is the shoulders' mean).
_WHOLEBODY_TO_COCO18 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)


@dataclasses.dataclass
class Pose:
  """One clip's keypoints: body `[T, P, 18, 3]`, hands `[T, P, 2, 21, 3]`, face `[T, P, 68, 3]`."""

  body: np.ndarray
  hands: np.ndarray
  face: np.ndarray

  @classmethod
  def empty(cls, frames: int, persons: int = 0) -> Pose:
    return cls(np.zeros((frames, persons, 18, 3), np.float32), np.zeros((frames, persons, 2, 21, 3), np.float32),
               np.zeros((frames, persons, 68, 3), np.float32))

  @property
  def num_frames(self) -> int:
    return self.body.shape[0]

  @property
  def num_persons(self) -> int:
    return self.body.shape[1]

  def frames(self, index) -> Pose:
    """The keypoints of frames `index` (an int array or slice)."""
    return Pose(self.body[index], self.hands[index], self.face[index])

  def map_points(self, fn) -> Pose:
    """Applies `fn(xy [..., 2]) -> [..., 2]` to every part's coordinates, keeping confidences."""
    def apply(part):
      return np.concatenate([fn(part[..., :2]), part[..., 2:]], axis=-1).astype(np.float32)
    return Pose(apply(self.body), apply(self.hands), apply(self.face))

  def fit_frames(self, frames: int) -> Pose:
    """Truncates, or pads with absent points, to `frames` frames."""
    out = Pose.empty(frames, self.num_persons)
    n = min(frames, self.num_frames)
    out.body[:n], out.hands[:n], out.face[:n] = self.body[:n], self.hands[:n], self.face[:n]
    return out


def _part(array, shape, name, path) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if array.shape[2:] != shape[2:] or array.ndim != len(shape):
    dims = ", ".join(str(d) for d in shape[2:])
    raise ValueError(f"{path}: {name} has shape {array.shape}, expected [T, P, {dims}]")
  return array


def read_pose_npz(path: str | os.PathLike) -> Pose:
  """Reads a `.pose.npz` (body required; hands, face optional) into a `Pose`."""
  with np.load(path, allow_pickle=False) as data:
    if "body" not in data:
      raise ValueError(f"{path}: no 'body' array; expected body [T, P, 18, 3]")
    body = _part(data["body"], (0, 0, 18, 3), "body", path)
    frames, persons = body.shape[:2]
    pose = Pose.empty(frames, persons)
    pose.body = body
    for name, shape in (("hands", (0, 0, 2, 21, 3)), ("face", (0, 0, 68, 3))):
      if name in data:
        part = _part(data[name], shape, name, path)
        if part.shape[:2] != (frames, persons):
          raise ValueError(f"{path}: {name} has {part.shape[:2]} frames x persons, body has {(frames, persons)}")
        setattr(pose, name, part)
  return pose


def write_pose_npz(path: str | os.PathLike, pose: Pose) -> None:
  """Writes a `.pose.npz` atomically (tmp + rename)."""
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez_compressed(tmp, body=pose.body, hands=pose.hands, face=pose.face)
  os.replace(tmp, path)


def _points(values, count: int, name: str, path) -> np.ndarray:
  values = np.asarray(values if values is not None else [], np.float32)
  if values.size == 0:
    return np.zeros((count, 3), np.float32)
  if values.size % 3:
    raise ValueError(f"{path}: {name} has {values.size} numbers, expected x, y, confidence triples")
  points = values.reshape(-1, 3)
  if name == "pose_keypoints_2d" and len(points) == 25:
    points = points[list(_BODY25_TO_COCO18)]
  if len(points) < count:
    raise ValueError(f"{path}: {name} has {len(points)} points, expected {count}")
  return points[:count]


def read_pose_json(path: str | os.PathLike) -> Pose:
  """Reads an OpenPose/DWPose-style JSON (a list of per-frame `{"people": [...]}`) into a `Pose`."""
  with open(path) as f:
    data = json.load(f)
  frames = data.get("frames") if isinstance(data, dict) else data
  if not isinstance(frames, list):
    raise ValueError(f"{path}: expected a list of frames or {{\"frames\": [...]}}")
  persons = max((len(frame.get("people", [])) for frame in frames), default=0)
  pose = Pose.empty(len(frames), persons)
  for t, frame in enumerate(frames):
    for p, person in enumerate(frame.get("people", [])):
      pose.body[t, p] = _points(person.get("pose_keypoints_2d"), 18, "pose_keypoints_2d", path)
      pose.hands[t, p, 0] = _points(person.get("hand_left_keypoints_2d"), 21, "hand_left_keypoints_2d", path)
      pose.hands[t, p, 1] = _points(person.get("hand_right_keypoints_2d"), 21, "hand_right_keypoints_2d", path)
      pose.face[t, p] = _points(person.get("face_keypoints_2d"), 68, "face_keypoints_2d", path)
    width, height = frame.get("canvas_width"), frame.get("canvas_height")
    if width and height:
      parts = (pose.body[t], pose.hands[t], pose.face[t])
      present = np.concatenate([part[..., :2][part[..., 2] > 0] for part in parts])
      if present.size and present.max() <= 1.0:
        for part in parts:
          part[..., :2] *= np.array([width, height], np.float32)
  return pose


def read_pose(video_path: str | os.PathLike) -> Pose | None:
  """The keypoints beside a video (`<id>.pose.npz`, else `<id>.pose.json`), or None if neither exists."""
  stem = Path(video_path).with_suffix("")
  for suffix, reader in ((".pose.npz", read_pose_npz), (".pose.json", read_pose_json)):
    path = stem.with_name(stem.name + suffix)
    if path.exists():
      return reader(path)
  return None


def wholebody_to_openpose(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """COCO-WholeBody-133 keypoints `[P, 133, 2]` + scores `[P, 133]` -> body `[P, 18, 3]`,
  hands `[P, 2, 21, 3]` (left, right), face `[P, 68, 3]`."""
  points = np.concatenate([keypoints, scores[..., None]], axis=-1).astype(np.float32)
  body = points[:, [max(i, 0) for i in _WHOLEBODY_TO_COCO18]]
  shoulders = points[:, [5, 6]]
  body[:, NECK, :2] = shoulders[..., :2].mean(axis=1)
  body[:, NECK, 2] = shoulders[..., 2].min(axis=1)  # the neck is only as sure as both shoulders
  face = points[:, 23:91]
  hands = np.stack([points[:, 91:112], points[:, 112:133]], axis=1)
  return body, hands, face
