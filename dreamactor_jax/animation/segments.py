"""Long videos in overlapping segments, each continuing from the frames before it.

The paper generates one clip; a long driving video is cut into segments of `segment_frames`
(1 + 4k) frames. Segment 0 starts from the given frames (the reference image: 1 frame); each later
segment starts `overlap` frames before the previous one ends and takes those already generated
frames as its given left frames (Wan-Animate's scheme, WAN.md). `overlap` = 1 + 4m makes them whole
latent frames (`frames.whole_latent_frames`).

The last segment ends at the video's end: it is shorter when fewer frames remain, and when the
remaining count is not 1 + 4j its start moves back to the nearest earlier frame where it is, with
the extra frames (all generated already) given too. So every segment is 1 + 4j frames, every
output frame is generated once, and a segment's given frames are always frames already in the
output. One loop drives it (`output_buffer`, `given_frames`, `stitch`):

    plan = plan_segments(total, segment_frames=81, overlap=5)
    output = output_buffer(reference[:, None], total)            # frame 0 = the reference
    for segment in plan:
      video = animate(driving[:, segment.start:segment.stop], given=given_frames(output, segment))
      stitch(output, video, segment)                            # writes the generated frames only

Wan-Animate-2 (`last="pad"`, DiffSynth-Studio's and diffusers' rule): the reference is not a frame of
the video (`first_given=0`), every segment is exactly `segment_frames` long and advances by
`segment_frames - overlap`, so the last one may run past the video; the driving video is extended
to `plan[-1].stop` frames by `zigzag_pad` and the output cut back to the video's length.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from dreamactor_jax.animation.canvas import BLANK
from dreamactor_jax.animation.frames import check_frame_count, next_valid_frame_count

# How the last segment meets the video's end: "shorten" it, or "pad" the video (module docstring).
LastSegment = Literal["shorten", "pad"]


@dataclasses.dataclass(frozen=True)
class Segment:
  """Frames `[start, stop)` of the long video; the first `given` of them are given, the rest generated."""

  start: int
  stop: int
  given: int

  @property
  def frames(self) -> int:
    return self.stop - self.start


def plan_segments(num_frames: int, segment_frames: int, overlap: int, first_given: int = 1, *,
                  last: LastSegment = "shorten") -> list[Segment]:
  """Segments covering `num_frames` frames (1 + 4k with `last="shorten"`); rules in the module docstring.

  `first_given`: given frames at the start of the video (1 = the reference image; 0 with `last="pad"`,
  where the reference is not a frame of the video).
  """
  if last not in ("shorten", "pad"):
    raise ValueError(f"last={last!r}; expected 'shorten' or 'pad'")
  if last == "shorten":
    check_frame_count("long video", num_frames)
  elif num_frames < 1:
    raise ValueError(f"long video = {num_frames} frames; expected at least 1")
  check_frame_count("segment_frames", segment_frames)
  if not 1 <= overlap < segment_frames:
    raise ValueError(f"overlap={overlap} must be between 1 and segment_frames - 1 = {segment_frames - 1}")
  lowest = 0 if last == "pad" else 1
  highest = segment_frames - 1 if last == "pad" else min(segment_frames, num_frames) - 1
  if not lowest <= first_given <= highest:
    raise ValueError(f"first_given={first_given} must be between {lowest} and {highest} "
                     "(at least one frame of the first segment is generated)")
  plan, start, given = [], 0, first_given
  while start + segment_frames < num_frames:
    plan.append(Segment(start, start + segment_frames, given))
    start, given = start + segment_frames - overlap, overlap
  if last == "pad":
    return [*plan, Segment(start, start + segment_frames, given)]
  length = next_valid_frame_count(num_frames - start)  # <= num_frames, so the start stays >= 0
  plan.append(Segment(num_frames - length, num_frames, given + length - (num_frames - start)))
  return plan


def zigzag_pad(video: np.ndarray, num_frames: int) -> np.ndarray:
  """`[B, T, ...]` -> `[B, num_frames, ...]` (num_frames >= T): the video played forwards, then
  backwards, then forwards again, ... without repeating the turning frames (0 1 2 3 2 1 0 1 ...).

  Wan-Animate's and DiffSynth-Studio's `zigzag_padding` (the official rule); diffusers' modular
  pipeline appends the last frames reversed instead (3 3 2 1 ...), which fails once the padding is
  longer than the video.
  """
  frames = video.shape[1]
  if num_frames < frames:
    raise ValueError(f"cannot zigzag-pad {frames} frames to fewer ({num_frames})")
  if frames == 1:
    return np.repeat(video, num_frames, axis=1)
  period = 2 * (frames - 1)
  phase = np.arange(num_frames) % period
  return video[:, np.where(phase < frames, phase, period - phase)]


def output_buffer(given: np.ndarray, num_frames: int, *, blank: float = BLANK) -> np.ndarray:
  """Host buffer `[B, num_frames, H, W, 3]` holding the first given frames `[B, k, H, W, 3]`, blank after."""
  given = np.asarray(given)
  output = np.full((given.shape[0], num_frames, *given.shape[2:]), blank, given.dtype)
  output[:, :given.shape[1]] = given
  return output


def given_frames(output: np.ndarray, segment: Segment) -> np.ndarray:
  """The segment's given frames `[B, given, H, W, 3]`, read from the output so far."""
  return output[:, segment.start:segment.start + segment.given]


def stitch(output: np.ndarray, segment_video: np.ndarray, segment: Segment) -> np.ndarray:
  """Writes a segment's generated frames into `output` (in place) and returns it.

  segment_video `[B, segment.frames, H, W, 3]` (the generated left half, given frames included):
  only its frames `given..` are written, so the given frames in `output` stay exactly as they were.
  """
  expected = (output.shape[0], segment.frames, *output.shape[2:])
  if tuple(segment_video.shape) != expected:
    raise ValueError(f"segment {segment} video has shape {tuple(segment_video.shape)}; expected {expected}")
  output[:, segment.start + segment.given:segment.stop] = np.asarray(segment_video)[:, segment.given:]
  return output
