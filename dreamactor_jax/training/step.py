"""The sharded DiT training step: the in-context objective (`objective.py`), gradients of the
trainable parameters only, an optax update, optional EMA, jitted with the named shardings of a
`parallel.ShardingPlan`.

`trainable` is an nnx filter: `nnx.Param` (full fine-tuning) or `nnx.LoRAParam` (the paper's LoRA,
base frozen). Gradient accumulation runs `grad_accum` micro-batches (the batch split on its leading
axis) in a scan before one update. Steps whose gradients are not finite change nothing
(`optimizer.make_optimizer`) and are counted in `Metrics.nonfinite_in_a_row`.

    plan = parallel.make_plan(config.mesh, config.parallel)
    graphdef, state = init_train_state(model, optimizer, nnx.LoRAParam, ema=True)
    shardings = plan.param_shardings(state)             # the whole TrainState, from logical names
    state = jax.device_put(state, shardings)
    loss_fn = functools.partial(animation_loss, sigmas=dict(config.sampling.train),
                                region=config.animation.loss_region, layout=config.model.layout)
    step = jit_train_step(graphdef, optimizer, plan, shardings, batch_shardings(batch, plan), loss_fn=loss_fn)
    state, metrics = step(state, batch, key)            # batch: a LatentBatch of global arrays

(`abstract_train_state` + `jax.jit(create_train_state, out_shardings=...)` creates a random model
already sharded, never whole on one device: what the scaling planner compiles.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dreamactor_jax.parallel.rules import ShardingPlan
from dreamactor_jax.training.optimizer import ema_update, init_ema, nonfinite_in_a_row

# loss_fn(model, batch, key) -> (scalar loss, aux pytree for metrics), e.g. objective.animation_loss.
LossFn = Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, Any]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Model weights split into what the optimizer updates and the rest, plus optimizer state."""

  params: nnx.State  # trainable Variables (the `trainable` filter)
  frozen: nnx.State  # everything else (empty when fine-tuning all weights)
  opt_state: Any
  step: jax.Array
  ema: nnx.State | None = None  # fp32 EMA of `params`, when kept


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Metrics:
  loss: jax.Array
  grad_norm: jax.Array
  aux: Any  # the loss function's aux output (per micro-batch values concatenated on the batch axis)
  nonfinite_in_a_row: jax.Array  # steps skipped for non-finite gradients, up to and including this one


def init_train_state(model: nnx.Module, optimizer: optax.GradientTransformation,
                     trainable: nnx.filterlib.Filter = nnx.Param, *, ema: bool = False
                     ) -> tuple[nnx.GraphDef, TrainState]:
  """The graph definition and a fresh state of `model` (trainable part, frozen rest, optimizer, EMA)."""
  graphdef, params, frozen = nnx.split(model, trainable, ...)
  return graphdef, TrainState(params=params, frozen=frozen, opt_state=optimizer.init(params),
                              step=jnp.zeros((), jnp.int32), ema=init_ema(params) if ema else None)


def create_train_state(make_model: Callable[[], nnx.Module], optimizer: optax.GradientTransformation,
                       trainable: nnx.filterlib.Filter = nnx.Param, *, ema: bool = False) -> TrainState:
  """A fresh state of a new model (call inside `jax.jit(..., out_shardings=...)` so it is created sharded)."""
  return init_train_state(make_model(), optimizer, trainable, ema=ema)[1]


def abstract_train_state(make_model: Callable[[], nnx.Module], optimizer: optax.GradientTransformation,
                         trainable: nnx.filterlib.Filter = nnx.Param, *, ema: bool = False
                         ) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graph definition and the TrainState's shapes (ShapeDtypeStructs), allocating nothing."""
  graphdef = nnx.graphdef(nnx.eval_shape(make_model))
  return graphdef, jax.eval_shape(lambda: create_train_state(make_model, optimizer, trainable, ema=ema))


def _micro_batches(batch: Any, count: int) -> Any:
  """`[B, ...]` leaves -> `[count, B / count, ...]`."""
  def split(x):
    if x.shape[0] % count:
      raise ValueError(f"train.grad_accum={count} does not divide the batch of {x.shape[0]}")
    return x.reshape(count, x.shape[0] // count, *x.shape[1:])
  return jax.tree.map(split, batch)


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Any, key: jax.Array, *,
               optimizer: optax.GradientTransformation, plan: ShardingPlan | None, loss_fn: LossFn,
               grad_accum: int = 1, ema_decay: float = 0.0) -> tuple[TrainState, Metrics]:
  """One optimizer step; gradients only for `state.params`. Pure: jit it (`jit_train_step`)."""
  key = jax.random.fold_in(key, state.step)

  def loss_of(params, micro_batch, micro_key):
    return loss_fn(nnx.merge(graphdef, params, state.frozen), micro_batch, micro_key)

  grad_fn = jax.value_and_grad(loss_of, has_aux=True)

  def gradients():
    if grad_accum == 1:
      return grad_fn(state.params, batch, key)

    def accumulate(total, xs):
      micro_batch, index = xs
      (loss, aux), grads = grad_fn(state.params, micro_batch, jax.random.fold_in(key, index))
      return jax.tree.map(jnp.add, total, (loss, grads)), aux

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
    (loss, grads), aux = jax.lax.scan(accumulate, zeros, (_micro_batches(batch, grad_accum), jnp.arange(grad_accum)))
    aux = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), aux)
    return (loss / grad_accum, aux), jax.tree.map(lambda g: g / grad_accum, grads)

  if plan is None:
    (loss, aux), grads = gradients()
  else:
    with plan.activate():
      (loss, aux), grads = gradients()
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = None if state.ema is None else ema_update(state.ema, params, ema_decay)
  new_state = TrainState(params=params, frozen=state.frozen, opt_state=opt_state, step=state.step + 1, ema=ema)
  return new_state, Metrics(loss=loss, grad_norm=optax.tree.norm(grads), aux=aux,
                            nonfinite_in_a_row=nonfinite_in_a_row(opt_state))


def batch_shardings(batch: Any, plan: ShardingPlan) -> Any:
  """Every array of the batch (a dict or a LatentBatch) split on its leading axis over `batch`."""
  return jax.tree.map(lambda x: plan.sharding(("batch",) + (None,) * (len(x.shape) - 1)), batch)


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, plan: ShardingPlan,
                   state_shardings: Any, batch_sharding: Any, *, loss_fn: LossFn, grad_accum: int = 1,
                   ema_decay: float = 0.0):
  """`step(state, batch, key) -> (state, metrics)` jitted with named in/out shardings; the old state
  is donated, so its buffers are reused for the new one."""
  replicated = plan.sharding(())
  step = lambda state, batch, key: train_step(graphdef, state, batch, key, optimizer=optimizer, plan=plan,
                                              loss_fn=loss_fn, grad_accum=grad_accum, ema_decay=ema_decay)
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
