"""Skeleton frames in OpenPose's colours (PAPER.md section 3: coloured limbs on black).

Body: each limb in its OpenPose colour at 60% intensity (OpenPose blends limbs at alpha 0.6 onto
black; overlaps here take the later limb instead of blending), then each joint as a full-colour
disc. Hands: 20 edges coloured along the hue circle, blue joints. Face: white dots. Points below
the confidence threshold are not drawn, nor any limb touching one. Line widths and radii scale
with the frame: 4 pixels at 480p, as OpenPose draws at that size, and never below 1.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

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
