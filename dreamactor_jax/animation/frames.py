"""The frame rules of the Wan VAE and the DiT, as the animation code needs them (WAN.md, "VAE").

The VAE maps 1 + 4k video frames to 1 + k latent frames (latent frame 0 holds pixel frame 0,
latent frame f > 0 pixel frames 4f-3 .. 4f) and 8x8 pixels to one latent position (Wan2.2's VAE:
16x16). Frame sides are multiples of the codec's factor times the DiT's patch
(`DiTConfig.pixel_multiple`), checked by `check_frame_size`.
"""

from __future__ import annotations

TIME_FACTOR = 4  # pixel frames per latent frame (after frame 0)
SPACE_FACTOR = 8  # pixels per latent position along H and W


def is_valid_frame_count(frames: int, time_factor: int = TIME_FACTOR) -> bool:
  """True for 1 + 4k frames, k >= 0 (4: the codec's `time_factor`)."""
  return frames >= 1 and (frames - 1) % time_factor == 0


def next_valid_frame_count(frames: int) -> int:
  """The smallest 1 + 4k that is >= `frames` (1 for frames <= 1)."""
  return 1 + -(-max(frames - 1, 0) // TIME_FACTOR) * TIME_FACTOR


def frame_count_error(what: str, frames: int, time_factor: int = TIME_FACTOR) -> str:
  """One line naming the count and the two nearest valid ones."""
  below = 1 + max(frames - 1, 0) // time_factor * time_factor
  return (f"{what} = {frames} frames; Wan needs 1 + {time_factor}k frames "
          f"(nearest: {below} or {below + time_factor})")


def check_frame_count(what: str, frames: int, time_factor: int = TIME_FACTOR) -> None:
  """Raises ValueError unless `frames` = 1 + 4k (4: the codec's `time_factor`); the VAEs, the patch
  codec and the animation code all check with this one."""
  if not is_valid_frame_count(frames, time_factor):
    raise ValueError(frame_count_error(what, frames, time_factor))


def check_frame_size(what: str, size: tuple[int, int], multiple: int) -> None:
  """Raises ValueError unless both sides of `size` (H, W) are positive multiples of `multiple`, the
  pixels per DiT token (`DiTConfig.pixel_multiple`: 16 for Wan2.1's VAE and patch)."""
  height, width = size
  if height < multiple or width < multiple or height % multiple or width % multiple:
    raise ValueError(f"{what} {height}x{width}: H and W must be positive multiples of {multiple}")


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
