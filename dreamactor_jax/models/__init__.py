"""NNX models: the Wan2.1 DiT, VAE, UMT5 text encoder, CLIP image encoder and the attention function they share."""

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.dit import DiTConfig, WanDiT
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.models.text_encoder import UMT5Config, UMT5Encoder
from dreamactor_jax.models.vae import VAEConfig, WanVAE

__all__ = ["CLIPVisionConfig", "CLIPVisionEncoder", "DiTConfig", "UMT5Config", "UMT5Encoder", "VAEConfig", "WanDiT",
           "WanVAE", "attention"]
