"""python -m dreamactor_jax.bootstrap end to end: a tiny random stage-1 bundle (and a tiny random
Wan-Animate-2 bundle) over a synthetic-world dataset (a humanoid with keypoints, a quadruped and a
blob without; 2 motions each, 9 frames of 32 x 48), 5-frame clips, 1 denoising step, pairs rendered
2 per animate_batch call."""

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest

from dreamactor_jax import media
from dreamactor_jax.bootstrap import run
from dreamactor_jax.bootstrap.__main__ import main
from dreamactor_jax.bootstrap.pairs import ClipPlan, read_clip
from dreamactor_jax.bootstrap.scores import pose_agreement
from dreamactor_jax.data import DataConfig, open_stage2, stage1_dataset, stage2_dataset, staging
from dreamactor_jax.data import synthetic as S
from dreamactor_jax.data.build import build_dataset
from dreamactor_jax.data.pose import PoseEstimator
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.data.video import decode_jpeg, decode_jpegs
from dreamactor_jax.sampling.bundle import BundleInfo
from tests.data.test_pose import simcc_model
from tiny_bundle import tiny_models, write_tiny_bundle

SIZE = (32, 48)
HUMANOID, QUADRUPED, BLOB = "humanoid-000000", "quadruped-000001", "blob-000002"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Paths of the synthetic video folder's dataset, a stage-1, a stage-2 and a Wan-Animate-2 bundle and a
  pose model."""
  root = tmp_path_factory.mktemp("bootstrap")
  S.write_video_folder(root / "videos", identities=3, motions=2, frames=9, size=SIZE,
                       kinds=("humanoid", "quadruped", "blob"), progress=False)
  build_dataset(root / "videos", root / "data", workers=1, progress=False)
  models = tiny_models()
  write_tiny_bundle(root / "stage1", models.dit, models.vae, stage="pose", fps=8.0,
                    animation=dict(start_seconds=0.0, segment_frames=5, overlap_frames=1),
                    sampling=dict(steps=2, guidance=1.0))
  shutil.copytree(root / "stage1", root / "stage2")
  info = json.loads((root / "stage2" / "animation.json").read_text())
  (root / "stage2" / "animation.json").write_text(json.dumps({**info, "stage": "rgb"}))
  animate2 = tiny_models(layout="animate2", motion_timestep=1.0, seed=3)
  write_tiny_bundle(root / "animate2", animate2.dit, animate2.vae, stage="rgb", layout="animate2", preset="base",
                    fps=8.0, animation=dict(segment_frames=5, overlap_frames=1),
                    sampling=dict(steps=2, guidance=1.0, driving_prompt=""))  # text none: empty prompts
  # COCO-WholeBody: nose, both shoulders, both hips at fixed bins of a 48 x 32-input model.
  simcc_model(root / "pose.onnx", {0: (32, 30, 0.9, 0.9), 5: (40, 40, 0.9, 0.9), 6: (24, 40, 0.9, 0.9),
                                   11: (36, 60, 0.9, 0.9), 12: (28, 60, 0.9, 0.9)})
  return root


def args(world, out, *extra):
  return ["--checkpoint", str(world / "stage1"), "--data", str(world / "data"), "--out", str(out),
          "--num-frames", "5", "--steps", "1", "--batch-size", "2", "--min-score", "0", "--noprogress", *extra]


@pytest.fixture
def count_renders(monkeypatch):
  """Counts animate_batch calls and keeps their driving videos."""
  calls = []
  real = run.animate_batch

  def counted(models, references, driving, prompts, **kwargs):
    calls.append(dict(references=references, driving=driving, prompts=prompts, **kwargs))
    return real(models, references, driving, prompts, **kwargs)

  monkeypatch.setattr(run, "animate_batch", counted)
  return calls


@pytest.fixture(scope="module")
def first_run(world, tmp_path_factory):
  """The full command once: 2 humanoid clips x 2 other identities, self pairs for the 4 others."""
  out = tmp_path_factory.mktemp("run") / "pairs"
  with pytest.MonkeyPatch.context() as patch:
    calls = []
    real = run.animate_batch
    patch.setattr(run, "animate_batch", lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    assert main(args(world, out, "--pairs-per-clip", "2", "--self-pairs", "no-keypoints",
                        "--pose-model", str(world / "pose.onnx"))) == 0
  return out, calls


def review_rows(path):
  with open(path, newline="") as f:
    return {row["key"]: row for row in csv.DictReader(f)}


def stage2_records(out):
  source = staging.LazySource(open_stage2(out))
  return {staging.text(source[i]["key"]): source[i] for i in range(len(source))}


def copy_run(first_run, tmp_path):
  out = tmp_path / "pairs"
  shutil.copytree(first_run[0], out)
  return out


def test_end_to_end(world, first_run):
  out, calls = first_run
  assert len(calls) == 2 and all(driving.shape == (2, 5, *SIZE, 3) for driving in calls)
  rows = review_rows(out / "review.csv")
  cross = {f"{HUMANOID}_{motion}@{b}" for motion in ("walk-000000", "wave-000001") for b in (QUADRUPED, BLOB)}
  selves = {f"{kind}_{motion}@self" for kind in (QUADRUPED, BLOB) for motion in ("walk-000000", "wave-000001")}
  assert set(rows) == cross | selves
  assert list(next(iter(rows.values()))) == ["key", "video_id", "identity", "driving_identity", "reference", "self",
                                             "temporal", "color", "pose", "mean", "auto", "accept", "reviewed",
                                             "sheet"]
  for key, row in rows.items():
    assert (row["accept"], row["auto"], row["reviewed"]) == ("1", "1", "0")  # --min-score 0
    sheet = media.read_image(out / row["sheet"])
    assert sheet.shape == (4 * 32 + 3 * 4, 3 * 48 + 2 * 4, 3)  # 4 frames of reference | skeleton | result
    assert row["self"] == ("1" if key in selves else "0")
    if key in cross:
      assert row["reference"] == f"video:{row['driving_identity']}_walk-000000"  # B's first video's first frame
      scores = [float(row[name]) for name in ("temporal", "color", "pose")]
      assert all(0 <= s <= 1 for s in scores) and float(row["mean"]) == pytest.approx(np.mean(scores), abs=1e-4)

  records = stage2_records(out)
  assert set(records) == cross | selves
  for key, record in records.items():
    identity, driving_identity = staging.text(record["identity"]), staging.text(record["driving_identity"])
    assert (identity, driving_identity) == ((HUMANOID, key.split("@")[1]) if key in cross else (key.split("_")[0],) * 2)
    candidate = np.load(out / "candidates" / f"{run.file_name(key)}.npz")
    clip = np.load(out / "clips" / f"{candidate['clip']}.npz")
    assert json.loads(staging.text(record["scores"])) == pytest.approx(json.loads(str(candidate["scores"])))
    # target = A's clip, reference = its first frame, driving = the rendered B (stored as JPEG)
    np.testing.assert_array_equal(clip["reference"], clip["video"][0])
    for stored, array in ((decode_jpegs(record["target"]), clip["video"]),
                          (decode_jpegs(record["driving"]), candidate["driving"]),
                          (decode_jpeg(record["reference"]), clip["reference"])):
      assert stored.shape == array.shape and np.corrcoef(stored.ravel(), array.ravel())[0, 1] > 0.8  # noisy B: JPEG
    if key in cross:  # what animate_batch was given: A's skeleton
      assert any((driving == clip["skeleton"]).all(axis=(1, 2, 3, 4)).any() for driving in calls)
      pose = pose_agreement(PoseEstimator(world / "pose.onnx"), candidate["driving"], clip["body"])
      assert json.loads(str(candidate["scores"]))["pose"] == pytest.approx(pose)
    else:  # the clip itself under a colour map (tests/bootstrap/test_pairs.py)
      assert not np.array_equal(candidate["driving"], clip["video"])

  config = DataConfig(stage2_dir=str(out), num_frames=5, buckets=(SIZE,), batch_size=4, num_workers=0, num_epochs=1,
                      random_crop=False, text_len=3, text_dim=2, allow_self_pairs=True)  # --self-pairs wrote some
  batches = list(stage2_dataset(config))
  assert len(batches) == 2 and {v for b in batches for v in b["video_id"]} == {r.split("@")[0] for r in records}
  assert all(b["video"].shape == b["driving"].shape == (4, 5, *SIZE, 3) for b in batches)


def test_rerun_skips_finished_work_and_follows_new_thresholds(world, first_run, tmp_path, count_renders, capsys):
  out = copy_run(first_run, tmp_path)
  assert main(args(world, out, "--pairs-per-clip", "2", "--self-pairs", "no-keypoints",
                      "--pose-model", str(world / "pose.onnx"))) == 0
  assert count_renders == []
  summary = run.run_bootstrap(run.BootstrapConfig(
      checkpoint=str(world / "stage1"), data=str(world / "data"), out=str(out), pairs_per_clip=2, batch_size=2,
      num_frames=5, steps=1, self_pairs="no-keypoints", pose_model=str(world / "pose.onnx"), progress=False,
      thresholds={"color": 0.99}, min_score=0.0))
  assert (summary.planned, summary.rendered, summary.done_before) == (8, 0, 8)
  assert (summary.candidates, summary.accepted) == (8, 4)
  rows = review_rows(out / "review.csv")
  assert {k for k, row in rows.items() if row["accept"] == "1"} == {k for k in rows if k.endswith("@self")}
  assert set(stage2_records(out)) == {k for k in rows if k.endswith("@self")}
  # A larger K (a prefix-stable draw, tests/bootstrap/test_pairs.py) renders only pairs not done: none here, the
  # humanoid has only 2 other identities.
  assert main(args(world, out, "--pairs-per-clip", "3", "--pose-model", str(world / "pose.onnx"))) == 0
  assert count_renders == []
  assert main(args(world, out, "--seed", "1", "--pose-model", str(world / "pose.onnx"))) == 2
  assert "holds pairs made with other options (seed: 0 -> 1)" in capsys.readouterr().err


def test_apply_review_drops_rejected_pairs_and_later_runs_keep_the_decisions(world, first_run, tmp_path,
                                                                            count_renders, capsys):
  out = copy_run(first_run, tmp_path)
  rows = review_rows(out / "review.csv")
  rejected = {f"{HUMANOID}_walk-000000@{BLOB}", f"{BLOB}_wave-000001@self"}
  edited = tmp_path / "edited.csv"
  with open(edited, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(next(iter(rows.values()))))
    writer.writeheader()
    for key, row in rows.items():
      writer.writerow({**row, "accept": "0" if key in rejected else "1"})
  assert main(["--out", str(out), "--apply-review", str(edited), "--noprogress"]) == 0
  assert set(stage2_records(out)) == set(rows) - rejected
  assert {k for k, row in review_rows(out / "review.csv").items() if row["accept"] == "0"} == rejected
  assert main(args(world, out, "--pairs-per-clip", "2", "--self-pairs", "no-keypoints",
                      "--pose-model", str(world / "pose.onnx"))) == 0
  assert count_renders == [] and set(stage2_records(out)) == set(rows) - rejected  # the reviewer's rejections hold
  # Rows left out of the review file are rejected; unknown keys and bad values are one-line errors.
  with open(edited, "w", newline="") as f:
    f.write(f"key,accept\n{HUMANOID}_wave-000001@{QUADRUPED},yes\n")
  assert main(["--out", str(out), "--apply-review", str(edited), "--noprogress"]) == 0
  assert set(stage2_records(out)) == {f"{HUMANOID}_wave-000001@{QUADRUPED}"}
  # Reviewed decisions outlast thresholds that would decide otherwise.
  assert main(args(world, out, "--pairs-per-clip", "2", "--self-pairs", "no-keypoints",
                      "--pose-model", str(world / "pose.onnx"), "--min-score", "0.99")) == 0
  assert set(stage2_records(out)) == {f"{HUMANOID}_wave-000001@{QUADRUPED}"} and count_renders == []
  edited.write_text("key,accept\nnobody@x,1\n")
  assert main(["--out", str(out), "--apply-review", str(edited)]) == 2
  assert "edited.csv: key 'nobody@x' is not a candidate in" in capsys.readouterr().err
  edited.write_text(f"key,accept\n{HUMANOID}_wave-000001@{QUADRUPED},maybe\n")
  assert main(["--out", str(out), "--apply-review", str(edited)]) == 2
  assert "edited.csv line 2: accept='maybe'; expected 1 or 0" in capsys.readouterr().err


def test_wan_animate2_bundle_pairs_every_clip_by_its_rgb_motion(world, tmp_path, count_renders):
  """A Wan-Animate-2 bundle as the pair generator: every clip, the quadruped's and the blob's without
  keypoints too, drives B's reference with its own RGB frames; no skeleton, no pose model. The pairs
  are scored, filtered and written as the stage-1 bundle's are."""
  out = tmp_path / "pairs"
  assert main(["--checkpoint", str(world / "animate2"), *args(world, out)[2:], "--thresholds",
                         "temporal=0.01"]) == 0
  motions = ("walk-000000", "wave-000001")
  rows = review_rows(out / "review.csv")
  assert {key.split("@")[0] for key in rows} == {f"{a}_{motion}" for a in (HUMANOID, QUADRUPED, BLOB) for motion in motions}
  assert len(count_renders) == 3 and all(call["driving"].shape == (2, 5, *SIZE, 3) for call in count_renders)
  records = stage2_records(out)
  for key, row in rows.items():
    assert row["identity"] != row["driving_identity"] and row["self"] == "0"
    assert row["temporal"] and row["color"] and "pose" not in row  # no pose model, no pose score
    assert row["auto"] == str(int(float(row["temporal"]) >= 0.01))  # --thresholds filter as with stage 1
    assert (key in records) == (row["accept"] == "1")
    candidate = np.load(out / "candidates" / f"{run.file_name(key)}.npz")
    clip = np.load(out / "clips" / f"{candidate['clip']}.npz")
    # what animate_batch was given: A's clip itself, with B's reference
    assert any((call["driving"] == clip["video"]).all(axis=(1, 2, 3, 4)).any() for call in count_renders)
    assert candidate["driving"].shape == clip["video"].shape and candidate["driving"].std() > 0
    sheet = media.read_image(out / row["sheet"])
    np.testing.assert_array_equal(sheet[:32, 48 + 4:2 * 48 + 4], clip["video"][0])  # reference | A's clip | result


def test_references_from_a_folder(world, tmp_path, count_renders):
  folder = tmp_path / "refs"
  rng = np.random.default_rng(0)
  media.write_image(folder / "cat.png", rng.integers(0, 256, (20, 30, 3), np.uint8))
  media.write_image(folder / "robot" / "front.png", rng.integers(0, 256, (40, 24, 3), np.uint8))
  media.write_image(folder / "robot" / "side.jpg", rng.integers(0, 256, (16, 16, 3), np.uint8))
  (folder / "notes.txt").write_text("not an image")
  out = tmp_path / "pairs"
  assert main(args(world, out, "--references", str(folder), "--pairs-per-clip", "5", "--max-clips", "3")) == 0
  assert len(count_renders) == 1  # 1 humanoid clip in the first 3 (2 blobs first) x 2 identities
  rows = review_rows(out / "review.csv")
  assert {row["driving_identity"] for row in rows.values()} == {"cat", "robot"}
  assert {row["reference"] for row in rows.values()} <= {"file:cat.png", "file:robot/front.png", "file:robot/side.jpg"}
  assert "file:cat.png" in {row["reference"] for row in rows.values()}


def test_hosts_split_the_clips(world, tmp_path, count_renders):
  out = tmp_path / "pairs"
  config = run.BootstrapConfig(checkpoint=str(world / "stage1"), data=str(world / "data"), out=str(out),
                                     batch_size=2, num_frames=5, steps=1, min_score=0.0, progress=False)
  second = run.run_bootstrap(config, process_index=1, process_count=2, finalize=False)
  assert (second.planned, second.rendered, second.candidates) == (1, 1, None) and not (out / "review.csv").exists()
  first = run.run_bootstrap(config, process_index=0, process_count=2)
  assert (first.planned, first.rendered, first.candidates, first.accepted) == (1, 1, 2, 2)
  assert {r.split("@")[0] for r in review_rows(out / "review.csv")} == {f"{HUMANOID}_walk-000000",
                                                                         f"{HUMANOID}_wave-000001"}
  assert len(count_renders) == 2 and all(call["driving"].shape[0] == 2 for call in count_renders)  # padded


@pytest.mark.parametrize("drawing", [PoseDrawing(), PoseDrawing(threshold=0.5, bbox_fill=0.6),
                                     PoseDrawing(bbox_normalize=False)], ids=["defaults", "fill", "crop"])
def test_clips_match_the_stage1_pipeline(world, drawing):
  """read_clip, with the drawing a stage-1 bundle records, renders the skeleton the stage-1 trainer
  saw with it (bone scaling off, centred crop)."""
  path = staging.dataset_dir(world / "data", "video_folder")
  config = DataConfig(stage1_dir=str(world / "data"), num_frames=9, frame_stride=1, buckets=(SIZE,),
                      random_crop=False, bone_scale_prob=0.0, batch_size=1, num_workers=0, num_epochs=1,
                      text_len=3, text_dim=2, pose=drawing)
  recorded = BundleInfo.from_json(BundleInfo(stage="pose", size=SIZE, fps=8.0, pose=dataclasses.asdict(drawing))
                                  .to_json())
  rows = staging.read_index(path)
  source = staging.LazySource(path)
  batches = list(stage1_dataset(config))
  assert len(batches) == 2
  for batch in batches:
    record = [r["video_id"] for r in rows].index(batch["video_id"][0])
    clip = ClipPlan(record=record, video_id=rows[record]["video_id"], identity=HUMANOID, caption="", fps=8.0,
                    frames=tuple(range(9)), bucket=SIZE, has_pose=True)
    data = read_clip(source[record], clip, run.pose_drawing(recorded))
    for name in ("video", "reference"):
      np.testing.assert_array_equal(getattr(data, name), batch[name][0])
    np.testing.assert_array_equal(data.skeleton, batch["driving"][0])
    assert data.body.shape == (9, 1, 18, 3) and (data.body[..., 2] > 0).any()


def test_errors(world, tmp_path, capsys):
  def error(*argv):
    assert main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]

  stage2 = ["--checkpoint", str(world / "stage2")] + args(world, tmp_path / "a")[2:]
  assert error(*stage2) == (f"error: --checkpoint {world / 'stage2'} is a stage-2 (rgb) bundle; the bootstrap renders "
                            "with a stage-1 (pose) bundle, driven by skeleton videos, or a Wan-Animate-2 bundle "
                            "(layout animate2)")
  (tmp_path / "empty").mkdir()
  assert error(*args(world, tmp_path / "b")[:2], "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "b")) \
      .startswith(f"error: {tmp_path / 'empty'}: no video_folder dataset here")
  message = error(*args(world, tmp_path / "c"), "--num-frames", "13")
  assert message.startswith("error: --data ") and message.endswith(
      "no clip to pair (6 records: 6 too short for 13 frames, none of the 0 others with keypoints; --self-pairs "
      "no-keypoints pairs videos without them)")
  assert error(*args(world, tmp_path / "d"), "--thresholds", "clip=0.5") == (
      "error: --thresholds clip: pairs get no clip score with these options (scores: color, temporal; pose needs "
      "--pose-model, clip a CLIP tower)")
  assert error(*args(world, tmp_path / "e"), "--num-frames", "6") == "error: --num-frames=6; expected 1 + 4k (e.g. 81)"
  assert error("--out", str(tmp_path / "f"), "--apply-review", str(tmp_path / "none.csv")) == (
      f"error: --out {tmp_path / 'f'} holds no candidates (candidates/*.npz); run the bootstrap first")
  assert error("--out", str(tmp_path / "g")) == "error: --checkpoint: required"
  assert error("--out", "x", "--thresholds", "speed=1") == (
      "error: --thresholds=speed=1: --thresholds: unknown score 'speed'; expected some of temporal, color, clip, pose")
  assert error(*args(world, tmp_path / "h"), "--size", "40x48") == ("error: --size 40x48: H and W must be positive "
                                                                   "multiples of 16")
