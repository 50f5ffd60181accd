"""Stage 1 (PAPER.md section 3): pose-driven animation, LoRA on the feed-forward layers of Wan.

  python train.py --config=dreamactor_jax/configs/stage1.py:1.3b --workdir=runs/stage1 \\
      --config.init.dit=ckpt/t2v-1.3b-wide --config.init.vae=ckpt/vae --config.init.prompt_cache=prompts.safetensors \\
      --config.data.stage1_dir=data/
  python train.py --config=dreamactor_jax/configs/stage1.py:tiny --workdir=runs/tiny1   # random tiny model, CPU

`arg`: tiny | 1.3b (Wan2.1-T2V-1.3B widened to 36 input channels) | 14b (Wan2.1-I2V-14B) | 5b
(Wan2.2-TI2V-5B on its 16x VAE, `convert dit` and `convert vae` of its weights as they are: the
canvas's given tokens are its clean latents at timestep 0, no mask channels; sizes multiples of 32)
| 5b-tiny (a random tiny model shaped so, for a tiny 16x VAE of 12 latent channels) | animate2 (Wan-Animate-2-14B, `convert dit` of its weights) | animate2-tiny (a random tiny model in
that layout). The animate2 sizes fine-tune Wan-Animate-2 with this recipe (docs/training.md): the
rendered skeletons (stage 1) or another identity's clip (stage 2) are its driving pass, the reference
image its leading frame; the bundle they export samples with its `base` preset.
"""

from dreamactor_jax.configs import base

SIZES = {"tiny": "tiny", "1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-i2v-14b", "5b": "wan2.2-ti2v-5b",
         "5b-tiny": "tiny", "animate2": "wan2.1-i2v-14b", "animate2-tiny": "tiny"}
# The Wan2.2 VAE makes 16x16 pixels one latent: with 2x2 patches each canvas half is a multiple of 32.
BUCKETS_16X = ((480, 832), (832, 480), (640, 640), (544, 736), (736, 544))


def get_config(arg: str = "1.3b"):
  if arg not in SIZES:
    raise ValueError(f"unknown size {arg!r}; choose one of {sorted(SIZES)}")
  config = base.get_config(SIZES[arg])
  config.stage = 1
  if arg.startswith("5b"):  # TI2V reads the latents alone (48; the tiny VAE's 12), given tokens at timestep 0
    channels = 12 if arg == "5b-tiny" else 48
    config.model.update(in_channels=channels, out_channels=channels, condition="timestep")
    config.data.buckets = ((64, 64), (64, 96), (96, 64)) if arg == "5b-tiny" else BUCKETS_16X
    config.sampling.shift = 5.0  # Wan2.2 wan_ti2v_5B.py sample_shift
  else:
    config.model.in_channels = 36  # 16 noisy + 4 mask + 16 canvas latents (Wan I2V's input)
  config.model.lora_rank = 256  # PAPER.md 3: LoRA rank 256 on the feed-forward layers, base frozen
  if arg.startswith("animate2"):
    from dreamactor_jax.sampling.animate import PRESETS  # the sampling the exported bundle's preset gives

    # ANIMATE2.md: the driving pass at timestep 1 (the layout has no start transition: never blanked)
    # blockwise attention: training differentiates the frame-aligned attention's log-sum-exp, which only
    # the blockwise kernel's backward carries (models/attention.py; cuDNN's and splash's refuse)
    config.model.update(layout="animate2", motion_timestep=1.0, attention="blockwise")
    config.animation.update(PRESETS["base"]["animation"])
    config.sampling.update(PRESETS["base"]["sampling"])
  if arg.endswith("tiny"):
    config.model.lora_rank = 0  # a random tiny model has nothing to preserve: train it whole
    config.train.update(steps=200, log_every=10, sample_every=0, text_dropout=0.0)
    config.optimizer.update(learning_rate=1e-3, warmup_steps=10)
    config.checkpoint.update(every=50, keep_every=0)
    config.data.update(batch_size=2, num_workers=0)
    config.animation.start_seconds = 0.25
    if arg == "animate2-tiny":  # segments of the clips' length; no text encoder, so the empty driving prompt
      config.animation.segment_frames = config.data.num_frames
      config.sampling.driving_prompt = ""
  else:
    config.model.update(param_dtype="bfloat16", dtype="bfloat16", remat="full")
  return config
