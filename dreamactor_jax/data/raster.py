"""A small anti-aliased numpy rasteriser for the synthetic world (`synthetic.py`).

Shapes are signed-distance fields over the pixel grid: tapered capsules (circles when both ends
meet), rounded boxes, convex polygons and smooth unions of circles ("blobs"). Every parameter has
a leading frame axis T, so a whole clip rasterises in a few vectorised numpy ops per shape. A
pixel's coverage is `clip(0.5 - distance, 0, 1)` (distance in pixels): a one-pixel ramp, which is
the anti-aliasing. Shapes are painted in shape-local coordinates, so textures move with the part
they cover, and composited back to front per frame by their depth (depth may change order from
one frame to the next: a turning body swaps its near and far arm).

Coordinates: pixels, x right, y down, pixel centres at integer + 0.5.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Pattern = Literal["solid", "stripes", "dots", "checker", "bands"]
PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots", "checker", "bands")


@dataclasses.dataclass(frozen=True)
class Paint:
  """How a shape is coloured: `color` with `pattern` drawn in `color2`.

  `period` is the pattern's period in world units (the `unit` of the shape converts pixels to
  them), `angle` its orientation in radians.
  """
  color: np.ndarray  # [3] in 0..1
  color2: np.ndarray | None = None  # [3] in 0..1; the pattern colour (default: color)
  pattern: Pattern = "solid"
  period: float = 0.1
  angle: float = 0.0

  def shade(self, u: np.ndarray, v: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Colour at shape-local coordinates `u, v` (pixels, [T, H, W]) -> [T, H, W, 3] (or [3] if solid)."""
    if self.pattern == "solid" or self.color2 is None:
      return np.asarray(self.color, np.float32)
    unit = unit[:, None, None]
    c, s = np.cos(self.angle), np.sin(self.angle)
    a = (u * c + v * s) / unit  # world units along the pattern
    b = (v * c - u * s) / unit
    freq = 2 * np.pi / self.period
    ramp = self.period * unit / (2 * np.pi)  # turns sin's slope at its zeros into one pixel
    if self.pattern == "stripes":
      amount = np.clip(0.5 + np.sin(a * freq) * ramp, 0, 1)
    elif self.pattern == "checker":
      amount = np.clip(0.5 + np.sin(a * freq) * np.sin(b * freq) * ramp, 0, 1)
    elif self.pattern == "dots":
      da = (a / self.period) % 1.0 - 0.5
      db = (b / self.period) % 1.0 - 0.5
      dist = np.sqrt(da * da + db * db) * self.period * unit  # pixels to the nearest dot centre
      amount = np.clip(0.5 + 0.3 * self.period * unit - dist, 0, 1)
    elif self.pattern == "bands":
      amount = 0.5 + 0.5 * np.sin(a * freq)
    else:
      raise ValueError(f"Paint.pattern={self.pattern!r}; expected one of {PATTERNS}")
    color, color2 = np.asarray(self.color, np.float32), np.asarray(self.color2, np.float32)
    return color + amount[..., None].astype(np.float32) * (color2 - color)


def _frames(x, frames: int, *trailing: int) -> np.ndarray:
  """Broadcasts a per-frame parameter to [T, *trailing] float32."""
  return np.broadcast_to(np.asarray(x, np.float32), (frames, *trailing))


@dataclasses.dataclass
class Capsule:
  """A segment a -> b swept by a radius going linearly from ra to rb; a circle when a == b.

  a, b: [T, 2]; ra, rb: [T]. Texture: u along a -> b from `u0` (pixels), v across.
  """
  a: np.ndarray
  b: np.ndarray
  ra: np.ndarray
  rb: np.ndarray
  u0: np.ndarray | float = 0.0

  def distance(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = self.a[:, None, None, :], self.b[:, None, None, :]
    ax, ay = x - a[..., 0], y - a[..., 1]
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    length2 = dx * dx + dy * dy
    h = np.clip((ax * dx + ay * dy) / np.maximum(length2, 1e-6), 0.0, 1.0)
    radius = self.ra[:, None, None] + (self.rb - self.ra)[:, None, None] * h
    px, py = ax - h * dx, ay - h * dy
    sd = np.sqrt(px * px + py * py) - radius
    length = np.sqrt(np.maximum(length2, 1e-12))
    # A circle (a == b) has no axis: texture it in plain x, y.
    ux, uy = np.where(length2 > 1e-6, dx / length, 1.0), np.where(length2 > 1e-6, dy / length, 0.0)
    u = ax * ux + ay * uy + np.asarray(self.u0, np.float32).reshape(-1, 1, 1)
    v = ay * ux - ax * uy
    return sd, u, v


@dataclasses.dataclass
class Box:
  """A rectangle of half-size `half` [T, 2] centred at `center` [T, 2], rotated by `angle` [T]
  (radians, clockwise on screen), corners rounded by `rounding` [T] pixels."""
  center: np.ndarray
  half: np.ndarray
  angle: np.ndarray
  rounding: np.ndarray | float = 0.0

  def distance(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c, s = np.cos(self.angle)[:, None, None], np.sin(self.angle)[:, None, None]
    rx, ry = x - self.center[:, None, None, 0], y - self.center[:, None, None, 1]
    u, v = rx * c + ry * s, ry * c - rx * s
    rounding = np.asarray(self.rounding, np.float32).reshape(-1, 1, 1)
    qx = np.abs(u) - self.half[:, None, None, 0] + rounding
    qy = np.abs(v) - self.half[:, None, None, 1] + rounding
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    sd = outside + np.minimum(np.maximum(qx, qy), 0) - rounding
    return sd, u, v


@dataclasses.dataclass
class Polygon:
  """A convex polygon with vertices `points` [T, K, 2] in either winding; texture coordinates
  relative to the vertex mean, rotated by `angle` [T]."""
  points: np.ndarray
  angle: np.ndarray | float = 0.0

  def distance(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = self.points
    q = np.roll(p, -1, axis=1)
    edge = q - p  # T K 2
    area2 = np.sum(p[..., 0] * q[..., 1] - q[..., 0] * p[..., 1], axis=1)  # T, twice the signed area
    sign = np.where(area2 >= 0, 1.0, -1.0)[:, None]
    length = np.maximum(np.linalg.norm(edge, axis=-1), 1e-6)
    # Outward normals: the edge turned right for counter-clockwise (y-down) winding.
    nx, ny = sign * edge[..., 1] / length, -sign * edge[..., 0] / length  # T K
    sd = np.full(x.shape[-2:], -np.inf, np.float32)[None]
    for k in range(p.shape[1]):  # K is small (3-8): one plane each, max = convex intersection
      dk = ((x - p[:, None, None, k, 0]) * nx[:, k, None, None]
            + (y - p[:, None, None, k, 1]) * ny[:, k, None, None])
      sd = np.maximum(sd, dk)
    # A polygon seen edge-on degenerates to a line of half-planes: cap it with its bounding box and
    # fade it out as its thickness (twice the area over the longest edge) drops below a pixel.
    low, high = p.min(axis=1), p.max(axis=1)
    sd = np.maximum.reduce([sd, low[:, None, None, 0] - x, x - high[:, None, None, 0], low[:, None, None, 1] - y,
                            y - high[:, None, None, 1]])
    thickness = np.abs(area2) / np.max(length, axis=1)
    sd = sd + np.clip(1 - thickness, 0, 1)[:, None, None]
    centre = p.mean(axis=1)
    angle = np.broadcast_to(np.asarray(self.angle, np.float32), (p.shape[0],))
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    rx, ry = x - centre[:, None, None, 0], y - centre[:, None, None, 1]
    return sd, rx * c + ry * s, ry * c - rx * s


@dataclasses.dataclass
class Blob:
  """A smooth union of circles (a metaball-like soft body): `centers` [T, K, 2], `radii` [T, K],
  `smooth` [T] pixels of blending. Texture relative to the first centre."""
  centers: np.ndarray
  radii: np.ndarray
  smooth: np.ndarray

  def distance(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.maximum(self.smooth, 1e-3)[:, None, None]
    distances = []
    for i in range(self.centers.shape[1]):
      dx, dy = x - self.centers[:, None, None, i, 0], y - self.centers[:, None, None, i, 1]
      distances.append(np.sqrt(dx * dx + dy * dy) - self.radii[:, i, None, None])
    # log-sum-exp smooth minimum, shifted by the hard minimum for stability
    nearest = np.minimum.reduce(distances)
    acc = sum(np.exp(-(d - nearest) / k) for d in distances)
    sd = nearest - k * np.log(acc)
    u = x - self.centers[:, None, None, 0, 0]
    v = y - self.centers[:, None, None, 0, 1]
    return sd, u, v


Geometry = Capsule | Box | Polygon | Blob


@dataclasses.dataclass
class Shape:
  """A painted geometry with a per-frame depth `z` [T] (larger = nearer the camera, drawn later),
  `opacity` [T] in 0..1, `unit` [T] pixels per world unit (for textures) and `owner`, the index of
  the character it belongs to (for silhouettes; -1 = scenery)."""
  geometry: Geometry
  paint: Paint
  z: np.ndarray
  unit: np.ndarray
  opacity: np.ndarray | float = 1.0
  owner: int = 0


def rasterize(shapes: list[Shape], background: np.ndarray, *, owners: int = 1,
              budget: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
  """Composites `shapes` over `background` back to front, per frame by depth.

  background: float32 [T, H, W, 3] in 0..1. Returns (image float32 [T, H, W, 3],
  silhouettes float32 [owners, T, H, W]: the union coverage of each owner's shapes, occlusion
  ignored). Frames are processed in chunks of about `budget` floats of layer stack.
  """
  frames, height, width, _ = background.shape
  image = background.astype(np.float32).copy()
  silhouettes = np.zeros((owners, frames, height, width), np.float32)
  if not shapes:
    return image, silhouettes
  y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
  x, y = x[None], y[None]
  chunk = max(1, budget // (len(shapes) * height * width * 4))
  depth = np.stack([_frames(s.z, frames) for s in shapes])  # S T
  # Stable order: equal depths keep list order (later = on top).
  order = np.argsort(depth, axis=0, kind="stable")
  for start in range(0, frames, chunk):
    stop = min(frames, start + chunk)
    alphas, colours = [], []
    for shape in shapes:
      geometry = _slice(shape.geometry, start, stop)
      sd, u, v = geometry.distance(x, y)
      alpha = np.clip(0.5 - sd, 0.0, 1.0) * _frames(shape.opacity, frames)[start:stop, None, None]
      colour = shape.paint.shade(u, v, _frames(shape.unit, frames)[start:stop])
      alphas.append(alpha.astype(np.float32))
      colours.append(np.broadcast_to(colour, (stop - start, height, width, 3)))
      if shape.owner >= 0:
        silhouettes[shape.owner, start:stop] = 1 - (1 - silhouettes[shape.owner, start:stop]) * (1 - alpha)
    alphas, colours = np.stack(alphas), np.stack(colours)  # S t H W (3)
    ts = np.arange(stop - start)
    out = image[start:stop]
    for layer in order[:, start:stop]:  # back to front; `layer` [t] picks a shape per frame
      alpha = alphas[layer, ts][..., None]
      out = out + alpha * (colours[layer, ts] - out)
    image[start:stop] = out
  return image, silhouettes


def _slice(geometry: Geometry, start: int, stop: int) -> Geometry:
  """The geometry's frames start:stop (fields without a frame axis are kept)."""
  fields = {}
  for field in dataclasses.fields(geometry):
    value = getattr(geometry, field.name)
    fields[field.name] = value[start:stop] if isinstance(value, np.ndarray) and value.ndim else value
  return type(geometry)(**fields)
