"""The start transition (PAPER.md section 3): the character starts from the reference's pose.

Training blanks the driving signal for the first `seconds` of each clip; inference prepends as many
blank motion frames to the driving video and cuts them from the output, so the model moves from the
reference's pose into the driving motion during a stretch it has learnt to fill. Both use one count:
`transition_frames(fps, seconds)` = round-half-up(seconds * fps). Blank motion frames hold the
canvas blank value, as the empty left half does.

Frame counts: the sampled timeline (lead-in + driving) must be 1 + 4k frames. `fit="pad"` repeats
the driving video's last frame up to 3 times at the end, and cuts those frames again, so the
output keeps the driving video's length and the lead-in stays exactly as long as in training (a
longer blank stretch is a start the model never saw; README "In-context animation" measures it).
`fit="error"` refuses with one line naming the counts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

import jax
import jax.numpy as jnp

from dreamactor_jax.animation.canvas import BLANK
from dreamactor_jax.animation.frames import frame_count_error, is_valid_frame_count, next_valid_frame_count

FitFrames = Literal["pad", "error"]


def transition_frames(fps: float, seconds: float) -> int:
  """Frames of the start transition: round-half-up(seconds * fps)."""
  if seconds < 0 or fps <= 0:
    raise ValueError(f"start transition needs seconds >= 0 and fps > 0; got seconds={seconds}, fps={fps}")
  return math.floor(seconds * fps + 0.5)


@dataclasses.dataclass(frozen=True)
class Timeline:
  """What inference samples: `lead` blank motion frames, the `driving` frames, then `tail` repeats of
  the last driving frame; `lead + driving + tail` = 1 + 4k."""

  lead: int
  driving: int
  tail: int

  @property
  def frames(self) -> int:
    return self.lead + self.driving + self.tail


def plan_timeline(driving_frames: int, fps: float, seconds: float = 1.0, fit: FitFrames = "pad") -> Timeline:
  """The timeline for a driving video of `driving_frames` frames at inference.

  The lead-in is `transition_frames(fps, seconds)`; with `fit="pad"` the tail is the fewest frames
  (0-3) making the total 1 + 4k; with `fit="error"` a lead-in + driving count that is not 1 + 4k raises.
  """
  if driving_frames < 1:
    raise ValueError(f"driving video has {driving_frames} frames; expected at least 1")
  if fit not in get_args(FitFrames):
    raise ValueError(f"fit={fit!r}; expected 'pad' or 'error'")
  lead = transition_frames(fps, seconds)
  total = lead + driving_frames
  if fit == "error" and not is_valid_frame_count(total):
    raise ValueError(frame_count_error(f"driving {driving_frames} + start transition {lead} ({seconds} s at "
                                       f"{fps} fps)", total) + "; trim the driving video or use fit='pad'")
  return Timeline(lead, driving_frames, next_valid_frame_count(total) - total)


def extend_driving(driving: jax.Array, timeline: Timeline, *, blank: float = BLANK) -> jax.Array:
  """Driving `[B, T, H, W, 3]` -> `[B, lead + T + tail, H, W, 3]`: blank lead-in, the video, its last
  frame repeated."""
  if driving.shape[1] != timeline.driving:
    raise ValueError(f"driving video has {driving.shape[1]} frames; the timeline was planned for {timeline.driving}")
  lead = jnp.full((driving.shape[0], timeline.lead, *driving.shape[2:]), blank, driving.dtype)
  tail = jnp.repeat(driving[:, -1:], timeline.tail, axis=1)
  return jnp.concatenate([lead, driving, tail], axis=1)


def cut_to_driving(video: jax.Array, timeline: Timeline) -> jax.Array:
  """Output `[B, lead + T + tail, ...]` -> `[B, T, ...]`: frame t matches driving frame t."""
  return video[:, timeline.lead:timeline.lead + timeline.driving]


def blank_start(driving: jax.Array, fps: jax.Array | float, seconds: float = 1.0, *,
                blank: float = BLANK) -> jax.Array:
  """Training: driving `[B, T, H, W, 3]` with its first round-half-up(seconds * fps[b]) frames blank.

  `fps` is `[B]` (the batch's per-clip fps) or a scalar; jit-able. Uses `transition_frames`' rule.
  """
  fps = jnp.broadcast_to(jnp.asarray(fps, jnp.float32), driving.shape[:1])
  count = jnp.floor(seconds * fps + 0.5)  # B
  blanked = jnp.arange(driving.shape[1])[None, :] < count[:, None]  # B T
  return jnp.where(blanked[:, :, None, None, None], jnp.asarray(blank, driving.dtype), driving)
