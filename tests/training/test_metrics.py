"""Metrics: TensorBoard event files readable back, noise-level buckets, MFU."""

import numpy as np
import pytest

from conftest import read_scalars
from dreamactor_jax.training.metrics import MetricsWriter, loss_by_noise_level, model_flops_utilization


def test_scalars_land_in_event_files(tmp_path):
  writer = MetricsWriter(tmp_path, total_steps=3)
  writer.scalars(1, {"loss": 0.5, "lr": 1e-4, "mfu": None})
  writer.scalars(2, {"loss": 0.25})
  writer.image(2, "preview", np.zeros((4, 6, 3), np.uint8))
  writer.close()
  scalars = read_scalars(tmp_path / "tensorboard")
  assert scalars["loss"] == [(1, 0.5), (2, 0.25)]
  assert scalars["lr"] == [(1, pytest.approx(1e-4))]
  assert "mfu" not in scalars


def test_loss_by_noise_level_buckets_and_skips_empty_ones():
  sigmas = np.array([0.05, 0.1, 0.6, 1.0])
  losses = np.array([1.0, 3.0, 5.0, 7.0])
  assert loss_by_noise_level(sigmas, losses, [0.0, 0.5, 0.75, 1.0]) == {
      "loss/sigma_0.00-0.50": 2.0, "loss/sigma_0.50-0.75": 5.0, "loss/sigma_0.75-1.00": 7.0}
  assert loss_by_noise_level(sigmas[:2], losses[:2], [0.0, 0.5, 1.0]) == {"loss/sigma_0.00-0.50": 2.0}


def test_mfu():
  assert model_flops_utilization(1e12, 2.0, 4, 1e12) == pytest.approx(0.125)
  assert model_flops_utilization(1e12, 2.0, 4, None) is None
