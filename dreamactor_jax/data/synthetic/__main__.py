"""The synthetic world's command line (the package docstring says what it writes).

  python -m dreamactor_jax.data.synthetic --out data/synth --identities 60 --motions 16 --frames 17 --size 64x64
  python -m dreamactor_jax.data.synthetic --out data/synth-test --split test --identities 12 --motions 8
"""

from __future__ import annotations

import sys

from absl import flags

from dreamactor_jax import cli
from dreamactor_jax.data.synthetic.files import write_triplets, write_video_folder
from dreamactor_jax.data.synthetic.world import DEFAULT_FPS, KINDS, MOTION_TYPES

FLAGS = flags.FlagValues()
_OUT = flags.DEFINE_string("out", None, "Output folder (created).", required=True, flag_values=FLAGS)
_IDENTITIES = flags.DEFINE_integer("identities", 8, "Number of identities; identity i has kind "
                                   "KINDS[i % len(kinds)].", lower_bound=1, flag_values=FLAGS)
_MOTIONS = flags.DEFINE_integer("motions", 8, "Number of motions; motion m has type TYPES[m % len(types)].",
                                lower_bound=1, flag_values=FLAGS)
_FRAMES = flags.DEFINE_integer("frames", 17, "Frames per clip, 1 + 4k for the model.", lower_bound=1,
                               flag_values=FLAGS)
_SIZE = cli.define_size("size", "64x64", "HxW of each frame (training and sampling fit it to the model's sizes).",
                        FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "World seed: same seed, same world.", lower_bound=0, flag_values=FLAGS)
_KINDS = flags.DEFINE_multi_enum("kinds", list(KINDS), KINDS, "Character kinds (repeatable; default all).",
                                 flag_values=FLAGS)
_MOTION_TYPES = flags.DEFINE_multi_enum("motion-types", list(MOTION_TYPES), MOTION_TYPES,
                                        "Motion types (repeatable; default all).", flag_values=FLAGS)
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "test"], "train: a video folder (CONTRACTS.md format); "
                           "test: evaluation triplets of held-out identities and motions.", flag_values=FLAGS)
_PER_IDENTITY = flags.DEFINE_integer("per-identity", None, "Motions per identity, cycling through the motions "
                                     "(default: every motion).", lower_bound=1, flag_values=FLAGS)
_FPS = flags.DEFINE_float("fps", DEFAULT_FPS, "Frame rate written.", lower_bound=0.001, flag_values=FLAGS)
_REFERENCE = flags.DEFINE_enum("reference", "first", ["first", "neutral"], "test: the reference image is frame 0 "
                               "of the truth or a rest pose.", flag_values=FLAGS)
_DRIVER = flags.DEFINE_enum("driver", "same-kind", ["same-kind", "other-kind"], "test: the driving character's "
                            "kind.", flag_values=FLAGS)
_MOTION_INSTANCES = flags.DEFINE_enum("motion-instances", None, ["own", "shared"], "own: every identity performs "
                                      "motions of its own; shared: identities share --motions instances "
                                      "(default: own for test, shared for train).", flag_values=FLAGS)
_NO_PROGRESS = flags.DEFINE_bool("no-progress", False, "No progress bar.", flag_values=FLAGS)


def run() -> None:
  common = dict(identities=_IDENTITIES.value, motions=_MOTIONS.value, frames=_FRAMES.value, size=tuple(_SIZE.value),
                seed=_SEED.value, kinds=_KINDS.value, motion_types=_MOTION_TYPES.value, fps=_FPS.value,
                per_identity=_PER_IDENTITY.value, progress=not _NO_PROGRESS.value)
  test = _SPLIT.value == "test"
  common["own_motions"] = (_MOTION_INSTANCES.value or ("own" if test else "shared")) == "own"
  if not test:
    names = write_video_folder(_OUT.value, **common)
  else:
    names = write_triplets(_OUT.value, reference=_REFERENCE.value, driver=_DRIVER.value, **common)
  print(f"wrote {len(names)} {'videos' if _SPLIT.value == 'train' else 'triplets'} to {_OUT.value}")


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
