"""Wan's flow matching as plain functions of arrays (WAN.md, "Flow matching and sampling"): sigma
grids and shift, the training objective and noise-level sampling, and the Euler and UniPC samplers
with batched classifier-free guidance in one jitted loop per expert (Wan2.2 A14B's two)."""

from dreamactor_jax.diffusion.flow_matching import (FlowLoss, SigmaDistribution, flow_matching_loss, noisy_latents,
                                                    relative_velocity, sample_training_sigmas, velocity_target,
                                                    weighted_mse)
from dreamactor_jax.diffusion.samplers import (Expert, Sampler, SolverState, SolverTable, expert_steps, guided_velocity,
                                               init_state, sample, solver_step, solver_table)
from dreamactor_jax.diffusion.schedules import (NUM_TRAIN_TIMESTEPS, Schedule, SigmaGrid, sampling_schedule,
                                                shift_sigmas, timesteps_of)

__all__ = [
    "Expert", "FlowLoss", "NUM_TRAIN_TIMESTEPS", "Sampler", "Schedule", "SigmaDistribution", "SigmaGrid", "SolverState",
    "SolverTable", "expert_steps", "flow_matching_loss", "guided_velocity", "init_state", "noisy_latents",
    "relative_velocity", "sample", "sample_training_sigmas", "sampling_schedule", "shift_sigmas", "solver_step",
    "solver_table", "timesteps_of", "velocity_target", "weighted_mse",
]
