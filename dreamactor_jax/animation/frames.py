"""The frame-count rule of the Wan VAE, as the animation code needs it (WAN.md, "VAE").

The VAE maps 1 + 4k video frames to 1 + k latent frames (latent frame 0 holds pixel frame 0,
latent frame f > 0 pixel frames 4f-3 .. 4f) and 8x8 pixels to one latent position.
"""

from __future__ import annotations

TIME_FACTOR = 4  # pixel frames per latent frame (after frame 0)
SPACE_FACTOR = 8  # pixels per latent position along H and W


def is_valid_frame_count(frames: int) -> bool:
  """True for 1 + 4k frames, k >= 0."""
  return frames >= 1 and (frames - 1) % TIME_FACTOR == 0


def next_valid_frame_count(frames: int) -> int:
  """The smallest 1 + 4k that is >= `frames` (1 for frames <= 1)."""
  return 1 + -(-max(frames - 1, 0) // TIME_FACTOR) * TIME_FACTOR


def frame_count_error(what: str, frames: int) -> str:
  """One line naming the count and the two nearest valid ones."""
  below = 1 + max(frames - 1, 0) // TIME_FACTOR * TIME_FACTOR
  return f"{what} = {frames} frames; Wan needs 1 + 4k frames (nearest: {below} or {below + TIME_FACTOR})"


def check_frame_count(what: str, frames: int) -> None:
  """Raises ValueError unless `frames` = 1 + 4k."""
  if not is_valid_frame_count(frames):
    raise ValueError(frame_count_error(what, frames))


def latent_frame_count(frames: int) -> int:
  """Latent frames of a 1 + 4k frame video: 1 + k."""
  check_frame_count("video", frames)
  return 1 + (frames - 1) // TIME_FACTOR


def whole_latent_frames(given_frames: int) -> int:
  """Latent frames made only of the first `given_frames` pixel frames: 0, then 1 + (k - 1) // 4.

  With given_frames = 1 + 4m they are exactly latent frames 0..m, so the given pixels fill whole
  latent frames; otherwise the next latent frame mixes given and generated pixels.
  """
  return 0 if given_frames <= 0 else 1 + (given_frames - 1) // TIME_FACTOR
