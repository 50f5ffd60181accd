"""The train step: gradient accumulation, EMA, non-finite steps skipped and counted."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dreamactor_jax.training.optimizer import make_optimizer
from dreamactor_jax.training.step import init_train_state, train_step


class Linear(nnx.Module):
  def __init__(self):
    self.w = nnx.Param(jnp.arange(6.0).reshape(3, 2) / 10)
    self.frozen = nnx.Variable(jnp.ones(2))


def mse(model, batch, key):
  per_sample = jnp.square(batch["x"] @ model.w[...] * model.frozen[...] - batch["y"]).mean(-1)
  return per_sample.mean(), per_sample


OPTIMIZER = make_optimizer(ml_collections.ConfigDict(dict(
    learning_rate=0.1, warmup_steps=0, schedule="constant", decay_steps=1, final_lr_fraction=1.0, grad_clip_norm=0.0,
    b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)))
BATCH = {"x": jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32),
         "y": jnp.asarray(np.random.default_rng(1).standard_normal((4, 2)), jnp.float32)}


def step(state, graphdef, batch=BATCH, loss_fn=mse, **options):
  return train_step(graphdef, state, batch, jax.random.key(0), optimizer=OPTIMIZER, plan=None, loss_fn=loss_fn,
                    **options)


def test_accumulated_micro_batches_give_the_same_step():
  graphdef, state = init_train_state(Linear(), OPTIMIZER, ema=True)
  whole, whole_metrics = step(state, graphdef, ema_decay=0.5)
  graphdef, state = init_train_state(Linear(), OPTIMIZER, ema=True)
  accumulated, metrics = step(state, graphdef, grad_accum=2, ema_decay=0.5)
  np.testing.assert_allclose(accumulated.params["w"][...], whole.params["w"][...], rtol=1e-6)
  np.testing.assert_allclose(metrics.loss, whole_metrics.loss, rtol=1e-6)
  np.testing.assert_allclose(metrics.aux, whole_metrics.aux, rtol=1e-6)  # per sample, in batch order
  # EMA: 0.5 * initial + 0.5 * updated; the frozen variable never moves
  np.testing.assert_allclose(accumulated.ema["w"][...], 0.5 * (jnp.arange(6.0).reshape(3, 2) / 10)
                             + 0.5 * accumulated.params["w"][...], rtol=1e-6)
  assert int(accumulated.step) == 1 and "frozen" not in accumulated.params


def test_nonfinite_steps_change_nothing_and_are_counted():
  graphdef, state = init_train_state(Linear(), OPTIMIZER)
  broken = lambda model, batch, key: (jnp.float32(jnp.nan) * mse(model, batch, key)[0], jnp.zeros(4))
  for count in (1, 2):
    new_state, metrics = step(state, graphdef, loss_fn=broken)
    np.testing.assert_array_equal(new_state.params["w"][...], state.params["w"][...])
    assert int(metrics.nonfinite_in_a_row) == count
    state = new_state
  state, metrics = step(state, graphdef)
  assert int(metrics.nonfinite_in_a_row) == 0
