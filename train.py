"""Trains DreamActor-M2 stage 1 (pose-driven) or stage 2 (RGB-driven) on a Wan2.1 DiT.

  python train.py --config=configs/stage1.py:tiny --workdir=runs/tiny1
  python train.py --config=configs/stage1.py:1.3b --workdir=runs/stage1 --config.init.dit=ckpt/t2v-1.3b-wide \\
      --config.init.vae=ckpt/vae --config.init.prompt_cache=prompts.safetensors --config.data.stage1_dir=data/
  python train.py --config=configs/stage2.py:1.3b --workdir=runs/stage2 ...   # after the bootstrap

Running the same command again resumes from the workdir's last checkpoint. Every config field can be
overridden on the command line (`--config.train.steps=1000`); configs/base.py explains each one.
TensorBoard: `tensorboard --logdir <workdir>/tensorboard`.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from dreamactor_jax.data import DataError
from dreamactor_jax.training.loop import Preempted, TrainingError, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/stage1.py:tiny", "Training config file and its argument, e.g. configs/stage1.py:1.3b; "
    "fields are overridden with --config.<section>.<field>=<value>.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, TensorBoard metrics, sample videos and "
                               "the exported bundle; an existing run in it is resumed.", required=True)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logging.getLogger().setLevel(logging.WARNING)  # Orbax and TFDS narrate every save and read at INFO
  logging.getLogger("dreamactor_jax").setLevel(logging.INFO)
  try:
    train(_CONFIG.value, _WORKDIR.value)
  except (TrainingError, DataError) as e:  # a bad setting or dataset: one line
    raise SystemExit(f"error: {e}") from None
  except Preempted as e:
    print(e)
    raise SystemExit(143) from None  # 128 + SIGTERM: stopped, not finished


if __name__ == "__main__":
  app.run(main)
