"""The bootstrap's pair scores, thresholds and review file."""

import numpy as np
import pytest
from flax import nnx

from conftest import numpy_random_model
from dreamactor_jax.bootstrap import review
from dreamactor_jax.bootstrap import scores as P
from dreamactor_jax.data.pose import PoseEstimator
from dreamactor_jax.models import CLIPVisionEncoder
from tests.data.test_pose import simcc_model
from tiny_bundle import CLIP


def moving_square(colour, frames=6, height=32, width=48, background=128):
  """A square of `colour` moving right over a plain background."""
  video = np.full((frames, height, width, 3), background, np.uint8)
  for t in range(frames):
    video[t, 10:20, 4 + 6 * t:14 + 6 * t] = colour
  return video


def test_temporal_consistency():
  rng = np.random.default_rng(0)
  still = np.repeat(rng.integers(0, 256, (1, 24, 40, 3), np.uint8), 4, axis=0)
  assert P.temporal_consistency(still) == pytest.approx(1.0)
  assert P.temporal_consistency(rng.integers(0, 256, (4, 24, 40, 3), np.uint8)) < 0.1
  assert 0.5 < P.temporal_consistency(moving_square((255, 0, 0))) < 1.0
  assert np.isnan(P.temporal_consistency(still[:1]))


def test_color_similarity_compares_the_moving_foreground():
  red, green = moving_square((220, 30, 30)), moving_square((30, 220, 30))
  reference = red[2]
  assert P.color_similarity(np.repeat(reference[None], 5, 0), reference) == pytest.approx(1.0)  # no motion: whole
  assert P.color_similarity(red, reference) == pytest.approx(1.0)
  # The grey background is 90% of every frame; only the foreground counts.
  assert P.color_similarity(green, reference) == pytest.approx(0.0)


def test_clip_similarity():
  clip = numpy_random_model(lambda: CLIPVisionEncoder(CLIP, rngs=nnx.Rngs(0)), seed=3)
  red = moving_square((220, 30, 30))
  assert P.clip_similarity(clip, np.repeat(red[:1], 3, 0), red[0]) == pytest.approx(1.0, abs=1e-5)
  other = P.clip_similarity(clip, moving_square((30, 30, 220), background=20), red[0])
  assert 0.0 <= other < 0.999


def test_pose_agreement(tmp_path):
  estimator = PoseEstimator(simcc_model(tmp_path / "pose.onnx", {0: (32, 30, 0.9, 0.9), 5: (40, 40, 0.9, 0.9),
                                                                  6: (24, 40, 0.9, 0.2)}))
  video = moving_square((255, 255, 255), frames=3)
  found = estimator(video[0])[0]  # [1, 18, 3]: the nose and l_shoulder (r_shoulder and the neck at 0.2: absent)
  truth = np.repeat(found[None], 3, 0)
  truth[..., 2] = np.where(truth[..., 2] >= 0.3, truth[..., 2], 0.0)
  assert P.pose_agreement(estimator, video, truth) == 1.0
  far = truth.copy()
  far[:, :, 0, :2] += 100.0  # the nose elsewhere: 1 of 2 visible joints misses
  assert P.pose_agreement(estimator, video, far) == 0.5
  scorer = P.PairScorer(pose=estimator)
  scores = scorer(video, video[0], truth)
  assert scorer.names == ("temporal", "color", "pose") and set(scores) == set(scorer.names)
  assert set(scorer(video, video[0], None)) == {"temporal", "color"}


def test_thresholds_and_the_mean():
  assert P.parse_thresholds("temporal=0.6, pose=0.5,") == {"temporal": 0.6, "pose": 0.5}
  with pytest.raises(ValueError, match="--thresholds: unknown score 'self'"):
    P.parse_thresholds("self=1")
  with pytest.raises(ValueError, match="--thresholds: 'color=high' is not name=number"):
    P.parse_thresholds("color=high")
  scores = {"temporal": 0.9, "color": 0.4, "pose": 0.5}
  assert P.mean_score(scores) == pytest.approx(0.6)
  assert P.passes(scores, {}, 0.6) and not P.passes(scores, {}, 0.61)
  assert P.passes(scores, {"temporal": 0.9, "color": 0.4}, 0.0)
  assert not P.passes(scores, {"color": 0.41}, 0.0)
  assert not P.passes({"temporal": 0.9}, {"pose": 0.1}, 0.0)  # a threshold on a missing score fails
  assert P.passes({"self": 1.0}, {"pose": 0.9}, 0.99)


def test_review_file_round_trip_and_decisions(tmp_path):
  rows = [dict(key="b@x", video_id="b", identity="B", driving_identity="X", reference="video:x", self=0,
               temporal=0.5, pose=float("nan"), mean=0.5, auto=1, accept=0, sheet="sheets/b.png"),
          dict(key="a@self", video_id="a", identity="A", driving_identity="A", reference="self", self=1, mean=1.0,
               auto=1, accept=1, sheet="sheets/a.png")]
  path = review.write_review(tmp_path / "review.csv", rows)
  assert path.read_text().splitlines() == [
      "key,video_id,identity,driving_identity,reference,self,temporal,pose,mean,auto,accept,reviewed,sheet",
      "a@self,a,A,A,self,1,,,1.0000,1,1,,sheets/a.png",
      "b@x,b,B,X,video:x,0,0.5000,,0.5000,1,0,,sheets/b.png"]
  old = review.read_review(path)
  assert (old["b@x"]["auto"], old["b@x"]["accept"], old["b@x"]["reviewed"]) == (True, False, False)
  assert review.decision(old, "b@x", auto=True) == (False, True)  # accept != auto: the reviewer's rejection holds
  assert review.decision(old, "a@self", auto=False) == (False, False)  # accept == auto: new thresholds decide
  assert review.decision(old, "new@y", auto=True) == (True, False)
  old["a@self"]["reviewed"] = True
  assert review.decision(old, "a@self", auto=False) == (True, True)  # confirmed by a reviewer
  path.write_text("key,accept\na@self,1\na@self,0\n")
  with pytest.raises(review.ReviewError, match="review.csv line 3: key 'a@self' appears twice"):
    review.read_review(path)
  path.write_text("key,mean\na@self,1\n")
  with pytest.raises(review.ReviewError, match="review.csv: no accept column"):
    review.read_review(path)
  sheet = review.sheet_image([np.zeros((8, 10, 3), np.uint8), np.zeros((5, 8, 12, 3), np.uint8)], num_frames=3)
  assert sheet.shape == (3 * 8 + 2 * 4, 10 + 4 + 12, 3)
