"""NNX models: the Wan2.1 DiT and the attention function they share."""

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.dit import DiTConfig, WanDiT

__all__ = ["DiTConfig", "WanDiT", "attention"]
