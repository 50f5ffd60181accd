"""A procedural character-animation world with exact ground truth (issue 8).

Characters of several kinds (`KINDS`: humanoids with an OpenPose skeleton, quadrupeds, blobs,
snakes, robot arms and groups of several characters) have an *identity* (proportions, colours,
texture, accessories, background, placement) and perform a *motion* (`MOTION_TYPES`: walk, wave,
jump, turn, dance, squat, camera pan, camera zoom). A motion is a time series of abstract pose
parameters (`PoseParams`: root offset, facing, upper-body lean and bend, head, four limbs of four
angles each, a rhythm phase and a camera) that knows nothing of bodies; each kind maps it onto its
own body (a quadruped's front legs follow the arms, a robot arm's joints mix the torso and arm
angles, a snake undulates with the phase, a blob's lobes point where limbs would). So
`render(identity_b, motion_of_a)` is the exact video of "identity B performing A's motion", the
truth that PAPER.md section 7's AW Bench lacks.

Bodies are built in 3D (x right, y up, z toward the camera, world unit = the canvas height),
projected orthographically through a panning, zooming camera and rasterised by `raster.py`.
Identities and motions are deterministic functions of (seed, kind or type, index); held-out ones
use indices from `TEST_OFFSET` (evaluation drivers from `DRIVER_OFFSET`), so no held-out identity
or motion can appear in a training folder.

  python -m dreamactor_jax.data.synthetic --out data/synth --identities 60 --motions 16 --frames 17 --size 64x64
  python -m dreamactor_jax.data.synthetic --out data/synth-test --split test --identities 12 --motions 8

The training split writes the video-folder format of CONTRACTS.md (`<id>.mp4`, `<id>.json`,
`<id>.pose.npz` when humanoids are present); the test split writes evaluation triplets (see
`write_triplets`), scored by `python -m dreamactor_jax.evaluate`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax import media
from dreamactor_jax.data.keypoints import BODY_JOINTS, Pose, write_pose_npz
from dreamactor_jax.data.raster import Blob, Box, Capsule, Paint, Polygon, Shape, rasterize

KINDS = ("humanoid", "quadruped", "blob", "snake", "robot_arm", "group")
MEMBER_KINDS = ("humanoid", "quadruped", "blob", "snake")  # kinds a group is made of
MOTION_TYPES = ("walk", "wave", "jump", "turn", "dance", "squat", "pan", "zoom")
TEST_OFFSET = 1_000_000  # held-out identities and motions have indices in [TEST_OFFSET, DRIVER_OFFSET)
DRIVER_OFFSET = 2_000_000  # drivers (identity A) of evaluation triplets: indices from here
DEFAULT_FPS = 8

_IDENTITY_DOMAIN, _MOTION_DOMAIN = 1, 2

# ---------------------------------------------------------------------------------------------
# Motions: abstract pose time series, independent of any body.


@dataclasses.dataclass
class PoseParams:
  """Abstract pose parameters per frame. Angles in radians, positions in world units.

  Limbs are (abduction: sideways away from the body, flexion: forward swing, and the same two for
  the elbow/knee, added to the upper segment's); knee flexion < 0 bends backward.
  """
  x: np.ndarray  # [T] root offset to screen-right
  lift: np.ndarray  # [T] root lift above the ground (jumps)
  yaw: np.ndarray  # [T] facing: 0 = toward the camera, +pi/2 = screen-right
  lean: np.ndarray  # [T] upper body tilt toward the body's left
  bend: np.ndarray  # [T] upper body bend forward
  head: np.ndarray  # [T, 2] head tilt toward the left, nod down
  arms: np.ndarray  # [T, 2, 4] right, left x (abduction, flexion, elbow abduction, elbow flexion)
  legs: np.ndarray  # [T, 2, 4] right, left x (abduction, flexion, knee abduction, knee flexion)
  phase: np.ndarray  # [T] rhythm phase: tails, undulation, grippers
  camera: np.ndarray  # [T, 3] pan x, pan y, log zoom

  @property
  def frames(self) -> int:
    return self.x.shape[0]

  @classmethod
  def rest(cls, frames: int) -> PoseParams:
    zeros = np.zeros(frames, np.float64)
    arms = np.zeros((frames, 2, 4))
    arms[..., 0] = 0.12  # hands a little away from the hips
    arms[..., 3] = 0.15
    return cls(x=zeros.copy(), lift=zeros.copy(), yaw=zeros.copy(), lean=zeros.copy(), bend=zeros.copy(),
               head=np.zeros((frames, 2)), arms=arms, legs=np.zeros((frames, 2, 4)), phase=zeros.copy(),
               camera=np.zeros((frames, 3)))

  def neutral(self) -> PoseParams:
    """One frame: this pose's frame-0 position and camera, facing the camera, limbs at rest."""
    pose = PoseParams.rest(1)
    pose.x, pose.camera = self.x[:1].copy(), self.camera[:1].copy()
    return pose


@dataclasses.dataclass(frozen=True)
class Motion:
  """A motion of `type` with its sampled parameters; `pose(frames)` evaluates it at t = 0..T-1."""
  name: str
  type: str
  params: dict

  def pose(self, frames: int) -> PoseParams:
    t = np.arange(frames, dtype=np.float64)
    pose = _MOTIONS[self.type](t, self.params)
    camera = self.params.get("camera", "none")
    if camera != "none" and self.type not in ("pan", "zoom"):
      pose.camera += _camera_track(t, camera, self.params, 0.5)
    return pose

  @property
  def verb(self) -> str:
    verb = _VERBS[self.type] if self.type != "dance" else f"{_VERBS['dance']} {_DANCES[self.params['style']]}"
    camera = self.params.get("camera", "none")
    if camera != "none" and self.type not in ("pan", "zoom"):
      verb += " as the camera pans" if camera == "pan" else " as the camera zooms"
    return verb


_VERBS = {"walk": "walking back and forth", "wave": "waving", "jump": "jumping", "turn": "turning around",
          "dance": "dancing", "squat": "doing squats", "pan": "standing still as the camera pans",
          "zoom": "standing still as the camera zooms"}
_DANCES = ("with arms swinging up and down", "pointing at the sky", "swaying from side to side")


def _camera_track(t: np.ndarray, kind: str, params: dict, scale: float) -> np.ndarray:
  """[T, 3] camera offsets: a back-and-forth pan or a zoom in and out (bounded for any T)."""
  track = np.zeros((t.shape[0], 3))
  wave = 2 * np.pi * t / params["cam_period"] + params["cam_phase"]
  if kind == "pan":
    track[:, 0] = scale * params["cam_amp"] * np.sin(wave)
    track[:, 1] = scale * params["cam_tilt"] * np.sin(wave)
  else:
    track[:, 2] = scale * params["cam_zoom"] * (1 - np.cos(wave)) / 2
  return track


def _idle(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  breath = np.sin(2 * np.pi * t / p["period"] + p["phase0"])
  pose.yaw[:] = p["yaw0"]
  pose.arms[..., 0] += 0.05 * breath[:, None]
  pose.bend[:] = 0.03 * breath
  pose.head[:, 0] = 0.06 * breath
  pose.phase[:] = 2 * np.pi * t / p["period"] + p["phase0"]
  return pose


def _walk(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  slow = 2 * np.pi * t / p["slow_period"] + p["slow_phase"]
  pose.x[:] = p["range"] * np.sin(slow)
  heading = np.cos(slow)  # the sign of the velocity: face where you go
  pose.yaw[:] = (np.pi / 2) * np.tanh(3 * heading) / np.tanh(3)
  speed = 0.35 + 0.65 * np.abs(heading)
  gait = 2 * np.pi * t / p["period"] + p["phase0"]
  swing = p["stride"] * speed * np.sin(gait)
  pose.legs[:, 0, 1], pose.legs[:, 1, 1] = swing, -swing
  pose.legs[:, 0, 3] = -p["stride"] * speed * (0.5 + 0.5 * np.cos(gait))
  pose.legs[:, 1, 3] = -p["stride"] * speed * (0.5 - 0.5 * np.cos(gait))
  arm_swing = p["arm_swing"] * speed * np.sin(gait)
  pose.arms[:, 0, 1], pose.arms[:, 1, 1] = -arm_swing, arm_swing
  pose.arms[..., 3] = 0.35
  pose.lift[:] = 0.008 * np.abs(np.sin(gait))
  pose.bend[:] = 0.08
  pose.phase[:] = gait
  return pose


def _wave(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  wave = 2 * np.pi * t / p["period"] + p["phase0"]
  sides = {0: [0], 1: [1], 2: [0, 1]}[p["side"]]
  for side in sides:
    pose.arms[:, side] = [p["raise"], 0.1, 0.0, 0.0]
    pose.arms[:, side, 2] = 0.35 + p["elbow"] * np.sin(wave + side * np.pi)
  pose.yaw[:] = p["yaw0"]
  pose.lean[:] = 0.05 * np.sin(wave)
  pose.head[:, 0] = p["tilt"]
  pose.phase[:] = wave
  return pose


def _jump(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  cycle = np.sin(2 * np.pi * t / p["period"] + p["phase0"])
  air, crouch = np.maximum(cycle, 0), np.maximum(-cycle, 0)
  tuck = p["style"] == 0
  pose.lift[:] = p["height"] * air
  pose.legs[..., 1] = (0.6 * crouch + (0.7 * air if tuck else 0.0))[:, None]
  pose.legs[..., 3] = (-1.2 * crouch - (0.9 * air if tuck else 0.1 * air))[:, None]
  pose.legs[..., 0] = (0.05 + (0.0 if tuck else 0.35) * air)[:, None]
  pose.arms[..., 0] = (0.2 + (0.6 if tuck else 2.4) * air)[:, None]
  pose.arms[..., 1] = (-0.5 * crouch + (0.9 * air if tuck else 0.0))[:, None]
  pose.bend[:] = 0.35 * crouch
  pose.yaw[:] = p["yaw0"]
  pose.phase[:] = 2 * np.pi * t / p["period"] + p["phase0"]
  return pose


def _turn(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  pose.yaw[:] = p["yaw0"] + p["speed"] * t
  step = 2 * np.pi * t / p["period"] + p["phase0"]
  pose.legs[:, 0, 1], pose.legs[:, 1, 1] = 0.2 * np.sin(step), -0.2 * np.sin(step)
  pose.legs[:, 0, 3] = -0.2 * (1 + np.cos(step)) / 2
  pose.legs[:, 1, 3] = -0.2 * (1 - np.cos(step)) / 2
  pose.arms[..., 0] = p["arms"]
  pose.arms[..., 2] = 0.2
  pose.phase[:] = pose.yaw
  return pose


def _dance(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  beat = 2 * np.pi * t / p["period"] + p["phase0"]
  s, c, a = np.sin(beat), np.cos(beat), p["amount"]
  pose.yaw[:] = p["yaw0"]
  if p["style"] == 0:  # arms swing up and down in turn, hips sway
    pose.arms[:, 0, 0], pose.arms[:, 1, 0] = 1.4 + a * s, 1.4 - a * s
    pose.arms[..., 2] = 0.4
    pose.x[:] = 0.02 * s
    pose.lean[:] = 0.15 * a * s
    pose.legs[..., 3] = (-0.3 * (1 + c) / 2)[:, None]
    pose.head[:, 0] = 0.15 * s
  elif p["style"] == 1:  # disco: one arm points up and down, the other hand on the hip
    point = np.tanh(3 * s)
    pose.arms[:, 0] = np.stack([1.6 + 0.9 * a * point, np.full_like(s, 0.3), np.zeros_like(s), np.zeros_like(s)], -1)
    pose.arms[:, 1] = [0.5, 0.5, 0.0, 1.3]
    pose.lean[:] = 0.2 * a * point
    pose.legs[..., 3] = (-0.35 * (1 + np.cos(2 * beat)) / 2)[:, None]
    pose.yaw[:] += 0.3 * point
  else:  # sway: the body swings round, arms out
    pose.yaw[:] += 0.9 * a * s
    pose.arms[..., 0] = (1.3 + 0.3 * c)[:, None]
    pose.arms[:, 0, 1], pose.arms[:, 1, 1] = 0.5 * s, -0.5 * s
    pose.arms[..., 2] = 0.6
    pose.lift[:] = 0.02 * (1 + np.cos(2 * beat)) / 2
    pose.bend[:] = 0.1 * c
  pose.phase[:] = beat
  return pose


def _squat(t: np.ndarray, p: dict) -> PoseParams:
  pose = PoseParams.rest(t.shape[0])
  beat = 2 * np.pi * t / p["period"] + p["phase0"]
  crouch = (1 - np.cos(beat)) / 2
  pose.legs[..., 1] = (0.9 * p["depth"] * crouch)[:, None]
  pose.legs[..., 3] = (-1.6 * p["depth"] * crouch)[:, None]
  pose.bend[:] = 0.4 * p["depth"] * crouch
  pose.arms[..., 1] = (1.4 * crouch)[:, None]
  pose.yaw[:] = p["yaw0"]
  pose.phase[:] = beat
  return pose


def _pan(t: np.ndarray, p: dict) -> PoseParams:
  pose = _idle(t, p)
  pose.camera += _camera_track(t, "pan", p, 1.0)
  return pose


def _zoom(t: np.ndarray, p: dict) -> PoseParams:
  pose = _idle(t, p)
  pose.camera += _camera_track(t, "zoom", p, 1.0)
  return pose


_MOTIONS = {"walk": _walk, "wave": _wave, "jump": _jump, "turn": _turn, "dance": _dance, "squat": _squat,
            "pan": _pan, "zoom": _zoom}


def _motion_params(motion_type: str, rng: np.random.Generator) -> dict:
  """Samples one motion's parameters (periods in frames)."""
  u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
  sign = lambda: float(rng.choice([-1.0, 1.0]))  # noqa: E731
  params = {"phase0": u(0, 2 * np.pi), "yaw0": u(-0.6, 0.6)}
  if motion_type == "walk":
    # The clip starts mid-stride (not at a turnaround), so short clips travel too.
    params.update(period=u(7, 12), range=u(0.08, 0.18), slow_period=u(30, 50),
                  slow_phase=u(-0.9, 0.9) + float(rng.integers(2)) * np.pi,
                  stride=u(0.35, 0.6), arm_swing=u(0.3, 0.6))
  elif motion_type == "wave":
    params.update(period=u(5, 9), side=int(rng.integers(3)), elbow=u(0.3, 0.6), tilt=u(-0.15, 0.15))
    params["raise"] = u(2.0, 2.6)
  elif motion_type == "jump":
    params.update(period=u(8, 13), height=u(0.08, 0.16), style=int(rng.integers(2)), yaw0=u(-0.8, 0.8))
  elif motion_type == "turn":
    params.update(speed=sign() * u(0.12, 0.3), yaw0=u(-np.pi, np.pi), arms=u(0.3, 0.9), period=u(8, 12))
  elif motion_type == "dance":
    params.update(style=int(rng.integers(3)), period=u(8, 14), amount=u(0.7, 1.0), yaw0=u(-0.5, 0.5))
  elif motion_type == "squat":
    params.update(period=u(9, 14), depth=u(0.9, 1.4), yaw0=u(-0.7, 0.7))
  elif motion_type in ("pan", "zoom"):
    params.update(period=u(10, 16))
  else:
    raise ValueError(f"motion type {motion_type!r}; expected one of {MOTION_TYPES}")
  # Camera: the pan/zoom motions' own track, or (a quarter of the others) a gentler one on top.
  params.update(cam_period=u(24, 40), cam_phase=u(0, 2 * np.pi), cam_amp=sign() * u(0.1, 0.2),
                cam_tilt=u(-0.04, 0.04), cam_zoom=sign() * u(0.25, 0.5))
  if motion_type in ("pan", "zoom"):
    params["camera"] = motion_type
  else:
    params["camera"] = str(rng.choice(["none", "pan", "zoom"], p=[0.75, 0.125, 0.125]))
  return params


def sample_motion(motion_type: str, index: int, seed: int = 0) -> Motion:
  """The motion `<type>-<index>` of world `seed` (deterministic)."""
  if motion_type not in MOTION_TYPES:
    raise ValueError(f"motion type {motion_type!r}; expected one of {MOTION_TYPES}")
  rng = np.random.default_rng([seed, _MOTION_DOMAIN, MOTION_TYPES.index(motion_type), index])
  return Motion(name=f"{motion_type}-{index:06d}", type=motion_type, params=_motion_params(motion_type, rng))


# ---------------------------------------------------------------------------------------------
# 3D helpers and the camera.


def _rot_x(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: positive angles tip +y toward +z (forward)."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([i, o, o], -1), np.stack([o, c, -s], -1), np.stack([o, s, c], -1)], -2)


def _rot_y(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: yaw; +z (facing the camera) turns toward +x (screen-right)."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, o, s], -1), np.stack([o, i, o], -1), np.stack([-s, o, c], -1)], -2)


def _rot_z(angle: np.ndarray) -> np.ndarray:
  """[T, 3, 3]: positive angles tip +y toward -x."""
  c, s = np.cos(angle), np.sin(angle)
  o, i = np.zeros_like(c), np.ones_like(c)
  return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def _apply(rotation: np.ndarray, vector) -> np.ndarray:
  """rotation [T, 3, 3] times vector [3] or [T, 3] -> [T, 3]."""
  vector = np.broadcast_to(np.asarray(vector, np.float64), (rotation.shape[0], 3))
  return np.einsum("tij,tj->ti", rotation, vector)


def _vec(*components) -> np.ndarray:
  """[T, 3] from three scalars or [T] arrays."""
  return np.stack(np.broadcast_arrays(*[np.asarray(c, np.float64) for c in components]), -1)


def _limb(abduction: np.ndarray, flexion: np.ndarray, side: float) -> np.ndarray:
  """[T, 3] unit direction of a limb hanging down, raised sideways (side -1 = the body's right,
  -x) by `abduction` and swung forward (+z) by `flexion`."""
  return _vec(side * np.sin(abduction), -np.cos(abduction) * np.cos(flexion), np.cos(abduction) * np.sin(flexion))


@dataclasses.dataclass
class _Projector:
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


class _Canvas:
  """Collects the shapes of one scene; helpers take world-space 3D points [T, 3] and sizes in
  world units, and project them."""

  def __init__(self, project: _Projector):
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


# ---------------------------------------------------------------------------------------------
# Identities: colours, backgrounds, bodies.

COLOURS = {
    "red": (0.85, 0.15, 0.15), "orange": (0.95, 0.55, 0.1), "yellow": (0.95, 0.85, 0.2),
    "green": (0.2, 0.7, 0.25), "teal": (0.1, 0.6, 0.6), "blue": (0.15, 0.35, 0.85), "purple": (0.55, 0.25, 0.75),
    "pink": (0.95, 0.45, 0.7), "brown": (0.5, 0.3, 0.15), "grey": (0.5, 0.5, 0.5), "white": (0.95, 0.95, 0.95),
    "black": (0.1, 0.1, 0.1),
}
SKINS = ((0.98, 0.84, 0.72), (0.9, 0.7, 0.55), (0.76, 0.55, 0.4), (0.55, 0.36, 0.24), (0.36, 0.22, 0.14),
         (0.55, 0.8, 0.45), (0.5, 0.7, 0.9))  # the last two: cartoon aliens
_ADJECTIVES = {"solid": "", "stripes": "striped ", "dots": "spotted ", "checker": "checkered ", "bands": "banded "}
_MIN_CONTRAST = 0.3  # RGB distance (0..1) between a character's colours and its background's


@dataclasses.dataclass(frozen=True)
class Background:
  """A scene behind the characters, drawn in world coordinates so that the camera moves it."""
  style: str  # plain | gradient | floor | checker | waves
  color: np.ndarray  # [3]
  color2: np.ndarray  # [3]
  floor: float  # world y of the ground the characters stand on
  period: float
  angle: float

  def render(self, project: _Projector) -> np.ndarray:
    """float32 [T, H, W, 3] in 0..1."""
    wx, wy = project.world_grid()
    if self.style == "plain":
      amount = np.zeros_like(wx)
    elif self.style == "gradient":
      amount = np.clip(wy, 0, 1)
    elif self.style == "floor":  # a horizon line, anti-aliased, that pans and zooms with the camera
      amount = np.clip(0.5 + (self.floor + 0.02 - wy) * project.scale[:, None, None], 0, 1)
    elif self.style == "checker":
      a = wx * np.cos(self.angle) + wy * np.sin(self.angle)
      b = wy * np.cos(self.angle) - wx * np.sin(self.angle)
      amount = (np.sin(2 * np.pi * a / self.period) * np.sin(2 * np.pi * b / self.period) > 0).astype(np.float64)
    elif self.style == "waves":
      amount = 0.5 + 0.5 * np.sin(2 * np.pi * wx / self.period + 3 * np.sin(2 * np.pi * wy / self.period))
    else:
      raise ValueError(f"Background.style={self.style!r}")
    image = self.color + amount[..., None] * (self.color2 - self.color)
    return image.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Body:
  """One character's body: its kind, dimensions (world units), paints, accessories and a noun
  phrase for captions."""
  kind: str
  dims: dict
  paints: dict
  extras: dict
  description: str


@dataclasses.dataclass(frozen=True)
class Member:
  """A body placed in the scene: home x and depth (world units)."""
  body: Body
  x: float
  z: float


@dataclasses.dataclass(frozen=True)
class Identity:
  """A character (or group) with its scene: everything about a video but the motion."""
  name: str
  kind: str
  members: tuple[Member, ...]
  background: Background

  @property
  def description(self) -> str:
    if len(self.members) == 1:
      return self.members[0].body.description
    count = {2: "two", 3: "three"}[len(self.members)]
    names = [m.body.description for m in self.members]
    return f"{count} characters ({', '.join(names[:-1])} and {names[-1]})"

  @property
  def humanoids(self) -> int:
    return sum(m.body.kind == "humanoid" for m in self.members)


class _Sampler:
  """Random draws for one identity, with colours that keep their distance from the background."""

  def __init__(self, rng: np.random.Generator, background: Background):
    self.rng = rng
    self.avoid = [background.color, background.color2]

  def u(self, lo: float, hi: float) -> float:
    return float(self.rng.uniform(lo, hi))

  def pick(self, options: Sequence, p=None):
    return options[int(self.rng.choice(len(options), p=p))]

  def colour(self, names: Sequence[str] = tuple(COLOURS)) -> tuple[str, np.ndarray]:
    ok = [n for n in names if min(np.linalg.norm(np.array(COLOURS[n]) - a) for a in self.avoid) > _MIN_CONTRAST + 0.1]
    name = self.pick(ok or ["black", "white"])
    jitter = self.rng.uniform(-0.05, 0.05, 3)
    return name, np.clip(np.array(COLOURS[name]) + jitter, 0, 1)

  def contrasting(self, options: Sequence) -> np.ndarray:
    ok = [np.array(c) for c in options if min(np.linalg.norm(np.array(c) - a) for a in self.avoid) > _MIN_CONTRAST]
    return ok[int(self.rng.integers(len(ok)))] if ok else self.colour()[1]

  def paint(self, colour: np.ndarray, patterns=("solid", "stripes", "dots", "checker", "bands"),
            period=(0.04, 0.08)) -> Paint:
    pattern = self.pick(patterns)
    second = self.colour()[1]
    if np.linalg.norm(second - colour) < 0.25:
      second = np.clip(1.0 - colour, 0, 1) * 0.6 + colour * 0.4
    return Paint(colour, second, pattern, self.u(*period), self.u(0, np.pi))


def _background(rng: np.random.Generator) -> Background:
  style = ("plain", "gradient", "floor", "checker", "waves")[int(rng.integers(5))]
  dark = rng.uniform() < 0.3
  base = rng.uniform(0.08, 0.22) if dark else rng.uniform(0.72, 0.92)
  color = np.clip(base + rng.uniform(-0.08, 0.08, 3), 0, 1)
  shift = rng.uniform(0.1, 0.2) if style == "floor" else rng.uniform(0.04, 0.1)
  color2 = np.clip(color + (shift if dark else -shift) + rng.uniform(-0.03, 0.03, 3), 0, 1)
  return Background(style, color, color2, floor=float(rng.uniform(0.1, 0.2)), period=float(rng.uniform(0.1, 0.25)),
                    angle=float(rng.uniform(0, np.pi)))


def _humanoid_body(s: _Sampler, height: float) -> Body:
  dims = dict(head=s.u(0.075, 0.11), neck=s.u(0.03, 0.05), torso=s.u(0.26, 0.32), thigh=s.u(0.21, 0.26),
              shin=s.u(0.19, 0.24), upper_arm=s.u(0.14, 0.18), forearm=s.u(0.13, 0.17), hips=s.u(0.04, 0.07),
              arm_r=s.u(0.025, 0.04), leg_r=s.u(0.032, 0.052), chest=s.u(0.05, 0.085), foot=s.u(0.05, 0.08))
  dims["shoulders"] = dims["chest"] + s.u(0.03, 0.06)
  total = dims["thigh"] + dims["shin"] + dims["torso"] + dims["neck"] + 2 * dims["head"] + dims["leg_r"]
  dims = {k: v * height / total for k, v in dims.items()}
  shirt_name, shirt = s.colour()
  pants_name, pants = s.colour()
  paints = dict(skin=Paint(s.contrasting(SKINS)), shirt=s.paint(shirt),
                pants=s.paint(pants, ("solid", "solid", "stripes")),
                hair=Paint(s.contrasting([(0.1, 0.07, 0.05), (0.35, 0.2, 0.1), (0.85, 0.7, 0.35), (0.6, 0.15, 0.1),
                                          (0.9, 0.9, 0.9), (0.2, 0.3, 0.8)])),
                shoes=Paint(s.colour(["black", "brown", "white", "red", "blue"])[1]), extra=Paint(s.colour()[1]),
                eyes=Paint(np.array([0.05, 0.05, 0.08])))
  extras = dict(hat=s.pick(["none", "cap", "tophat", "cone"], p=[0.55, 0.15, 0.15, 0.15]),
                hair=s.pick(["none", "short", "long"], p=[0.15, 0.55, 0.3]), scarf=bool(s.u(0, 1) < 0.25),
                backpack=bool(s.u(0, 1) < 0.25), skirt=bool(s.u(0, 1) < 0.25), sleeves=bool(s.u(0, 1) < 0.5))
  description = f"a person in a {shirt_name} {_ADJECTIVES[paints['shirt'].pattern]}top"
  hats = {"none": "", "cap": " with a cap", "tophat": " with a top hat", "cone": " with a party hat"}
  description += hats[extras["hat"]]
  return Body("humanoid", dims, paints, extras, description)


def _quadruped_body(s: _Sampler, height: float) -> Body:
  dims = dict(leg=s.u(0.33, 0.45), body_len=s.u(0.45, 0.7), body_r=s.u(0.11, 0.16), hips=s.u(0.05, 0.08),
              neck=s.u(0.14, 0.22), head=s.u(0.1, 0.14), snout=s.u(0.06, 0.14), tail=s.u(0.18, 0.35),
              tail_r=s.u(0.02, 0.04), leg_r=s.u(0.035, 0.055))
  dims = {k: v * height for k, v in dims.items()}
  name, colour = s.colour()
  paints = dict(body=s.paint(colour, ("solid", "dots", "stripes", "bands")),
                legs=Paint(colour * s.u(0.6, 1.0)), nose=Paint(np.array([0.08, 0.05, 0.05])),
                eyes=Paint(np.array([0.05, 0.05, 0.05])), extra=Paint(s.colour()[1]))
  extras = dict(ears=s.pick(["pointy", "floppy", "round", "none"]), collar=bool(s.u(0, 1) < 0.4),
                bushy=bool(s.u(0, 1) < 0.4))
  ears = {"pointy": " with pointy ears", "floppy": " with floppy ears", "round": " with round ears", "none": ""}
  description = f"a {name} {_ADJECTIVES[paints['body'].pattern]}four-legged animal{ears[extras['ears']]}"
  return Body("quadruped", dims, paints, extras, description)


def _blob_body(s: _Sampler, height: float) -> Body:
  radius = height * s.u(0.27, 0.32)
  dims = dict(radius=radius, top=radius * s.u(0.65, 0.8), lobe=radius * s.u(0.3, 0.4), reach=radius * s.u(0.5, 0.8),
              smooth=radius * s.u(0.12, 0.22))
  name, colour = s.colour()
  paints = dict(body=s.paint(colour, ("solid", "dots", "bands", "stripes")), white=Paint(np.array([0.97, 0.97, 0.97])),
                pupil=Paint(np.array([0.05, 0.05, 0.05])), extra=Paint(s.colour()[1]))
  extras = dict(eyes=int(s.rng.integers(1, 4)), antenna=bool(s.u(0, 1) < 0.4))
  eyes = {1: "one eye", 2: "two eyes", 3: "three eyes"}[extras["eyes"]]
  description = f"a {name} {_ADJECTIVES[paints['body'].pattern]}blob with {eyes}"
  return Body("blob", dims, paints, extras, description)


def _snake_body(s: _Sampler, height: float) -> Body:
  length = height * s.u(1.3, 1.7)
  dims = dict(length=length, thick=length * s.u(0.065, 0.09), head=s.u(1.3, 1.6), wave_y=length * s.u(0.04, 0.08),
              wave_x=length * s.u(0.15, 0.25), wavelength=s.u(0.5, 0.9), neck=length * s.u(0.08, 0.16))
  name, colour = s.colour()
  paints = dict(body=s.paint(colour, ("stripes", "bands", "dots", "solid"), period=(0.05, 0.09)),
                eyes=Paint(np.array([0.05, 0.05, 0.05])), tongue=Paint(np.array([0.9, 0.1, 0.2])),
                extra=Paint(s.colour(["yellow", "orange"])[1]))
  paints["body"] = dataclasses.replace(paints["body"], angle=0.0)  # bands across the body
  extras = dict(crown=bool(s.u(0, 1) < 0.3))
  description = f"a {name} {_ADJECTIVES[paints['body'].pattern]}snake" + (" with a crown" if extras["crown"] else "")
  return Body("snake", dims, paints, extras, description)


def _robot_arm_body(s: _Sampler, height: float) -> Body:
  dims = dict(base_w=s.u(0.12, 0.18), base_h=s.u(0.06, 0.1), turret=s.u(0.1, 0.2), link1=s.u(0.3, 0.4),
              link2=s.u(0.25, 0.35), link3=s.u(0.1, 0.15), radius=s.u(0.035, 0.06), finger=s.u(0.08, 0.12))
  dims = {k: v * height for k, v in dims.items()}
  name, colour = s.colour()
  paints = dict(links=s.paint(colour, ("solid", "stripes", "solid")), joints=Paint(s.colour()[1]),
                base=Paint(s.colour(["grey", "black", "white", "brown"])[1]), lamp=Paint(np.array([1.0, 0.9, 0.2])))
  extras = dict(lamp=bool(s.u(0, 1) < 0.5), claw=bool(s.u(0, 1) < 0.5))
  description = f"a {name} {_ADJECTIVES[paints['links'].pattern]}robot arm" + (" with a lamp" if extras["lamp"] else "")
  return Body("robot_arm", dims, paints, extras, description)


_BODIES = {"humanoid": (_humanoid_body, (0.55, 0.8)), "quadruped": (_quadruped_body, (0.5, 0.65)),
           "blob": (_blob_body, (0.45, 0.6)), "snake": (_snake_body, (0.35, 0.5)),
           "robot_arm": (_robot_arm_body, (0.65, 0.85))}


def sample_identity(kind: str, index: int, seed: int = 0, *, aspect: float = 1.0) -> Identity:
  """The identity `<kind>-<index>` of world `seed` (deterministic). `aspect` = width / height
  of the frames it will be rendered in (home positions spread over the width)."""
  if kind not in KINDS:
    raise ValueError(f"character kind {kind!r}; expected one of {KINDS}")
  rng = np.random.default_rng([seed, _IDENTITY_DOMAIN, KINDS.index(kind), index])
  background = _background(rng)
  sampler = _Sampler(rng, background)
  if kind == "group":
    count = int(rng.integers(2, 4))
    members = []
    for i in range(count):
      member_kind = MEMBER_KINDS[int(rng.integers(len(MEMBER_KINDS)))]
      make, (lo, hi) = _BODIES[member_kind]
      body = make(sampler, sampler.u(lo, hi) * sampler.u(0.6, 0.72))
      x = aspect * (i + 1) / (count + 1) + sampler.u(-0.04, 0.04) * aspect
      members.append(Member(body, x, z=float((-1) ** i * 0.3 * i)))
  else:
    make, (lo, hi) = _BODIES[kind]
    home = (0.28, 0.45) if kind == "robot_arm" else (0.38, 0.62)  # the arm reaches to the right at rest
    members = [Member(make(sampler, sampler.u(lo, hi)), aspect * sampler.u(*home), 0.0)]
  return Identity(f"{kind}-{index:06d}", kind, tuple(members), background)


# ---------------------------------------------------------------------------------------------
# Bodies: a pose -> shapes (and keypoints for humanoids).


def _ground(points: list[np.ndarray], radii: list) -> np.ndarray:
  """[T] lift that puts the lowest of `points` (body frame, [T, 3], minus its radius) on y = 0."""
  lowest = np.min(np.stack([p[:, 1] - r for p, r in zip(points, radii)]), axis=0)
  return -lowest


def _humanoid(canvas: _Canvas, member: Member, pose: PoseParams, floor: float) -> np.ndarray:
  """Draws a humanoid; returns its keypoints [T, 18, 3] (x, y pixels, confidence)."""
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  frames = pose.frames
  upper = _rot_z(-pose.lean) @ _rot_x(pose.bend)
  head_rot = upper @ _rot_z(-pose.head[:, 0]) @ _rot_x(pose.head[:, 1])
  p: dict[str, np.ndarray] = {}  # body frame, pelvis at the origin
  for side, name in ((-1.0, "r"), (1.0, "l")):
    i = 0 if side < 0 else 1
    leg, arm = pose.legs[:, i], pose.arms[:, i]
    p[f"{name}_hip"] = _vec(side * d["hips"], 0, 0) + np.zeros((frames, 3))
    p[f"{name}_knee"] = p[f"{name}_hip"] + d["thigh"] * _limb(leg[:, 0], leg[:, 1], side)
    p[f"{name}_ankle"] = p[f"{name}_knee"] + d["shin"] * _limb(leg[:, 0] + leg[:, 2], leg[:, 1] + leg[:, 3], side)
    p[f"{name}_toe"] = p[f"{name}_ankle"] + _vec(0, -0.2 * d["leg_r"], d["foot"])
    p[f"{name}_shoulder"] = _apply(upper, [side * d["shoulders"], d["torso"] - 0.7 * d["chest"], 0])
    p[f"{name}_elbow"] = p[f"{name}_shoulder"] + d["upper_arm"] * _apply(upper, _limb(arm[:, 0], arm[:, 1], side))
    forearm = _apply(upper, _limb(arm[:, 0] + arm[:, 2], arm[:, 1] + arm[:, 3], side))
    p[f"{name}_wrist"] = p[f"{name}_elbow"] + d["forearm"] * forearm
    p[f"{name}_hand"] = p[f"{name}_wrist"] + 0.5 * d["arm_r"] * forearm
  p["neck_base"] = _apply(upper, [0, d["torso"], 0])
  p["head"] = p["neck_base"] + _apply(head_rot, [0, d["neck"] + d["head"], 0])
  shoe = 0.75 * d["leg_r"]
  lift = _ground([p["r_ankle"], p["l_ankle"], p["r_toe"], p["l_toe"]], [shoe] * 4)
  yaw = _rot_y(pose.yaw)
  root = _vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  w = {k: root + _apply(yaw, v) for k, v in p.items()}  # world
  world_dir = lambda rotation, v: _apply(yaw @ rotation, v)  # noqa: E731

  hr = d["head"]
  if extras["hair"] == "long":
    canvas.capsule(w["head"] + world_dir(head_rot, [0, 0.2 * hr, -0.35 * hr]),
                   w["head"] + world_dir(head_rot, [0, -1.6 * hr, -0.45 * hr]), 0.95 * hr, 0.8 * hr, paints["hair"])
  if extras["backpack"]:
    canvas.capsule(root + world_dir(upper, [0, 0.3 * d["torso"], -1.3 * d["chest"]]),
                   root + world_dir(upper, [0, 0.75 * d["torso"], -1.3 * d["chest"]]), 0.9 * d["chest"],
                   0.9 * d["chest"], paints["extra"])
  for name in ("r", "l"):
    canvas.capsule(w[f"{name}_hip"], w[f"{name}_knee"], d["leg_r"], 0.85 * d["leg_r"], paints["pants"])
    canvas.capsule(w[f"{name}_knee"], w[f"{name}_ankle"], 0.85 * d["leg_r"], 0.7 * d["leg_r"], paints["pants"])
    canvas.capsule(w[f"{name}_ankle"], w[f"{name}_toe"], shoe, 0.8 * shoe, paints["shoes"])
  if extras["skirt"]:  # two crossed cards: one shows from the front, the other from the side
    top, bottom = 0.9 * d["torso"] * 0.12, -0.55 * d["thigh"]
    half_top, half_bottom = d["hips"] + 1.4 * d["leg_r"], d["hips"] + 3.0 * d["leg_r"]
    for axis, weight in ((0, np.abs(np.cos(pose.yaw))), (2, np.abs(np.sin(pose.yaw)))):
      corners = []
      for cx, cy in ((-half_top, top), (half_top, top), (half_bottom, bottom), (-half_bottom, bottom)):
        v = [0.0, cy, 0.0]
        v[axis] = cx
        corners.append(root + _apply(yaw, v))
      canvas.polygon(canvas.project(np.stack(corners, 1)), paints["pants"], z=root[:, 2] + 0.01,
                     opacity=np.clip(3 * weight - 0.5, 0, 1))
  for side in (-1.0, 1.0):  # the torso: two capsules side by side, thin seen from the side
    bottom = root + world_dir(upper, [side * (d["shoulders"] - d["chest"]) * 0.6, 0.0, 0])
    top = root + world_dir(upper, [side * (d["shoulders"] - d["chest"]), d["torso"] - 0.7 * d["chest"], 0])
    canvas.capsule(bottom, top, 0.9 * d["chest"], d["chest"], paints["shirt"], bias=-1e-3)
  canvas.capsule(w["neck_base"] - world_dir(upper, [0, 0.5 * d["neck"], 0]), w["head"], 0.6 * d["arm_r"] + 0.01,
                 0.6 * d["arm_r"] + 0.01, paints["skin"], bias=-1e-3)
  if extras["scarf"]:
    canvas.capsule(w["neck_base"] + world_dir(upper, [-0.6 * d["shoulders"], -0.2 * d["neck"], 0.3 * d["chest"]]),
                   w["neck_base"] + world_dir(upper, [0.6 * d["shoulders"], -0.2 * d["neck"], 0.3 * d["chest"]]),
                   0.35 * d["chest"], 0.35 * d["chest"], paints["extra"])
    canvas.capsule(w["neck_base"] + world_dir(upper, [-0.3 * d["shoulders"], -0.3 * d["neck"], 0.5 * d["chest"]]),
                   w["neck_base"] + world_dir(upper, [-0.35 * d["shoulders"], -0.35 * d["torso"], 0.6 * d["chest"]]),
                   0.25 * d["chest"], 0.22 * d["chest"], paints["extra"])
  for name in ("r", "l"):
    canvas.capsule(w[f"{name}_shoulder"], w[f"{name}_elbow"], d["arm_r"], 0.9 * d["arm_r"],
                   paints["shirt"])
    canvas.capsule(w[f"{name}_elbow"], w[f"{name}_wrist"], 0.9 * d["arm_r"], 0.8 * d["arm_r"],
                   paints["shirt"] if extras["sleeves"] else paints["skin"])
    canvas.circle(w[f"{name}_hand"], 1.15 * d["arm_r"], paints["skin"])
  canvas.circle(w["head"], hr, paints["skin"])
  if extras["hair"] != "none":
    canvas.circle(w["head"] + world_dir(head_rot, [0, 0.22 * hr, -0.3 * hr]), 0.98 * hr, paints["hair"])
  facing = world_dir(head_rot, [0, 0, 1])[:, 2]  # how much the face looks at the camera
  keypoint_conf = {}
  for side, name in ((-1.0, "r"), (1.0, "l")):
    local = [side * 0.38 * hr, 0.12 * hr, 0.92 * hr]
    eye = w["head"] + world_dir(head_rot, local)
    toward = world_dir(head_rot, np.array(local) / hr)[:, 2]
    visible = np.clip((toward - 0.1) / 0.25, 0, 1)  # the near eye stays in profile
    canvas.circle(eye, 0.2 * hr, paints["eyes"], bias=hr, opacity=visible)
    w[f"{name}_eye"], keypoint_conf[f"{name}_eye"] = eye, visible > 0.5
    w[f"{name}_ear"] = w["head"] + world_dir(head_rot, [side * 0.88 * hr, 0.05 * hr, 0])
    keypoint_conf[f"{name}_ear"] = world_dir(head_rot, [side, 0, 0])[:, 2] > -0.5
  w["nose"] = w["head"] + world_dir(head_rot, [0, -0.15 * hr, 0.9 * hr])
  keypoint_conf["nose"] = facing > -0.1
  if extras["hat"] != "none":
    _hat(canvas, extras["hat"], w["head"] + world_dir(head_rot, [0, 0.8 * hr, -0.05 * hr]),
         world_dir(head_rot, [0, 1, 0]), hr, paints["extra"], z=w["head"][:, 2] + 1.5 * hr)

  w["neck"] = (w["r_shoulder"] + w["l_shoulder"]) / 2  # OpenPose's neck: between the shoulders
  points = canvas.project(np.stack([w[k] for k in BODY_JOINTS], 1))  # T 18 2
  conf = np.stack([keypoint_conf.get(k, np.ones(frames, bool)) for k in BODY_JOINTS], 1).astype(np.float32)
  inside = ((points[..., 0] >= 0) & (points[..., 0] < canvas.project.width) & (points[..., 1] >= 0)
            & (points[..., 1] < canvas.project.height))
  return np.concatenate([points, (conf * inside)[..., None]], -1).astype(np.float32)


def _hat(canvas: _Canvas, style: str, anchor: np.ndarray, up: np.ndarray, radius: float, paint: Paint, *, z) -> None:
  e_up, e_right = canvas.screen_up(anchor, up)
  base = canvas.project(anchor)
  r = radius * canvas.project.scale[:, None]
  angle = np.arctan2(e_right[:, 1], e_right[:, 0])
  if style == "cone":
    points = np.stack([base - 0.8 * r * e_right, base + 0.8 * r * e_right, base + 1.9 * r * e_up], 1)
    canvas.polygon(points, paint, z=z, angle=angle)
  elif style == "tophat":
    canvas.box(base + 0.75 * r * e_up, np.concatenate([0.6 * r, 0.75 * r], -1), angle, 0.1 * r[:, 0], paint, z=z)
    canvas.box(base, np.concatenate([1.1 * r, 0.12 * r], -1), angle, 0.1 * r[:, 0], paint, z=z)
  else:  # cap
    canvas.box(base + 0.1 * r * e_up, np.concatenate([0.95 * r, 0.4 * r], -1), angle, 0.35 * r[:, 0], paint, z=z)


def _quadruped(canvas: _Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  arms_up = np.clip(pose.arms[..., 0].mean(1) - 0.5, 0, None)
  body_rot = _rot_z(-0.7 * pose.lean) @ _rot_x(0.5 * pose.bend - 0.25 * arms_up)  # arms up: rear up
  head_rot = body_rot @ _rot_z(-pose.head[:, 0]) @ _rot_x(pose.head[:, 1] + 0.3 * pose.bend)
  p = {"rear": _apply(body_rot, [0, 0, -d["body_len"] / 2]), "front": _apply(body_rot, [0, 0, d["body_len"] / 2])}
  paws = []
  for side, i in ((-1.0, 0), (1.0, 1)):
    arm, leg = pose.arms[:, i], pose.legs[:, i]
    # Front legs follow the arms: a raised arm lifts the paw forward.
    front_flex = 0.8 * arm[:, 1] + 0.5 * np.clip(arm[:, 0] - 0.3, 0, 2)
    front_knee = -0.7 * np.clip(front_flex, 0, None) - 0.25 * np.abs(arm[:, 2])
    for end, abd, flex, knee_abd, knee_flex in (
        ("front", 0.2 * arm[:, 0], front_flex, np.zeros_like(front_flex), front_knee),
        ("rear", leg[:, 0], leg[:, 1], leg[:, 2], leg[:, 3])):
      hip = p[end] + _apply(body_rot, [side * d["hips"], -0.5 * d["body_r"], 0])
      knee = hip + 0.55 * d["leg"] * _limb(abd, flex, side)
      paw = knee + 0.45 * d["leg"] * _limb(abd + knee_abd, flex + knee_flex, side)
      p[f"{end}_{side}_hip"], p[f"{end}_{side}_knee"], p[f"{end}_{side}_paw"] = hip, knee, paw
      paws.append(paw)
  neck_angle = 0.7 - 0.3 * arms_up
  p["neck_base"] = p["front"] + _apply(body_rot, [0, 0.5 * d["body_r"], 0.3 * d["body_r"]])
  p["head"] = p["neck_base"] + d["neck"] * _apply(body_rot, _vec(0, np.cos(neck_angle), np.sin(neck_angle)))
  wag = 0.6 * np.sin(pose.phase) + 0.8 * pose.lean
  p["tail0"] = p["rear"] + _apply(body_rot, [0, 0.4 * d["body_r"], -0.3 * d["body_r"]])
  tail1 = _vec(0.8 * np.sin(wag), 0.7, -0.8 * np.cos(wag))
  tail2 = _vec(0.9 * np.sin(1.5 * wag), 1.0 + 0.3 * arms_up, -0.5)
  p["tail1"] = p["tail0"] + 0.5 * d["tail"] * _apply(body_rot, tail1 / np.linalg.norm(tail1, axis=-1, keepdims=True))
  p["tail2"] = p["tail1"] + 0.5 * d["tail"] * _apply(body_rot, tail2 / np.linalg.norm(tail2, axis=-1, keepdims=True))
  lift = _ground(paws, [d["leg_r"]] * 4)
  yaw = _rot_y(pose.yaw)
  root = _vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  w = {k: root + _apply(yaw, v) for k, v in p.items()}
  world_dir = lambda rotation, v: _apply(yaw @ rotation, v)  # noqa: E731

  hr, leg_r = d["head"], d["leg_r"]
  tail_r = d["tail_r"] * (1.8 if extras["bushy"] else 1.0)
  canvas.capsule(w["tail0"], w["tail1"], d["tail_r"], tail_r, paints["body"])
  canvas.capsule(w["tail1"], w["tail2"], tail_r, 0.6 * tail_r + 0.4 * d["tail_r"], paints["body"])
  for side in (-1.0, 1.0):
    for end in ("front", "rear"):
      canvas.capsule(w[f"{end}_{side}_hip"], w[f"{end}_{side}_knee"], 1.2 * leg_r, leg_r, paints["legs"])
      canvas.capsule(w[f"{end}_{side}_knee"], w[f"{end}_{side}_paw"], leg_r, 0.9 * leg_r, paints["legs"])
  canvas.capsule(w["rear"], w["front"], d["body_r"], 0.95 * d["body_r"], paints["body"], bias=-1e-3)
  canvas.capsule(w["neck_base"], w["head"], 0.55 * d["body_r"], 0.5 * hr, paints["body"])
  if extras["collar"]:
    canvas.capsule(w["neck_base"] + world_dir(body_rot, [-0.5 * d["body_r"], 0.2 * d["neck"], 0.1 * d["body_r"]]),
                   w["neck_base"] + world_dir(body_rot, [0.5 * d["body_r"], 0.2 * d["neck"], 0.1 * d["body_r"]]),
                   0.25 * d["body_r"], 0.25 * d["body_r"], paints["extra"])
  canvas.circle(w["head"], hr, paints["body"])
  snout_tip = w["head"] + world_dir(head_rot, [0, -0.3 * hr, hr + d["snout"]])
  canvas.capsule(w["head"] + world_dir(head_rot, [0, -0.2 * hr, 0.4 * hr]), snout_tip, 0.55 * hr, 0.4 * hr,
                 paints["body"])
  canvas.circle(snout_tip, 0.22 * hr, paints["nose"], bias=0.1 * hr)
  facing = world_dir(head_rot, [0, 0, 1])[:, 2]
  for side in (-1.0, 1.0):
    local = np.array([side * 0.45, 0.3, 0.75])
    toward = world_dir(head_rot, local)[:, 2]
    canvas.circle(w["head"] + world_dir(head_rot, local * hr), 0.18 * hr, paints["eyes"], bias=hr,
                  opacity=np.clip((np.minimum(facing + 0.6, toward + 0.3) - 0.1) / 0.25, 0, 1))
    if extras["ears"] == "pointy":
      corners = [w["head"] + world_dir(head_rot, np.array(v) * hr)
                 for v in ([side * 0.15, 0.75, 0], [side * 0.75, 0.65, 0], [side * 0.55, 1.6, -0.1])]
      canvas.polygon(canvas.project(np.stack(corners, 1)), paints["body"], z=w["head"][:, 2] - 0.1 * hr)
    elif extras["ears"] == "floppy":
      canvas.capsule(w["head"] + world_dir(head_rot, [side * 0.7 * hr, 0.5 * hr, 0]),
                     w["head"] + world_dir(head_rot, [side * 1.05 * hr, -0.45 * hr, -0.1 * hr]), 0.28 * hr, 0.3 * hr,
                     paints["legs"], bias=0.5 * hr)
    elif extras["ears"] == "round":
      canvas.circle(w["head"] + world_dir(head_rot, [side * 0.6 * hr, 0.8 * hr, 0]), 0.35 * hr, paints["body"],
                    bias=-0.5 * hr)


def _blob(canvas: _Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  radius = d["radius"]
  crouch = np.clip(-pose.legs[..., 3], 0, None).mean(1)
  squash = np.clip(0.35 * crouch, 0, 0.5)
  stretch = np.clip(4 * pose.lift, 0, 0.4)
  tilt = _rot_z(-pose.lean) @ _rot_x(pose.bend)
  low = _vec(0, radius * (1 - 0.3 * squash), 0)
  top = low + _apply(tilt, _vec(0, radius * (0.75 - 0.5 * squash + 0.6 * stretch), 0))
  centres, radii = [low, top], [radius * (1 + 0.2 * squash - 0.1 * stretch), d["top"]]
  for side, i in ((-1.0, 0), (1.0, 1)):  # lobes: arms pull the upper ones, legs the feet
    arm, leg = pose.arms[:, i], pose.legs[:, i]
    reach = 0.8 * d["top"] + d["reach"] * (0.5 + 0.5 * np.clip(arm[:, 0] / 2.5, 0, 1))
    direction = _apply(tilt, _limb(0.5 + arm[:, 0] + 0.5 * arm[:, 2], arm[:, 1] + 0.5 * arm[:, 3], side))
    centres.append(top + reach[:, None] * direction)
    radii.append(d["lobe"])
    centres.append(low + 0.85 * radius * _limb(0.6 + leg[:, 0], leg[:, 1] + 0.5 * leg[:, 3], side))
    radii.append(0.9 * d["lobe"])
  lift = _ground(centres, radii)
  yaw = _rot_y(pose.yaw)
  root = _vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  world = np.stack([root + _apply(yaw, c) for c in centres], 1)  # T K 3
  canvas.blob(world, np.stack(np.broadcast_arrays(*radii), 1), np.full(pose.frames, d["smooth"]), paints["body"],
              z=root[:, 2])
  head = world[:, 1]
  rotation = yaw @ tilt
  facing = _apply(rotation, [0, 0, 1])[:, 2]
  count = extras["eyes"]
  for k in range(count):
    offset = (k - (count - 1) / 2) * 0.42
    local = np.array([offset, 0.15, 0.8])
    toward = _apply(rotation, local)[:, 2]
    visible = np.clip((np.minimum(facing, toward) + 0.1) / 0.25, 0, 1)
    eye = head + _apply(rotation, local * d["top"])
    canvas.circle(eye, 0.2 * d["top"], paints["white"], bias=d["top"], opacity=visible)
    canvas.circle(eye + _apply(rotation, [0, 0, 0.1 * d["top"]]), 0.1 * d["top"], paints["pupil"], bias=1.1 * d["top"],
                  opacity=visible)
  if extras["antenna"]:
    tip = head + _apply(rotation, _vec(0.25 * d["top"] * np.sin(pose.phase), 1.5 * d["top"], 0))
    canvas.capsule(head + _apply(rotation, [0, 0.8 * d["top"], 0]), tip, 0.05 * d["top"], 0.05 * d["top"],
                   paints["extra"], bias=-0.1 * d["top"])
    canvas.circle(tip, 0.14 * d["top"], paints["extra"])


def _snake(canvas: _Canvas, member: Member, pose: PoseParams, floor: float, segments: int = 12) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  length, thick = d["length"], d["thick"]
  j = np.arange(segments)[None, :]
  f = j / (segments - 1)
  wave = pose.phase[:, None] - d["wavelength"] * j
  head_raise = (d["neck"] + 0.3 * length * np.clip(pose.arms[..., 0].mean(1) / 2.5, 0, 1)[:, None]) * np.exp(-j / 2.5)
  tail_raise = 0.15 * length * np.clip(pose.legs[..., 1].mean(1) + 0.3 * pose.lift[:] * 10, 0, 1)[:, None] * f**3
  radii = thick * (1 - 0.65 * f)  # 1 J
  x = d["wave_x"] * np.sin(wave) * (0.3 + 0.7 * f) + 0.15 * length * pose.lean[:, None] * (1 - f)
  y = (d["wave_y"] * (1 + np.sin(wave)) / 2 * (1 - 0.5 * f) + head_raise + tail_raise
       - 0.15 * length * np.clip(pose.bend, -1, 1)[:, None] * np.exp(-j / 2))
  z = length / 2 - f * length
  body = np.stack(np.broadcast_arrays(x, y, z), -1)  # T J 3
  lift = -np.min(body[..., 1] - radii, axis=1)
  yaw = _rot_y(pose.yaw)
  root = _vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  world = root[:, None] + np.einsum("tij,tkj->tki", yaw, body)
  arc = 0.0
  for k in range(segments - 1, 0, -1):  # tail first: the head ends up on top at equal depth
    canvas.capsule(world[:, k], world[:, k - 1], radii[:, k], radii[:, k - 1], paints["body"], u0=arc)
    arc = arc + np.linalg.norm(body[:, k] - body[:, k - 1], axis=-1)
  head_r = d["head"] * thick
  forward = body[:, 0] - body[:, 1]
  forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
  head_pos = body[:, 0] + 0.4 * head_r * forward
  head = root + _apply(yaw, head_pos)
  canvas.circle(head, head_r, paints["body"], bias=1e-3)
  facing_dir = _apply(yaw, forward)
  side_axis = _apply(yaw, np.cross(np.array([0.0, 1.0, 0.0]), forward))  # the snake's left
  for side in (-1.0, 1.0):
    toward = (side * side_axis + facing_dir)[:, 2]
    eye = head + 0.55 * head_r * (side * side_axis + 0.7 * facing_dir) + _vec(0, 0.35 * head_r, 0)
    canvas.circle(eye, 0.22 * head_r, paints["eyes"], bias=head_r, opacity=np.clip((toward + 0.3) / 0.3, 0, 1))
  flick = np.clip(np.sin(2 * pose.phase), 0, 1)
  canvas.capsule(head + 0.8 * head_r * facing_dir, head + (0.8 + 0.9 * flick[:, None]) * head_r * facing_dir,
                 0.12 * head_r, 0.08 * head_r, paints["tongue"], bias=-0.2 * head_r, opacity=(flick > 0.05) * 1.0)
  if extras["crown"]:
    e_up, e_right = canvas.screen_up(head, np.broadcast_to([0.0, 1.0, 0.0], head.shape))
    base = canvas.project(head + _vec(0, 0.8 * head_r, 0))
    r = head_r * canvas.project.scale[:, None]
    points = np.stack([base - 0.55 * r * e_right, base + 0.55 * r * e_right, base + 0.8 * r * e_right + 0.8 * r * e_up,
                       base - 0.8 * r * e_right + 0.8 * r * e_up], 1)
    canvas.polygon(points, paints["extra"], z=head[:, 2] + 2 * head_r)


def _robot_arm(canvas: _Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  frames = pose.frames
  arm_r, arm_l = pose.arms[:, 0], pose.arms[:, 1]
  knees = pose.legs[..., 3].mean(1)
  theta1 = 0.5 + 0.8 * pose.bend - 0.3 * pose.arms[..., 0].mean(1) + 0.35 * arm_r[:, 1] + 0.4 * pose.lean
  theta2 = theta1 + 0.8 + 0.7 * arm_r[:, 2] + 0.5 * arm_r[:, 3] + 0.25 * knees
  theta3 = theta2 + 0.4 + 0.8 * pose.head[:, 1] + 0.4 * arm_l[:, 1] - 0.3 * arm_l[:, 0]
  grip = 0.25 + 0.1 * (1 + np.sin(pose.phase)) + 0.15 * np.clip(arm_l[:, 0], 0, 2)
  reach = lambda theta: _vec(0, np.cos(theta), np.sin(theta))  # noqa: E731  (from vertical toward +z)
  yaw = _rot_y(pose.yaw + np.pi / 2)  # the arm reaches sideways when the motion faces the camera
  root = _vec(member.x + pose.x, floor, member.z)
  shoulder = _vec(0, d["base_h"] + d["turret"] + 0.8 * pose.lift, 0)
  j1 = shoulder + d["link1"] * reach(theta1)
  j2 = j1 + d["link2"] * reach(theta2)
  j3 = j2 + d["link3"] * reach(theta3)
  w = lambda v: root + _apply(yaw, v)  # noqa: E731
  r = d["radius"]
  base_centre = canvas.project(root + _vec(0, d["base_h"] / 2, 0))
  scale = canvas.project.scale[:, None]
  canvas.box(base_centre, np.concatenate([d["base_w"] * scale, d["base_h"] / 2 * scale], -1), np.zeros(frames),
             0.25 * d["base_h"] * scale[:, 0], paints["base"], z=root[:, 2] - 2 * d["base_w"])
  canvas.capsule(w(_vec(0, d["base_h"] * 0.5, 0)), w(shoulder), 1.3 * r, 1.1 * r, paints["base"], bias=-1.5 * r)
  if extras["lamp"]:
    canvas.circle(w(_vec(0, d["base_h"] * 1.1, 0)), 0.6 * r, paints["lamp"], bias=-r)
  for a, b, ra, rb in ((shoulder, j1, r, 0.9 * r), (j1, j2, 0.9 * r, 0.75 * r), (j2, j3, 0.7 * r, 0.6 * r)):
    canvas.capsule(w(a), w(b), ra, rb, paints["links"])
  for joint, size in ((shoulder, 1.35 * r), (j1, 1.2 * r), (j2, r)):
    canvas.circle(w(joint), size, paints["joints"], bias=0.5 * r)
  for side in (-1.0, 1.0):
    knuckle = j3 + d["finger"] * 0.6 * reach(theta3 + side * grip)
    tip = knuckle + d["finger"] * 0.5 * reach(theta3 + side * (grip - (1.0 if extras["claw"] else 0.3)))
    canvas.capsule(w(j3), w(knuckle), 0.35 * r, 0.3 * r, paints["joints"])
    canvas.capsule(w(knuckle), w(tip), 0.3 * r, 0.2 * r, paints["joints"])


_DRAW = {"humanoid": _humanoid, "quadruped": _quadruped, "blob": _blob, "snake": _snake, "robot_arm": _robot_arm}


# ---------------------------------------------------------------------------------------------
# Rendering.


@dataclasses.dataclass
class Clip:
  """A rendered clip with its ground truth."""
  video: np.ndarray  # uint8 [T, H, W, 3]
  mask: np.ndarray  # float32 [T, H, W]: coverage 0..1 of all characters (the exact silhouette)
  background: np.ndarray  # uint8 [T, H, W, 3]: the same scene and camera without characters
  body: np.ndarray | None  # float32 [T, P, 18, 3] OpenPose COCO-18 (x, y pixels, confidence); None if no humanoid


def render_params(identity: Identity, pose: PoseParams, size: tuple[int, int]) -> Clip:
  """Renders `identity` performing `pose` at size (H, W)."""
  height, width = size
  project = _Projector(height, width, pose.camera)
  canvas = _Canvas(project)
  background = identity.background.render(project)
  bodies = []
  for member in identity.members:
    keypoints = _DRAW[member.body.kind](canvas, member, pose, identity.background.floor)
    if member.body.kind == "humanoid":
      bodies.append(keypoints)
  image, silhouettes = rasterize(canvas.shapes, background)
  to_uint8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
  return Clip(video=to_uint8(image), mask=silhouettes[0], background=to_uint8(background),
              body=np.stack(bodies, 1) if bodies else None)


def render(identity: Identity, motion: Motion, frames: int, size: tuple[int, int]) -> Clip:
  """`identity` performing `motion` for `frames` frames at size (H, W): the exact video."""
  return render_params(identity, motion.pose(frames), size)


def render_reference(identity: Identity, motion: Motion, size: tuple[int, int], mode: str = "first") -> np.ndarray:
  """The reference image uint8 [H, W, 3]: frame 0 of `motion` ("first"), or the same place and
  camera in a rest pose facing the camera ("neutral")."""
  if mode == "first":
    return render(identity, motion, 1, size).video[0]
  if mode == "neutral":
    return render_params(identity, motion.pose(1).neutral(), size).video[0]
  raise ValueError(f"reference mode {mode!r}; expected 'first' or 'neutral'")


def caption(identity: Identity, motion: Motion) -> str:
  """A template caption, e.g. "a red robot arm waving"."""
  return f"{identity.description} {motion.verb}"


# ---------------------------------------------------------------------------------------------
# Files: the training video folder and the evaluation triplets.


def _write_pose(path: Path, body: np.ndarray) -> None:
  """The .pose.npz of CONTRACTS.md: body [T, P, 18, 3]; hands and face present, all absent."""
  pose = Pose.empty(body.shape[0], body.shape[1])
  pose.body[:] = body
  write_pose_npz(path, pose)


def _identity_kind(kinds: Sequence[str], i: int) -> str:
  return kinds[i % len(kinds)]


def train_names(*, identities: int, motions: int, seed: int, kinds: Sequence[str] = KINDS,
                motion_types: Sequence[str] = MOTION_TYPES, per_identity: int | None = None,
                split: str = "train") -> list[tuple[tuple[str, int], tuple[str, int]]]:
  """The ((kind, index), (motion type, index)) pairs of a video folder: identity i has kind
  kinds[i % K] and performs `per_identity` (default all) of the motions, motion m has type
  motion_types[m % len(motion_types)]; indices start at 0 (train) or TEST_OFFSET (test)."""
  _check_counts(identities, motions)
  offset = 0 if split == "train" else TEST_OFFSET
  per_identity = motions if per_identity is None else min(per_identity, motions)
  pairs = []
  for i in range(identities):
    for j in range(per_identity):
      m = (i * per_identity + j) % motions if per_identity < motions else j
      pairs.append(((_identity_kind(kinds, i), offset + i), (motion_types[m % len(motion_types)], offset + m)))
  return pairs


def _check_counts(identities: int, motions: int) -> None:
  for flag, value in (("--identities", identities), ("--motions", motions)):
    if not 1 <= value <= TEST_OFFSET:
      raise ValueError(f"{flag}={value}; expected 1..{TEST_OFFSET} (the held-out range starts at {TEST_OFFSET})")


@media.frozen_gc()
def write_video_folder(out: str | Path, *, identities: int, motions: int, frames: int, size: tuple[int, int],
                       seed: int = 0, kinds: Sequence[str] = KINDS, motion_types: Sequence[str] = MOTION_TYPES,
                       fps: float = DEFAULT_FPS, per_identity: int | None = None, split: str = "train",
                       progress: bool = True) -> list[str]:
  """Writes `<identity>_<motion>.mp4` + `.json` (+ `.pose.npz` when humanoids are present) for
  every pair of `train_names`; returns the video ids."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  aspect = size[1] / size[0]
  ids = []
  for (kind, i), (motion_type, m) in tqdm(train_names(identities=identities, motions=motions, seed=seed, kinds=kinds,
                                                      motion_types=motion_types, per_identity=per_identity,
                                                      split=split),
                                          desc=f"render {split}", unit="video", disable=not progress):
    identity, motion = sample_identity(kind, i, seed, aspect=aspect), sample_motion(motion_type, m, seed)
    clip = render(identity, motion, frames, size)
    video_id = f"{identity.name}_{motion.name}"
    media.write_video(out / f"{video_id}.mp4", clip.video, fps)
    if clip.body is not None:
      _write_pose(out / f"{video_id}.pose.npz", clip.body)
    meta = dict(identity=identity.name, kind=kind, members=[m.body.kind for m in identity.members],
                motion=motion.name, motion_type=motion.type, caption=caption(identity, motion), seed=seed, split=split,
                frames=frames, height=size[0], width=size[1], fps=fps)
    (out / f"{video_id}.json").write_text(json.dumps(meta, indent=1))
    ids.append(video_id)
  return ids


@media.frozen_gc()
def write_triplets(out: str | Path, *, identities: int, motions: int, frames: int, size: tuple[int, int],
                   seed: int = 0, kinds: Sequence[str] = KINDS, motion_types: Sequence[str] = MOTION_TYPES,
                   fps: float = DEFAULT_FPS, per_identity: int | None = None, reference: str = "first",
                   driver: str = "same-kind", progress: bool = True) -> list[str]:
  """Writes evaluation triplets for held-out identities B and motions M; returns their names.

  `<B>__<M>/` holds: reference.png (B: frame 0 of M, or `reference="neutral"`: a rest pose),
  driving.mp4 (a held-out driver A != B performing M; A is of B's kind, or with
  `driver="other-kind"` of another kind) with driving.pose.npz when A has humanoids,
  truth.mp4 and truth.npz (`video`, uint8 [T, H, W, 3], lossless: what scores read),
  truth_mask.npz (`mask`, uint8 [T, H, W], character coverage x 255), background.npz (`video`,
  uint8 [T, H, W, 3]: B's scene under M's camera without characters, for the silhouette score),
  truth.pose.npz when B has humanoids, and meta.json. An index.json lists all names.
  """
  if driver not in ("same-kind", "other-kind"):
    raise ValueError(f"driver={driver!r}; expected 'same-kind' or 'other-kind'")
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  aspect = size[1] / size[0]
  pairs = train_names(identities=identities, motions=motions, seed=seed, kinds=kinds, motion_types=motion_types,
                      per_identity=per_identity, split="test")
  names = []
  for n, ((kind, i), (motion_type, m)) in enumerate(tqdm(pairs, desc="render triplets", unit="triplet",
                                                         disable=not progress)):
    target, motion = sample_identity(kind, i, seed, aspect=aspect), sample_motion(motion_type, m, seed)
    driver_kind = kind
    if driver == "other-kind" and len(kinds) > 1:
      others = [k for k in kinds if k != kind]
      driver_kind = others[n % len(others)]
    source = sample_identity(driver_kind, DRIVER_OFFSET + n, seed, aspect=aspect)
    name = f"{target.name}__{motion.name}"
    folder = out / name
    folder.mkdir(exist_ok=True)
    truth, driving = render(target, motion, frames, size), render(source, motion, frames, size)
    media.write_image(folder / "reference.png", render_reference(target, motion, size, reference))
    media.write_video(folder / "driving.mp4", driving.video, fps)
    media.write_video(folder / "truth.mp4", truth.video, fps)
    np.savez_compressed(folder / "truth.npz", video=truth.video)
    np.savez_compressed(folder / "truth_mask.npz", mask=np.round(truth.mask * 255).astype(np.uint8))
    np.savez_compressed(folder / "background.npz", video=truth.background)
    if driving.body is not None:
      _write_pose(folder / "driving.pose.npz", driving.body)
    if truth.body is not None:
      _write_pose(folder / "truth.pose.npz", truth.body)
    meta = dict(name=name, kind=kind, driving_kind=driver_kind, reference_identity=target.name,
                driving_identity=source.name, motion=motion.name, motion_type=motion.type,
                caption=caption(target, motion), driving_caption=caption(source, motion), reference=reference,
                seed=seed, frames=frames, height=size[0], width=size[1], fps=fps)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    names.append(name)
  (out / "index.json").write_text(json.dumps(dict(triplets=names, seed=seed, frames=frames, size=list(size),
                                                  reference=reference, driver=driver), indent=1))
  return names


def parse_size(text: str) -> tuple[int, int]:
  """"64x96" -> (64, 96) (height x width, each a multiple of 16)."""
  try:
    height, width = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise ValueError(f"--size={text!r}; expected HxW, e.g. 64x96") from None
  if height <= 0 or width <= 0 or height % 16 or width % 16:
    raise ValueError(f"--size={text}: height and width must be positive multiples of 16 (VAE x8, patch 2)")
  return height, width


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m dreamactor_jax.data.synthetic", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output folder (created)")
  parser.add_argument("--identities", type=int, default=8,
                      help="number of identities; identity i has kind KINDS[i %% len(kinds)] (default 8)")
  parser.add_argument("--motions", type=int, default=8,
                      help="number of motions; motion m has type TYPES[m %% len(types)] (default 8)")
  parser.add_argument("--frames", type=int, default=17, help="frames per clip, 1 + 4k for the model (default 17)")
  parser.add_argument("--size", default="64x64", help="HxW of each frame, multiples of 16 (default 64x64)")
  parser.add_argument("--seed", type=int, default=0, help="world seed: same seed, same world (default 0)")
  parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="character kinds (default all)")
  parser.add_argument("--motion-types", nargs="+", choices=MOTION_TYPES, default=list(MOTION_TYPES),
                      help="motion types (default all)")
  parser.add_argument("--split", choices=["train", "test"], default="train",
                      help="train: a video folder (CONTRACTS.md format); test: evaluation triplets of held-out "
                           "identities and motions (default train)")
  parser.add_argument("--per-identity", type=int, default=None,
                      help="motions per identity, cycling through the motions (default: every motion)")
  parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frame rate written (default {DEFAULT_FPS})")
  parser.add_argument("--reference", choices=["first", "neutral"], default="first",
                      help="test: the reference image is frame 0 of the truth or a rest pose (default first)")
  parser.add_argument("--driver", choices=["same-kind", "other-kind"], default="same-kind",
                      help="test: the driving character's kind (default same-kind)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  try:
    size = parse_size(args.size)
    if args.frames < 1:
      raise ValueError(f"--frames={args.frames}; expected >= 1")
    if args.seed < 0:
      raise ValueError(f"--seed={args.seed}; expected >= 0")
    common = dict(identities=args.identities, motions=args.motions, frames=args.frames, size=size, seed=args.seed,
                  kinds=args.kinds, motion_types=args.motion_types, fps=args.fps, per_identity=args.per_identity,
                  progress=not args.no_progress)
    if args.split == "train":
      names = write_video_folder(args.out, **common)
    else:
      names = write_triplets(args.out, reference=args.reference, driver=args.driver, **common)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {len(names)} {'videos' if args.split == 'train' else 'triplets'} to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
