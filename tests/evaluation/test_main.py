"""The evaluate CLI and hook: synthetic triplets, the copy-reference floor, results folders, user
triplets, extra metrics, the table, JSON and picture files, and errors at the edge."""

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
                   motion_types=["dance", "jump"], progress=False)
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
  assert list(report.summary) == ["blob", "humanoid", "all"]
  for kind, rows in report.summary.items():
    floor, truth = rows["copy-reference"], rows["oracle"]
    assert floor["n"] == truth["n"] == (4 if kind == "all" else 2)
    assert truth["psnr"] == 100.0 and truth["ssim"] == 1.0 and truth["iou"] == 1.0 and truth["temporal"] == 0.0
    assert floor["psnr"] < 40 and floor["ssim"] < 1 and floor["iou"] < 0.95 and floor["temporal"] > 0
    assert floor["gmsd"] > truth["gmsd"] == 0.0
  markdown = (tmp_path / "results.md").read_text()
  assert markdown.startswith("| kind | method | n | PSNR ↑ | PSNR-fg ↑ | SSIM ↑ | GMSD ↓ | temporal ↓ | IoU ↑ |\n")
  assert "| humanoid | oracle | 2 | 100.00 |" in markdown
  document = json.loads((tmp_path / "results.json").read_text())
  floor = report.summary["all"]["copy-reference"]
  assert document["summary"]["all"]["copy-reference"]["psnr"] == pytest.approx(floor["psnr"])
  assert len(document["triplets"]) == 4 and document["settings"]["group_by"] == "kind"
  assert set(document["definitions"]) == {"psnr", "psnr_fg", "ssim", "gmsd", "temporal", "iou", "pck"}
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
  summary = json.loads((out / "results.json").read_text())["summary"]
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
  scores = json.loads((out / "results.json").read_text())["summary"]["all"]["results"]
  assert scores["psnr"] == 100.0 and scores["pck"] == 1.0 and scores["agree"] == 11.0
  assert "| all | results | 1 |" in (out / "results.md").read_text() and "agree" in (out / "results.md").read_text()


def test_errors_at_the_edge(triplets, tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  assert cli.main(["--triplets", str(triplets), "--results", str(empty), "--out", str(tmp_path / "e")]) == 2
  assert f"no result for triplet blob-1000001__dance-1000000 in {empty}" in capsys.readouterr().err
  small = tmp_path / "small"
  small.mkdir()
  name = "blob-1000001__dance-1000000"
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
