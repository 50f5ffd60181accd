"""Clip plans and reference picks (bootstrap/pairs.py)."""

import numpy as np
import pytest

from dreamactor_jax import media
from dreamactor_jax.bootstrap.pairs import (FolderReferences, PairError, ReferencePool, clip_stride, plan_clips,
                                           record_identities)


def row(video_id, frames, height=48, width=80, fps=24.0, persons=1):
  return dict(video_id=video_id, num_frames=frames, height=height, width=width, fps=fps, num_persons=persons,
              caption=f"caption {video_id}")


def test_plan_clips():
  rows = [row("a", 40), row("b", 12, fps=8.0), row("c", 30, height=80, width=48, persons=0), row("d", 4, fps=8.0)]
  plan = lambda seed, stride=None: plan_clips(rows, ["A", "B", "C", "D"], num_frames=5, frame_stride=stride,  # noqa
                                              target_fps=8.0, buckets=[(32, 48), (48, 32)], seed=seed)
  clips, too_short = plan(0)
  assert [c.video_id for c in clips] == ["a", "b", "c"] and too_short == ["d"]  # 4 frames < 5
  a, b, c = clips
  assert clip_stride(24.0, 8.0) == 3 and clip_stride(5.0, 8.0) == 1
  assert np.diff(a.frames).tolist() == [3] * 4 and a.fps == 8.0 and 0 <= a.frames[0] <= 40 - 13
  assert np.diff(b.frames).tolist() == [1] * 4 and b.fps == 8.0
  assert (a.bucket, c.bucket, c.has_pose, a.identity, a.caption) == ((32, 48), (48, 32), False, "A", "caption a")
  assert plan(0)[0] == clips  # a pure function of the seed
  assert {plan(seed)[0][0].frames[0] for seed in range(8)} != {a.frames[0]}
  clips, too_short = plan(0, stride=2)
  assert [c.video_id for c in clips] == ["a", "b", "c"] and np.diff(clips[1].frames).tolist() == [2] * 4
  with pytest.raises(PairError, match="--num-frames=4; expected 1 \\+ 4k"):
    plan_clips(rows, "ABCD", num_frames=4, frame_stride=None, target_fps=8.0, buckets=[(32, 48)], seed=0)


class Pool(ReferencePool):
  def __init__(self, identities):
    self.identities = identities

  def choices(self, identity):
    return [f"{identity}/1", f"{identity}/2"]


def test_picks_exclude_a_and_extend_with_k():
  pool = Pool(["a", "b", "c", "d", "e"])
  two = pool.pick("c", 2, seed=0, video_id="v")
  four = pool.pick("c", 4, seed=0, video_id="v")
  assert four[:2] == two and "c" not in {r.identity for r in four} and len({r.identity for r in four}) == 4
  assert pool.pick("c", 9, seed=0, video_id="v") == four
  assert {tuple(pool.pick("c", 4, seed=s, video_id="v")) for s in range(6)} != {tuple(four)}
  assert all(r.source.startswith(f"{r.identity}/") for r in four)
  with pytest.raises(PairError, match="no reference identity other than 'a' \\(video v\\)"):
    Pool(["a"]).pick("a", 1, seed=0, video_id="v")


def test_folder_references(tmp_path):
  media.write_image(tmp_path / "cat.png", np.zeros((6, 4, 3), np.uint8))
  media.write_image(tmp_path / "robot" / "x" / "front.jpg", np.full((5, 5, 3), 200, np.uint8))
  (tmp_path / "readme.txt").write_text("-")
  pool = FolderReferences(tmp_path)
  assert pool.identities == ["cat", "robot"] and pool.choices("robot") == ["file:robot/x/front.jpg"]
  (robot,) = pool.pick("cat", 1, seed=0, video_id="v")
  assert robot.identity == "robot" and pool.image(robot).shape == (5, 5, 3)
  (tmp_path / "empty").mkdir()
  with pytest.raises(PairError, match="--references .*empty holds no images"):
    FolderReferences(tmp_path / "empty")
  with pytest.raises(PairError, match="--references .*missing is not a folder"):
    FolderReferences(tmp_path / "missing")


def test_identities_of_datasets_built_without_the_index_column(tmp_path):
  class Source(list):
    reads = 0

    def __getitem__(self, i):
      Source.reads += 1
      return super().__getitem__(i)

  rows = [row("a", 9), row("b", 9)]
  source = Source([{"identity": b"alice"}, {"identity": b"bob"}])
  assert record_identities(source, [{**r, "identity": r["video_id"].upper()} for r in rows]) == ["A", "B"]
  assert Source.reads == 0
  assert record_identities(source, rows, tmp_path / "ids.json", progress=False) == ["alice", "bob"]
  assert record_identities(source, rows, tmp_path / "ids.json") == ["alice", "bob"] and Source.reads == 2  # cached
