import dataclasses
import logging

import numpy as np
import pytest

from dreamactor_jax.data import staging
from dreamactor_jax.data.keypoints import Pose
from dreamactor_jax.data.pipeline import BatchPlan, DataConfig, make_index, stage1_dataset
from dreamactor_jax.data.staging import DataError
from dreamactor_jax.data.video import encode_jpeg, nearest_bucket, parse_buckets
from dreamactor_jax.data.video_folder import NAME, VideoFolder
from tests.data.fake_videos import VIDEOS, figure_pose
from tests.data.test_augment import assert_one_colour_map

BATCH_KEYS = {"video", "reference", "driving", "text", "fps", "video_id"}


def tiny_config(path, **changes) -> DataConfig:
  base = dict(stage1_dir=str(path), num_frames=9, frame_stride=1, buckets=((64, 64), (48, 80), (80, 48)),
              batch_size=2, num_workers=0, text_len=7, text_dim=5, bone_scale_prob=0.5, warn_every_s=0.0)
  return DataConfig(**{**base, **changes})


def aspect_bucket(video_id, config):
  _, height, width, _ = VIDEOS[video_id]
  return config.buckets[nearest_bucket(height, width, parse_buckets(config.buckets))]


def test_stage1_batch_is_the_training_batch(stage1_data):
  out, _ = stage1_data
  config = tiny_config(out, random_crop=False)
  captions = []

  def text_fn(batch_captions):
    captions.extend(batch_captions)
    return np.stack([np.full((7, 5), len(c), np.float32) for c in batch_captions])

  it = iter(stage1_dataset(config, text_fn=text_fn))
  assert it.stats() == {"excluded/no_keypoints": 1}  # "nopose" has no keypoint file
  for _ in range(3):  # one epoch: 2 landscape batches, 1 portrait (one left over), the square never
    batch = next(it)
    assert set(batch) == BATCH_KEYS
    height, width = aspect_bucket(batch["video_id"][0], config)
    assert all(aspect_bucket(v, config) == (height, width) for v in batch["video_id"])
    assert batch["video"].shape == batch["driving"].shape == (2, 9, height, width, 3)
    assert batch["reference"].shape == (2, height, width, 3)
    assert batch["video"].dtype == batch["reference"].dtype == batch["driving"].dtype == np.uint8
    assert batch["text"].shape == (2, 7, 5) and batch["text"].dtype == np.float32
    np.testing.assert_array_equal(batch["fps"], np.float32(24.0))
    np.testing.assert_array_equal(batch["reference"], batch["video"][:, 0])  # reference="first"
    assert batch["driving"].reshape(2, -1).any(-1).all() and not batch["driving"][:, :, 0, 0].any()
    np.testing.assert_array_equal(batch["text"][:, 0, 0], [len(f"a person {v}") for v in batch["video_id"]])
  assert len(captions) == 6


def test_recolouring_maps_clip_and_reference_alike(stage1_data):
  out, _ = stage1_data
  config = tiny_config(out, random_crop=False, bone_scale_prob=0.0)
  plain, recoloured = next(iter(stage1_dataset(config))), next(iter(stage1_dataset(
      dataclasses.replace(config, appearance_prob=1.0))))
  np.testing.assert_array_equal(recoloured["driving"], plain["driving"])  # the skeletons are untouched
  np.testing.assert_array_equal(recoloured["reference"], recoloured["video"][:, 0])
  for b in range(2):  # one map per example, on its reference and every frame
    assert_one_colour_map(np.concatenate([plain["reference"][b, None], plain["video"][b]]),
                          np.concatenate([recoloured["reference"][b, None], recoloured["video"][b]]))


def test_reference_outside_the_clip_and_too_short_records(stage1_data):
  out, _ = stage1_data
  config = tiny_config(out, num_frames=13, reference="outside", batch_size=1)
  it = iter(stage1_dataset(config))
  assert it.stats() == {"excluded/too_short": 7}  # only a (14) and d (13) are long enough
  for _ in range(4):
    batch = next(it)
    assert batch["video"].shape[1] == 13
    video_id = str(batch["video_id"][0])
    differs = np.abs(batch["reference"][0].astype(int) - batch["video"][0].astype(int)).max(axis=(1, 2, 3))
    if video_id == "land/a":  # 14 frames: the one frame outside the 13-frame clip
      assert (differs > 40).all()
    else:  # 13 frames: nothing outside, so the first frame
      assert differs[0] == 0


def test_resume_is_exact_and_round_trips_through_the_train_checkpointer(stage1_data, tmp_path):
  import jax

  from dreamactor_jax.training.checkpointing import Checkpointer

  out, _ = stage1_data
  config = tiny_config(out)
  it = iter(stage1_dataset(config))
  for _ in range(2):
    next(it)
  checkpointer = Checkpointer(tmp_path / "ckpt", save_every=1)
  checkpointer.save(2, {"rng": jax.random.key(0)}, data_iterator=it)  # Orbax Composite, grain CheckpointSave
  checkpointer.wait()
  expected = [next(it) for _ in range(4)]  # crosses into epoch 2 (3 batches per epoch)
  restored = iter(stage1_dataset(config))
  Checkpointer(tmp_path / "ckpt", save_every=1).restore(2, {}, data_iterator=restored)
  for want in expected:
    got = next(restored)
    for key in BATCH_KEYS:
      np.testing.assert_array_equal(got[key], want[key])
  again = iter(stage1_dataset(config))
  again.set_state(it.get_state())
  np.testing.assert_array_equal(next(again)["driving"], next(it)["driving"])


def test_processes_partition_each_epoch_and_share_the_bucket(stage1_data):
  out, _ = stage1_data
  config = tiny_config(out, batch_size=1)
  rows = staging.read_index(staging.dataset_dir(out, NAME))
  buckets = parse_buckets(config.buckets)
  index = make_index(rows, buckets, lambda row: None if row["num_persons"] else "no_keypoints", "test")
  for count in (2, 3):
    plans = [BatchPlan(index, batch_size=1, process_index=p, process_count=count, seed=3, num_epochs=2, name="t",
                       buckets=buckets) for p in range(count)]
    per_epoch = plans[0].batches_per_epoch
    for epoch in range(2):
      seen = []
      for i in range(epoch * per_epoch, (epoch + 1) * per_epoch):
        items = [plan[i] for plan in plans]
        assert len({bucket for _, bucket, _, _ in items}) == 1
        seen += [int(r) for _, _, records, _ in items for r in records]
      assert len(seen) == len(set(seen))  # disjoint over processes and batches
      used = sum(len(r) // count * count for r in plans[0].bucket_records)
      assert len(seen) == used
  # The real pipelines of 2 processes read those records.
  firsts = [next(iter(stage1_dataset(config, process_index=p, process_count=2))) for p in range(2)]
  plan = [BatchPlan(index, batch_size=1, process_index=p, process_count=2, seed=0, num_epochs=None, name="t",
                    buckets=buckets)[0] for p in range(2)]
  for first, (_, _, records, _) in zip(firsts, plan):
    assert list(first["video_id"]) == [rows[r]["video_id"] for r in records]
  assert firsts[0]["video"].shape == firsts[1]["video"].shape
  with pytest.raises(ValueError, match="process_index=2 is not in 0..1"):
    stage1_dataset(config, process_index=2, process_count=2)


def test_worker_processes_give_the_same_batches(stage1_data):
  out, _ = stage1_data
  config = tiny_config(out, random_crop=True)
  local = iter(stage1_dataset(config))
  workers = iter(stage1_dataset(dataclasses.replace(config, num_workers=2)))
  for _ in range(4):
    a, b = next(local), next(workers)
    for key in BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])


def _stage(folder, key, pose, jpegs, height=48, width=80):
  data, offsets = staging.pack_bytes(jpegs)
  staging.write_staged(folder / f"{staging.staged_name(key)}.npz", dict(
      key=key, identity=key, caption="", fps=np.float32(10), height=height, width=width, frames_data=data,
      frames_offsets=offsets, body=pose.body, hands=pose.hands, face=pose.face))


def test_bad_records_are_replaced_counted_and_warned(tmp_path, caplog):
  stage_dir = tmp_path / "staging"
  stage_dir.mkdir()
  good = [encode_jpeg(np.full((48, 80, 3), 20 * t, np.uint8)) for t in range(9)]
  for i in range(3):
    _stage(stage_dir, f"good{i}", figure_pose(9, 48, 80), good)
  _stage(stage_dir, "broken", figure_pose(9, 48, 80), good[:4] + [b"\xff\xd8 not a jpeg"] + good[5:])
  _stage(stage_dir, "nobody", Pose.empty(9, 1), good)  # a person slot, but no joint in any frame
  staging.prepare(VideoFolder, tmp_path / "out", stage_dir)
  config = tiny_config(tmp_path / "out", buckets=((48, 80),), batch_size=2)
  it = iter(stage1_dataset(config))
  with caplog.at_level(logging.WARNING):
    batches = [next(it) for _ in range(6)]
  assert all(b["video"].shape == (2, 9, 48, 80, 3) for b in batches)
  assert not any({"broken", "nobody"} & set(b["video_id"]) for b in batches)
  stats = it.stats()
  assert stats["skipped/decode_error"] >= 1 and stats["skipped/no_keypoints"] >= 1
  assert "skipped broken (decode_error: UnidentifiedImageError" in caplog.text
  assert "skipped nobody (no_keypoints" in caplog.text
  state = it.get_state()
  assert state["skipped"] == {k.split("/")[1]: v for k, v in stats.items() if k.startswith("skipped/")}

  all_bad = tmp_path / "bad_staging"
  all_bad.mkdir()
  for i in range(2):
    _stage(all_bad, f"broken{i}", figure_pose(9, 48, 80), [b"garbage"] * 9)
  staging.prepare(VideoFolder, tmp_path / "bad", all_bad)
  with pytest.raises(DataError, match="17 records in a row failed for one slot of bucket 48x80; "
                                      "last: decode_error: UnidentifiedImageError.*\\(broken[01]\\)"):
    next(iter(stage1_dataset(dataclasses.replace(config, stage1_dir=str(tmp_path / "bad")))))


def test_config_errors_name_the_field(stage1_data):
  from dreamactor_jax.configs.base import get_config

  assert DataConfig.from_config(get_config("tiny").data).buckets == ((64, 64), (48, 80), (80, 48))
  with pytest.raises(ValueError, match="data.num_frames=8; expected 1 \\+ 4k"):
    DataConfig.from_config({"num_frames": 8})
  with pytest.raises(ValueError, match="data.buckets has 0x80; H and W must be positive"):
    DataConfig.from_config({"buckets": [[0, 80]]})
  with pytest.raises(ValueError, match="data.appearance_prob=1.5; expected a probability in \\[0, 1\\]"):
    DataConfig.from_config({"appearance_prob": 1.5})
  with pytest.raises(ValueError, match="config.data has unknown fields \\['frames'\\]"):
    DataConfig.from_config({"frames": 3})
  out, _ = stage1_data
  with pytest.raises(DataError, match="no usable record out of 9 \\(9 too_short\\)"):
    stage1_dataset(tiny_config(out, num_frames=17))
  with pytest.raises(DataError, match="no bucket holds a global batch of 8 records"):
    stage1_dataset(tiny_config(out, batch_size=8))
