"""Motions of the synthetic world: abstract pose time series (`PoseParams`) that know nothing of bodies."""

from __future__ import annotations

import dataclasses

import numpy as np

from dreamactor_jax.data.synthetic.world import MOTION_DOMAIN, MOTION_TYPES


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
  rng = np.random.default_rng([seed, MOTION_DOMAIN, MOTION_TYPES.index(motion_type), index])
  return Motion(name=f"{motion_type}-{index:06d}", type=motion_type, params=_motion_params(motion_type, rng))
