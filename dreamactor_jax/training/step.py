"""The sharded DiT training step: a flow-matching MSE and an optax update, jitted with named shardings.

STUB FOR THE TRAINER: this is the place `training/` extends. The trainer replaces
`flow_matching_loss` with the in-context one (canvas and mask from `animation/`, timestep sampling
and loss region from `diffusion/`) and passes its LoRA filter as `trainable`; the state layout,
the shardings and the jit below stay as they are. WAN.md "Flow matching": x_s = (1-s) x0 + s eps,
the model predicts v = eps - x0 at timestep 1000 s.

    plan = parallel.make_plan(config.mesh, config.parallel)
    make_model = lambda: WanDiT(DiTConfig.from_mapping(config.model), rngs=nnx.Rngs(0))
    graphdef, abstract = abstract_train_state(make_model, optimizer, trainable=nnx.Param)
    shardings = plan.param_shardings(abstract)          # the whole TrainState, from logical names
    state = jax.jit(lambda: create_train_state(make_model, optimizer, nnx.Param),
                    out_shardings=shardings)()          # born sharded, never whole on one device
    step = jit_train_step(graphdef, optimizer, plan, shardings, batch_shardings(batch, plan))
    state, metrics = step(state, parallel.global_batch(host_batch, plan), key)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from dreamactor_jax.parallel.rules import ShardingPlan

Batch = Mapping[str, jax.Array]


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


def make_optimizer(learning_rate: float = 1e-5, *, weight_decay: float = 0.01, clip_norm: float = 1.0
                   ) -> optax.GradientTransformation:
  """AdamW after global-norm clipping; moments in the parameters' dtype (fp32 master weights)."""
  return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adamw(learning_rate, weight_decay=weight_decay))


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


def flow_matching_loss(model: nnx.Module, batch: Batch, key: jax.Array) -> jax.Array:
  """Mean squared error of the predicted velocity, fp32.

  batch: `latents` `[B, F, H, W, C_out]` (x0), `text` `[B, Lt, text_dim]`, optional `condition`
  `[B, F, H, W, C_in - C_out]` (concatenated after the noisy latents, e.g. mask + condition
  latents) and `image` `[B, Li, image_dim]` (CLIP tokens).
  """
  latents = batch["latents"].astype(jnp.float32)
  sigma_key, noise_key = jax.random.split(key)
  sigma = jax.random.uniform(sigma_key, (latents.shape[0],))
  noise = jax.random.normal(noise_key, latents.shape)
  s = sigma[:, None, None, None, None]
  noisy = (1 - s) * latents + s * noise
  if "condition" in batch:
    noisy = jnp.concatenate([noisy, batch["condition"].astype(jnp.float32)], axis=-1)
  velocity = model(noisy, 1000.0 * sigma, batch["text"], image_context=batch.get("image"))
  return jnp.mean(jnp.square(velocity - (noise - latents)))


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Batch, key: jax.Array, *,
               optimizer: optax.GradientTransformation, plan: ShardingPlan | None,
               loss_fn: Callable[[nnx.Module, Batch, jax.Array], jax.Array] = flow_matching_loss
               ) -> tuple[TrainState, Metrics]:
  """One optimizer step; gradients only for `state.params`. Pure: jit it (`jit_train_step`)."""
  key = jax.random.fold_in(key, state.step)

  def loss_of(params):
    # Fresh Variables for the frozen weights: nnx only lets transforms (scan) see Variables made
    # at the current trace level, and these were made outside the gradient's trace.
    frozen = jax.tree.map(lambda x: x, state.frozen)
    return loss_fn(nnx.merge(graphdef, params, frozen), batch, key)

  if plan is None:
    loss, grads = jax.value_and_grad(loss_of)(state.params)
  else:
    with plan.activate():
      loss, grads = jax.value_and_grad(loss_of)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = TrainState(params=params, frozen=state.frozen, opt_state=opt_state, step=state.step + 1)
  return new_state, Metrics(loss=loss, grad_norm=optax.global_norm(grads))


def batch_shardings(batch: Batch, plan: ShardingPlan) -> dict[str, jax.sharding.NamedSharding]:
  """Each batch entry split on its leading (batch) axis over the `batch` mesh axes."""
  return {name: plan.sharding(("batch",) + (None,) * (len(value.shape) - 1)) for name, value in batch.items()}


def jit_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, plan: ShardingPlan,
                   state_shardings: Any, batch_sharding: Any, *,
                   loss_fn: Callable[[nnx.Module, Batch, jax.Array], jax.Array] = flow_matching_loss):
  """`step(state, batch, key) -> (state, metrics)` jitted with named in/out shardings; the old state
  is donated, so its buffers are reused for the new one."""
  replicated = plan.sharding(())
  step = lambda state, batch, key: train_step(graphdef, state, batch, key, optimizer=optimizer, plan=plan,
                                              loss_fn=loss_fn)
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, replicated),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
