"""The bundled demo model (README "Demo"): a small in-context DiT trained through the real recipe on
the synthetic world (`dreamactor_jax/data/synthetic.py`), on a 2-core CPU in about an hour.

  python -m dreamactor_jax.demo --out assets/demo       # the whole recipe; it sets the paths below
  python train.py --config=dreamactor_jax/configs/demo.py:stage1 --workdir=runs/demo/stage1 --config.init.vae=... \\
      --config.data.stage1_dir=...

`arg`: stage1 (pose-driven) | stage2 (RGB-driven, from stage 1's weights).
"""

from dreamactor_jax.configs import stage1


def get_config(arg: str = "stage1"):
  if arg not in ("stage1", "stage2"):
    raise ValueError(f"unknown demo stage {arg!r}; choose stage1 or stage2")
  config = stage1.get_config("tiny")
  config.stage = 1 if arg == "stage1" else 2
  # A 6-layer DiT of width 128 (about 1.6M parameters): the Wan architecture, text branch kept but fed
  # zeros (the world's clips carry captions, but no text encoder fits this budget). It reads the patch
  # codec's 24 latent channels (`dreamactor_jax.demo.CODEC`): 24 noisy + 4 mask + 24 canvas.
  config.model.update(dim=128, num_heads=4, num_layers=6, ffn_dim=384, text_dim=8, freq_dim=64, lora_rank=0,
                      in_channels=52, out_channels=24)
  # 64x64 characters (a 64x128 canvas), 9-frame clips at the world's 8 fps.
  config.data.update(num_frames=9, frame_stride=1, buckets=((64, 64),), batch_size=4, num_workers=0, text_len=4,
                     random_crop=False,
                     allow_self_pairs=True)  # the bootstrap's colour-augmented self pairs of the non-humanoids
  config.animation.update(start_seconds=0.25, segment_frames=9, overlap_frames=1)
  # Two Euler steps from the top of a shift-6 grid: on the benchmark's moving split this toy's single
  # samples score 1.2 dB PSNR and 0.06 IoU higher than with 16 UniPC steps at shift 3 (its later steps
  # add patch-sized errors rather than detail; docs/experiments.md). The bootstrap keeps 16 steps.
  config.sampling.update(steps=2, guidance=1.0, shift=6.0, sampler="euler", grid="wan")
  config.sampling.train.update(distribution="logit_normal", mean=0.0, std=1.0, shift=3.0)
  config.optimizer.update(learning_rate=1e-3, warmup_steps=50, schedule="cosine", decay_steps=600,
                          final_lr_fraction=0.05, weight_decay=0.01)
  config.train.update(steps=600, log_every=25, sample_every=0, text_dropout=0.0, num_samples=2, sample_steps=16)
  config.checkpoint.update(every=100, keep_last=2, keep_every=0)
  return config
