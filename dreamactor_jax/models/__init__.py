"""NNX models: the Wan2.1 DiT (with LoRA and the motion_cache layout), VAE (and the demo's patch codec), UMT5
text encoder, CLIP image encoder and the attention function they share."""

from dreamactor_jax.models.attention import attention
from dreamactor_jax.models.dit import DiTConfig, MotionCache, WanDiT
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.models.lora import lora_params, merge_lora, unmerge_lora, with_lora
from dreamactor_jax.models.patch_codec import Codec, PatchCodec, PatchCodecConfig
from dreamactor_jax.models.text_encoder import UMT5Config, UMT5Encoder
from dreamactor_jax.models.vae import VAEConfig, WanVAE

__all__ = ["CLIPVisionConfig", "CLIPVisionEncoder", "Codec", "DiTConfig", "MotionCache", "PatchCodec",
           "PatchCodecConfig", "UMT5Config", "UMT5Encoder", "VAEConfig", "WanDiT", "WanVAE", "attention", "lora_params",
           "merge_lora", "unmerge_lora", "with_lora"]
