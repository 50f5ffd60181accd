import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dreamactor_jax.data import build, staging
from dreamactor_jax.data.build import build_dataset, main, open_videos
from dreamactor_jax.data.keypoints import read_pose_npz
from dreamactor_jax.data.staging import DataError, read_index
from dreamactor_jax.data.video import decode_jpeg

from tests.data.fake_videos import VIDEOS, write_example


def test_build_skips_and_counts_bad_files(stage1_data, video_folder):
  out, report = stage1_data
  assert report.num_records == len(VIDEOS)
  assert sorted(report.skipped) == [str(video_folder / "corrupt.mp4"), str(video_folder / "short.mp4")]
  assert "too short: 3 frames" in report.skipped[str(video_folder / "short.mp4")]
  assert report.dataset_dir == open_videos(out)
  rows = read_index(report.dataset_dir)
  assert [row["video_id"] for row in rows] == sorted(VIDEOS)  # record i = i-th id: the index needs no read
  source = tfds.builder_from_directory(str(report.dataset_dir)).as_data_source(split="train")
  assert len(source) == len(VIDEOS)
  for i, row in enumerate(rows):
    record = source[i]
    frames, height, width, has_pose = VIDEOS[row["video_id"]]
    assert (row["num_frames"], row["height"], row["width"], row["num_persons"]) == (frames, height, width, has_pose)
    assert staging.text(record["video_id"]) == row["video_id"]
    assert staging.text(record["caption"]) == f"a person {row['video_id']}" == row["caption"]
    assert staging.text(record["identity"]) == row["video_id"]  # no .json: the id stands for the identity
    assert record["fps"] == 24.0 and len(record["frames"]) == frames
    assert decode_jpeg(record["frames"][0]).shape == (height, width, 3)
    assert record["body"].shape == (frames, int(has_pose), 18, 3)
    assert record["hands"].shape == (frames, int(has_pose), 2, 21, 3)
  stored = source[rows.index(next(r for r in rows if r["video_id"] == "land/a"))]
  np.testing.assert_allclose(stored["body"], read_pose_npz(video_folder / "land/a.pose.npz").body)


def test_build_downscales_frames_and_keypoints(tmp_path):
  src = tmp_path / "src"
  write_example(src, "big", 6, 96, 160, seed=0)
  write_example(src, "other", 6, 48, 64, seed=1, pose=False)
  (src / "big.json").write_text(json.dumps({"identity": "person-7", "caption": "from json"}))
  report = build_dataset(src, tmp_path / "out", short_side=48, progress=False)
  record = tfds.builder_from_directory(str(report.dataset_dir)).as_data_source(split="train")[0]
  assert (record["height"], record["width"]) == (48, 80)
  assert staging.text(record["identity"]) == "person-7" and staging.text(record["caption"]) == "from json"
  original = read_pose_npz(src / "big.pose.npz").body
  np.testing.assert_allclose(record["body"][..., :2], original[..., :2] / 2, rtol=1e-6)
  np.testing.assert_array_equal(record["body"][..., 2], original[..., 2])


def test_build_resumes_where_it_stopped(tmp_path, monkeypatch):
  src = tmp_path / "src"
  for i in range(3):
    write_example(src, f"v{i}", 6, 48, 64, seed=i)
  (src / "broken.mov").write_bytes(b"not a video")
  staged = []
  real = build.stage_video

  def crash_after_two(job):
    if len(staged) == 2:
      raise KeyboardInterrupt
    staged.append(job[0])
    return real(job)

  monkeypatch.setattr(build, "stage_video", crash_after_two)
  with pytest.raises(KeyboardInterrupt):
    build_dataset(src, tmp_path / "out", progress=False)
  assert staged == ["broken", "v0"]
  monkeypatch.setattr(build, "stage_video", lambda job: (staged.append(job[0]), real(job))[1])
  report = build_dataset(src, tmp_path / "out", progress=False)
  assert staged == ["broken", "v0", "v1", "v2"]  # only the videos not staged before; broken stays counted
  assert report.num_records == 3 and list(report.skipped) == [str(src / "broken.mov")]
  assert not (tmp_path / "out" / ".staging-video_folder").exists()
  with pytest.raises(DataError, match="staged with other options .*quality: 95 -> 80"):
    staging.check_options(tmp_path / "s", dict(quality=95))
    staging.check_options(tmp_path / "s", dict(quality=80))


def test_build_in_parallel_matches_and_all_bad_is_an_error(tmp_path, capsys):
  src = tmp_path / "src"
  for i in range(3):
    write_example(src, f"v{i}", 6, 48, 64, seed=i)
  serial = build_dataset(src, tmp_path / "serial", workers=1, progress=False)
  assert main(["--src", str(src), "--out", str(tmp_path / "parallel"), "--workers", "2"]) == 0
  parallel = open_videos(tmp_path / "parallel")
  read = lambda path: tfds.builder_from_directory(str(path)).as_data_source(split="train")
  for a, b in zip(read(serial.dataset_dir), read(parallel), strict=True):
    assert list(a["frames"]) == list(b["frames"])
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "x.mp4").write_bytes(b"garbage")
  with pytest.raises(DataError, match="all 1 videos were skipped, e.g. .*x.mp4"):
    build_dataset(bad, tmp_path / "out", progress=False)
  capsys.readouterr()
  assert main(["--src", str(tmp_path / "serial"), "--out", str(tmp_path / "o")]) == 2
  assert capsys.readouterr().err == (f"error: --src {tmp_path / 'serial'} holds no videos (.mp4, .webm, .mov, .mkv, "
                                     ".avi, .gif)\n")
  assert main(["--src", str(src), "--out", str(tmp_path / "o"), "--quality", "101"]) == 2
  assert capsys.readouterr().err == "error: --quality=101: 101 is not an integer in the range [1, 100]\n"
