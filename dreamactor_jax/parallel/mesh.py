"""The device mesh: four named axes built from `config.mesh`, and multi-host start-up.

Axes, outermost first (slowest interconnect outermost, as `jax.make_mesh` lays devices out):
`data` (replicas: pure data parallel), `fsdp` (data parallel whose weights, gradients and optimizer
state are sharded, ZeRO-3), `context` (sequence parallel: tokens split across devices, weights
sharded as over `fsdp`), `tensor` (heads and FFN width split, Megatron style). Which tensor axes go
on which mesh axes is the logical rules table in `config.parallel` (`rules.py`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "context", "tensor")


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Axis sizes in `MESH_AXES` order from `{axis: size}`; one axis may be -1 (fills the rest).

  Absent axes have size 1. Raises ValueError naming the axis whose size does not divide.
  """
  unknown = sorted(set(sizes) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"unknown mesh axes {unknown}; the mesh axes are {list(MESH_AXES)}")
  shape = {axis: int(sizes.get(axis, 1)) for axis in MESH_AXES}
  fill = [axis for axis, size in shape.items() if size == -1]
  if len(fill) > 1:
    raise ValueError(f"only one mesh axis may be -1, got mesh.{fill[0]}=-1 and mesh.{fill[1]}=-1")
  for axis, size in shape.items():
    if size == 0 or size < -1:
      raise ValueError(f"mesh.{axis}={size}: expected a positive size or -1")
    if size > 0 and num_devices % size:
      raise ValueError(f"mesh.{axis}={size} does not divide {num_devices} devices")
  known = math.prod(size for size in shape.values() if size > 0)
  if num_devices % known:
    fixed = " x ".join(f"{axis}={size}" for axis, size in shape.items() if size > 1)
    raise ValueError(f"mesh {fixed} ({known} devices) does not divide {num_devices} devices")
  if fill:
    shape[fill[0]] = num_devices // known
  elif known != num_devices:
    raise ValueError(f"mesh axes multiply to {known} but there are {num_devices} devices; set one axis to -1")
  return tuple(shape.values())


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `Mesh` over `devices` (default: all) with axes `MESH_AXES`, every axis `AxisType.Auto`.

  `sizes` is `config.mesh`, e.g. `{"data": 1, "fsdp": -1, "context": 4, "tensor": 1}`. Devices are
  ordered by `mesh_utils.create_device_mesh`, which follows the physical topology on TPU and GPU
  (mesh axes map to whole torus axes where they can, else split them: context 8 on a 4x4x4 slice).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(sizes, len(devices))
  try:
    grid = mesh_utils.create_device_mesh(shape, devices)
  except NotImplementedError:  # no mesh axis product matches the physical axes
    grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


# Environment variables that say how many processes a launcher started, by cluster kind.
_PROCESS_COUNT_VARS = ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def launched_process_count(environ: Mapping[str, str]) -> int:
  """How many processes the launcher started, read from its environment (1 if none says)."""
  for name in _PROCESS_COUNT_VARS:
    if environ.get(name, "").strip().isdigit():
      return int(environ[name])
  # A Cloud TPU VM of a multi-host slice lists every host of the slice.
  hosts = [host for host in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if host.strip()]
  return max(len(hosts), 1)


def initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
  """Starts JAX's multi-host runtime when the launcher started several processes; returns whether it did.

  Call it first in a trainer or sampler, before any other JAX call. `jax.distributed.initialize()`
  finds the coordinator itself on Cloud TPU, Slurm and Open MPI; elsewhere set
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.
  """
  environ = os.environ if environ is None else environ
  if launched_process_count(environ) <= 1 or jax.distributed.is_initialized():
    return False
  if "JAX_NUM_PROCESSES" in environ:
    jax.distributed.initialize(num_processes=int(environ["JAX_NUM_PROCESSES"]),
                               process_id=int(environ.get("JAX_PROCESS_ID", "0")))
  else:
    jax.distributed.initialize()
  return True
