"""PyTorch import/export and Orbax checkpoints."""

from dreamactor_jax.checkpoints.dit_torch import export_torch_dit, read_torch_dit, stream_params
from dreamactor_jax.checkpoints.orbax_dit import load_dit, save_dit
from dreamactor_jax.checkpoints.tensor_files import CheckpointError

__all__ = ["CheckpointError", "export_torch_dit", "load_dit", "read_torch_dit", "save_dit", "stream_params"]
