"""Rendering: an identity performing a motion, as frames, keypoints and a caption."""

from __future__ import annotations

import dataclasses

import numpy as np

from dreamactor_jax.data.raster import rasterize
from dreamactor_jax.data.synthetic.bodies import DRAW
from dreamactor_jax.data.synthetic.camera import Canvas, Projector
from dreamactor_jax.data.synthetic.identities import Identity
from dreamactor_jax.data.synthetic.motions import Motion, PoseParams


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
  project = Projector(height, width, pose.camera)
  canvas = Canvas(project)
  background = identity.background.render(project)
  bodies = []
  for member in identity.members:
    keypoints = DRAW[member.body.kind](canvas, member, pose, identity.background.floor)
    if member.body.kind == "humanoid":
      bodies.append(keypoints)
  image, silhouettes = rasterize(canvas.shapes, background)
  to_uint8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
  return Clip(video=to_uint8(image), mask=silhouettes[0], background=to_uint8(background),
              body=np.stack(bodies, 1) if bodies else None)


def render(identity: Identity, motion: Motion, frames: int, size: tuple[int, int]) -> Clip:
  """`identity` performing `motion` for `frames` frames at size (H, W): the exact video."""
  return render_params(identity, motion.pose(frames), size)


def render_reference(identity: Identity, motion: Motion, size: tuple[int, int], mode: str = "first") -> Clip:
  """The reference as a 1-frame `Clip` (image `.video[0]`, exact silhouette `.mask[0]`): frame 0 of
  `motion` ("first"), or the same place and camera in a rest pose facing the camera ("neutral")."""
  if mode == "first":
    return render(identity, motion, 1, size)
  if mode == "neutral":
    return render_params(identity, motion.pose(1).neutral(), size)
  raise ValueError(f"reference mode {mode!r}; expected 'first' or 'neutral'")


def caption(identity: Identity, motion: Motion) -> str:
  """A template caption, e.g. "a red robot arm waving"."""
  return f"{identity.description} {motion.verb}"
