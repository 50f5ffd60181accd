"""The sharded DiT training step: a loss (by default the in-context objective, `objective.py`) and an
optax update, jitted with the named shardings of a `parallel.ShardingPlan`.

STUB FOR THE TRAINER: this is the place the training loop extends (EMA, gradient accumulation,
non-finite step counting, metrics); the state layout, the shardings and the jit below are what it
keeps. `trainable` is an nnx filter: `nnx.Param` (everything), `nnx.LoRAParam` (the paper's LoRA,
base frozen), or any path filter.

    plan = parallel.make_plan(config.mesh, config.parallel)
    make_model = lambda: WanDiT(DiTConfig.from_mapping(config.model), rngs=nnx.Rngs(config.train.seed))
    optimizer = make_optimizer(config.optimizer)                         # training/optimizer.py
    graphdef, abstract = abstract_train_state(make_model, optimizer, trainable=nnx.LoRAParam)
    shardings = plan.param_shardings(abstract)          # the whole TrainState, from logical names
    state = jax.jit(lambda: create_train_state(make_model, optimizer, nnx.LoRAParam),
                    out_shardings=shardings)()          # born sharded, never whole on one device
    loss_fn = functools.partial(animation_loss, sigmas=dict(config.sampling.train),
                                region=config.animation.loss_region, layout=config.model.layout)
    step = jit_train_step(graphdef, optimizer, plan, shardings, batch_shardings(batch, plan), loss_fn=loss_fn)
    state, metrics = step(state, batch, key)            # batch: a LatentBatch of global arrays
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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Metrics:
  loss: jax.Array
  grad_norm: jax.Array
  aux: Any  # the loss function's aux output


def create_train_state(make_model: Callable[[], nnx.Module], optimizer: optax.GradientTransformation,
                       trainable: nnx.filterlib.Filter = nnx.Param) -> TrainState:
  """A fresh state (call inside `jax.jit(..., out_shardings=...)` so it is created sharded)."""
  _, params, frozen = nnx.split(make_model(), trainable, ...)
  return TrainState(params=params, frozen=frozen, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))


def abstract_train_state(make_model: Callable[[], nnx.Module], optimizer: optax.GradientTransformation,
                         trainable: nnx.filterlib.Filter = nnx.Param) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graph definition and the TrainState's shapes (ShapeDtypeStructs), allocating nothing."""
  graphdef = nnx.graphdef(nnx.eval_shape(make_model))
  return graphdef, jax.eval_shape(lambda: create_train_state(make_model, optimizer, trainable))


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Any, key: jax.Array, *,
               optimizer: optax.GradientTransformation, plan: ShardingPlan | None, loss_fn: LossFn
               ) -> tuple[TrainState, Metrics]:
  """One optimizer step; gradients only for `state.params`. Pure: jit it (`jit_train_step`)."""
  key = jax.random.fold_in(key, state.step)

  def loss_of(params):
    return loss_fn(nnx.merge(graphdef, params, state.frozen), batch, key)

  grad_fn = jax.value_and_grad(loss_of, has_aux=True)
  if plan is None:
    (loss, aux), grads = grad_fn(state.params)
  else:
    with plan.activate():
      (loss, aux), grads = grad_fn(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = TrainState(params=params, frozen=state.frozen, opt_state=opt_state, step=state.step + 1)
  return new_state, Metrics(loss=loss, grad_norm=optax.global_norm(grads), aux=aux)


def batch_shardings(batch: Any, plan: ShardingPlan) -> Any:
  """Every array of the batch (a dict or a LatentBatch) split on its leading axis over `batch`."""
  return jax.tree.map(lambda x: plan.sharding(("batch",) + (None,) * (len(x.shape) - 1)), batch)


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, plan: ShardingPlan,
                   state_shardings: Any, batch_sharding: Any, *, loss_fn: LossFn):
  """`step(state, batch, key) -> (state, metrics)` jitted with named in/out shardings; the old state
  is donated, so its buffers are reused for the new one."""
  replicated = plan.sharding(())
  step = lambda state, batch, key: train_step(graphdef, state, batch, key, optimizer=optimizer, plan=plan,
                                              loss_fn=loss_fn)
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
