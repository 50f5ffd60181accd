"""The optimizer of both training stages (PAPER.md section 6: AdamW, lr 5e-5, weight decay 0.01).

Global-norm clipping, then AdamW on a warmup + constant/cosine schedule, wrapped so that a step
whose gradients are not finite changes nothing (the loop counts such steps and stops after
`max_nonfinite` in a row). EMA of the trained parameters is kept by `ema_update`, outside optax,
so that it can be saved, restored and swapped in for sampling on its own.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

# apply_if_finite gives up skipping after this many bad steps; the loop stops long before.
_NEVER_GIVE_UP = 1 << 30


def learning_rate_schedule(config) -> optax.Schedule:
  """`config.schedule` "constant" or "cosine" after `config.warmup_steps` of linear warmup from 0."""
  warmup = max(int(config.warmup_steps), 0)
  if config.schedule == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, config.learning_rate, warmup), optax.constant_schedule(config.learning_rate)],
        [warmup])
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, max(int(config.decay_steps), warmup + 1),
                                              end_value=config.learning_rate * config.final_lr_fraction)
  raise ValueError(f"optimizer.schedule={config.schedule!r}; expected 'constant' or 'cosine'")


def make_optimizer(config) -> optax.GradientTransformation:
  """AdamW with clipping and non-finite skipping, from `config` (the `optimizer` section)."""
  chain = []
  if config.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(config.grad_clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(config), b1=config.b1, b2=config.b2, eps=config.eps,
                           weight_decay=config.weight_decay))
  return optax.apply_if_finite(optax.chain(*chain), _NEVER_GIVE_UP)


def nonfinite_in_a_row(opt_state: Any) -> jax.Array:
  """How many steps in a row were skipped for non-finite gradients (0 after a good step)."""
  return opt_state.notfinite_count


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """`ema <- decay * ema + (1 - decay) * params`, leaf by leaf, in the EMA's dtype."""
  return jax.tree.map(lambda e, p: (decay * e + (1 - decay) * p.astype(e.dtype)).astype(e.dtype), ema, params)


def init_ema(params: Any) -> Any:
  """An fp32 copy of `params` to average into (a copy even for fp32 leaves: the train step donates both)."""
  return jax.tree.map(lambda p: jnp.array(p, jnp.float32, copy=True), params)
