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
  return config
