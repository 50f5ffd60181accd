"""Metrics against known cases: identical, noised, shifted, frozen videos; masks; keypoints; samples."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from dreamactor_jax.evaluation import metrics as M


def _video(frames=5, height=24, width=40, seed=0):
  """A textured background with a bright square moving right: uint8 [T, H, W, 3], and the plate."""
  rng = np.random.default_rng(seed)
  plate = (rng.uniform(60, 100, (height, width, 3))).astype(np.uint8)
  video = np.repeat(plate[None], frames, 0)
  for t in range(frames):
    video[t, 8:16, 4 + 5 * t:12 + 5 * t] = [230, 40, 40]
  return video, plate


def test_identical_videos_score_perfectly():
  video, plate = _video()
  scores = M.score_video(video, video.copy(), background=plate)
  assert scores == {"psnr": M.PSNR_CAP, "psnr_fg": M.PSNR_CAP, "ssim": 1.0, "gmsd": 0.0, "temporal": 0.0,
                    "iou": 1.0, "centroid": 0.0}


def test_noise_and_shift_score_worse():
  truth, plate = _video()
  rng = np.random.default_rng(1)
  noisy = np.clip(truth + rng.normal(0, 6, truth.shape), 0, 255).astype(np.uint8)
  shifted = np.roll(truth, 3, axis=2)
  clean, noised, moved = (M.score_video(v, truth, background=plate) for v in (truth, noisy, shifted))
  for scores in (noised, moved):
    assert scores["psnr"] < 40 and scores["ssim"] < 0.99 and scores["gmsd"] > 0.0 and scores["temporal"] > 0
  assert moved["iou"] < 0.8 < noised["iou"]  # noise barely moves the silhouette; a shift does
  assert 10 * np.log10(255**2 / np.mean((noisy.astype(float) - truth) ** 2)) == pytest.approx(noised["psnr"])


def test_ssim_is_scikit_images():
  truth, _ = _video()
  other = np.roll(truth, 1, axis=1)
  expected = [structural_similarity(t, r, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False) for r, t in zip(other, truth)]
  np.testing.assert_allclose(M.ssim(other, truth), expected)


def test_gmsd_ignores_brightness_but_not_structure():
  truth, _ = _video()
  brighter = (truth.astype(int) + 20).astype(np.uint8)  # the same gradients everywhere
  assert M.gmsd(brighter, truth).max() == pytest.approx(0.0, abs=1e-12)
  assert M.psnr(brighter, truth) == pytest.approx(10 * np.log10(255**2 / 400))
  blur = lambda v: ((v.astype(int) + np.roll(v, 1, 2) + np.roll(v, -1, 2)) // 3).astype(np.uint8)  # noqa: E731
  once, twice = M.gmsd(blur(truth), truth), M.gmsd(blur(blur(truth)), truth)
  assert once.min() > 0.005 and (twice > once).all()  # more blur, more structural distance


def test_temporal_error_of_a_frozen_video():
  truth, _ = _video()
  frozen = np.repeat(truth[:1], len(truth), 0)
  expected = np.abs(np.diff(truth.astype(float), axis=0)).mean() / 255
  assert M.temporal_error(frozen, truth) == pytest.approx(expected)
  assert np.isnan(M.temporal_error(truth[:1], truth[:1]))


def test_silhouettes_and_iou():
  truth, plate = _video()
  mask = M.foreground(truth, plate)
  assert mask.sum(axis=(1, 2)).tolist() == [64] * 5 and mask[0, 8:16, 4:12].all()
  half = mask.copy()
  half[:, :, :8] = False  # keep the square's right half in frame 0
  assert M.iou(half, mask)[0] == pytest.approx(32 / 64)
  empty = np.zeros_like(mask)
  assert M.iou(empty, empty).tolist() == [1.0] * 5
  np.testing.assert_array_equal(M.estimate_background(truth), plate)  # no pixel is covered in 3 of 5 frames
  scores = M.score_video(np.repeat(truth[:1], 5, 0), truth)  # plate estimated from the truth
  assert scores["iou"] < 0.4 and scores["psnr_fg"] < scores["psnr"]


def test_skip_first():
  truth, plate = _video()
  start_only = truth.copy()
  start_only[1:] = plate  # right at frame 0, character gone after
  full, skipped = (M.score_video(start_only, truth, background=plate, skip_first=s) for s in (False, True))
  assert skipped["iou"] == 0.0 and full["iou"] == pytest.approx(0.2)
  assert skipped["psnr"] < full["psnr"]


def _square_mask(frames=5, height=24, width=40, shift=0):
  """uint8 [T, H, W] exact coverage of `_video`'s square, moved `shift` columns right."""
  mask = np.zeros((frames, height, width), np.uint8)
  for t in range(frames):
    mask[t, 8:16, 4 + 5 * t + shift:12 + 5 * t + shift] = 255
  return mask


def test_exact_truth_mask_iou_centroid_and_character_psnr():
  truth, plate = _video()
  exact = _square_mask()
  assert M.score_video(truth, truth, background=plate, truth_mask=exact)["iou"] == 1.0
  # the truth's silhouette 2 columns right of what the pixels show: 8 x 6 shared of 8 x 10
  off = M.score_video(truth, truth, background=plate, truth_mask=_square_mask(shift=2))
  assert off["iou"] == pytest.approx(48 / 80) and off["centroid"] == pytest.approx(2 / 24)
  # partial coverage counts from one half: a 127/255 column is background, 128 is character
  edge = exact.copy()
  edge[:, 8:16, 0] = 127
  assert M.score_video(truth, truth, background=plate, truth_mask=edge)["iou"] == 1.0
  frozen = np.repeat(truth[:1], 5, 0)  # copy the reference: the square stays at columns 4..11
  scores = M.score_video(frozen, truth, background=plate, truth_mask=exact, skip_first=True)
  assert scores["centroid"] == pytest.approx(np.mean([5, 10, 15, 20]) / 24)  # frames 1..4, 5 columns a frame
  assert scores["iou"] == pytest.approx(np.mean([24 / 104, 0, 0, 0]))
  empty = M.score_video(np.repeat(plate[None], 5, 0), truth, background=plate, truth_mask=exact)
  assert empty["centroid"] == 1.0 and empty["iou"] == 0.0  # no character drawn: one frame height a frame
  # character PSNR: an error off both silhouettes leaves it at the cap; one on the body is pooled over them
  off_body, on_body = truth.copy(), truth.copy()
  off_body[2, 0, 0, 0] += 20  # under the segmentation threshold (25.5): still background
  on_body[2, 10, 15, 1] += 30  # frame 2's square spans columns 14..21
  assert M.score_video(off_body, truth, background=plate, truth_mask=exact)["psnr_fg"] == M.PSNR_CAP
  expected = 10 * np.log10(255**2 / (30**2 / 3 / (5 * 64)))
  assert M.score_video(on_body, truth, background=plate, truth_mask=exact)["psnr_fg"] == pytest.approx(expected)
  with pytest.raises(ValueError, match=r"truth mask \(4, 24, 40\); expected \(5, 24, 40\)"):
    M.score_video(truth, truth, truth_mask=exact[:4])


def test_pck_against_the_result_silhouette():
  truth, plate = _video()
  body = np.zeros((5, 1, 18, 3), np.float32)  # per frame: the square's centre, 1 and 16 px right of its edge
  for t in range(5):
    body[t, 0, :3] = [[8 + 5 * t, 12, 1], [13 + 5 * t, 12, 1], [28 + 5 * t, 12, 1]]
  # box 20 px wide: hits within 2 px of the silhouette (last column 11 + 5t)
  assert M.pck_silhouette(M.foreground(truth, plate), body) == pytest.approx(2 / 3)
  assert M.score_video(truth, truth, background=plate, truth_body=body)["pck_sil"] == pytest.approx(2 / 3)
  assert M.pck_silhouette(np.zeros((5, 24, 40), bool), body) == 0.0
  assert np.isnan(M.pck_silhouette(M.foreground(truth, plate), np.zeros_like(body)))


def test_samples_single_mean_and_spread_ratio():
  truth = np.zeros((3, 16, 16, 3), np.uint8)
  samples = np.stack([np.full_like(truth, 10), np.full_like(truth, 30)])
  # spread 100 x 2/1 over (mean 20)^2 x 2/3
  assert M.spread_ratio(samples, truth) == pytest.approx(200 / (400 * 2 / 3))
  single, mean = M.sample_scores(samples, truth, skip_first=True, background=truth)
  assert single["psnr"] == pytest.approx(10 * np.log10(255**2 / 100))
  assert mean["psnr"] == pytest.approx(10 * np.log10(255**2 / 400)) and "spread_ratio" not in mean
  assert single["spread_ratio"] == pytest.approx(0.75)
  draws = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16, 3)).astype(np.uint8)
  assert M.spread_ratio(draws[:4], draws[4]) == pytest.approx(1.0, abs=0.05)  # the truth one more draw: calibrated
  alone, none = M.sample_scores(samples[:1], truth, background=truth)
  assert none is None and "spread_ratio" not in alone and alone["psnr"] == single["psnr"]
  with pytest.raises(ValueError, match="spread_ratio needs at least 2 samples, got 1"):
    M.spread_ratio(samples[:1], truth)


def test_pck():
  rng = np.random.default_rng(0)
  truth = np.concatenate([rng.uniform(0, 100, (3, 1, 18, 2)), np.ones((3, 1, 18, 1))], -1).astype(np.float32)
  truth[:, :, 0, 2] = 0  # the nose unseen: not counted
  assert M.pck(truth, truth) == 1.0
  near = truth.copy()
  near[..., :2] += 2.0  # ~2.8 px off, well within 0.1 x a ~100 px box
  assert M.pck(near, truth) == 1.0
  far = truth.copy()
  far[..., 0] += 50
  assert M.pck(far, truth) == 0.0
  missing = truth.copy()
  missing[:, :, 1:10, 2] = 0  # 9 of the 17 visible keypoints not found
  assert M.pck(missing, truth) == pytest.approx(8 / 17)
  assert M.pck(truth[:, :0], truth) == 0.0  # no person found
  scores = M.score_video(*[_video(frames=3)[0]] * 2, truth_body=truth, result_body=near)
  assert scores["pck"] == 1.0
  with pytest.raises(ValueError, match=r"keypoints \(2, 1, 18, 3\) vs truth \(3, 1, 18, 3\)"):
    M.pck(truth[:2], truth)


def test_extra_metrics_and_aggregate():
  truth, plate = _video()
  scores = M.score_video(truth, truth, background=plate, extra={"mean_abs": lambda r, t: float(np.abs(r - t).mean())})
  assert scores["mean_abs"] == 0.0
  summary = M.aggregate([{"psnr": 20.0, "pck": float("nan")}, {"psnr": 30.0, "pck": 0.5}, {"psnr": 40.0}])
  assert summary == {"n": 3, "psnr": 30.0, "pck": 0.5}
  assert "pck" not in M.aggregate([{"psnr": 1.0, "pck": float("nan")}])


def test_shape_errors():
  truth, _ = _video()
  with pytest.raises(ValueError, match=r"result \(3, 24, 40, 3\) and truth \(5, 24, 40, 3\) must both be"):
    M.score_video(truth[:3], truth)
  with pytest.raises(ValueError, match="background has 2 frames; expected 1 or 5"):
    M.score_video(truth, truth, background=truth[:2])
