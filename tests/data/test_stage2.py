import dataclasses

import numpy as np
import pytest

from dreamactor_jax.data import stage2 as stage2_module
from dreamactor_jax.data import DataError
from dreamactor_jax.data.pipeline import DataConfig, dataset_captions, stage2_dataset
from dreamactor_jax.data.stage2 import open_stage2, write_stage2_dataset, written_stage2_keys
from tests.data.test_augment import assert_one_colour_map


def clip(frames, height, width, seed):
  """Smooth frames (a gradient plus a moving block) so resampling at another size stays close."""
  y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
  base = np.stack([x * 200, y * 200, (x + y) * 100], -1)
  video = np.repeat(base[None], frames, 0) + seed * 10
  for t in range(frames):
    video[t, height // 4:height // 2, (t * width) // (2 * frames):(t * width) // (2 * frames) + width // 4] = 255
  return np.clip(video, 0, 255).astype(np.uint8)


def record(video_id, frames=9, height=48, width=80, *, driving_scale=1, score=5.0, seed=0):
  video = clip(frames, height, width, seed)
  driving = clip(frames, height * driving_scale, width * driving_scale, seed)
  return dict(video=video, reference=video[0], driving=driving, fps=16.0, caption=f"caption of {video_id}",
              scores={"iq": score, "ms": score}, video_id=video_id, identity=f"id-{video_id}",
              driving_identity="cartoon-1")


def test_write_resumes_and_the_pipeline_transforms_all_three_alike(tmp_path, monkeypatch):
  records = [record("a", seed=0), record("b", seed=1, driving_scale=2), record("c", seed=2, score=3.0),
             record("d", 13, 80, 48, seed=3), record("e", 13, 80, 48, seed=4)]
  write_stage2_dataset(tmp_path, records[:2], finalize=False, progress=False)
  assert written_stage2_keys(tmp_path) == {"a@cartoon-1", "b@cartoon-1"}
  encoded = []
  real = stage2_module.encode_jpeg
  monkeypatch.setattr(stage2_module, "encode_jpeg", lambda *a: (encoded.append(1), real(*a))[1])
  folder = write_stage2_dataset(tmp_path, records, progress=False)
  assert len(encoded) == (9 + 9 + 1) + 2 * (13 + 13 + 1)  # only c, d, e: a and b were staged before
  assert folder == open_stage2(tmp_path)
  assert dataset_captions(str(tmp_path), stage=2) == [f"caption of {v}" for v in "abcde"]

  config = DataConfig(stage2_dir=str(tmp_path), num_frames=9, buckets=((32, 48), (48, 32)), batch_size=2,
                      num_workers=0, text_len=3, text_dim=2, stage2_flip_prob=1.0, stage2_min_score=4.0)
  it = iter(stage2_dataset(config))
  assert it.stats() == {"excluded/low_score": 1}
  for _ in range(4):
    batch = next(it)
    assert set(batch) == {"video", "reference", "driving", "text", "fps", "video_id"}
    height, width = (32, 48) if set(batch["video_id"]) <= {"a", "b"} else (48, 32)
    assert batch["video"].shape == batch["driving"].shape == (2, 9, height, width, 3)
    np.testing.assert_array_equal(batch["fps"], np.float32(16.0))
    # Same crop and flip on all three: the driving clip matches the target (b's driving is twice the
    # size, so it matches up to resampling and JPEG error), and the reference matches the clip's first
    # frame when the clip starts at frame 0.
    error = np.abs(batch["video"].astype(int) - batch["driving"].astype(int)).mean(axis=(1, 2, 3, 4))
    assert (error < 6).all()
    for i, video_id in enumerate(batch["video_id"]):
      if video_id in "ab":
        assert np.abs(batch["reference"][i].astype(int) - batch["video"][i, 0]).mean() < 2
    # Flipped: the red gradient now falls to the right.
    assert batch["video"][:, :, :, 0, 0].mean() > batch["video"][:, :, :, -1, 0].mean()
  unflipped = next(iter(stage2_dataset(dataclasses.replace(config, stage2_flip_prob=0.0))))
  assert unflipped["video"][:, :, :, 0, 0].mean() < unflipped["video"][:, :, :, -1, 0].mean()

  # Recoloured: one colour map on target and reference, another on the driving clip.
  plain = next(iter(stage2_dataset(config)))
  recoloured = next(iter(stage2_dataset(dataclasses.replace(config, appearance_prob=1.0))))
  for b in range(2):
    assert_one_colour_map(np.concatenate([plain["reference"][b, None], plain["video"][b]]),
                          np.concatenate([recoloured["reference"][b, None], recoloured["video"][b]]))
    assert_one_colour_map(plain["driving"][b], recoloured["driving"][b])
    assert np.abs(recoloured["video"][b].astype(int) - recoloured["driving"][b]).mean() > 20


def test_writer_rejects_bad_records(tmp_path):
  bad = record("x")
  bad["driving"] = bad["driving"][:5]
  with pytest.raises(ValueError, match="stage-2 record 'x@cartoon-1': video has 9 frames, driving 5"):
    write_stage2_dataset(tmp_path, [bad], progress=False)
  bad = record("y")
  bad["reference"] = bad["reference"].astype(np.float32)
  with pytest.raises(ValueError, match="stage-2 record 'y@cartoon-1': reference is float32 \\(48, 80, 3\\), "
                                       "expected uint8 \\[H, W, 3\\]"):
    write_stage2_dataset(tmp_path, [bad], progress=False)


def test_self_pairs_are_refused_unless_allowed(tmp_path):
  """A record whose driving clip shows the target's own identity teaches copying the driving pixels:
  the pipeline refuses the dataset by default, naming the record, and reads it with allow_self_pairs."""
  selfish = {**record("s", seed=5), "identity": "cartoon-1"}
  write_stage2_dataset(tmp_path, [record("a"), selfish], progress=False)
  config = DataConfig(stage2_dir=str(tmp_path), num_frames=9, buckets=((48, 80),), batch_size=2, num_workers=0,
                      text_len=3, text_dim=2)
  with pytest.raises(DataError, match=r"1 self pairs \(the driving clip shows the target's own identity, e.g. "
                                      r"'s@cartoon-1'\): trained on them the loss collapses, the model learns to copy "
                                      r"the driving pixels .* or set data.allow_self_pairs=True"):
    stage2_dataset(config)
  batch = next(iter(stage2_dataset(dataclasses.replace(config, allow_self_pairs=True))))
  assert sorted(batch["video_id"]) == ["a", "s"]
