"""Optimizer: schedule shape, non-finite steps skipped and counted, EMA."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dreamactor_jax.training.optimizer import (ema_update, init_ema, learning_rate_schedule, make_optimizer,
                                               nonfinite_in_a_row)


def optimizer_config(**overrides):
  config = ml_collections.ConfigDict(dict(learning_rate=1e-2, warmup_steps=4, schedule="constant", decay_steps=20,
                                          final_lr_fraction=0.1, grad_clip_norm=1.0, b1=0.9, b2=0.999, eps=1e-8,
                                          weight_decay=0.01))
  config.update(overrides)
  return config


def test_schedules_warm_up_then_hold_or_decay():
  constant = learning_rate_schedule(optimizer_config())
  np.testing.assert_allclose([float(constant(s)) for s in (0, 2, 4, 100)], [0, 5e-3, 1e-2, 1e-2], rtol=1e-6)
  cosine = learning_rate_schedule(optimizer_config(schedule="cosine"))
  assert float(cosine(4)) == pytest.approx(1e-2)
  assert float(cosine(20)) == pytest.approx(1e-3)
  assert float(cosine(12)) < float(cosine(8))
  with pytest.raises(ValueError, match="optimizer.schedule='linear'"):
    learning_rate_schedule(optimizer_config(schedule="linear"))


def test_nonfinite_gradients_change_nothing_and_are_counted():
  optimizer = make_optimizer(optimizer_config(warmup_steps=0))
  params = {"w": jnp.arange(6.0).reshape(2, 3)}
  state = optimizer.init(params)
  bad = {"w": jnp.full((2, 3), jnp.nan)}
  for expected_count in (1, 2):
    updates, state = optimizer.update(bad, state, params)
    assert int(nonfinite_in_a_row(state)) == expected_count
    np.testing.assert_array_equal(updates["w"], 0.0)
  updates, state = optimizer.update({"w": jnp.ones((2, 3))}, state, params)
  assert int(nonfinite_in_a_row(state)) == 0
  assert float(jnp.abs(updates["w"]).min()) > 0


def test_clipping_bounds_the_first_adam_step_direction_only():
  # Adam normalises magnitudes, so clipping shows in the moments: clipped grads have norm <= 1.
  optimizer = make_optimizer(optimizer_config(warmup_steps=0, weight_decay=0.0))
  params = {"w": jnp.zeros(4)}
  state = optimizer.init(params)
  _, state = optimizer.update({"w": jnp.full(4, 100.0)}, state, params)
  first_moment = jax.tree.leaves(state)[1:]
  mu = [leaf for leaf in first_moment if getattr(leaf, "shape", None) == (4,)][0]
  np.testing.assert_allclose(np.asarray(mu), 0.1 * 0.5, rtol=1e-5)  # (1 - b1) * 100 / ||[100]*4||


def test_ema_moves_toward_params_in_fp32():
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  ema = init_ema({"w": jnp.zeros(3, jnp.bfloat16)})
  ema = ema_update(ema, params, 0.9)
  assert ema["w"].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(ema["w"]), 0.1, rtol=1e-6)
