"""Skeleton frames in OpenPose's colours (PAPER.md section 3: coloured limbs on black).

Body: each limb in its OpenPose colour at 60% intensity (OpenPose blends limbs at alpha 0.6 onto
black; overlaps here take the later limb instead of blending), then each joint as a full-colour
disc. Hands: 20 edges coloured along the hue circle, blue joints. Face: white dots. Points below
the confidence threshold are not drawn, nor any limb touching one. Line widths and radii scale
with the frame: 4 pixels at 480p, as OpenPose draws at that size, and never below 1.

`PoseDrawing` holds the settings of a stage-1 skeleton video (where the keypoints go, which are
drawn): the `config.data.pose` section, recorded in the bundle (animation.json "pose") so that the
bootstrap draws skeletons as the stage-1 model it renders with was trained on.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dreamactor_jax.data import augment
from dreamactor_jax.data.keypoints import BODY_LIMBS, HAND_EDGES, Pose

# OpenPose's 18 body colours (RGB): limb i and joint i use colour i.
BODY_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
               (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
               (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_ALPHA = 0.6
HAND_EDGE_COLORS = tuple(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0))
                         for i in range(len(HAND_EDGES)))
HAND_JOINT_COLOR = (0, 0, 255)
FACE_COLOR = (255, 255, 255)


def line_unit(height: int, width: int) -> float:
  """Pixels per OpenPose line unit: OpenPose's stick width 4 at a 480-pixel short side."""
  return min(height, width) / 120


def _disc(draw: ImageDraw.ImageDraw, x: float, y: float, radius: int, color) -> None:
  draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)


def _draw(body: np.ndarray, hands: np.ndarray, face: np.ndarray, height: int, width: int,
          threshold: float) -> Image.Image:
  image = Image.new("RGB", (width, height))
  draw = ImageDraw.Draw(image)
  unit = line_unit(height, width)
  stick, joint_radius = max(1, round(unit)), max(1, round(unit))
  hand_width, small_radius = max(1, round(unit / 2)), max(1, round(unit / 2))
  limb_colors = [tuple(round(LIMB_ALPHA * c) for c in color) for color in BODY_COLORS]
  for person in range(body.shape[0]):
    points, present = body[person, :, :2], body[person, :, 2] >= threshold
    for i, (a, b) in enumerate(BODY_LIMBS):
      if present[a] and present[b]:
        draw.line([tuple(points[a]), tuple(points[b])], fill=limb_colors[i], width=2 * stick)
    for j in np.flatnonzero(present):
      _disc(draw, *points[j], joint_radius, BODY_COLORS[j])
    for hand in hands[person]:
      points, present = hand[:, :2], hand[:, 2] >= threshold
      for i, (a, b) in enumerate(HAND_EDGES):
        if present[a] and present[b]:
          draw.line([tuple(points[a]), tuple(points[b])], fill=HAND_EDGE_COLORS[i], width=hand_width)
      for j in np.flatnonzero(present):
        _disc(draw, *points[j], small_radius, HAND_JOINT_COLOR)
    for x, y, confidence in face[person]:
      if confidence >= threshold:
        _disc(draw, x, y, small_radius, FACE_COLOR)
  return image


def render_frame(body: np.ndarray, hands: np.ndarray, face: np.ndarray, height: int, width: int, *,
                 threshold: float = 0.3) -> np.ndarray:
  """One skeleton image `[H, W, 3]` uint8 from body `[P, 18, 3]`, hands `[P, 2, 21, 3]`, face `[P, 68, 3]`."""
  return np.asarray(_draw(body, hands, face, height, width, threshold))


def render_pose(pose: Pose, height: int, width: int, *, threshold: float = 0.3,
                out: np.ndarray | None = None) -> np.ndarray:
  """Skeleton video `[T, H, W, 3]` uint8 of a clip's keypoints (pixels of the `H x W` frame), into `out` if given."""
  if out is None:
    out = np.empty((pose.num_frames, height, width, 3), np.uint8)
  out[...] = 0
  for t in range(pose.num_frames):
    image = _draw(pose.body[t], pose.hands[t], pose.face[t], height, width, threshold)
    box = image.getbbox()  # only the drawn part is copied: a skeleton covers a fraction of the frame
    if box:
      out[t, box[1]:box[3], box[0]:box[2]] = np.asarray(image.crop(box))
  return out


@dataclasses.dataclass(frozen=True)
class PoseDrawing:
  """How a clip's keypoints become its stage-1 skeleton video (the `config.data.pose` section)."""

  threshold: float = 0.3  # keypoint confidence below which a joint is absent (drawing, box)
  bbox_normalize: bool = True  # map the clip's joint box to a centred box of the frame (PAPER.md 3)
  bbox_fill: float = 0.9  # that box's larger relative side, as a fraction of the frame

  def __post_init__(self):
    checks = [("threshold", isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 1, "a number in [0, 1]"),
              ("bbox_normalize", isinstance(self.bbox_normalize, bool), "true or false"),
              ("bbox_fill", isinstance(self.bbox_fill, (int, float)) and 0 < self.bbox_fill <= 1,
               "a number in (0, 1]")]
    for key, ok, expected in checks:
      if not ok:
        raise ValueError(f"pose.{key}={getattr(self, key)!r}; expected {expected}")

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any] | None) -> PoseDrawing:
    """From a `pose` section (a ConfigDict, a dict from animation.json, or None: every default); an
    older bundle without some key gets its default, an unknown key is refused."""
    values = dict(values or {})
    unknown = sorted(set(values) - {field.name for field in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"pose has unknown keys {unknown}; expected some of threshold, bbox_normalize, bbox_fill")
    return cls(**values)

  def place(self, pose: Pose, height: int, width: int, crop: tuple[float, float, float, float]) -> Pose:
    """Keypoints in source pixels -> pixels of the `H x W` output: box-normalised, or else following
    the frame's `crop` box `(x0, y0, x1, y1)` of the source."""
    if self.bbox_normalize:
      return augment.normalize_to_box(pose, height, width, fill=self.bbox_fill, threshold=self.threshold)
    return augment.crop_resize_points(pose, crop, height, width)

  def draw(self, pose: Pose, height: int, width: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Skeleton video `[T, H, W, 3]` uint8 of placed keypoints (`render_pose` at this threshold)."""
    return render_pose(pose, height, width, threshold=self.threshold, out=out)
