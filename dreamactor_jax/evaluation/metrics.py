"""Scores of a result video against its ground truth (issue 8: cross-identity animation with truth).

All inputs are uint8 videos [T, H, W, 3] of equal shape. Per-frame scores are averaged over frames.

- `psnr`: 10 log10(255^2 / MSE), the MSE over all frames, pixels and channels (so one perfect
  frame, e.g. the given reference, does not dominate), capped at `PSNR_CAP` dB (identical
  videos), higher is better.
- `psnr_fg`: the same over the character's pixels: where the exact truth silhouette (or, without
  one, the truth's background-difference segmentation) or the result's segmentation shows a
  character: appearance error without the static background that dominates `psnr`.
- `ssim`: scikit-image's `structural_similarity` per frame (RGB, data range 255, Gaussian window
  sigma 1.5, population covariance: Wang et al. 2004's settings), higher is better.
- `gmsd`: gradient magnitude similarity deviation (Xue et al. 2014), a weight-free structural
  distance: luma, 2x2 average-pooled, Prewitt gradients, c = 170; 0 = identical, lower is better.
- `temporal`: mean |(r[t] - r[t-1]) - (g[t] - g[t-1])| / 255 over frames and pixels: how far the
  result's frame-to-frame changes are from the truth's (flicker, frozen or wrong motion); 0 =
  identical, lower is better.
- `iou`: motion accuracy: per-frame intersection over union of the result's character silhouette
  (`foreground`: any channel differs from the background plate by more than a threshold) and the
  truth's exact silhouette (coverage >= 0.5; without one, the truth's own segmentation, so an
  identical video scores 1); frames where both are empty count 1.
- `centroid`: motion accuracy: per-frame distance between the centroids of those two silhouettes,
  in frame heights, averaged over the frames where the truth shows a character; a frame where
  the result shows none counts 1. 0 = on track, lower is better.
- `pck_sil`: for humanoids, the fraction of the truth's visible OpenPose body keypoints that lie
  within `alpha` x the truth person's box size (max side) of the result's silhouette: limbs
  where the truth has them, with no keypoint detector needed.
- `pck`: when result keypoints are given, the fraction of the truth's visible body keypoints that
  the result places within `alpha` x the truth person's box size.
- `spread_ratio` (`sample_scores`, N > 1 samples of one method): the samples' spread around their
  mean over the mean's own error, each scaled to estimate the per-sample variance (N/(N-1) and
  N/(N+1)): about 1 when the truth is like one more sample, below 1 for over-confident samples.

`score_video` scores one video; `sample_scores` scores N samples of a method twice, the first
sample alone (what a user gets) and their pixel mean, plus the spread ratio.

Extra metrics plug in as `FrameMetric` callables (e.g. LPIPS with weights the user supplies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

PSNR_CAP = 100.0
MASK_THRESHOLD = 0.1  # background difference (0..1, any channel) above which a pixel is character
TRUTH_COVERAGE = 0.5  # exact silhouettes: a pixel at least half covered is character
HIGHER_IS_BETTER = {"psnr": True, "psnr_fg": True, "ssim": True, "iou": True, "centroid": False, "pck_sil": True,
                    "pck": True, "gmsd": False, "temporal": False, "spread_ratio": None}  # None: best at 1
DEFINITIONS = {  # one line each, written into results.json
    "psnr": f"dB, MSE pooled over all frames and pixels, capped at {PSNR_CAP:.0f}",
    "psnr_fg": "dB over the pixels where the exact truth silhouette or the result's segmentation shows a character",
    "ssim": "scikit-image structural_similarity per frame (RGB, Gaussian sigma 1.5), mean over frames",
    "iou": "per frame IoU of the result's background-difference silhouette and the exact truth silhouette, mean",
    "centroid": "per frame distance of the two silhouettes' centroids in frame heights (no result character: 1), mean",
    "pck_sil": "fraction of the truth's visible body keypoints within 0.1 x the person's box of the result's "
               "silhouette",
    "pck": "fraction of the truth's visible body keypoints the result places within 0.1 x the person's box",
    "gmsd": "gradient magnitude similarity deviation (Xue et al. 2014) per frame, mean; 0 = identical",
    "temporal": "mean |frame difference of the result - that of the truth| / 255; 0 = identical",
    "spread_ratio": "N samples: N/(N-1) x their mean squared spread / (N/(N+1) x their mean's squared error); 1 = "
                    "calibrated",
}

# (result uint8 [T, H, W, 3], truth uint8 [T, H, W, 3]) -> one score for the video.
FrameMetric = Callable[[np.ndarray, np.ndarray], float]


def _check(result: np.ndarray, truth: np.ndarray) -> None:
  if result.shape != truth.shape or result.ndim != 4 or result.shape[-1] != 3:
    raise ValueError(f"result {result.shape} and truth {truth.shape} must both be [T, H, W, 3]")


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
  """PSNR in dB of the whole video (MSE pooled over frames), capped at PSNR_CAP."""
  _check(result, truth)
  mse = float(np.mean((result.astype(np.float64) - truth) ** 2))
  return PSNR_CAP if mse == 0 else min(10 * np.log10(255.0**2 / mse), PSNR_CAP)


def masked_psnr(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
  """PSNR over the pixels of `region` (bool [T, H, W]) pooled over frames; NaN if it is empty."""
  _check(result, truth)
  if not region.any():
    return float("nan")
  mse = float(((result.astype(np.float64) - truth) ** 2).mean(-1)[region].mean())
  return PSNR_CAP if mse == 0 else min(10 * np.log10(255.0**2 / mse), PSNR_CAP)


def ssim(result: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """[T] scikit-image SSIM per frame (frames need H, W >= 11 for the Gaussian window)."""
  from skimage.metrics import structural_similarity

  _check(result, truth)
  return np.array([structural_similarity(t, r, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False) for r, t in zip(result, truth)])


def _luma_gradients(video: np.ndarray) -> np.ndarray:
  """[T, H/2, W/2] Prewitt gradient magnitude of the 2x2 average-pooled luma (0..255)."""
  from scipy.ndimage import correlate1d

  luma = video.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  frames, height, width = luma.shape
  luma = luma[:, :height // 2 * 2, :width // 2 * 2].reshape(frames, height // 2, 2, width // 2, 2).mean((2, 4))
  smooth, diff = np.ones(3) / 3, np.array([1.0, 0.0, -1.0])
  gx = correlate1d(correlate1d(luma, diff, axis=2, mode="nearest"), smooth, axis=1, mode="nearest")
  gy = correlate1d(correlate1d(luma, diff, axis=1, mode="nearest"), smooth, axis=2, mode="nearest")
  return np.sqrt(gx * gx + gy * gy)


def gmsd(result: np.ndarray, truth: np.ndarray, c: float = 170.0) -> np.ndarray:
  """[T] gradient magnitude similarity deviation per frame (0 = identical)."""
  _check(result, truth)
  m_result, m_truth = _luma_gradients(result), _luma_gradients(truth)
  similarity = (2 * m_result * m_truth + c) / (m_result**2 + m_truth**2 + c)
  return similarity.std(axis=(1, 2))


def temporal_error(result: np.ndarray, truth: np.ndarray) -> float:
  """Mean |temporal difference of the result - that of the truth| / 255; NaN for one frame."""
  _check(result, truth)
  if result.shape[0] < 2:
    return float("nan")
  return float(np.abs(np.diff(result.astype(np.float32), axis=0) - np.diff(truth.astype(np.float32), axis=0)).mean()
               / 255)


def estimate_background(truth: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3]: the per-pixel temporal median of the truth, the background plate of a
  static-camera video where the character moves (used when a triplet has no background.npz)."""
  return np.median(truth, axis=0).astype(np.uint8)


def foreground(video: np.ndarray, background: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
  """bool [T, H, W]: pixels whose colour differs from the background plate ([T or 1, H, W, 3] or
  [H, W, 3]) by more than `threshold` (0..1) in any channel."""
  difference = np.abs(video.astype(np.int16) - background.astype(np.int16)).max(-1)
  return difference > threshold * 255


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[T] intersection over union of two bool [T, H, W] masks; 1 where both are empty."""
  inter = (a & b).sum(axis=(1, 2))
  union = (a | b).sum(axis=(1, 2))
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def pck(result_body: np.ndarray, truth_body: np.ndarray, alpha: float = 0.1) -> float:
  """Fraction of the truth's visible keypoints ([T, P, K, 3]: x, y, confidence) that the result
  places within alpha x max(box width, box height) of the truth person; persons matched in
  order, missing result persons or keypoints count as misses. NaN if the truth shows none."""
  if result_body.shape[0] != truth_body.shape[0] or result_body.shape[2:] != truth_body.shape[2:]:
    raise ValueError(f"keypoints {result_body.shape} vs truth {truth_body.shape}: expected [T, P, K, 3] with the "
                     "same T and K")
  persons = min(result_body.shape[1], truth_body.shape[1])
  visible = truth_body[..., 2] > 0  # T P K
  hits = 0
  for p in range(persons):
    truth, result, seen = truth_body[:, p], result_body[:, p], visible[:, p]
    xy = np.where(seen[..., None], truth[..., :2], np.nan)
    with np.errstate(all="ignore"):
      size = np.nanmax(np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1), axis=-1)  # [T]
    distance = np.linalg.norm(result[..., :2] - truth[..., :2], axis=-1)
    hits += int((seen & (result[..., 2] > 0) & (distance <= alpha * np.nan_to_num(size)[:, None])).sum())
  total = int(visible.sum())
  return hits / total if total else float("nan")


def centroid_error(result_mask: np.ndarray, truth_mask: np.ndarray) -> float:
  """Mean distance, in frame heights, between the centroids of two bool [T, H, W] silhouettes over
  the frames where the truth shows a character (an empty result frame counts 1); NaN if none does."""
  def centre(mask: np.ndarray) -> np.ndarray:
    return np.array([axis.mean() for axis in np.nonzero(mask)])

  errors = []
  for result, truth in zip(result_mask, truth_mask):
    if truth.any():
      moved = np.linalg.norm(centre(result) - centre(truth)) / truth.shape[0] if result.any() else 1.0
      errors.append(float(moved))
  return float(np.mean(errors)) if errors else float("nan")


def pck_silhouette(result_mask: np.ndarray, truth_body: np.ndarray, alpha: float = 0.1) -> float:
  """Fraction of the truth's visible keypoints ([T, P, K, 3]: x, y pixels, confidence) lying within
  alpha x max(box width, box height) of their person of the bool [T, H, W] result silhouette; NaN
  if the truth shows none."""
  from scipy.ndimage import distance_transform_edt

  if result_mask.shape[0] != truth_body.shape[0]:
    raise ValueError(f"silhouette {result_mask.shape} vs keypoints {truth_body.shape}: expected the same T")
  height, width = result_mask.shape[1:]
  visible = truth_body[..., 2] > 0  # T P K
  hits = 0
  for t in range(result_mask.shape[0]):
    if not visible[t].any():
      continue
    # distance of every pixel to the silhouette (infinite when the result shows nothing)
    distance = distance_transform_edt(~result_mask[t]) if result_mask[t].any() else np.full((height, width), np.inf)
    for person, seen in zip(truth_body[t], visible[t]):
      if not seen.any():
        continue
      xy = person[seen, :2]
      size = float((xy.max(0) - xy.min(0)).max())
      x = np.clip(np.round(xy[:, 0]).astype(int), 0, width - 1)
      y = np.clip(np.round(xy[:, 1]).astype(int), 0, height - 1)
      hits += int((distance[y, x] <= alpha * size).sum())
  total = int(visible.sum())
  return hits / total if total else float("nan")


def score_video(result: np.ndarray, truth: np.ndarray, *, background: np.ndarray | None = None,
                truth_mask: np.ndarray | None = None, truth_body: np.ndarray | None = None,
                result_body: np.ndarray | None = None, skip_first: bool = False,
                mask_threshold: float = MASK_THRESHOLD,
                extra: Mapping[str, FrameMetric] | None = None) -> dict[str, float]:
  """All scores of one result against its truth (see the module docstring); `background` is the
  plate for the silhouettes ([T or 1, H, W, 3] or [H, W, 3], default the truth's temporal
  median); `truth_mask` the exact truth silhouette (coverage, uint8 0..255 or float 0..1
  [T, H, W]); `skip_first` leaves frame 0 out (e.g. when it is the given reference)."""
  _check(result, truth)
  if background is None:
    background = estimate_background(truth)
  elif background.ndim == 4 and background.shape[0] not in (1, truth.shape[0]):
    raise ValueError(f"background has {background.shape[0]} frames; expected 1 or {truth.shape[0]}")
  if truth_mask is not None and truth_mask.shape != truth.shape[:3]:
    raise ValueError(f"truth mask {truth_mask.shape}; expected {truth.shape[:3]} like the truth")
  if skip_first and truth.shape[0] < 2:
    raise ValueError("skip_first needs at least 2 frames")
  if skip_first:  # every per-frame input loses frame 0 (a one-frame or [H, W, 3] plate serves all)
    result, truth = result[1:], truth[1:]
    background = background[1:] if background.ndim == 4 and background.shape[0] > 1 else background
    truth_mask, truth_body, result_body = (None if x is None else x[1:] for x in (truth_mask, truth_body, result_body))
  mask_result = foreground(result, background, mask_threshold)
  if truth_mask is None:
    mask_truth = foreground(truth, background, mask_threshold)
  else:
    mask_truth = truth_mask >= TRUTH_COVERAGE * (255 if truth_mask.dtype == np.uint8 else 1)
  scores = {
      "psnr": psnr(result, truth),
      "psnr_fg": masked_psnr(result, truth, mask_result | mask_truth),
      "ssim": float(ssim(result, truth).mean()),
      "iou": float(iou(mask_result, mask_truth).mean()),
      "centroid": centroid_error(mask_result, mask_truth),
      "gmsd": float(gmsd(result, truth).mean()),
      "temporal": temporal_error(result, truth),
  }
  if truth_body is not None:
    scores["pck_sil"] = pck_silhouette(mask_result, truth_body)
    if result_body is not None:
      scores["pck"] = pck(result_body, truth_body)
  for name, metric in (extra or {}).items():
    scores[name] = float(metric(result, truth))
  return scores


def spread_ratio(samples: np.ndarray, truth: np.ndarray) -> float:
  """N >= 2 samples uint8 [N, T, H, W, 3] of one method against the truth: (N/(N-1)) x their mean
  squared distance to their pixel mean, over (N/(N+1)) x the mean's squared error. If the truth
  were one more draw from the samples' distribution both would estimate its variance: 1."""
  count = samples.shape[0]
  if count < 2:
    raise ValueError(f"spread_ratio needs at least 2 samples, got {count}")
  values = samples.astype(np.float64)
  mean = values.mean(0)
  spread = float(((values - mean) ** 2).mean()) * count / (count - 1)
  error = float(((mean - truth) ** 2).mean()) * count / (count + 1)
  return spread / error if error > 0 else float("nan")


def sample_scores(samples: np.ndarray, truth: np.ndarray, *, skip_first: bool = False,
                  **kw) -> tuple[dict[str, float], dict[str, float] | None]:
  """N samples uint8 [N, T, H, W, 3] of one method: (the first sample's `score_video` scores, plus
  `spread_ratio` when N > 1; the scores of the samples' pixel mean, rounded to uint8, or None for
  one sample). `kw` go to `score_video`."""
  if samples.ndim != 5:
    raise ValueError(f"samples {samples.shape}; expected [N, T, H, W, 3]")
  single = score_video(samples[0], truth, skip_first=skip_first, **kw)
  if samples.shape[0] == 1:
    return single, None
  mean = np.round(samples.astype(np.float64).mean(0)).astype(np.uint8)
  start = 1 if skip_first else 0
  single["spread_ratio"] = spread_ratio(samples[:, start:], truth[start:])
  return single, score_video(mean, truth, skip_first=skip_first, **kw)


def aggregate(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """Mean of each metric over videos (NaNs ignored; a metric no video has is left out), plus n."""
  summary: dict[str, float] = {"n": len(scores)}
  names = list(dict.fromkeys(name for s in scores for name in s))
  for name in names:
    values = np.array([s.get(name, np.nan) for s in scores], np.float64)
    if np.isfinite(values).any():
      summary[name] = float(np.nanmean(values))
  return summary
