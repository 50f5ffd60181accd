"""Pose augmentation against shape leakage (PAPER.md section 3) and appearance augmentation,
deterministic given a generator.

Bone-length scaling: the body's limbs form a tree rooted at the neck. Each limb belongs to an
anatomical segment; a segment's factor is drawn from U(0.8, 1.2), once per clip, on 30% of clips.
Walking the tree from the neck, a child is placed at its (moved) parent plus the factor times its
original offset, so every bone keeps its direction, its length changes by its factor, and children
move with their parents. Hands follow their wrist and scale about it by the hand factor; the face
follows the nose and scales about it by the head factor. A joint whose parent is absent moves as the
nearest present ancestor did.

Bounding-box normalisation: the box around every present joint of the clip (all frames, persons,
body, hands and face) is mapped, keeping its aspect ratio, to a box centred in the output frame
whose larger relative side fills `fill` of the frame. Absolute position and scale are removed; the
skeleton is then rendered at the output size (`skeleton.render_pose`).

Appearance: one affine colour map applied to every pixel alike (hue rotation, channel permutation,
saturation, contrast, brightness), never a geometric change. The bootstrap's self pairs drive a clip
with its recoloured self; the training pipelines apply one map to a target clip and its reference
(`DataConfig.appearance_prob`), so a character's colours can only come from its reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dreamactor_jax.data.keypoints import BODY_LIMBS, L_WRIST, NOSE, R_WRIST, Pose

# Anatomical segments; left and right share a factor so the skeleton stays symmetric.
SEGMENTS = ("head", "shoulder", "upper_arm", "forearm", "torso", "thigh", "shin", "hand")
LIMB_SEGMENT = {
    (1, 2): "shoulder", (1, 5): "shoulder", (2, 3): "upper_arm", (5, 6): "upper_arm", (3, 4): "forearm",
    (6, 7): "forearm", (1, 8): "torso", (1, 11): "torso", (8, 9): "thigh", (11, 12): "thigh", (9, 10): "shin",
    (12, 13): "shin", (1, 0): "head", (0, 14): "head", (14, 16): "head", (0, 15): "head", (15, 17): "head",
}
assert set(LIMB_SEGMENT) == set(BODY_LIMBS)


def bone_scale_factors(rng: np.random.Generator, *, prob: float = 0.3, low: float = 0.8,
                       high: float = 1.2) -> dict[str, float] | None:
  """Per-segment factors from U(low, high) with probability `prob`, else None (no scaling)."""
  if rng.random() >= prob:
    return None
  return {segment: float(rng.uniform(low, high)) for segment in SEGMENTS}


def scale_bones(pose: Pose, factors: dict[str, float], *, threshold: float = 0.0) -> Pose:
  """Scales each body limb by its segment's factor, keeping joints connected (module docstring).

  Joints with confidence <= threshold count as absent; confidences are unchanged.
  """
  body = pose.body.copy()
  old, present = pose.body[..., :2], pose.body[..., 2] > threshold  # [T, P, 18, 2], [T, P, 18]
  shift = np.zeros_like(old)  # how far each joint moved; 0 at the root (neck)
  for parent, child in BODY_LIMBS:  # parents come before children in BODY_LIMBS
    both = (present[..., parent] & present[..., child])[..., None]
    offset = (factors[LIMB_SEGMENT[parent, child]] - 1.0) * (old[..., child, :] - old[..., parent, :])
    shift[..., child, :] = shift[..., parent, :] + np.where(both, offset, 0.0)
  body[..., :2] = old + np.where(present[..., None], shift, 0.0)

  def follow(part, anchor_old, anchor_new, factor):  # part [T, P, ..., 3]; anchors [T, P, 2]
    expand = (slice(None), slice(None)) + (None,) * (part.ndim - 3)
    moved = anchor_new[expand] + factor * (part[..., :2] - anchor_old[expand])
    return np.where((part[..., 2] > threshold)[..., None], moved, part[..., :2])

  hands = pose.hands.copy()
  for side, wrist in ((0, L_WRIST), (1, R_WRIST)):
    # The hand's own root (joint 0) is its wrist; it is moved to follow the body's wrist shift.
    root_old = pose.hands[:, :, side, 0, :2]
    hands[:, :, side, :, :2] = follow(pose.hands[:, :, side], root_old, root_old + shift[:, :, wrist],
                                      factors["hand"])
  face = pose.face.copy()
  face[..., :2] = follow(pose.face, old[:, :, NOSE], old[:, :, NOSE] + shift[:, :, NOSE], factors["head"])
  return Pose(body.astype(np.float32), hands.astype(np.float32), face.astype(np.float32))


def clip_box(pose: Pose, *, threshold: float = 0.3) -> tuple[float, float, float, float] | None:
  """`(x0, y0, x1, y1)` around every joint above the threshold in the clip, or None if there is none."""
  points = [part[..., :2][part[..., 2] >= threshold] for part in (pose.body, pose.hands, pose.face)]
  points = np.concatenate(points)
  if not len(points):
    return None
  (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
  return float(x0), float(y0), float(x1), float(y1)


def normalize_to_box(pose: Pose, height: int, width: int, *, fill: float = 0.9, threshold: float = 0.3) -> Pose:
  """Maps the clip's joint box to a box centred in an `H x W` frame (module docstring)."""
  box = clip_box(pose, threshold=threshold)
  if box is None:
    return pose
  x0, y0, x1, y1 = box
  # A box of zero width or height (one point, a vertical line) scales by its other side only.
  scale = fill * min(width / max(x1 - x0, 1e-6), height / max(y1 - y0, 1e-6))
  center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
  target = np.array([width / 2, height / 2], np.float32)
  return pose.map_points(lambda xy: (xy - center) * scale + target)


def crop_resize_points(pose: Pose, box: tuple[float, float, float, float], height: int, width: int) -> Pose:
  """Moves keypoints from source pixels into an `H x W` frame cut from the source `box` (x0, y0, x1, y1)."""
  x0, y0, x1, y1 = box
  scale = np.array([width / (x1 - x0), height / (y1 - y0)], np.float32)
  return pose.map_points(lambda xy: (xy - np.array([x0, y0], np.float32)) * scale)


def _hue_rotation(angle: float) -> np.ndarray:
  """`[3, 3]` rotation of RGB about the grey axis by `angle` radians."""
  axis = np.ones(3) / np.sqrt(3.0)
  cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(axis, axis)


def colour_map(rng: np.random.Generator) -> Callable[..., np.ndarray]:
  """One colour map drawn from `rng`: a hue rotation by U(60, 300) degrees, a random channel order,
  saturation x U(0.5, 1.5), contrast x U(0.6, 1.4) about mid-grey and brightness
  + U(-0.15, 0.15) x 255. Returns `apply(pixels, out=None)`: uint8 `[..., 3]` -> the same shape,
  mapped and clipped (into `out` when given, e.g. the pixels themselves)."""
  grey = np.full((3, 3), 1 / 3)
  saturation, contrast = rng.uniform(0.5, 1.5), rng.uniform(0.6, 1.4)
  matrix = _hue_rotation(np.deg2rad(rng.uniform(60, 300)))
  matrix = np.eye(3)[rng.permutation(3)] @ matrix
  matrix = (contrast * (grey + saturation * (np.eye(3) - grey)) @ matrix).T.astype(np.float32)
  offset = np.float32(127.5 * (1 - contrast) + rng.uniform(-0.15, 0.15) * 255)

  def apply(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    mapped = np.clip(np.round(pixels.astype(np.float32) @ matrix + offset), 0, 255)
    if out is None:
      return mapped.astype(np.uint8)
    out[...] = mapped
    return out

  return apply


def appearance_augment(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 `[..., 3]` -> the same pixels under one colour map drawn from `rng` (`colour_map`)."""
  return colour_map(rng)(video)
