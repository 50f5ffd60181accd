"""Samplers: step-by-step parity with diffusers' FlowMatchEulerDiscreteScheduler and UniPCMultistepScheduler
(flow settings) on the same analytic velocity, the jitted scan, batched CFG, progress callbacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from dreamactor_jax.diffusion import (Expert, expert_steps, init_state, sample, sampling_schedule, solver_step,
                                      solver_table)

SHAPE = (2, 3, 5, 7, 4)  # B F H W C, unequal


def velocity_torch(x, t, scale):
  return scale.view(-1, 1, 1, 1, 1) * torch.sin(1.3 * x + t / 300.0) - 0.5 * x


def velocity_jax(params, x, t, context):
  """The same analytic velocity; `context` holds a per-sample scale, `params` a global factor."""
  scale, t = context["scale"][:, None, None, None, None], t[:, None, None, None, None]
  return params * scale * jnp.sin(1.3 * x + t / 300.0) - 0.5 * x


def _diffusers(sampler, steps, shift):
  if sampler == "euler":
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
  else:
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                        solver_order=2, solver_type="bh2", predict_x0=True)
  scheduler.set_timesteps(steps)
  return scheduler


def _noise(seed=0):
  return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


@pytest.mark.parametrize("sampler, grid, steps, shift", [("unipc", "unipc", 10, 3.0), ("unipc", "unipc", 40, 5.0),
                                                         ("unipc", "unipc", 2, 3.0), ("euler", "euler", 10, 3.0),
                                                         ("euler", "euler", 30, 5.0)])
def test_step_by_step_parity_with_diffusers(sampler, grid, steps, shift):
  scheduler = _diffusers(sampler, steps, shift)
  table = solver_table(sampling_schedule(steps, shift, grid), sampler)
  scale = np.array([1.0, 0.7], np.float32)
  context = {"scale": jnp.asarray(scale)}
  step_fn = jax.jit(solver_step)
  x_ref, state = torch.from_numpy(_noise()), init_state(jnp.asarray(_noise()))
  for i, t in enumerate(scheduler.timesteps):
    x_ref = scheduler.step(velocity_torch(x_ref, t.float(), torch.from_numpy(scale)), t, x_ref, return_dict=False)[0]
    step = table.step(i)
    assert float(step.timesteps) == float(t)  # the model sees the same timestep
    velocity = velocity_jax(1.0, state.sample, jnp.full((2,), step.timesteps), context)
    state = step_fn(state, velocity, step)
    np.testing.assert_allclose(state.sample, x_ref.numpy(), atol=1e-5, rtol=0, err_msg=f"step {i}")
  # the jitted scan gives the same final latents as the step loop
  final = sample(velocity_jax, Expert(jnp.float32(1.0)), jnp.asarray(_noise()), context, table)
  np.testing.assert_allclose(final, state.sample, atol=1e-5, rtol=0)
  np.testing.assert_allclose(final, x_ref.numpy(), atol=1e-5, rtol=0)


def test_wan_grid_runs_unipc_and_euler_table_is_plain_euler():
  schedule = sampling_schedule(6, 3.0, "wan")
  table = solver_table(schedule, "euler")
  np.testing.assert_array_equal(table.predictor[:, 3], np.diff(schedule.sigmas))
  np.testing.assert_array_equal(table.corrector[:, 0], 1.0)
  x = sample(velocity_jax, Expert(jnp.float32(1.0)), jnp.asarray(_noise()), {"scale": jnp.ones(2)},
             solver_table(schedule, "unipc"))
  assert x.shape == SHAPE and bool(jnp.all(jnp.isfinite(x)))
  with pytest.raises(ValueError, match="UniPC needs 0 < sigma < 1 at every model call"):
    solver_table(sampling_schedule(6, 3.0, "euler"), "unipc")
  with pytest.raises(ValueError, match="sampler 'heun'; expected 'euler' or 'unipc'"):
    solver_table(schedule, "heun")


def test_cfg_one_call_on_the_doubled_batch():
  table = solver_table(sampling_schedule(5, 3.0, "unipc"), "unipc")
  calls = []

  def recording_velocity(params, x, t, context):
    calls.append((x.shape, t.shape, context["scale"].shape))  # at trace time: once per compile
    return velocity_jax(params, x, t, context)

  cond, uncond, guidance = {"scale": jnp.asarray([1.0, 0.7])}, {"scale": jnp.asarray([0.2, -0.4])}, 4.5
  guided = sample(recording_velocity, Expert(jnp.float32(1.0), guidance), jnp.asarray(_noise()), cond, table,
                  uncond_context=uncond)
  assert calls == [((4, *SHAPE[1:]), (4,), (4,))]
  # reference: the two branches as separate calls, combined by hand
  state = init_state(jnp.asarray(_noise()))
  for i in range(table.steps):
    step = table.step(i)
    t = jnp.full((2,), step.timesteps)
    v_cond, v_uncond = velocity_jax(1.0, state.sample, t, cond), velocity_jax(1.0, state.sample, t, uncond)
    state = solver_step(state, v_uncond + guidance * (v_cond - v_uncond), step)
  np.testing.assert_allclose(guided, state.sample, atol=2e-5, rtol=0)  # fp32 rounding x guidance 4.5
  # guidance is traced: another value reuses the compilation
  other = sample(recording_velocity, Expert(jnp.float32(1.0), 1.0), jnp.asarray(_noise()), cond, table,
                 uncond_context=uncond)
  assert len(calls) == 1
  plain = sample(velocity_jax, Expert(jnp.float32(1.0)), jnp.asarray(_noise()), cond, table)
  np.testing.assert_allclose(other, plain, atol=1e-5, rtol=0)  # guidance 1 = conditional only


def test_progress_callback_and_nesting_in_jit():
  table = solver_table(sampling_schedule(4, 3.0, "unipc"), "unipc")
  context = {"scale": jnp.ones(2)}
  reported = []
  with_progress = sample(velocity_jax, Expert(jnp.float32(0.5)), jnp.asarray(_noise()), context, table,
                         progress=reported.append)
  assert sorted(reported) == [1, 2, 3, 4]
  nested = jax.jit(lambda params, noise: sample(velocity_jax, Expert(params), noise, context, table))
  np.testing.assert_allclose(nested(jnp.float32(0.5), jnp.asarray(_noise())), with_progress, atol=1e-5, rtol=0)


def test_two_experts_switch_at_the_boundary_with_their_own_guidance():
  """Wan2.2 A14B: the first expert (loaded when its first step comes) takes the steps with timestep
  >= boundary * 1000 with its guidance, the second the rest with its own, loaded only after the
  first's steps have run; the same as a step loop choosing by hand (diffusers' rule)."""
  table = solver_table(sampling_schedule(8, 5.0, "unipc"), "unipc")
  boundary = 900.0
  high_steps = int(np.sum(table.timesteps >= boundary))
  assert 0 < high_steps < 8  # the switch falls inside the run
  cond, uncond = {"scale": jnp.asarray([1.0, 0.7])}, {"scale": jnp.asarray([0.2, -0.4])}
  done, loads = [], []

  def load(name, factor):
    def params():
      loads.append((name, len(done)))  # steps already run when these params are made
      return jnp.float32(factor)
    return params

  experts = [Expert(load("high", 1.0), 4.0, boundary), Expert(load("low", 0.6), 2.5)]
  assert expert_steps(experts, table.timesteps) == [range(high_steps), range(high_steps, 8)]
  ours = sample(velocity_jax, experts, jnp.asarray(_noise()), cond, table, uncond_context=uncond,
                progress=done.append)
  assert loads == [("high", 0), ("low", high_steps)] and sorted(done) == list(range(1, 9))
  state = init_state(jnp.asarray(_noise()))
  for i in range(table.steps):
    step = table.step(i)
    factor, guidance = (1.0, 4.0) if step.timesteps >= boundary else (0.6, 2.5)
    t = jnp.full((2,), step.timesteps)
    v_cond, v_uncond = velocity_jax(factor, state.sample, t, cond), velocity_jax(factor, state.sample, t, uncond)
    state = solver_step(state, v_uncond + guidance * (v_cond - v_uncond), step)
  np.testing.assert_allclose(ours, state.sample, atol=2e-5, rtol=0)
  swapped = sample(velocity_jax, [Expert(jnp.float32(1.0), 2.5, boundary), Expert(jnp.float32(0.6), 4.0)],
                   jnp.asarray(_noise()), cond, table, uncond_context=uncond)
  assert float(jnp.abs(swapped - ours).max()) > 1e-3  # each expert's guidance matters


def test_an_expert_without_steps_is_never_loaded_and_bad_orders_are_refused():
  table = solver_table(sampling_schedule(4, 3.0, "unipc"), "unipc")
  loads = []
  idle = Expert(lambda: loads.append("high") or jnp.float32(1.0), 4.0, min_timestep=1001.0)
  only = sample(velocity_jax, [idle, Expert(jnp.float32(1.0))], jnp.asarray(_noise()), {"scale": jnp.ones(2)}, table)
  assert loads == []
  one = sample(velocity_jax, Expert(jnp.float32(1.0)), jnp.asarray(_noise()), {"scale": jnp.ones(2)}, table)
  np.testing.assert_array_equal(only, one)
  with pytest.raises(ValueError, match=r"experts' min_timestep \[500.0, 900.0\]; expected them to fall"):
    expert_steps([Expert(1.0, min_timestep=500.0), Expert(1.0, min_timestep=900.0), Expert(1.0)], table.timesteps)
  with pytest.raises(ValueError, match=r"timesteps \[100.0, 950.0\] rise"):
    expert_steps([Expert(1.0, min_timestep=900.0), Expert(1.0)], np.array([100.0, 950.0]))
