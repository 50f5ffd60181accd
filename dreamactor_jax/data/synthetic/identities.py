"""Identities of the synthetic world: kind, proportions, colours, texture, accessories, background, placement."""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

import numpy as np

from dreamactor_jax.data.raster import Paint
from dreamactor_jax.data.synthetic.camera import Projector
from dreamactor_jax.data.synthetic.world import IDENTITY_DOMAIN, KINDS, MEMBER_KINDS


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

  def render(self, project: Projector) -> np.ndarray:
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
  rng = np.random.default_rng([seed, IDENTITY_DOMAIN, KINDS.index(kind), index])
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
