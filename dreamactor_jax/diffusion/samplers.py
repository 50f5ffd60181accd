"""Flow Euler and UniPC (bh2, order 2, x0-prediction) samplers with classifier-free guidance, as one
jitted loop over the steps (WAN.md, "Flow matching and sampling").

Both samplers are linear in the current sample, the velocity and the past x0 predictions
(x0 = x - sigma v), with coefficients fixed by the sigma grid. `solver_table` computes those
coefficients on the host in float64, once per grid; the loop only calls the model and combines:

    x0        = x - sigma_i v
    corrected = c0 x + c1 corrected_prev + c2 x0 + c3 x0_prev + c4 x0_prev2      (UniC)
    x_next    = p0 corrected + p1 x0 + p2 x0_prev + p3 v                          (UniP / Euler)

Euler: corrected = x, x_next = x + (sigma_{i+1} - sigma_i) v. UniPC follows diffusers'
UniPCMultistepScheduler (and the original Wan FlowUniPCMultistepScheduler) with flow sigmas,
predict_x0, solver_order 2, bh2, lower_order_final: order 1 on the first and last step, the
corrector from the second step on, none after the last; with a final sigma of 0 the last step
returns the x0 prediction.

Guidance: `uncond + g (cond - uncond)`, the conditional and unconditional branches stacked on the
batch axis ([cond; uncond]) in one velocity call per step.

Experts: a run is denoised by one model, or by Wan2.2 A14B's two split at a boundary timestep
(`Expert`, `expert_steps`), each with its own guidance scale. Each expert's steps are one call of the
same compiled loop (its span of the table is traced), with that expert's params; the next expert's
params are made only after the previous one's have been let go, so a caller keeping the idle
expert in host memory holds one on the device at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from dreamactor_jax.diffusion.schedules import Schedule

Sampler = Literal["euler", "unipc"]
# (params, latents [B, ...], timestep [B], context pytree with leading B) -> velocity [B, ...].
# Keep one function object across calls (a module-level function; the model as `params`, e.g.
# `(graphdef, state)` from `nnx.split`): it is a static argument of the jitted sampler.
VelocityFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SolverTable:
  """Per-step sampler coefficients, all fp32 with leading axis N (steps): timesteps `[N]` (DiT
  input), sigmas `[N]` (noise level of each call's sample), corrector `[N, 5]`, predictor `[N, 4]`."""

  timesteps: jax.Array | np.ndarray
  sigmas: jax.Array | np.ndarray
  corrector: jax.Array | np.ndarray
  predictor: jax.Array | np.ndarray

  @property
  def steps(self) -> int:
    return self.timesteps.shape[0]

  def step(self, index: int) -> SolverTable:
    """The coefficients of one step (what the scan sees)."""
    return jax.tree.map(lambda a: a[index], self)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SolverState:
  """What a step carries, each like the latents: the sample the model sees next, the last corrected
  sample and the two previous x0 predictions."""

  sample: jax.Array
  corrected: jax.Array
  x0_prev: jax.Array
  x0_prev2: jax.Array


def _lambda(sigma: float) -> float:
  """log-SNR of flow sigma: log(alpha) - log(sigma), alpha = 1 - sigma."""
  return float(np.log1p(-sigma) - np.log(sigma))


def _unipc_coefficients(sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """UniPC bh2 x0-prediction coefficients (see module docstring) for float64 sigmas `[N + 1]`."""
  steps = len(sigmas) - 1
  corrector, predictor = np.zeros((steps, 5)), np.zeros((steps, 4))
  lam = [_lambda(s) if s > 0 else np.inf for s in sigmas]
  for i in range(steps):
    if i == 0:
      corrector[i, 0] = 1.0  # no corrector before the first step
    else:
      # UniC of the sample at sigma_i from the corrected sample at sigma_{i-1}, order 1 then 2.
      alpha, h = 1 - sigmas[i], lam[i] - lam[i - 1]
      phi1 = np.expm1(-h)  # h phi_1(h) with hh = -h (x0-prediction); bh2: B(h) = phi1 too
      base_prev = -alpha * phi1  # on x0_prev, from x_t_ = sigma_t/sigma_s x - alpha phi1 m0
      if i == 1:
        rho_prev2, rho_now = 0.0, 0.5
        r1 = 1.0
      else:
        r1 = (lam[i - 2] - lam[i - 1]) / h
        phik = phi1 / -h - 1
        b1 = phik / phi1
        b2 = (phik / -h - 0.5) * 2 / phi1
        rho_prev2, rho_now = np.linalg.solve(np.array([[1.0, 1.0], [r1, 1.0]]), np.array([b1, b2]))
      # x_c = x_t_ - alpha B (rho_prev2 (m2 - m1) / r1 + rho_now (m0 - m1))
      corrector[i] = [0.0, sigmas[i] / sigmas[i - 1], -alpha * phi1 * rho_now,
                      base_prev + alpha * phi1 * (rho_prev2 / r1 + rho_now), -alpha * phi1 * rho_prev2 / r1]
    if sigmas[i + 1] == 0:
      predictor[i] = [0.0, 1.0, 0.0, 0.0]  # h = inf: x_next = x0
      continue
    alpha, h = 1 - sigmas[i + 1], lam[i + 1] - lam[i]
    phi1 = np.expm1(-h)
    predictor[i] = [sigmas[i + 1] / sigmas[i], -alpha * phi1, 0.0, 0.0]
    if 0 < i < steps - 1:  # order 2 (rho_p = 0.5) between the warm-up step and the final one
      r1 = (lam[i - 1] - lam[i]) / h
      predictor[i, 1] += alpha * phi1 * 0.5 / r1
      predictor[i, 2] = -alpha * phi1 * 0.5 / r1
  return corrector, predictor


def solver_table(schedule: Schedule, sampler: Sampler = "unipc") -> SolverTable:
  """Coefficients of `sampler` on the schedule's grid (host, float64 -> fp32)."""
  sigmas = np.asarray(schedule.sigmas, np.float64)
  steps = len(sigmas) - 1
  if steps < 1 or np.asarray(schedule.timesteps).shape != (steps,):
    raise ValueError(f"schedule has {len(sigmas)} sigmas and timesteps {np.shape(schedule.timesteps)}; "
                     "expected N + 1 and N")
  if sampler == "euler":
    corrector = np.zeros((steps, 5))
    corrector[:, 0] = 1.0
    predictor = np.zeros((steps, 4))
    predictor[:, 0] = 1.0
    predictor[:, 3] = sigmas[1:] - sigmas[:-1]
  elif sampler == "unipc":
    if not (np.all(sigmas[:-1] > 0) and np.all(sigmas[:-1] < 1)):
      raise ValueError(f"UniPC needs 0 < sigma < 1 at every model call (log-SNR); this grid spans "
                       f"{sigmas[0]} .. {sigmas[-2]}: use the 'wan' or 'unipc' grid")
    corrector, predictor = _unipc_coefficients(sigmas)
  else:
    raise ValueError(f"sampler {sampler!r}; expected 'euler' or 'unipc'")
  return SolverTable(timesteps=np.asarray(schedule.timesteps, np.float32), sigmas=sigmas[:-1].astype(np.float32),
                     corrector=corrector.astype(np.float32), predictor=predictor.astype(np.float32))


def init_state(noise: jax.Array) -> SolverState:
  """The state before the first step: the sample is the noise (fp32)."""
  sample = noise.astype(jnp.float32)
  zeros = jnp.zeros_like(sample)
  return SolverState(sample=sample, corrected=zeros, x0_prev=zeros, x0_prev2=zeros)


def solver_step(state: SolverState, velocity: jax.Array, step: SolverTable) -> SolverState:
  """One sampler step given the velocity at `state.sample` and the step's coefficients (`table.step(i)`)."""
  velocity = velocity.astype(jnp.float32)
  x0 = state.sample - step.sigmas * velocity
  c, p = step.corrector, step.predictor
  corrected = c[0] * state.sample + c[1] * state.corrected + c[2] * x0 + c[3] * state.x0_prev + c[4] * state.x0_prev2
  sample = p[0] * corrected + p[1] * x0 + p[2] * state.x0_prev + p[3] * velocity
  return SolverState(sample=sample, corrected=corrected, x0_prev=x0, x0_prev2=state.x0_prev)


def guided_velocity(velocity_fn: VelocityFn, params: Any, latents: jax.Array, timestep: jax.Array, context: Any,
                    guidance: jax.Array | None) -> jax.Array:
  """Velocity `[B, ...]` fp32 at `latents` `[B, ...]` and scalar `timestep`.

  guidance None: one call with `context` (batch B). Otherwise `context` is the [cond; uncond] pytree
  stacked on the batch axis (2B): one call on the doubled latents, then uncond + guidance (cond - uncond).
  """
  if guidance is None:
    return velocity_fn(params, latents, jnp.full(latents.shape[:1], timestep), context).astype(jnp.float32)
  both = jnp.concatenate([latents, latents], axis=0)
  velocity = velocity_fn(params, both, jnp.full(both.shape[:1], timestep), context).astype(jnp.float32)
  cond, uncond = jnp.split(velocity, 2, axis=0)
  return uncond + guidance * (cond - uncond)


@dataclasses.dataclass(frozen=True)
class Expert:
  """A denoiser of a sampling run and its guidance scale.

  One expert denoises every step. Wan2.2 A14B splits the run between two (docs/sampling.md, "Wan2.2 A14B"): the
  high-noise expert takes the steps whose timestep is >= boundary * 1000, the low-noise expert the
  rest (diffusers' `transformer` with `guidance_scale`, `transformer_2` with `guidance_scale_2`).

  `params`: what `velocity_fn` takes, or a function of no arguments returning it, called when the
  expert's first step comes, after the previous expert's steps have run and its params were let go
  (e.g. weights kept in host memory put on the device: only the active expert is there).
  `min_timestep`: the expert takes the steps with timestep >= this that no earlier expert took; the
  last expert takes the rest (its own is not read).
  """

  params: Any
  guidance: float | jax.Array = 1.0
  min_timestep: float = 0.0


def expert_steps(experts: Sequence[Expert], timesteps: np.ndarray) -> list[range]:
  """The steps each expert denoises (`Expert.min_timestep`), given the timesteps `[N]` of the table;
  contiguous and in order, since every sampling grid's timesteps fall."""
  floors = [float(expert.min_timestep) for expert in experts[:-1]]
  if any(high <= low for high, low in zip(floors, floors[1:])):
    raise ValueError(f"experts' min_timestep {floors}; expected them to fall (the high-noise expert first)")
  timesteps = np.asarray(timesteps, np.float64)
  owners = [next((k for k, floor in enumerate(floors) if t >= floor), len(floors)) for t in timesteps]
  if any(a > b for a, b in zip(owners, owners[1:])):
    raise ValueError(f"timesteps {timesteps.tolist()} rise; expected them to fall, as sampling grids do")
  ends = np.cumsum([owners.count(k) for k in range(len(experts))]).tolist()
  return [range(end - owners.count(k), end) for k, end in enumerate(ends)]


_PROGRESS: dict[int, Callable[[int], None]] = {}
_PROGRESS_IDS = itertools.count(1)


def _report(hook: np.ndarray, step: np.ndarray) -> None:
  callback = _PROGRESS.get(int(hook))
  if callback is not None:
    callback(int(step))


@functools.partial(jax.jit, static_argnames=("velocity_fn", "report"))
def _denoise(velocity_fn: VelocityFn, report: bool, params: Any, state: SolverState, context: Any,
             uncond_context: Any, table: SolverTable, guidance: jax.Array, start: jax.Array, stop: jax.Array,
             hook: jax.Array) -> SolverState:
  """Steps `start` to `stop` of the table (traced: every expert's span runs one compiled loop)."""
  if uncond_context is None:
    guidance = None
  else:  # stacked once, outside the loop
    context = jax.tree.map(lambda c, u: jnp.concatenate([c, u], axis=0), context, uncond_context)

  def body(index: jax.Array, state: SolverState) -> SolverState:
    step = table.step(index)
    velocity = guided_velocity(velocity_fn, params, state.sample, step.timesteps, context, guidance)
    state = solver_step(state, velocity, step)
    if report:
      jax.debug.callback(_report, hook, index + 1)
    return state

  return jax.lax.fori_loop(start, stop, body, state)


def sample(velocity_fn: VelocityFn, experts: Expert | Sequence[Expert], noise: jax.Array, context: Any,
           table: SolverTable, *, uncond_context: Any = None,
           progress: Callable[[int], None] | None = None) -> jax.Array:
  """Denoises `noise` `[B, ...]` over the table's steps; returns the final latents `[B, ...]` fp32.

  `velocity_fn(params, latents, timestep, context)` with each expert's params (`Expert`: one for the
  whole run, or A14B's two split at a timestep); `context` is any pytree with leading batch B (text,
  mask, condition latents, image tokens, ...). With `uncond_context` (the same pytree with the
  negative prompt), each step makes one velocity call on the doubled batch and applies the expert's
  guidance (traced: changing it does not recompile). `progress(steps_done)` is called on the host
  after each step (e.g. `lambda n: bar.update(1)` for tqdm); the call then waits for the result.
  Without `progress`, and with one expert, the function can be used inside other jitted code.
  """
  experts = [experts] if isinstance(experts, Expert) else list(experts)
  spans = expert_steps(experts, table.timesteps) if len(experts) > 1 else [range(table.steps)]

  def run(report: bool, hook: int) -> jax.Array:
    state = init_state(noise)
    for expert, span in zip(experts, spans):
      if not span:
        continue
      if callable(expert.params):
        state = jax.block_until_ready(state)  # the previous expert's params are free before these arrive
      params = expert.params() if callable(expert.params) else expert.params
      state = _denoise(velocity_fn, report, params, state, context, uncond_context, table,
                       jnp.asarray(expert.guidance, jnp.float32), jnp.int32(span.start), jnp.int32(span.stop),
                       jnp.int32(hook))
      del params  # this expert's only reference: its device copy goes once its steps have run
    return state.sample

  if progress is None:
    return run(False, 0)
  hook = next(_PROGRESS_IDS)
  _PROGRESS[hook] = progress
  try:
    latents = jax.block_until_ready(run(True, hook))
    jax.effects_barrier()  # every step's callback has run
  finally:
    del _PROGRESS[hook]
  return latents
