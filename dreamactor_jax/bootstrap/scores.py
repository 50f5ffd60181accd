"""Automatic scores of bootstrap pairs (PAPER.md section 4: the paper keeps pseudo pairs whose
Video-Bench scores average above 4.5, then checks them by hand; Video-Bench's MLLM judges are not
available here, so these are the stand-ins). Every score lies in 0..1, higher is better, so one
scale serves the per-score thresholds, their mean (`--min-score`) and stage 2's
`data.stage2_min_score`, which reads the same mean from the dataset.

- `temporal`: mean SSIM between consecutive frames of the result (`evaluation.metrics.ssim`,
  weight-free), clipped to 0..1. Flicker, noise and broken frames score low; fast motion lowers
  it a little.
- `color` (without CLIP): foreground colour-histogram intersection of each result frame with B's
  reference as the model saw it (fitted to the frame), mean over frames. Foreground: pixels that
  differ from the result's temporal median (its background plate, `metrics.foreground`); a side
  with under 1% foreground uses the whole image. Joint RGB histograms of 8 x 8 x 8 bins.
- `clip` (with a CLIP vision tower): cosine of the CLIP class tokens (penultimate block, as Wan
  reads CLIP) of `CLIP_FRAMES` evenly spaced result frames and of B's fitted reference, mean over
  those frames, clipped to 0..1.
- `pose` (with a pose model): PCK@0.1 (`metrics.pck`) of the body keypoints the ONNX pose model
  finds in each result frame against the keypoints A's skeleton was drawn from; joints below the
  confidence threshold are absent on both sides. Omitted when A's clip shows no joint.
- `self`: 1 on self pairs (the clip under a colour augmentation drives itself), their only score.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dreamactor_jax import media
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.evaluation import metrics
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder, preprocess

SCORES = ("temporal", "color", "clip", "pose", "self")
DEFINITIONS = {
    "temporal": "mean SSIM of consecutive result frames, clipped to 0..1",
    "color": "foreground RGB-histogram (8^3 bins) intersection of each result frame with B's reference, mean",
    "clip": "cosine of CLIP class tokens of result frames and B's reference, mean, clipped to 0..1",
    "pose": "PCK@0.1 of the pose model's body keypoints on the result against A's skeleton keypoints",
    "self": "1 on self pairs (the clip, colour-augmented, drives itself)",
}
CLIP_FRAMES = 8  # result frames CLIP scores (evenly spaced)
HISTOGRAM_BINS = 8  # per channel
MIN_FOREGROUND = 0.01  # a mask covering less of the frame falls back to the whole frame
PCK_ALPHA = 0.1


def temporal_consistency(video: np.ndarray) -> float:
  """uint8 `[T, H, W, 3]` (H, W >= 11) -> mean SSIM of consecutive frames in 0..1; NaN for one frame."""
  if len(video) < 2:
    return float("nan")
  return float(np.clip(metrics.ssim(video[1:], video[:-1]).mean(), 0.0, 1.0))


def _histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Normalised joint RGB histogram `[bins^3]` of the pixels of `mask` (all if it is nearly empty)."""
  if mask.mean() < MIN_FOREGROUND:
    mask = np.ones_like(mask)
  bins = (image[mask] // (256 // HISTOGRAM_BINS)).astype(np.int64)  # N 3
  counts = np.bincount((bins[:, 0] * HISTOGRAM_BINS + bins[:, 1]) * HISTOGRAM_BINS + bins[:, 2],
                       minlength=HISTOGRAM_BINS**3)
  return counts / counts.sum()


def color_similarity(video: np.ndarray, reference: np.ndarray) -> float:
  """uint8 result `[T, H, W, 3]` and reference `[H, W, 3]` -> foreground histogram intersection in 0..1."""
  plate = metrics.estimate_background(video)
  reference_histogram = _histogram(reference, metrics.foreground(reference, plate))
  masks = metrics.foreground(video, plate)
  return float(np.mean([np.minimum(reference_histogram, _histogram(frame, mask)).sum()
                        for frame, mask in zip(video, masks)]))


@functools.partial(jax.jit, static_argnums=0)
def _class_tokens(graphdef: nnx.GraphDef, state: nnx.State, images: jax.Array) -> jax.Array:
  """images `[N, H, W, 3]` in -1..1 -> unit-norm CLIP class tokens `[N, D]`."""
  clip = nnx.merge(graphdef, state)
  tokens = clip(preprocess(images, image_size=clip.config.image_size))[:, 0]
  return tokens / jnp.linalg.norm(tokens, axis=-1, keepdims=True)


def clip_similarity(clip: CLIPVisionEncoder, video: np.ndarray, reference: np.ndarray) -> float:
  """uint8 result `[T, H, W, 3]` and reference `[H, W, 3]` -> mean class-token cosine, clipped to 0..1."""
  picks = np.unique(np.linspace(0, len(video) - 1, CLIP_FRAMES).round().astype(int))
  images = media.to_unit(np.concatenate([reference[None], video[picks]]))
  tokens = np.asarray(_class_tokens(*nnx.split(clip), jnp.asarray(images)))
  return float(np.clip((tokens[1:] @ tokens[0]).mean(), 0.0, 1.0))


def pose_agreement(estimator: Any, video: np.ndarray, body: np.ndarray, *, threshold: float = 0.3) -> float:
  """PCK@0.1 of `estimator`'s keypoints (`data.pose.PoseEstimator`: frame -> body `[1, 18, 3]`, ...) on
  each frame of uint8 `[T, H, W, 3]` against `body` `[T, P, 18, 3]` (absent joints: confidence 0)."""
  found = np.stack([estimator(frame)[0] for frame in video])  # T 1 18 3
  found[..., 2] = np.where(found[..., 2] >= threshold, found[..., 2], 0.0)
  return metrics.pck(found, body, alpha=PCK_ALPHA)


@dataclasses.dataclass
class PairScorer:
  """The scores of a rendered pair: temporal, clip (given a CLIP tower) or color, pose (given an estimator)."""

  clip: CLIPVisionEncoder | None = None
  pose: Any = None  # data.pose.PoseEstimator
  pose_threshold: float = PoseDrawing.threshold  # the stage-1 bundle's (bootstrap.run.pose_drawing)

  @property
  def names(self) -> tuple[str, ...]:
    return ("temporal", "clip" if self.clip is not None else "color") + (("pose",) if self.pose is not None else ())

  def __call__(self, result: np.ndarray, reference: np.ndarray, body: np.ndarray | None) -> dict[str, float]:
    """result uint8 `[T, H, W, 3]`, B's reference fitted to `[H, W, 3]`, A's keypoints `[T, P, 18, 3]`."""
    scores = {"temporal": temporal_consistency(result)}
    if self.clip is not None:
      scores["clip"] = clip_similarity(self.clip, result, reference)
    else:
      scores["color"] = color_similarity(result, reference)
    if self.pose is not None and body is not None:
      scores["pose"] = pose_agreement(self.pose, result, body, threshold=self.pose_threshold)
    return {name: value for name, value in scores.items() if np.isfinite(value)}


def mean_score(scores: Mapping[str, float]) -> float:
  """The mean of a pair's scores (what `--min-score` and `data.stage2_min_score` compare); NaN if none."""
  return float(np.mean(list(scores.values()))) if scores else float("nan")


def parse_thresholds(text: str) -> dict[str, float]:
  """`"temporal=0.6,pose=0.5"` -> `{"temporal": 0.6, "pose": 0.5}`."""
  thresholds = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, _, value = item.partition("=")
    name = name.strip()
    if name not in SCORES or name == "self":
      raise ValueError(f"--thresholds: unknown score {name!r}; expected some of temporal, color, clip, pose")
    try:
      thresholds[name] = float(value)
    except ValueError:
      raise ValueError(f"--thresholds: {item!r} is not name=number") from None
  return thresholds


def passes(scores: Mapping[str, float], thresholds: Mapping[str, float], min_score: float) -> bool:
  """Whether a pair clears every threshold of a score it has and `min_score` on the mean. Self pairs
  (score `self`) pass: they are exact by construction."""
  if "self" in scores:
    return True
  if any(scores.get(name, -np.inf) < value for name, value in thresholds.items()):
    return False
  return bool(mean_score(scores) >= min_score)
