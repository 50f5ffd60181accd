"""The evaluate CLI and hook: synthetic triplets, the copy-reference floor, results folders, user
triplets, extra metrics, the moving split, samples, the table, JSON and picture files, and errors
at the edge."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from dreamactor_jax import media
from dreamactor_jax.data import synthetic as S
from dreamactor_jax.evaluation import __main__ as cli
from dreamactor_jax.evaluation import animate_triplets, copy_reference, evaluate, load_triplet

FRAMES, SIZE = 5, (32, 48)


@pytest.fixture(scope="module")
def triplets(tmp_path_factory):
  out = tmp_path_factory.mktemp("triplets")
  S.write_triplets(out, identities=2, motions=2, frames=FRAMES, size=SIZE, kinds=["humanoid", "blob"],
                   motion_types=["walk", "jump"], progress=False)  # one moving triplet: the humanoid walking
  return out


def oracle(reference, driving, triplet):
  """Knows the truth: declares `triplet`, so it receives it."""
  return triplet.truth


def test_truth_beats_copy_reference_on_every_kind(triplets, tmp_path):
  seen = {}

  def noisy(reference, driving):
    seen["shapes"] = reference.shape, driving.shape
    return copy_reference(reference, driving)

  report = evaluate(triplets, {"copy-reference": copy_reference, "oracle": oracle, "noisy": noisy}, tmp_path,
                    progress=False)
  assert seen["shapes"] == ((*SIZE, 3), (FRAMES, *SIZE, 3))
  assert list(report.summary) == ["moving", "all"] and list(report.summary["all"]) == ["blob", "humanoid", "all"]
  for kind, rows in report.summary["all"].items():
    floor, truth = rows["copy-reference"], rows["oracle"]
    assert floor["n"] == truth["n"] == (4 if kind == "all" else 2)
    assert truth["psnr"] == 100.0 and truth["ssim"] == 1.0 and truth["temporal"] == 0.0
    assert truth["iou"] > 0.75 and truth["centroid"] < 0.02  # segmentation against the exact silhouette
    assert floor["psnr"] < 40 and floor["ssim"] < 1 and floor["iou"] < truth["iou"] and floor["temporal"] > 0
    assert floor["gmsd"] > truth["gmsd"] == 0.0 and floor["centroid"] > truth["centroid"]
  assert report.summary["all"]["humanoid"]["oracle"]["pck_sil"] > 0.95
  assert "pck_sil" not in report.summary["all"]["blob"]["oracle"]
  moving = [name for name, entry in report.triplets.items() if entry["moving"]]
  assert all(report.triplets[name]["reference_iou"] < 0.5 for name in moving)
  assert moving and report.summary["moving"]["all"]["oracle"]["n"] == len(moving) < 4
  markdown = (tmp_path / "results.md").read_text()
  assert markdown.startswith("### Moving: reference-vs-truth silhouette IoU < 0.5 (frames 1..)\n")
  header = ("| kind | method | n | PSNR ↑ | PSNR-fg ↑ | SSIM ↑ | IoU ↑ | centroid ↓ | PCK-sil ↑ | GMSD ↓ "
            "| temporal ↓ |\n")
  assert header in markdown and "### All triplets" in markdown
  assert "| humanoid | oracle | 2 | 100.00 |" in markdown
  document = json.loads((tmp_path / "results.json").read_text())
  floor = report.summary["all"]["all"]["copy-reference"]
  assert document["summary"]["all"]["all"]["copy-reference"]["psnr"] == pytest.approx(floor["psnr"])
  assert len(document["triplets"]) == 4 and document["settings"]["group_by"] == "kind"
  assert document["settings"]["skip_first"] is True  # frame 0 is the reference: never scored by default
  assert set(document["definitions"]) == {"psnr", "psnr_fg", "ssim", "iou", "centroid", "pck_sil", "pck", "gmsd",
                                          "temporal", "spread_ratio"}
  grid = iio.imread(tmp_path / "grid.png")
  tile = 3 * SIZE[0]  # 32 px frames are scaled x3 to reach 96
  assert grid.shape[0] == 2 * (16 + 5 * (tile + 4))  # 2 kinds x (title + driving, 3 methods, truth)
  assert grid.shape[1] == 110 + (1 + FRAMES) * (3 * SIZE[1] + 4)
  videos = sorted(p.name for p in (tmp_path / "videos" / "oracle").iterdir())
  assert videos == sorted(f"{name}.npz" for name in report.triplets)


def test_cli_scores_results_folders(triplets, tmp_path, capsys):
  results = tmp_path / "mine"
  animate_triplets(oracle, triplets, results, progress=False)
  shifted = tmp_path / "shifted"
  shifted.mkdir()
  for folder in sorted(p for p in triplets.iterdir() if p.is_dir()):
    with np.load(folder / "truth.npz") as f:
      np.savez(shifted / f"{folder.name}.npz", video=np.roll(f["video"], 4, axis=2))
  out = tmp_path / "eval"
  assert cli.main(["--triplets", str(triplets), "--results", f"mine={results}", "--results", str(shifted),
                   "--baseline", "copy-reference", "--out", str(out), "--group-by", "pair", "--no-progress"]) == 0
  summary = json.loads((out / "results.json").read_text())["summary"]["all"]
  assert list(summary) == ["blob->blob", "humanoid->humanoid", "all"]
  scores = summary["all"]
  assert scores["mine"]["psnr"] == 100.0
  assert scores["shifted"]["psnr"] < 40 and scores["shifted"]["iou"] < scores["mine"]["iou"]
  assert "| all | shifted | 4 |" in capsys.readouterr().out


def test_user_triplets_and_extra_metric(tmp_path, monkeypatch):
  """A hand-made triplet: no meta, no background plate (estimated), an mp4 truth, keypoints."""
  identity, motion = S.sample_identity("humanoid", 9), S.sample_motion("walk", 9)
  clip = S.render(identity, motion, FRAMES, SIZE)
  folder = tmp_path / "mine" / "walker"
  folder.mkdir(parents=True)
  iio.imwrite(folder / "reference.jpg", clip.video[0])
  np.savez(folder / "driving.npz", clip.video)  # a single unnamed array
  media.write_video(folder / "truth.mp4", clip.video, S.DEFAULT_FPS)
  np.savez(folder / "truth.pose.npz", body=clip.body)
  results = tmp_path / "results"
  results.mkdir()
  truth = load_triplet(folder).truth
  np.savez(results / "walker.npz", video=truth)
  np.savez(results / "walker.pose.npz", body=clip.body)
  (tmp_path / "plugin.py").write_text(
      "def make(offset='0'):\n  return lambda result, truth: float(offset) + float((result == truth).mean())\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  out = tmp_path / "eval"
  assert cli.main(["--triplets", str(tmp_path / "mine"), "--results", str(results), "--out", str(out),
                   "--metric", "agree=plugin:make@10", "--no-progress"]) == 0
  scores = json.loads((out / "results.json").read_text())["summary"]["all"]["all"]["results"]
  assert scores["psnr"] == 100.0 and scores["pck"] == 1.0 and scores["agree"] == 11.0
  assert "| all | results | 1 |" in (out / "results.md").read_text() and "agree" in (out / "results.md").read_text()


def test_errors_at_the_edge(triplets, tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  assert cli.main(["--triplets", str(triplets), "--results", str(empty), "--out", str(tmp_path / "e")]) == 2
  assert f"no result for triplet blob-1000001__jump-1000002 in {empty}" in capsys.readouterr().err
  small = tmp_path / "small"
  small.mkdir()
  name = "blob-1000001__jump-1000002"
  np.savez(small / f"{name}.npz", video=np.zeros((3, *SIZE, 3), np.uint8))
  with pytest.raises(ValueError, match=rf"{name}.npz: shape \(3, 32, 48, 3\); expected \(5, 32, 48, 3\)"):
    evaluate(triplets, {"small": small}, progress=False)
  with pytest.raises(ValueError, match=r"animate returned float64 \(5, 32, 48, 3\) for triplet"):
    evaluate(triplets, {"bad": lambda r, d: np.zeros(d.shape)}, progress=False)
  assert cli.main(["--triplets", str(triplets), "--out", str(tmp_path / "e")]) == 2
  assert "nothing to score: give --results DIR and/or --baseline copy-reference" in capsys.readouterr().err
  assert cli.main(["--triplets", str(empty), "--baseline", "copy-reference", "--out", str(tmp_path / "e")]) == 2
  assert f"no triplets in {empty}" in capsys.readouterr().err
  with pytest.raises(ValueError, match="--metric=lpips: expected NAME=module:factory"):
    cli.load_metric("lpips")


def test_an_incomplete_triplet_is_named_and_skipped_or_refused(triplets, tmp_path, capsys, caplog):
  partial = tmp_path / "partial"
  for folder in sorted(p for p in triplets.iterdir() if p.is_dir())[:3]:
    (partial / folder.name).mkdir(parents=True)
    for part in folder.iterdir():
      (partial / folder.name / part.name).symlink_to(part)
  lacking = sorted(partial.iterdir())[1]
  for truth in lacking.glob("truth.*"):
    truth.unlink()
  out = tmp_path / "eval"
  assert cli.main(["--triplets", str(partial), "--baseline", "copy-reference", "--out", str(out), "--no-progress"]) == 0
  assert f"{lacking}: no truth" in caplog.text and "skipped" in caplog.text
  assert "| all | copy-reference | 2 |" in capsys.readouterr().out
  assert cli.main(["--triplets", str(partial), "--baseline", "copy-reference", "--out", str(out), "--strict"]) == 2
  assert capsys.readouterr().err == (f"error: {lacking}: no truth (expected reference.png, driving.mp4 and truth.npz "
                                     "or .mp4)\n")
  (lacking / "truth.npz").write_bytes(b"PK\x03\x04 not a zip")
  assert cli.main(["--triplets", str(partial), "--baseline", "copy-reference", "--out", str(out), "--no-progress"]) == 2
  assert capsys.readouterr().err == f"error: {lacking / 'truth.npz'}: not a readable .npz of arrays (BadZipFile)\n"


def test_moving_split_and_samples(triplets, tmp_path):
  """A method giving N samples is scored as its first sample (with the spread ratio) and as their
  mean; a results folder of `samples` the same; `moving_only` scores the moving split alone."""
  def jittered(reference, driving, *, samples, triplet):
    rng = np.random.default_rng(0)
    noise = rng.integers(-8, 9, (samples, *triplet.truth.shape))
    return np.clip(triplet.truth[None].astype(int) + noise, 0, 255).astype(np.uint8)

  report = evaluate(triplets, {"jittered": jittered}, tmp_path, samples=3, progress=False)
  rows = report.summary["all"]["all"]
  assert list(rows) == ["jittered", "jittered (mean of 3)"]
  assert rows["jittered (mean of 3)"]["psnr"] > rows["jittered"]["psnr"] + 3  # the mean of 3 cuts the noise
  # the truth at the samples' centre, not one more draw: the mean's error is var / N, the ratio N + 1
  assert 3.5 < rows["jittered"]["spread_ratio"] < 4.5
  with np.load(tmp_path / "videos" / "jittered" / f"{next(iter(report.triplets))}.npz") as f:
    assert f["samples"].shape == (3, FRAMES, *SIZE, 3)
  again = evaluate(triplets, {"folder": tmp_path / "videos" / "jittered"}, moving_only=True, progress=False)
  moving = [name for name, entry in report.triplets.items() if entry["moving"]]
  assert sorted(again.triplets) == sorted(moving)
  assert list(again.summary) == ["moving"] and "### All triplets" not in again.markdown
  assert again.summary["moving"]["all"]["folder (mean of 3)"]["psnr"] == pytest.approx(
      report.summary["moving"]["all"]["jittered (mean of 3)"]["psnr"])


def test_reference_iou_of_hand_made_masks():
  truth_mask = np.zeros((3, 4, 6), np.uint8)
  truth_mask[:, :2, :2] = 255  # frames 1 and 2: 4 pixels, 2 of them shared with the reference
  truth_mask[2, 2:, :] = 200
  reference = np.zeros((4, 6), np.uint8)
  reference[:2, 1:3] = 128
  triplet = load_triplet.__globals__["Triplet"]("t", None, None, None, None, {}, truth_mask=truth_mask,
                                                 reference_mask=reference)
  assert triplet.reference_iou == pytest.approx(np.mean([2 / 6, 2 / 18])) and triplet.moving
  reference[:] = 0
  reference[:2, :2] = 255
  triplet.reference_mask = reference
  assert triplet.reference_iou == pytest.approx(np.mean([1, 4 / 16])) and not triplet.moving
  assert np.isnan(load_triplet.__globals__["Triplet"]("t", None, None, None, None, {}).reference_iou)
