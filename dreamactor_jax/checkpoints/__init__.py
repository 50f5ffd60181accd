"""PyTorch import/export and Orbax checkpoints."""

from dreamactor_jax.checkpoints.dit_torch import export_torch_dit
from dreamactor_jax.checkpoints.importers import IMPORTERS, convert_to_orbax, load_torch, read_params
from dreamactor_jax.checkpoints.orbax_model import load_codec, load_dit, load_model, save_lora, save_model
from dreamactor_jax.checkpoints.tensor_files import CheckpointError

__all__ = ["CheckpointError", "IMPORTERS", "convert_to_orbax", "export_torch_dit", "load_codec", "load_dit",
           "load_model", "load_torch", "read_params", "save_lora", "save_model"]
