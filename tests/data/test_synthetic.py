"""The synthetic world: determinism, motion/identity independence, keypoints, splits, CLI files."""

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest

from dreamactor_jax import media
from dreamactor_jax.data import synthetic as S
from dreamactor_jax.data.synthetic import __main__ as synthetic_cli
from dreamactor_jax.data.keypoints import BODY_JOINTS

K = {name: i for i, name in enumerate(BODY_JOINTS)}
LIMBS = [("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"),
         ("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("l_hip", "l_knee"), ("l_knee", "l_ankle")]
SIZE = (64, 80)  # H != W so that a swapped axis shows


def _still_camera(motion: S.Motion) -> S.Motion:
  return dataclasses.replace(motion, params={**motion.params, "camera": "none"})


def test_deterministic_and_seeded():
  a = S.render(S.sample_identity("group", 3, seed=5), S.sample_motion("dance", 4, seed=5), 5, (32, 48))
  b = S.render(S.sample_identity("group", 3, seed=5), S.sample_motion("dance", 4, seed=5), 5, (32, 48))
  np.testing.assert_array_equal(a.video, b.video)
  np.testing.assert_array_equal(a.mask, b.mask)
  other = S.render(S.sample_identity("group", 3, seed=6), S.sample_motion("dance", 4, seed=5), 5, (32, 48))
  assert np.abs(other.video.astype(int) - a.video).mean() > 5
  assert a.video.shape == (5, 32, 48, 3) and a.mask.shape == (5, 32, 48) and a.background.shape == (5, 32, 48, 3)


def test_same_motion_same_skeleton_modulo_proportions():
  """B performing A's motion: bone directions and the root path agree; proportions and looks differ."""
  motion = _still_camera(S.sample_motion("walk", 2))
  clips = [S.render(S.sample_identity("humanoid", i, aspect=SIZE[1] / SIZE[0]), motion, 9, SIZE) for i in (0, 6)]
  (a, b) = [c.body[:, 0] for c in clips]  # T 18 3
  for start, end in LIMBS:
    bone_a, bone_b = a[:, K[end], :2] - a[:, K[start], :2], b[:, K[end], :2] - b[:, K[start], :2]
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(bone_a), unit(bone_b), atol=1e-3, err_msg=f"{start}->{end}")
  hips = lambda body: (body[:, K["r_hip"], 0] + body[:, K["l_hip"], 0]) / 2  # noqa: E731
  np.testing.assert_allclose(hips(a) - hips(a)[0], hips(b) - hips(b)[0], atol=1e-3)  # same root path
  assert np.ptp(hips(a)) > 3  # ... and it does walk
  lengths = [np.linalg.norm(x[0, K["r_knee"], :2] - x[0, K["r_hip"], :2]) for x in (a, b)]
  assert abs(lengths[0] - lengths[1]) > 0.3  # different proportions
  assert np.abs(clips[0].video[0].astype(int) - clips[1].video[0]).mean() > 10  # different looks


@pytest.mark.parametrize("kind", ["quadruped", "blob", "snake", "robot_arm", "group"])
def test_every_kind_follows_the_motion(kind):
  """The same identity moves differently under different motions, and a motion moves every kind."""
  identity = S.sample_identity(kind, 1)
  masks = [S.render(identity, _still_camera(S.sample_motion(m, 1)), 5, (48, 48)).mask for m in ("wave", "squat")]
  assert all(np.abs(np.diff(mask, axis=0)).sum() > 5 for mask in masks)  # the silhouette changes over time
  assert np.abs(masks[0] - masks[1]).sum() > 20  # and differently per motion
  assert (S.render(identity, S.sample_motion("wave", 1), 1, (48, 48)).body is None) == (identity.humanoids == 0)


def test_keypoints_land_on_the_body():
  for index, motion_type in enumerate(("walk", "wave", "jump", "turn", "dance", "squat", "zoom")):
    identity = S.sample_identity("humanoid", index, aspect=SIZE[1] / SIZE[0])
    clip = S.render(identity, S.sample_motion(motion_type, index), 7, SIZE)
    assert clip.body.shape == (7, 1, 18, 3)
    body = clip.body[:, 0]
    t, k = np.nonzero(body[..., 2] > 0)
    assert len(t) > 0.75 * body[..., 0].size  # most keypoints visible
    x, y = body[t, k, 0].astype(int), body[t, k, 1].astype(int)
    coverage = clip.mask[t, y, x]
    assert coverage.min() >= 0.5, (motion_type, [BODY_JOINTS[i] for i in k[coverage < 0.5]])


def test_keypoint_conventions():
  identity = S.sample_identity("humanoid", 2)
  pose = S.PoseParams.rest(2)
  pose.yaw[:] = [0.0, np.pi]  # facing the camera, then its back
  body = S.render_params(identity, pose, (64, 64)).body[:, 0]
  assert body[0, K["r_shoulder"], 0] < body[0, K["l_shoulder"], 0]  # the person's right is the image's left
  assert body[1, K["r_shoulder"], 0] > body[1, K["l_shoulder"], 0]
  face = [K["nose"], K["r_eye"], K["l_eye"]]
  assert (body[0, face, 2] == 1).all() and (body[1, face, 2] == 0).all()  # no face seen from behind
  np.testing.assert_allclose(body[:, K["neck"], :2], (body[:, K["r_shoulder"], :2] + body[:, K["l_shoulder"], :2]) / 2,
                             atol=1e-4)


def test_held_out_split_is_disjoint():
  kw = dict(identities=12, motions=8, seed=0)
  train = S.train_names(**kw)
  test = S.train_names(**kw, split="test")
  names = lambda pairs, i: {f"{kind}-{index}" for kind, index in (p[i] for p in pairs)}  # noqa: E731
  assert not names(train, 0) & names(test, 0) and not names(train, 1) & names(test, 1)
  assert len(names(train, 0)) == 12 and len(names(train, 1)) == 8 and len(train) == 96
  assert {kind for (kind, _), _ in train} == set(S.KINDS)
  with pytest.raises(ValueError, match="--identities=1000001; expected 1..1000000"):
    S.train_names(identities=S.TEST_OFFSET + 1, motions=1, seed=0)


def test_every_identity_its_own_motions():
  pairs = S.train_names(identities=12, motions=4, seed=0, split="test", own_motions=True)
  motions = [motion for _, motion in pairs]
  assert len(pairs) == 48 and len(set(motions)) == 48  # no motion instance shared
  types = {}  # identities start on consecutive types, so each kind sees most of them
  for (kind, _), (motion_type, _) in pairs:
    types.setdefault(kind, set()).add(motion_type)
  assert all(len(seen) >= 6 for seen in types.values())
  assert min(index for _, (_, index) in pairs) == S.TEST_OFFSET


def test_every_kind_moves_in_the_moving_split():
  """Reference-vs-truth silhouette IoU (exact masks, frames 1..8) below 0.5 happens for every kind,
  blobs included (their motions are exaggerated for it)."""
  moving = {}
  for (kind, i), (motion_type, m) in S.train_names(identities=12, motions=8, seed=0, split="test", own_motions=True):
    mask = S.render(S.sample_identity(kind, i), S.sample_motion(motion_type, m), 9, (32, 32)).mask >= 0.5
    iou = ((mask[1:] & mask[:1]).sum((1, 2)) / np.maximum((mask[1:] | mask[:1]).sum((1, 2)), 1)).mean()
    moving[kind] = moving.get(kind, 0) + int(iou < 0.5)
  assert all(count >= 2 for count in moving.values()), moving


def test_cli_writes_a_video_folder(tmp_path):
  out = tmp_path / "train"
  assert synthetic_cli.main(["--out", str(out), "--identities", "3", "--motions", "2", "--frames", "5", "--size",
                             "32x48", "--kinds=humanoid", "--kinds=blob", "--kinds=group", "--seed", "3",
                             "--no-progress"]) == 0
  metas = {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in out.glob("*.json")}
  assert sorted(metas) == sorted(p.stem for p in out.glob("*.mp4")) and len(metas) == 6
  for video_id, meta in metas.items():
    video = media.read_video(out / f"{video_id}.mp4").frames
    assert video.shape == (5, 32, 48, 3)
    assert video_id == f"{meta['identity']}_{meta['motion']}"
    identity = S.sample_identity(meta["kind"], int(meta["identity"].split("-")[1]), 3, aspect=1.5)
    motion = S.sample_motion(meta["motion_type"], int(meta["motion"].split("-")[1]), 3)
    assert meta["caption"] == S.caption(identity, motion) and meta["fps"] == S.DEFAULT_FPS
    truth = S.render(identity, motion, 5, (32, 48))
    assert np.abs(video.astype(int) - truth.video).mean() < 6  # the mp4 holds the world's clip (codec loss)
    pose_path = out / f"{video_id}.pose.npz"
    assert pose_path.exists() == (identity.humanoids > 0)
    if pose_path.exists():
      with np.load(pose_path) as pose:
        persons = identity.humanoids
        assert pose["body"].shape == (5, persons, 18, 3) and pose["body"].dtype == np.float32
        assert pose["hands"].shape == (5, persons, 2, 21, 3) and not pose["hands"][..., 2].any()
        assert pose["face"].shape == (5, persons, 68, 3) and not pose["face"][..., 2].any()
        np.testing.assert_allclose(pose["body"], truth.body)


def test_cli_writes_triplets(tmp_path):
  out = tmp_path / "test"
  assert synthetic_cli.main(["--out", str(out), "--split", "test", "--identities", "2", "--motions", "2", "--frames",
                             "5", "--size", "48x32", "--kinds=humanoid", "--kinds=snake", "--no-progress"]) == 0
  index = json.loads((out / "index.json").read_text())
  assert len(index["triplets"]) == 4
  train_identities = {f"{k}-{i:06d}" for (k, i), _ in S.train_names(identities=2, motions=2, seed=0,
                                                                     kinds=["humanoid", "snake"])}
  for name in index["triplets"]:
    folder = out / name
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["kind"] == meta["driving_kind"] and meta["reference_identity"] != meta["driving_identity"]
    assert not {meta["reference_identity"], meta["driving_identity"]} & train_identities
    with np.load(folder / "truth.npz") as f:
      truth = f["video"]
    assert truth.shape == (5, 48, 32, 3) and truth.dtype == np.uint8
    np.testing.assert_array_equal(iio.imread(folder / "reference.png"), truth[0])  # lossless frame 0
    assert media.read_video(folder / "driving.mp4").frames.shape == (5, 48, 32, 3)
    with np.load(folder / "reference_mask.npz") as f, np.load(folder / "truth_mask.npz") as g:
      np.testing.assert_array_equal(f["mask"], g["mask"][:1])  # the reference is frame 0
    with np.load(folder / "truth_mask.npz") as f, np.load(folder / "background.npz") as g:
      assert f["mask"].shape == (5, 48, 32) and g["video"].shape == (5, 48, 32, 3)
      character = f["mask"] > 127
      assert np.abs(truth.astype(int) - g["video"]).max(-1)[f["mask"] == 0].max() <= 1  # plate = truth off the body
      assert character.any()
    humanoid = meta["kind"] == "humanoid"
    assert (folder / "truth.pose.npz").exists() == humanoid == (folder / "driving.pose.npz").exists()


def test_neutral_reference_and_other_kind_driver(tmp_path):
  identity, motion = S.sample_identity("humanoid", 4), S.sample_motion("wave", 4)
  first = S.render_reference(identity, motion, (48, 48), "first")
  neutral = S.render_reference(identity, motion, (48, 48), "neutral")
  assert first.video.shape == (1, 48, 48, 3) and first.mask.shape == (1, 48, 48)
  np.testing.assert_array_equal(first.video, S.render(identity, motion, 1, (48, 48)).video)
  assert np.abs(first.video.astype(int) - neutral.video).sum() > 0 and (first.mask != neutral.mask).any()
  names = S.write_triplets(tmp_path, identities=2, motions=1, frames=3, size=(32, 32), kinds=["blob", "robot_arm"],
                           driver="other-kind", progress=False)
  for name in names:
    meta = json.loads((tmp_path / name / "meta.json").read_text())
    assert meta["kind"] != meta["driving_kind"]


def test_captions():
  identity = S.sample_identity("robot_arm", 0)
  motion = S.sample_motion("wave", 0)
  text = S.caption(identity, motion)
  assert "robot arm" in text and "waving" in text and text.startswith("a ")
  assert S.caption(S.sample_identity("group", 0), motion).split()[0] in ("two", "three")


def test_bad_flags(capsys):
  assert synthetic_cli.main(["--out", "/nonexistent/x", "--size", "big"]) == 2
  assert capsys.readouterr().err == "error: --size=big: expected HxW, two positive integers, e.g. 480x832\n"
  assert synthetic_cli.main(["--out", "/nonexistent/x", "--kinds=dragon"]) == 2
  assert capsys.readouterr().err.startswith("error: --kinds=dragon: value should be one of <humanoid|")
  with pytest.raises(ValueError, match="character kind 'dragon'"):
    S.sample_identity("dragon", 0)


def test_pair_records_are_exact_cross_identity_pairs():
  """Stage-2 triplets the world renders: B doing a motion of its own is the target, another identity
  A doing it drives, B's first frame (or B at rest) is the reference; every record new identities."""
  records = list(S.pair_records(count=4, frames=3, size=(32, 48), kinds=["humanoid", "blob"], seed=2))
  names = [(r["identity"], r["driving_identity"]) for r in records]
  assert len({name for pair in names for name in pair}) == 8  # no identity twice
  for n, record in enumerate(records):
    kind, index = record["identity"].rsplit("-", 1)
    motion_type, motion_index = record["video_id"].split("_", 1)[1].rsplit("-", 1)
    assert int(index) >= S.PAIRS_OFFSET and kind == ["humanoid", "blob"][n % 2]
    target = S.sample_identity(kind, int(index), 2, aspect=1.5)
    motion = S.sample_motion(motion_type, int(motion_index), 2)
    truth = S.render(target, motion, 3, (32, 48))
    np.testing.assert_array_equal(record["video"], truth.video)
    references = [S.render_reference(target, motion, (32, 48), mode).video[0] for mode in ("first", "neutral")]
    assert any(np.array_equal(record["reference"], r) for r in references)
    driver_kind, driver_index = record["driving_identity"].rsplit("-", 1)
    driver = S.sample_identity(driver_kind, int(driver_index), 2, aspect=1.5)
    np.testing.assert_array_equal(record["driving"], S.render(driver, motion, 3, (32, 48)).video)
    assert record["fps"] == S.DEFAULT_FPS and record["key"].startswith("world-")
