"""A procedural character-animation world with exact ground truth (issue 8).

Characters of several kinds (`KINDS`: humanoids with an OpenPose skeleton, quadrupeds, blobs,
snakes, robot arms and groups of several characters) have an *identity* (proportions, colours,
texture, accessories, background, placement) and perform a *motion* (`MOTION_TYPES`: walk, wave,
jump, turn, dance, squat, camera pan, camera zoom). A motion is a time series of abstract pose
parameters (`PoseParams`: root offset, facing, upper-body lean and bend, head, four limbs of four
angles each, a rhythm phase and a camera) that knows nothing of bodies; each kind maps it onto its
own body (a quadruped's front legs follow the arms, a robot arm's joints mix the torso and arm
angles, a snake undulates with the phase, a blob's lobes point where limbs would). So
`render(identity_b, motion_of_a)` is the exact video of "identity B performing A's motion", the
truth that PAPER.md section 7's AW Bench lacks.

Bodies are built in 3D (x right, y up, z toward the camera, world unit = the canvas height),
projected orthographically through a panning, zooming camera and rasterised by `raster.py`.
Identities and motions are deterministic functions of (seed, kind or type, index); held-out ones
use indices from `TEST_OFFSET` (evaluation drivers from `DRIVER_OFFSET`), so no held-out identity
or motion can appear in a training folder.

  python -m dreamactor_jax.data.synthetic --out data/synth --identities 60 --motions 16 --frames 17 --size 64x64
  python -m dreamactor_jax.data.synthetic --out data/synth-test --split test --identities 12 --motions 8

The training split writes the video-folder format of CONTRACTS.md (`<id>.mp4`, `<id>.json`,
`<id>.pose.npz` when humanoids are present); the test split writes evaluation triplets (see
`write_triplets`), scored by `python -m dreamactor_jax.evaluation`.

Modules, in the order a clip is made: `world` (kinds, motion types, index ranges), `motions`,
`identities`, `camera` (3D helpers and the canvas), `bodies` (each kind drawn from a pose), `render`,
`files` (the video folder and the triplets), `__main__` (the command line).
"""

from dreamactor_jax.data.synthetic.files import pair_records, train_names, write_triplets, write_video_folder
from dreamactor_jax.data.synthetic.identities import Identity, sample_identity
from dreamactor_jax.data.synthetic.motions import Motion, PoseParams, sample_motion
from dreamactor_jax.data.synthetic.render import Clip, caption, render, render_params, render_reference
from dreamactor_jax.data.synthetic.world import (DEFAULT_FPS, DRIVER_OFFSET, KINDS, MOTION_TYPES, PAIRS_OFFSET,
                                                 TEST_OFFSET)

__all__ = ["DEFAULT_FPS", "DRIVER_OFFSET", "KINDS", "MOTION_TYPES", "PAIRS_OFFSET", "TEST_OFFSET", "Clip", "Identity",
           "Motion", "PoseParams", "caption", "pair_records", "render", "render_params", "render_reference",
           "sample_identity", "sample_motion", "train_names", "write_triplets", "write_video_folder"]
