"""Evaluation against ground truth: metrics, triplet folders, the animate hook, the report."""

from dreamactor_jax.evaluation.metrics import FrameMetric, aggregate, score_video
from dreamactor_jax.evaluation.report import Report, evaluate
from dreamactor_jax.evaluation.triplets import (AnimateFn, Triplet, animate_triplets, copy_reference, find_triplets,
                                                load_triplet)

__all__ = ["AnimateFn", "FrameMetric", "Report", "Triplet", "aggregate", "animate_triplets", "copy_reference",
           "evaluate", "find_triplets", "load_triplet", "score_video"]
