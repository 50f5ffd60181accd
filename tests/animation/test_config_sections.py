"""config.animation and config.sampling feed the animation and diffusion functions as one-liners."""

import jax
import jax.numpy as jnp

from dreamactor_jax.animation import build_canvas, loss_weight, pack_mask, plan_segments, plan_timeline
from dreamactor_jax.configs.base import get_config
from dreamactor_jax.diffusion import sample_training_sigmas, sampling_schedule, solver_table


def test_sections_drive_the_functions():
  config = get_config("tiny")
  animation, sampling = config.animation, config.sampling
  timeline = plan_timeline(100, fps=24.0, seconds=animation.start_seconds, fit=animation.fit_frames)
  plan = plan_segments(timeline.frames, animation.segment_frames, animation.overlap_frames)
  assert plan[0].given == 1 and plan[-1].stop == timeline.frames == 24 + 100 + 1
  canvas = build_canvas(jnp.zeros((1, 5, 16, 16, 3)), jnp.zeros((1, 1, 16, 16, 3)),
                        blank=animation.blank)
  assert loss_weight(pack_mask(canvas.mask), animation.loss_region).shape == (1, 2, 2, 4)
  table = solver_table(sampling_schedule(sampling.steps, sampling.shift, sampling.grid), sampling.sampler)
  assert table.steps == 40
  sigmas = sample_training_sigmas(jax.random.key(0), 3, **sampling.train)
  assert sigmas.shape == (3,)
