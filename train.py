"""Trains DreamActor-M2 stage 1 (pose-driven) or stage 2 (RGB-driven) on a Wan2.1 DiT.

  python train.py --config=dreamactor_jax/configs/stage1.py:tiny --workdir=runs/tiny1
  python train.py --config=dreamactor_jax/configs/stage1.py:1.3b --workdir=runs/stage1 \\
      --config.init.dit=ckpt/t2v-1.3b-wide --config.init.vae=ckpt/vae \\
      --config.init.prompt_cache=prompts.safetensors --config.data.stage1_dir=data/
  python train.py --config=dreamactor_jax/configs/stage2.py:1.3b --workdir=runs/stage2 ...   # after the bootstrap

Running the same command again resumes from the workdir's last checkpoint (and, when the run had
finished its steps, writes the bundle it may not have written). Every config field can be overridden
on the command line (`--config.train.steps=1000`); dreamactor_jax/configs/base.py explains each one. TensorBoard:
`tensorboard --logdir <workdir>/tensorboard`. Errors print one `error: ...` line and exit with status 2;
SIGTERM saves a checkpoint and exits with status 143.
"""

import sys

from absl import flags

from dreamactor_jax import cli
from dreamactor_jax.training.loop import Preempted, train

FLAGS = flags.FlagValues()
_CONFIG = cli.define_config(FLAGS, "dreamactor_jax/configs/stage1.py:tiny",
                            "Training config file and its argument, e.g. dreamactor_jax/configs/stage1.py:1.3b.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, TensorBoard metrics, sample videos and "
                               "the exported bundle; an existing run in it is resumed.", flag_values=FLAGS,
                               required=True)
PREEMPTED_STATUS = 143  # 128 + SIGTERM: stopped, not finished


def run() -> int:
  try:
    train(_CONFIG.value, _WORKDIR.value)
  except Preempted as e:
    print(e)
    return PREEMPTED_STATUS
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
