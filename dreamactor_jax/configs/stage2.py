"""Stage 2 (PAPER.md section 5): RGB-driven animation from the bootstrap's pseudo pairs, warm-started
from stage 1 (its adapters continue training; with full fine-tuning, point init.dit at stage 1's DiT).

  python train.py --config=dreamactor_jax/configs/stage2.py:1.3b --workdir=runs/stage2 \\
      --config.init.dit=ckpt/t2v-1.3b-wide --config.init.lora=runs/stage1/bundle/lora \\
      --config.init.vae=ckpt/vae --config.data.stage2_dir=pairs/
  python train.py --config=dreamactor_jax/configs/stage2.py:5b --workdir=runs/stage2-5b \
      --config.init.dit=ckpt/ti2v-5b --config.init.lora=runs/stage1-5b/bundle/lora \
      --config.init.vae=ckpt/vae22 --config.data.stage2_dir=pairs/
"""

from dreamactor_jax.configs import stage1


def get_config(arg: str = "1.3b"):
  config = stage1.get_config(arg)
  config.stage = 2
  return config
