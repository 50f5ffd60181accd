"""Parallelism: the device mesh, logical-axis rules, activation constraints, sequence-parallel
attention (Ulysses, ring) and multi-host batch assembly. See README "Parallelism"."""

from dreamactor_jax.parallel.batch import global_batch
from dreamactor_jax.parallel.mesh import MESH_AXES, initialize_distributed, make_mesh, mesh_shape
from dreamactor_jax.parallel.rules import ShardingPlan, constrain, current_plan, make_plan

__all__ = ["MESH_AXES", "ShardingPlan", "constrain", "current_plan", "global_batch", "initialize_distributed",
           "make_mesh", "make_plan", "mesh_shape"]
