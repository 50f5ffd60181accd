"""3D helpers (rotations, limb directions) and the orthographic camera and canvas bodies are drawn on."""

from __future__ import annotations

import dataclasses

import numpy as np

from dreamactor_jax.data.raster import Blob, Box, Capsule, Paint, Polygon, Shape


def rot_x(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: positive angles tip +y toward +z (forward)."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([i, o, o], -1), np.stack([o, c, -s], -1), np.stack([o, s, c], -1)], -2)


def rot_y(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: yaw; +z (facing the camera) turns toward +x (screen-right)."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, o, s], -1), np.stack([o, i, o], -1), np.stack([-s, o, c], -1)], -2)


def rot_z(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: positive angles tip +y toward -x."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def rotate(rotation: np.ndarray, vector) -> np.ndarray:
  """rotation [T, 3, 3] times vector [3] or [T, 3] -> [T, 3]."""
  vector = np.broadcast_to(np.asarray(vector, np.float64), (rotation.shape[0], 3))
  return np.einsum("tij,tj->ti", rotation, vector)


def vec(*components) -> np.ndarray:
  """[T, 3] from three scalars or [T] arrays."""
  return np.stack(np.broadcast_arrays(*[np.asarray(c, np.float64) for c in components]), -1)


def limb_direction(abduction: np.ndarray, flexion: np.ndarray, side: float) -> np.ndarray:
  """[T, 3] unit direction of a limb hanging down, raised sideways (side -1 = the body's right,
  -x) by `abduction` and swung forward (+z) by `flexion`."""
  return vec(side * np.sin(abduction), -np.cos(abduction) * np.cos(flexion), np.cos(abduction) * np.sin(flexion))


@dataclasses.dataclass
class Projector:
  """Orthographic camera: world (x, y up, z) -> pixels; pan and log zoom per frame [T, 3]."""
  height: int
  width: int
  camera: np.ndarray

  @property
  def scale(self) -> np.ndarray:
    return self.height * np.exp(self.camera[:, 2])  # [T] pixels per world unit

  def __call__(self, points: np.ndarray) -> np.ndarray:
    """points [T, ..., 3] -> [T, ..., 2] pixels."""
    extra = (slice(None),) + (None,) * (points.ndim - 2)
    scale = self.scale[extra]
    centre_x = self.width / (2 * self.height) + self.camera[:, 0][extra]
    centre_y = 0.5 + self.camera[:, 1][extra]
    px = (points[..., 0] - centre_x) * scale + self.width / 2
    py = self.height / 2 - (points[..., 1] - centre_y) * scale
    return np.stack([px, py], -1).astype(np.float32)

  def world_grid(self) -> tuple[np.ndarray, np.ndarray]:
    """World x, y of every pixel centre: two [T, H, W] arrays."""
    y, x = np.mgrid[0:self.height, 0:self.width].astype(np.float64) + 0.5
    scale = self.scale[:, None, None]
    wx = (x[None] - self.width / 2) / scale + self.width / (2 * self.height) + self.camera[:, 0, None, None]
    wy = (self.height / 2 - y[None]) / scale + 0.5 + self.camera[:, 1, None, None]
    return wx, wy


class Canvas:
  """Collects the shapes of one scene; helpers take world-space 3D points [T, 3] and sizes in
  world units, and project them."""

  def __init__(self, project: Projector):
    self.project = project
    self.shapes: list[Shape] = []
    self.owner = 0

  def capsule(self, a, b, ra, rb, paint: Paint, *, u0=0.0, bias=0.0, opacity=1.0) -> None:
    scale = self.project.scale
    frames = scale.shape[0]
    ra, rb = np.broadcast_to(ra, (frames,)) * scale, np.broadcast_to(rb, (frames,)) * scale
    self.shapes.append(Shape(
        Capsule(self.project(a), self.project(b), ra.astype(np.float32), rb.astype(np.float32),
                (np.broadcast_to(u0, (frames,)) * scale).astype(np.float32)),
        paint, z=(a[:, 2] + b[:, 2]) / 2 + bias, unit=scale, opacity=opacity, owner=self.owner))

  def circle(self, centre, radius, paint: Paint, *, bias=0.0, opacity=1.0) -> None:
    self.capsule(centre, centre, radius, radius, paint, bias=bias, opacity=opacity)

  def polygon(self, points: np.ndarray, paint: Paint, *, z, angle=0.0, opacity=1.0) -> None:
    """points: [T, K, 2] pixels (already projected)."""
    self.shapes.append(Shape(Polygon(points.astype(np.float32), np.asarray(angle, np.float32)), paint, z=z,
                             unit=self.project.scale, opacity=opacity, owner=self.owner))

  def box(self, centre2d, half2d, angle, rounding, paint: Paint, *, z, opacity=1.0) -> None:
    self.shapes.append(Shape(Box(centre2d.astype(np.float32), half2d.astype(np.float32),
                                 np.asarray(angle, np.float32), np.asarray(rounding, np.float32)),
                             paint, z=z, unit=self.project.scale, opacity=opacity, owner=self.owner))

  def blob(self, centres, radii, smooth, paint: Paint, *, z) -> None:
    scale = self.project.scale
    self.shapes.append(Shape(Blob(self.project(centres), (radii * scale[:, None]).astype(np.float32),
                                  (smooth * scale).astype(np.float32)),
                             paint, z=z, unit=scale, owner=self.owner))

  def screen_up(self, origin, up) -> tuple[np.ndarray, np.ndarray]:
    """Screen-space unit up and right vectors [T, 2] of a 3D direction `up` at `origin`."""
    a, b = self.project(origin), self.project(origin + up)
    e_up = b - a
    length = np.linalg.norm(e_up, axis=-1, keepdims=True)
    e_up = np.where(length > 1e-4, e_up / np.maximum(length, 1e-4), np.array([0.0, -1.0], np.float32))
    return e_up, np.stack([-e_up[:, 1], e_up[:, 0]], -1)
