"""Training metrics: TensorBoard event files (tensorboardX, no TensorFlow), a console progress bar,
and the reductions the loop logs (loss per noise-level bucket, throughput, MFU)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tqdm


def _import_summary_writer() -> type:
  """tensorboardX imports torch, when it is installed, only to accept torch tensors, which we never
  pass: about 2 s of every train.py start. Hidden from that import, torch stays importable later."""
  hidden = "torch" not in sys.modules
  if hidden:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tensorboardX expects
  try:
    from tensorboardX import SummaryWriter
  finally:
    if hidden:
      del sys.modules["torch"]
  return SummaryWriter


SummaryWriter = _import_summary_writer()


def loss_by_noise_level(sigmas: np.ndarray, losses: np.ndarray, edges: Sequence[float]) -> dict[str, float]:
  """Mean per-sample loss in each sigma bucket `[edges[i], edges[i+1])`; empty buckets are left out.

  sigmas, losses: `[N]` collected over the logging interval.
  """
  sigmas, losses = np.asarray(sigmas).ravel(), np.asarray(losses).ravel()
  out = {}
  for low, high in zip(edges[:-1], edges[1:]):
    inside = (sigmas >= low) & ((sigmas < high) if high < edges[-1] else (sigmas <= high))
    if inside.any():
      out[f"loss/sigma_{low:.2f}-{high:.2f}"] = float(losses[inside].mean())
  return out


def model_flops_utilization(flops_per_step: float, step_seconds: float, num_devices: int,
                            peak_flops_per_device: float | None) -> float | None:
  """Achieved FLOP/s over the devices' peak, or None when the peak is unknown."""
  if not peak_flops_per_device or step_seconds <= 0:
    return None
  return flops_per_step / step_seconds / (num_devices * peak_flops_per_device)


class MetricsWriter:
  """Scalars and images to `workdir/tensorboard` and a tqdm bar over steps (process 0 only)."""

  def __init__(self, workdir: str | os.PathLike, *, total_steps: int, initial_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    self._writer = SummaryWriter(str(Path(workdir) / "tensorboard")) if enabled else None
    self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, disable=not enabled, desc="train",
                          dynamic_ncols=True)

  def advance(self, steps: int = 1, **postfix: float) -> None:
    self._bar.update(steps)
    if postfix:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

  def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
    if not self.enabled:
      return
    for name, value in values.items():
      if value is not None:
        self._writer.add_scalar(name, float(value), step)
    self._writer.flush()

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """`image` uint8 `[H, W, 3]`."""
    if self.enabled:
      self._writer.add_image(name, image, step, dataformats="HWC")
      self._writer.flush()

  def write(self, message: str) -> None:
    """A console line that does not break the progress bar."""
    if self.enabled:
      self._bar.write(message)

  def close(self) -> None:
    self._bar.close()
    if self._writer is not None:
      self._writer.close()
