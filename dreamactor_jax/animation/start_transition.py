"""The start transition (PAPER.md section 3): the character starts from the reference's pose.

Training blanks the driving signal for the first `seconds` of each clip; inference prepends as many
blank motion frames to the driving video and cuts them from the output, so the model moves from the
reference's pose into the driving motion during a stretch it has learnt to fill. Both use one count:
`transition_frames(fps, seconds)` = round-half-up(seconds * fps). Blank motion frames hold the
canvas blank value, as the empty left half does.

Frame counts: a clip must be 1 + 4k frames after the lead-in is prepended. `fit="pad"` lengthens the
lead-in to the next such count (at most 3 more blank frames, all cut again, so the output keeps the
driving video's length); `fit="error"` refuses with one line naming the counts.
"""

from __future__ import annotations

import math
from typing import Literal

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


def lead_in_frames(driving_frames: int, fps: float, seconds: float = 1.0, fit: FitFrames = "pad") -> int:
  """Blank frames to prepend to a driving video of `driving_frames` frames at inference.

  `transition_frames(fps, seconds)`, lengthened with `fit="pad"` to the smallest count making
  lead-in + driving frames = 1 + 4k; with `fit="error"` a sum that is not 1 + 4k raises.
  """
  if driving_frames < 1:
    raise ValueError(f"driving video has {driving_frames} frames; expected at least 1")
  lead = transition_frames(fps, seconds)
  total = lead + driving_frames
  if fit == "pad":
    return next_valid_frame_count(total) - driving_frames
  if fit == "error":
    if not is_valid_frame_count(total):
      raise ValueError(frame_count_error(f"driving {driving_frames} + start transition {lead} ({seconds} s at "
                                         f"{fps} fps)", total) + "; trim the driving video or use fit='pad'")
    return lead
  raise ValueError(f"fit={fit!r}; expected 'pad' or 'error'")


def prepend_lead_in(driving: jax.Array, lead: int, *, blank: float = BLANK) -> jax.Array:
  """Driving `[B, T, H, W, 3]` -> `[B, lead + T, H, W, 3]` starting with `lead` blank frames."""
  blank_frames = jnp.full((driving.shape[0], lead, *driving.shape[2:]), blank, driving.dtype)
  return jnp.concatenate([blank_frames, driving], axis=1)


def cut_lead_in(video: jax.Array, lead: int) -> jax.Array:
  """Output `[B, lead + T, ...]` -> `[B, T, ...]` without the transition frames."""
  return video[:, lead:]


def blank_start(driving: jax.Array, fps: jax.Array | float, seconds: float = 1.0, *,
                blank: float = BLANK) -> jax.Array:
  """Training: driving `[B, T, H, W, 3]` with its first round-half-up(seconds * fps[b]) frames blank.

  `fps` is `[B]` (the batch's per-clip fps) or a scalar; jit-able. Uses `transition_frames`' rule.
  """
  fps = jnp.broadcast_to(jnp.asarray(fps, jnp.float32), driving.shape[:1])
  count = jnp.floor(seconds * fps + 0.5)  # B
  blanked = jnp.arange(driving.shape[1])[None, :] < count[:, None]  # B T
  return jnp.where(blanked[:, :, None, None, None], jnp.asarray(blank, driving.dtype), driving)
