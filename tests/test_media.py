"""Image and video I/O: modes, corrupt and empty files, round trips, previews."""

import numpy as np
import pytest
from PIL import Image

from dreamactor_jax.media import (MediaError, contact_sheet, enlarge, read_image, read_video, side_by_side, to_uint8,
                                  to_unit, write_video)


def test_read_image_modes(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(tmp_path / "rgb.png")
  np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
  Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
  np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.repeat(rgb[..., :1], 3, axis=-1))
  rgba = np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], axis=-1)
  rgba[0, 0, 3] = 255
  Image.fromarray(rgba).save(tmp_path / "cutout.png")
  composited = read_image(tmp_path / "cutout.png")
  np.testing.assert_array_equal(composited[0, 0], rgb[0, 0])
  np.testing.assert_array_equal(composited[1:], 255)  # transparent -> white backdrop
  Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg")
  with pytest.raises(MediaError, match=r"print.jpg: image mode 'CMYK' is not supported"):
    read_image(tmp_path / "print.jpg")
  (tmp_path / "junk.png").write_bytes(b"not an image")
  with pytest.raises(MediaError, match="junk.png: not a readable image"):
    read_image(tmp_path / "junk.png")


def test_video_round_trip_and_frame_folders(tmp_path):
  frames = np.zeros((9, 32, 48, 3), np.uint8)
  frames[:, 8:24, 10:30] = np.linspace(0, 255, 9).astype(np.uint8)[:, None, None, None]
  write_video(tmp_path / "clip.mp4", frames, fps=12)
  video = read_video(tmp_path / "clip.mp4")
  assert video.frames.shape == (9, 32, 48, 3) and video.fps == 12
  assert np.abs(video.frames.astype(int) - frames).mean() < 3  # lossy codec, small error
  assert read_video(tmp_path / "clip.mp4", max_frames=4).frames.shape[0] == 4
  folder = tmp_path / "frames"
  folder.mkdir()
  for t in (2, 0, 1):
    Image.fromarray(frames[t]).save(folder / f"{t:03d}.png")
  video = read_video(folder, fps=8)
  np.testing.assert_array_equal(video.frames, frames[:3])
  with pytest.raises(MediaError, match="frames: a folder of frames needs its frame rate"):
    read_video(folder)


def test_bad_videos_give_one_line_errors(tmp_path):
  (tmp_path / "corrupt.mp4").write_bytes(b"garbage" * 100)
  with pytest.raises(MediaError, match="corrupt.mp4: not a readable video"):
    read_video(tmp_path / "corrupt.mp4")
  with pytest.raises(MediaError, match="missing.mp4: no such video"):
    read_video(tmp_path / "missing.mp4")
  (tmp_path / "empty").mkdir()
  with pytest.raises(MediaError, match="empty: folder holds no frames"):
    read_video(tmp_path / "empty", fps=8)


def test_previews():
  reference = np.full((16, 8, 3), 10, np.uint8)
  driving = np.full((3, 12, 10, 3), 20, np.uint8)
  result = np.full((2, 16, 8, 3), 30, np.uint8)
  preview = side_by_side([reference, driving, result], gap=2)
  assert preview.shape == (3, 16, 8 + 2 + 10 + 2 + 8, 3)
  assert (preview[:, :, :8] == 10).all() and (preview[:, 12:, 10:20] == 255).all()
  assert (preview[2, :, 22:] == 30).all()  # the shorter result holds its last frame
  sheet = contact_sheet(np.arange(5)[:, None, None, None].repeat(4, 1).repeat(3, 2).repeat(3, 3).astype(np.uint8),
                        num_frames=3, gap=1)
  assert sheet.shape == (3 * 4 + 2, 3, 3)
  assert sheet[0, 0, 0] == 0 and sheet[5, 0, 0] == 2 and sheet[-1, 0, 0] == 4
  small = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
  big = enlarge(small, min_height=10)  # 3 rows -> the smallest whole factor reaching 10: 4
  assert big.shape == (2, 12, 20, 3)
  np.testing.assert_array_equal(big[:, ::4, ::4], small)
  np.testing.assert_array_equal(big[1, 4:8, 12:16], np.broadcast_to(small[1, 1, 3], (4, 4, 3)))
  assert enlarge(small, min_height=3) is small


def test_unit_conversions_round_trip():
  values = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(to_uint8(to_unit(values)), values)
  assert to_unit(values).min() == -1 and to_unit(values).max() == 1
