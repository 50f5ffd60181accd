"""Files: the training video folder (CONTRACTS.md format) and the evaluation triplets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax import media
from dreamactor_jax.data.keypoints import Pose, write_pose_npz
from dreamactor_jax.data.synthetic.identities import sample_identity
from dreamactor_jax.data.synthetic.motions import sample_motion
from dreamactor_jax.data.synthetic.render import caption, render, render_reference
from dreamactor_jax.data.synthetic.world import (DEFAULT_FPS, DRIVER_OFFSET, KINDS, MOTION_TYPES, PAIRS_OFFSET,
                                                 TEST_OFFSET)


def _write_pose(path: Path, body: np.ndarray) -> None:
  """The .pose.npz of CONTRACTS.md: body [T, P, 18, 3]; hands and face present, all absent."""
  pose = Pose.empty(body.shape[0], body.shape[1])
  pose.body[:] = body
  write_pose_npz(path, pose)


def _coverage(mask: np.ndarray) -> np.ndarray:
  """uint8 [T, H, W] coverage x 255 of a float32 0..1 silhouette."""
  return np.round(mask * 255).astype(np.uint8)


def _identity_kind(kinds: Sequence[str], i: int) -> str:
  return kinds[i % len(kinds)]


def train_names(*, identities: int, motions: int, seed: int, kinds: Sequence[str] = KINDS,
                motion_types: Sequence[str] = MOTION_TYPES, per_identity: int | None = None,
                split: str = "train", own_motions: bool = False) -> list[tuple[tuple[str, int], tuple[str, int]]]:
  """The ((kind, index), (motion type, index)) pairs of a video folder: identity i has kind
  kinds[i % K] and performs `per_identity` (default all) of the motions, motion m has type
  motion_types[m % len(motion_types)]; indices start at 0 (train) or TEST_OFFSET (test).

  With `own_motions`, no two identities share a motion instance: identity i's j-th motion has the
  index i * per_identity + j (plus the offset) and the type motion_types[(i + j) % len(motion_types)],
  so consecutive identities (hence every kind, given enough identities) start on other types."""
  _check_counts(identities, motions)
  offset = 0 if split == "train" else TEST_OFFSET
  per_identity = motions if per_identity is None else min(per_identity, motions)
  pairs = []
  for i in range(identities):
    for j in range(per_identity):
      if own_motions:
        motion_type, m = motion_types[(i + j) % len(motion_types)], i * per_identity + j
      else:
        m = (i * per_identity + j) % motions if per_identity < motions else j
        motion_type = motion_types[m % len(motion_types)]
      pairs.append(((_identity_kind(kinds, i), offset + i), (motion_type, offset + m)))
  return pairs


def _check_counts(identities: int, motions: int) -> None:
  for flag, value in (("--identities", identities), ("--motions", motions)):
    if not 1 <= value <= TEST_OFFSET:
      raise ValueError(f"{flag}={value}; expected 1..{TEST_OFFSET} (the held-out range starts at {TEST_OFFSET})")


@media.frozen_gc()
def write_video_folder(out: str | Path, *, identities: int, motions: int, frames: int, size: tuple[int, int],
                       seed: int = 0, kinds: Sequence[str] = KINDS, motion_types: Sequence[str] = MOTION_TYPES,
                       fps: float = DEFAULT_FPS, per_identity: int | None = None, split: str = "train",
                       own_motions: bool = False, progress: bool = True) -> list[str]:
  """Writes `<identity>_<motion>.mp4` + `.json` (+ `.pose.npz` when humanoids are present) for
  every pair of `train_names`; returns the video ids."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  aspect = size[1] / size[0]
  ids = []
  for (kind, i), (motion_type, m) in tqdm(train_names(identities=identities, motions=motions, seed=seed, kinds=kinds,
                                                      motion_types=motion_types, per_identity=per_identity,
                                                      split=split, own_motions=own_motions),
                                          desc=f"render {split}", unit="video", disable=not progress):
    identity, motion = sample_identity(kind, i, seed, aspect=aspect), sample_motion(motion_type, m, seed)
    clip = render(identity, motion, frames, size)
    video_id = f"{identity.name}_{motion.name}"
    media.write_video(out / f"{video_id}.mp4", clip.video, fps)
    if clip.body is not None:
      _write_pose(out / f"{video_id}.pose.npz", clip.body)
    meta = dict(identity=identity.name, kind=kind, members=[m.body.kind for m in identity.members],
                motion=motion.name, motion_type=motion.type, caption=caption(identity, motion), seed=seed, split=split,
                frames=frames, height=size[0], width=size[1], fps=fps)
    (out / f"{video_id}.json").write_text(json.dumps(meta, indent=1))
    ids.append(video_id)
  return ids


@media.frozen_gc()
def write_triplets(out: str | Path, *, identities: int, motions: int, frames: int, size: tuple[int, int],
                   seed: int = 0, kinds: Sequence[str] = KINDS, motion_types: Sequence[str] = MOTION_TYPES,
                   fps: float = DEFAULT_FPS, per_identity: int | None = None, reference: str = "first",
                   driver: str = "same-kind", own_motions: bool = True, progress: bool = True) -> list[str]:
  """Writes evaluation triplets for held-out identities B and motions M (by default every identity
  its own motion instances: `train_names(own_motions=True)`); returns their names.

  `<B>__<M>/` holds: reference.png (B: frame 0 of M, or `reference="neutral"`: a rest pose),
  driving.mp4 (a held-out driver A != B performing M; A is of B's kind, or with
  `driver="other-kind"` of another kind) with driving.pose.npz when A has humanoids,
  truth.mp4 and truth.npz (`video`, uint8 [T, H, W, 3], lossless: what scores read),
  truth_mask.npz (`mask`, uint8 [T, H, W], character coverage x 255), background.npz (`video`,
  uint8 [T, H, W, 3]: B's scene under M's camera without characters, for the silhouette score),
  reference_mask.npz (`mask`, uint8 [1, H, W]: the reference's exact silhouette, from which the
evaluation's "moving" split is found), truth.pose.npz when B has humanoids, and meta.json. An
index.json lists all names.
  """
  if driver not in ("same-kind", "other-kind"):
    raise ValueError(f"driver={driver!r}; expected 'same-kind' or 'other-kind'")
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  aspect = size[1] / size[0]
  pairs = train_names(identities=identities, motions=motions, seed=seed, kinds=kinds, motion_types=motion_types,
                      per_identity=per_identity, split="test", own_motions=own_motions)
  names = []
  for n, ((kind, i), (motion_type, m)) in enumerate(tqdm(pairs, desc="render triplets", unit="triplet",
                                                         disable=not progress)):
    target, motion = sample_identity(kind, i, seed, aspect=aspect), sample_motion(motion_type, m, seed)
    driver_kind = kind
    if driver == "other-kind" and len(kinds) > 1:
      others = [k for k in kinds if k != kind]
      driver_kind = others[n % len(others)]
    source = sample_identity(driver_kind, DRIVER_OFFSET + n, seed, aspect=aspect)
    name = f"{target.name}__{motion.name}"
    folder = out / name
    folder.mkdir(exist_ok=True)
    truth, driving = render(target, motion, frames, size), render(source, motion, frames, size)
    reference_clip = render_reference(target, motion, size, reference)
    media.write_image(folder / "reference.png", reference_clip.video[0])
    np.savez_compressed(folder / "reference_mask.npz", mask=_coverage(reference_clip.mask))
    media.write_video(folder / "driving.mp4", driving.video, fps)
    media.write_video(folder / "truth.mp4", truth.video, fps)
    np.savez_compressed(folder / "truth.npz", video=truth.video)
    np.savez_compressed(folder / "truth_mask.npz", mask=_coverage(truth.mask))
    np.savez_compressed(folder / "background.npz", video=truth.background)
    if driving.body is not None:
      _write_pose(folder / "driving.pose.npz", driving.body)
    if truth.body is not None:
      _write_pose(folder / "truth.pose.npz", truth.body)
    meta = dict(name=name, kind=kind, driving_kind=driver_kind, reference_identity=target.name,
                driving_identity=source.name, motion=motion.name, motion_type=motion.type,
                caption=caption(target, motion), driving_caption=caption(source, motion), reference=reference,
                seed=seed, frames=frames, height=size[0], width=size[1], fps=fps)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    names.append(name)
  (out / "index.json").write_text(json.dumps(dict(triplets=names, seed=seed, frames=frames, size=list(size),
                                                  reference=reference, driver=driver, own_motions=own_motions),
                                             indent=1))
  return names


def pair_records(*, count: int, frames: int, size: tuple[int, int], seed: int = 0, kinds: Sequence[str] = KINDS,
                 motion_types: Sequence[str] = MOTION_TYPES, fps: float = DEFAULT_FPS,
                 neutral_share: float = 0.25) -> Iterator[dict]:
  """`count` exact cross-identity stage-2 records (`data.write_stage2_dataset`'s format): a training
  identity B (kind kinds[n % K]) performing a motion of its own (type motion_types[n % M]) is the
  target, another training identity A doing that motion drives it (A of B's kind, or every other
  record of any kind), and B's first frame is the reference (a `neutral_share` of records: B at
  rest). Identities and motions are indexed from PAIRS_OFFSET, apart from the video folder's and
  below the held-out ones, so every record brings new identities."""
  aspect = size[1] / size[0]
  rng = np.random.default_rng([seed, PAIRS_OFFSET])
  for n in range(count):
    kind = kinds[n % len(kinds)]
    driver_kind = kind if n % 2 == 0 else kinds[int(rng.integers(len(kinds)))]
    target = sample_identity(kind, PAIRS_OFFSET + 2 * n, seed, aspect=aspect)
    source = sample_identity(driver_kind, PAIRS_OFFSET + 2 * n + 1, seed, aspect=aspect)
    motion = sample_motion(motion_types[n % len(motion_types)], PAIRS_OFFSET + n, seed)
    reference = render_reference(target, motion, size, "neutral" if rng.random() < neutral_share else "first")
    yield dict(key=f"world-{target.name}__{motion.name}__{source.name}", video_id=f"{target.name}_{motion.name}",
               identity=target.name, driving_identity=source.name, video=render(target, motion, frames, size).video,
               driving=render(source, motion, frames, size).video, reference=reference.video[0], fps=fps,
               caption=caption(target, motion), scores={})
