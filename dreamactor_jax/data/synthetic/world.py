"""The synthetic world's vocabulary: character kinds, motion types, the index ranges of held-out
identities and motions, and the frame rate clips are written at."""

from __future__ import annotations

KINDS = ("humanoid", "quadruped", "blob", "snake", "robot_arm", "group")
MEMBER_KINDS = ("humanoid", "quadruped", "blob", "snake")  # kinds a group is made of
MOTION_TYPES = ("walk", "wave", "jump", "turn", "dance", "squat", "pan", "zoom")
TEST_OFFSET = 1_000_000  # held-out identities and motions have indices in [TEST_OFFSET, DRIVER_OFFSET)
DRIVER_OFFSET = 2_000_000  # drivers (identity A) of evaluation triplets: indices from here
PAIRS_OFFSET = 500_000  # training pairs rendered exactly (`pair_records`): identities and motions from here
DEFAULT_FPS = 8

IDENTITY_DOMAIN, MOTION_DOMAIN = 1, 2
