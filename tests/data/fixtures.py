"""Video folders and the stage-1 dataset built from them, once per session."""

from pathlib import Path

import pytest

from dreamactor_jax.data.build import build_dataset
from tests.data.fake_videos import VIDEOS, write_example


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory) -> Path:
  folder = tmp_path_factory.mktemp("videos")
  for i, (video_id, (frames, height, width, pose)) in enumerate(VIDEOS.items()):
    write_example(folder, video_id, frames, height, width, seed=i, pose=pose, caption=f"a person {video_id}")
  write_example(folder, "short", 3, 48, 80, seed=99)
  (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
  return folder


@pytest.fixture(scope="session")
def stage1_data(video_folder, tmp_path_factory):
  """(dataset parent folder, BuildReport) of the video folder, built once for the session."""
  out = tmp_path_factory.mktemp("stage1")
  return out, build_dataset(video_folder, out, workers=1, progress=False)
