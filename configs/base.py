"""Base config of dreamactor-jax; `arg` picks a model size from MODELS.

  python -m dreamactor_jax.convert dit --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/t2v-1.3b
  python benchmarks/dit_forward.py --config=configs/base.py:tiny --config.model.num_layers=3

Model fields are those of `dreamactor_jax.models.DiTConfig`.
"""

import ml_collections

# Released Wan2.1 sizes: WAN.md table, matching the config.json of each Wan-AI/Wan2.1-* repo.
# `tiny` has unequal sizes (3 heads of 16, ffn 40) so that a swapped axis fails tests loudly.
MODELS = {
    "tiny": dict(dim=48, num_heads=3, num_layers=2, ffn_dim=40, text_dim=20, freq_dim=32),
    "wan2.1-t2v-1.3b": dict(dim=1536, num_heads=12, num_layers=30, ffn_dim=8960),
    "wan2.1-t2v-14b": dict(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824),
    "wan2.1-i2v-14b": dict(dim=5120, num_heads=40, num_layers=40, ffn_dim=13824, in_channels=36, image_dim=1280),
}


def get_config(arg: str = "wan2.1-t2v-1.3b") -> ml_collections.ConfigDict:
  if arg not in MODELS:
    raise ValueError(f"unknown model {arg!r}; choose one of {sorted(MODELS)}")
  config = ml_collections.ConfigDict()
  config.model_name = arg
  config.model = ml_collections.ConfigDict(dict(
      dim=1536, num_heads=12, num_layers=30, ffn_dim=8960, in_channels=16, out_channels=16, text_dim=4096,
      freq_dim=256, patch_size=(1, 2, 2), image_dim=ml_collections.FieldReference(None, field_type=int),
      eps=1e-6, rope_theta=10000.0,
      param_dtype="float32",  # "bfloat16" halves memory; optimizer moments stay fp32 in training
      dtype="float32",  # compute dtype: "bfloat16" on accelerators
      remat="none",  # none | full | dots_saveable | dots_with_no_batch_dims_saveable
      attention="auto",  # auto | xla | cudnn | blockwise
  ))
  config.model.update(MODELS[arg])

  # ---- In-context animation and flow matching (dreamactor_jax/animation, dreamactor_jax/diffusion) ----
  config.animation = ml_collections.ConfigDict(dict(
      # start transition: the driving signal is blanked this long in training; at inference as much blank
      # motion is prepended, then cut from the output
      start_seconds=1.0,
      fit_frames="pad",  # pad | error: lead-in + driving frames must be 1 + 4k; pad lengthens the lead-in (<= 3)
      blank=0.0,  # pixel value (-1..1) of the empty left half, blank motion frames and reference padding
      given_frames=1,  # left frames given in training: 1 = the reference image (paper); 1 + 4m also trains continuation
      segment_frames=81,  # long videos: frames per segment (1 + 4k)
      overlap_frames=5,  # frames each later segment continues from (given); 1 + 4m fills whole latent frames
      loss_region="generated",  # generated | canvas: where the flow-matching loss is taken
  ))
  config.sampling = ml_collections.ConfigDict(dict(
      sampler="unipc",  # unipc (bh2, order 2, x0-prediction) | euler
      grid="wan",  # sigma grid: wan (original Wan sampler) | unipc (diffusers' UniPC) | euler (diffusers' Euler)
      steps=40,  # denoising steps (Wan: 40 for I2V, 50 for T2V)
      shift=3.0,  # sampling sigma shift s*sig/(1+(s-1)*sig): 3.0 for 480p I2V, 5.0 for 720p
      guidance=5.0,  # classifier-free guidance on text: uncond + g * (cond - uncond); 1.0 turns it off
      negative_prompt="",  # text of the unconditional branch
      # Training noise levels (diffusion.sample_training_sigmas keyword arguments):
      train=ml_collections.ConfigDict(dict(
          distribution="logit_normal",  # logit_normal | uniform
          mean=0.0,  # logit-normal location
          std=1.0,  # logit-normal scale
          shift=1.0,  # shift applied after drawing (1.0 = none; 3.0 with uniform ~ the sampling grid's density)
      )),
  ))
  return config
