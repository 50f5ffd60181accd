"""Sharded sampling: `sampling.animate.animate` with a plan (weights sharded, the canvas's tokens split over
8 simulated devices) gives the one-device video, in every attention layout and under CFG."""

import dataclasses

import numpy as np

from dreamactor_jax.configs import base
from dreamactor_jax.parallel import make_plan
from dreamactor_jax.sampling.animate import animate


def _check_sampling_matches_one_device(layout):
  from tiny_bundle import OPTIONS, SIZE, tiny_models  # noqa: PLC0415 (imported in the 8-device worker)

  # animate2: block 1 skipped by the unconditional branch, so the batched [cond; uncond] call differs per sample
  dit = {"layout": layout, "unconditional_skip_layers": (1,)} if layout == "animate2" else {}
  models = tiny_models(text=True, options=dataclasses.replace(OPTIONS, layout=layout), **dit)
  rng = np.random.default_rng(0)
  reference = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
  driving = rng.integers(0, 256, (5, *SIZE, 3), dtype=np.uint8)
  plan = make_plan({"context": 8}, {**base.get_config("tiny").parallel, "sequence_parallel": "ring"})
  one = animate(models, reference, driving, "a fox", fps=4.0)
  sharded = animate(models, reference, driving, "a fox", fps=4.0, plan=plan)
  assert one.shape == sharded.shape == (5, *SIZE, 3)
  difference = np.abs(one.astype(int) - sharded.astype(int))
  assert difference.max() <= 1, f"max pixel difference {difference.max()}"  # fp32 sums in another order
  return True


def test_full_layout_matches_one_device(on_8_devices):
  assert on_8_devices(_check_sampling_matches_one_device, "full")


def test_motion_cache_layout_matches_one_device(on_8_devices):
  assert on_8_devices(_check_sampling_matches_one_device, "motion_cache")


def test_animate2_layout_matches_one_device(on_8_devices):
  assert on_8_devices(_check_sampling_matches_one_device, "animate2")
