"""Bodies of the synthetic world: each kind maps a pose onto its shapes (and keypoints for humanoids)."""

from __future__ import annotations

import numpy as np

from dreamactor_jax.data.keypoints import BODY_JOINTS
from dreamactor_jax.data.raster import Paint
from dreamactor_jax.data.synthetic.camera import Canvas, limb_direction, rot_x, rot_y, rot_z, rotate, vec
from dreamactor_jax.data.synthetic.identities import Member
from dreamactor_jax.data.synthetic.motions import PoseParams


def _ground(points: list[np.ndarray], radii: list) -> np.ndarray:
  """[T] lift that puts the lowest of `points` (body frame, [T, 3], minus its radius) on y = 0."""
  lowest = np.min(np.stack([p[:, 1] - r for p, r in zip(points, radii)]), axis=0)
  return -lowest


def _humanoid(canvas: Canvas, member: Member, pose: PoseParams, floor: float) -> np.ndarray:
  """Draws a humanoid; returns its keypoints [T, 18, 3] (x, y pixels, confidence)."""
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  frames = pose.frames
  upper = rot_z(-pose.lean) @ rot_x(pose.bend)
  head_rot = upper @ rot_z(-pose.head[:, 0]) @ rot_x(pose.head[:, 1])
  p: dict[str, np.ndarray] = {}  # body frame, pelvis at the origin
  for side, name in ((-1.0, "r"), (1.0, "l")):
    i = 0 if side < 0 else 1
    leg, arm = pose.legs[:, i], pose.arms[:, i]
    p[f"{name}_hip"] = vec(side * d["hips"], 0, 0) + np.zeros((frames, 3))
    p[f"{name}_knee"] = p[f"{name}_hip"] + d["thigh"] * limb_direction(leg[:, 0], leg[:, 1], side)
    shin = limb_direction(leg[:, 0] + leg[:, 2], leg[:, 1] + leg[:, 3], side)
    p[f"{name}_ankle"] = p[f"{name}_knee"] + d["shin"] * shin
    p[f"{name}_toe"] = p[f"{name}_ankle"] + vec(0, -0.2 * d["leg_r"], d["foot"])
    p[f"{name}_shoulder"] = rotate(upper, [side * d["shoulders"], d["torso"] - 0.7 * d["chest"], 0])
    upper_arm = rotate(upper, limb_direction(arm[:, 0], arm[:, 1], side))
    p[f"{name}_elbow"] = p[f"{name}_shoulder"] + d["upper_arm"] * upper_arm
    forearm = rotate(upper, limb_direction(arm[:, 0] + arm[:, 2], arm[:, 1] + arm[:, 3], side))
    p[f"{name}_wrist"] = p[f"{name}_elbow"] + d["forearm"] * forearm
    p[f"{name}_hand"] = p[f"{name}_wrist"] + 0.5 * d["arm_r"] * forearm
  p["neck_base"] = rotate(upper, [0, d["torso"], 0])
  p["head"] = p["neck_base"] + rotate(head_rot, [0, d["neck"] + d["head"], 0])
  shoe = 0.75 * d["leg_r"]
  lift = _ground([p["r_ankle"], p["l_ankle"], p["r_toe"], p["l_toe"]], [shoe] * 4)
  yaw = rot_y(pose.yaw)
  root = vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  w = {k: root + rotate(yaw, v) for k, v in p.items()}  # world
  world_dir = lambda rotation, v: rotate(yaw @ rotation, v)  # noqa: E731

  hr = d["head"]
  if extras["hair"] == "long":
    canvas.capsule(w["head"] + world_dir(head_rot, [0, 0.2 * hr, -0.35 * hr]),
                   w["head"] + world_dir(head_rot, [0, -1.6 * hr, -0.45 * hr]), 0.95 * hr, 0.8 * hr, paints["hair"])
  if extras["backpack"]:
    canvas.capsule(root + world_dir(upper, [0, 0.3 * d["torso"], -1.3 * d["chest"]]),
                   root + world_dir(upper, [0, 0.75 * d["torso"], -1.3 * d["chest"]]), 0.9 * d["chest"],
                   0.9 * d["chest"], paints["extra"])
  for name in ("r", "l"):
    canvas.capsule(w[f"{name}_hip"], w[f"{name}_knee"], d["leg_r"], 0.85 * d["leg_r"], paints["pants"])
    canvas.capsule(w[f"{name}_knee"], w[f"{name}_ankle"], 0.85 * d["leg_r"], 0.7 * d["leg_r"], paints["pants"])
    canvas.capsule(w[f"{name}_ankle"], w[f"{name}_toe"], shoe, 0.8 * shoe, paints["shoes"])
  if extras["skirt"]:  # two crossed cards: one shows from the front, the other from the side
    top, bottom = 0.9 * d["torso"] * 0.12, -0.55 * d["thigh"]
    half_top, half_bottom = d["hips"] + 1.4 * d["leg_r"], d["hips"] + 3.0 * d["leg_r"]
    for axis, weight in ((0, np.abs(np.cos(pose.yaw))), (2, np.abs(np.sin(pose.yaw)))):
      corners = []
      for cx, cy in ((-half_top, top), (half_top, top), (half_bottom, bottom), (-half_bottom, bottom)):
        v = [0.0, cy, 0.0]
        v[axis] = cx
        corners.append(root + rotate(yaw, v))
      canvas.polygon(canvas.project(np.stack(corners, 1)), paints["pants"], z=root[:, 2] + 0.01,
                     opacity=np.clip(3 * weight - 0.5, 0, 1))
  for side in (-1.0, 1.0):  # the torso: two capsules side by side, thin seen from the side
    bottom = root + world_dir(upper, [side * (d["shoulders"] - d["chest"]) * 0.6, 0.0, 0])
    top = root + world_dir(upper, [side * (d["shoulders"] - d["chest"]), d["torso"] - 0.7 * d["chest"], 0])
    canvas.capsule(bottom, top, 0.9 * d["chest"], d["chest"], paints["shirt"], bias=-1e-3)
  canvas.capsule(w["neck_base"] - world_dir(upper, [0, 0.5 * d["neck"], 0]), w["head"], 0.6 * d["arm_r"] + 0.01,
                 0.6 * d["arm_r"] + 0.01, paints["skin"], bias=-1e-3)
  if extras["scarf"]:
    canvas.capsule(w["neck_base"] + world_dir(upper, [-0.6 * d["shoulders"], -0.2 * d["neck"], 0.3 * d["chest"]]),
                   w["neck_base"] + world_dir(upper, [0.6 * d["shoulders"], -0.2 * d["neck"], 0.3 * d["chest"]]),
                   0.35 * d["chest"], 0.35 * d["chest"], paints["extra"])
    canvas.capsule(w["neck_base"] + world_dir(upper, [-0.3 * d["shoulders"], -0.3 * d["neck"], 0.5 * d["chest"]]),
                   w["neck_base"] + world_dir(upper, [-0.35 * d["shoulders"], -0.35 * d["torso"], 0.6 * d["chest"]]),
                   0.25 * d["chest"], 0.22 * d["chest"], paints["extra"])
  for name in ("r", "l"):
    canvas.capsule(w[f"{name}_shoulder"], w[f"{name}_elbow"], d["arm_r"], 0.9 * d["arm_r"],
                   paints["shirt"])
    canvas.capsule(w[f"{name}_elbow"], w[f"{name}_wrist"], 0.9 * d["arm_r"], 0.8 * d["arm_r"],
                   paints["shirt"] if extras["sleeves"] else paints["skin"])
    canvas.circle(w[f"{name}_hand"], 1.15 * d["arm_r"], paints["skin"])
  canvas.circle(w["head"], hr, paints["skin"])
  if extras["hair"] != "none":
    canvas.circle(w["head"] + world_dir(head_rot, [0, 0.22 * hr, -0.3 * hr]), 0.98 * hr, paints["hair"])
  facing = world_dir(head_rot, [0, 0, 1])[:, 2]  # how much the face looks at the camera
  keypoint_conf = {}
  for side, name in ((-1.0, "r"), (1.0, "l")):
    local = [side * 0.38 * hr, 0.12 * hr, 0.92 * hr]
    eye = w["head"] + world_dir(head_rot, local)
    toward = world_dir(head_rot, np.array(local) / hr)[:, 2]
    visible = np.clip((toward - 0.1) / 0.25, 0, 1)  # the near eye stays in profile
    canvas.circle(eye, 0.2 * hr, paints["eyes"], bias=hr, opacity=visible)
    w[f"{name}_eye"], keypoint_conf[f"{name}_eye"] = eye, visible > 0.5
    w[f"{name}_ear"] = w["head"] + world_dir(head_rot, [side * 0.88 * hr, 0.05 * hr, 0])
    keypoint_conf[f"{name}_ear"] = world_dir(head_rot, [side, 0, 0])[:, 2] > -0.5
  w["nose"] = w["head"] + world_dir(head_rot, [0, -0.15 * hr, 0.9 * hr])
  keypoint_conf["nose"] = facing > -0.1
  if extras["hat"] != "none":
    _hat(canvas, extras["hat"], w["head"] + world_dir(head_rot, [0, 0.8 * hr, -0.05 * hr]),
         world_dir(head_rot, [0, 1, 0]), hr, paints["extra"], z=w["head"][:, 2] + 1.5 * hr)

  w["neck"] = (w["r_shoulder"] + w["l_shoulder"]) / 2  # OpenPose's neck: between the shoulders
  points = canvas.project(np.stack([w[k] for k in BODY_JOINTS], 1))  # T 18 2
  conf = np.stack([keypoint_conf.get(k, np.ones(frames, bool)) for k in BODY_JOINTS], 1).astype(np.float32)
  inside = ((points[..., 0] >= 0) & (points[..., 0] < canvas.project.width) & (points[..., 1] >= 0)
            & (points[..., 1] < canvas.project.height))
  return np.concatenate([points, (conf * inside)[..., None]], -1).astype(np.float32)


def _hat(canvas: Canvas, style: str, anchor: np.ndarray, up: np.ndarray, radius: float, paint: Paint, *, z) -> None:
  e_up, e_right = canvas.screen_up(anchor, up)
  base = canvas.project(anchor)
  r = radius * canvas.project.scale[:, None]
  angle = np.arctan2(e_right[:, 1], e_right[:, 0])
  if style == "cone":
    points = np.stack([base - 0.8 * r * e_right, base + 0.8 * r * e_right, base + 1.9 * r * e_up], 1)
    canvas.polygon(points, paint, z=z, angle=angle)
  elif style == "tophat":
    canvas.box(base + 0.75 * r * e_up, np.concatenate([0.6 * r, 0.75 * r], -1), angle, 0.1 * r[:, 0], paint, z=z)
    canvas.box(base, np.concatenate([1.1 * r, 0.12 * r], -1), angle, 0.1 * r[:, 0], paint, z=z)
  else:  # cap
    canvas.box(base + 0.1 * r * e_up, np.concatenate([0.95 * r, 0.4 * r], -1), angle, 0.35 * r[:, 0], paint, z=z)


def _quadruped(canvas: Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  arms_up = np.clip(pose.arms[..., 0].mean(1) - 0.5, 0, None)
  body_rot = rot_z(-0.7 * pose.lean) @ rot_x(0.5 * pose.bend - 0.25 * arms_up)  # arms up: rear up
  head_rot = body_rot @ rot_z(-pose.head[:, 0]) @ rot_x(pose.head[:, 1] + 0.3 * pose.bend)
  p = {"rear": rotate(body_rot, [0, 0, -d["body_len"] / 2]), "front": rotate(body_rot, [0, 0, d["body_len"] / 2])}
  paws = []
  for side, i in ((-1.0, 0), (1.0, 1)):
    arm, leg = pose.arms[:, i], pose.legs[:, i]
    # Front legs follow the arms: a raised arm lifts the paw forward.
    front_flex = 0.8 * arm[:, 1] + 0.5 * np.clip(arm[:, 0] - 0.3, 0, 2)
    front_knee = -0.7 * np.clip(front_flex, 0, None) - 0.25 * np.abs(arm[:, 2])
    for end, abd, flex, knee_abd, knee_flex in (
        ("front", 0.2 * arm[:, 0], front_flex, np.zeros_like(front_flex), front_knee),
        ("rear", leg[:, 0], leg[:, 1], leg[:, 2], leg[:, 3])):
      hip = p[end] + rotate(body_rot, [side * d["hips"], -0.5 * d["body_r"], 0])
      knee = hip + 0.55 * d["leg"] * limb_direction(abd, flex, side)
      paw = knee + 0.45 * d["leg"] * limb_direction(abd + knee_abd, flex + knee_flex, side)
      p[f"{end}_{side}_hip"], p[f"{end}_{side}_knee"], p[f"{end}_{side}_paw"] = hip, knee, paw
      paws.append(paw)
  neck_angle = 0.7 - 0.3 * arms_up
  p["neck_base"] = p["front"] + rotate(body_rot, [0, 0.5 * d["body_r"], 0.3 * d["body_r"]])
  p["head"] = p["neck_base"] + d["neck"] * rotate(body_rot, vec(0, np.cos(neck_angle), np.sin(neck_angle)))
  wag = 0.6 * np.sin(pose.phase) + 0.8 * pose.lean
  p["tail0"] = p["rear"] + rotate(body_rot, [0, 0.4 * d["body_r"], -0.3 * d["body_r"]])
  tail1 = vec(0.8 * np.sin(wag), 0.7, -0.8 * np.cos(wag))
  tail2 = vec(0.9 * np.sin(1.5 * wag), 1.0 + 0.3 * arms_up, -0.5)
  p["tail1"] = p["tail0"] + 0.5 * d["tail"] * rotate(body_rot, tail1 / np.linalg.norm(tail1, axis=-1, keepdims=True))
  p["tail2"] = p["tail1"] + 0.5 * d["tail"] * rotate(body_rot, tail2 / np.linalg.norm(tail2, axis=-1, keepdims=True))
  lift = _ground(paws, [d["leg_r"]] * 4)
  yaw = rot_y(pose.yaw)
  root = vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  w = {k: root + rotate(yaw, v) for k, v in p.items()}
  world_dir = lambda rotation, v: rotate(yaw @ rotation, v)  # noqa: E731

  hr, leg_r = d["head"], d["leg_r"]
  tail_r = d["tail_r"] * (1.8 if extras["bushy"] else 1.0)
  canvas.capsule(w["tail0"], w["tail1"], d["tail_r"], tail_r, paints["body"])
  canvas.capsule(w["tail1"], w["tail2"], tail_r, 0.6 * tail_r + 0.4 * d["tail_r"], paints["body"])
  for side in (-1.0, 1.0):
    for end in ("front", "rear"):
      canvas.capsule(w[f"{end}_{side}_hip"], w[f"{end}_{side}_knee"], 1.2 * leg_r, leg_r, paints["legs"])
      canvas.capsule(w[f"{end}_{side}_knee"], w[f"{end}_{side}_paw"], leg_r, 0.9 * leg_r, paints["legs"])
  canvas.capsule(w["rear"], w["front"], d["body_r"], 0.95 * d["body_r"], paints["body"], bias=-1e-3)
  canvas.capsule(w["neck_base"], w["head"], 0.55 * d["body_r"], 0.5 * hr, paints["body"])
  if extras["collar"]:
    canvas.capsule(w["neck_base"] + world_dir(body_rot, [-0.5 * d["body_r"], 0.2 * d["neck"], 0.1 * d["body_r"]]),
                   w["neck_base"] + world_dir(body_rot, [0.5 * d["body_r"], 0.2 * d["neck"], 0.1 * d["body_r"]]),
                   0.25 * d["body_r"], 0.25 * d["body_r"], paints["extra"])
  canvas.circle(w["head"], hr, paints["body"])
  snout_tip = w["head"] + world_dir(head_rot, [0, -0.3 * hr, hr + d["snout"]])
  canvas.capsule(w["head"] + world_dir(head_rot, [0, -0.2 * hr, 0.4 * hr]), snout_tip, 0.55 * hr, 0.4 * hr,
                 paints["body"])
  canvas.circle(snout_tip, 0.22 * hr, paints["nose"], bias=0.1 * hr)
  facing = world_dir(head_rot, [0, 0, 1])[:, 2]
  for side in (-1.0, 1.0):
    local = np.array([side * 0.45, 0.3, 0.75])
    toward = world_dir(head_rot, local)[:, 2]
    canvas.circle(w["head"] + world_dir(head_rot, local * hr), 0.18 * hr, paints["eyes"], bias=hr,
                  opacity=np.clip((np.minimum(facing + 0.6, toward + 0.3) - 0.1) / 0.25, 0, 1))
    if extras["ears"] == "pointy":
      corners = [w["head"] + world_dir(head_rot, np.array(v) * hr)
                 for v in ([side * 0.15, 0.75, 0], [side * 0.75, 0.65, 0], [side * 0.55, 1.6, -0.1])]
      canvas.polygon(canvas.project(np.stack(corners, 1)), paints["body"], z=w["head"][:, 2] - 0.1 * hr)
    elif extras["ears"] == "floppy":
      canvas.capsule(w["head"] + world_dir(head_rot, [side * 0.7 * hr, 0.5 * hr, 0]),
                     w["head"] + world_dir(head_rot, [side * 1.05 * hr, -0.45 * hr, -0.1 * hr]), 0.28 * hr, 0.3 * hr,
                     paints["legs"], bias=0.5 * hr)
    elif extras["ears"] == "round":
      canvas.circle(w["head"] + world_dir(head_rot, [side * 0.6 * hr, 0.8 * hr, 0]), 0.35 * hr, paints["body"],
                    bias=-0.5 * hr)


def _blob(canvas: Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  radius = d["radius"]
  # A blob is round: with the humanoid's ranges its silhouette hardly changes, so every motion is
  # exaggerated (squash, stretch, sway with the rhythm, lobes that reach far, longer travel).
  crouch = np.clip(-pose.legs[..., 3], 0, None).mean(1)
  squash = np.clip(0.6 * crouch, 0, 0.7)
  stretch = np.clip(7 * pose.lift, 0, 0.8)
  tilt = rot_z(-pose.lean - 0.35 * np.sin(pose.phase)) @ rot_x(pose.bend)
  low = vec(0, radius * (1 - 0.3 * squash), 0)
  top = low + rotate(tilt, vec(0, radius * (0.75 - 0.5 * squash + 0.8 * stretch), 0))
  centres, radii = [low, top], [radius * (1 + 0.3 * squash - 0.1 * stretch), d["top"]]
  for side, i in ((-1.0, 0), (1.0, 1)):  # lobes: arms pull the upper ones, legs the feet
    arm, leg = pose.arms[:, i], pose.legs[:, i]
    reach = 0.8 * d["top"] + d["reach"] * (0.3 + 1.2 * np.clip(arm[:, 0] / 2.5, 0, 1))
    direction = rotate(tilt, limb_direction(0.5 + arm[:, 0] + 0.5 * arm[:, 2], arm[:, 1] + 0.5 * arm[:, 3], side))
    centres.append(top + reach[:, None] * direction)
    radii.append(d["lobe"])
    centres.append(low + 0.85 * radius * limb_direction(0.6 + leg[:, 0], leg[:, 1] + 0.5 * leg[:, 3], side))
    radii.append(0.9 * d["lobe"])
  lift = _ground(centres, radii)
  yaw = rot_y(pose.yaw)
  root = vec(member.x + 1.5 * pose.x, floor + 1.5 * pose.lift + lift, member.z)
  world = np.stack([root + rotate(yaw, c) for c in centres], 1)  # T K 3
  canvas.blob(world, np.stack(np.broadcast_arrays(*radii), 1), np.full(pose.frames, d["smooth"]), paints["body"],
              z=root[:, 2])
  head = world[:, 1]
  rotation = yaw @ tilt
  facing = rotate(rotation, [0, 0, 1])[:, 2]
  count = extras["eyes"]
  for k in range(count):
    offset = (k - (count - 1) / 2) * 0.42
    local = np.array([offset, 0.15, 0.8])
    toward = rotate(rotation, local)[:, 2]
    visible = np.clip((np.minimum(facing, toward) + 0.1) / 0.25, 0, 1)
    eye = head + rotate(rotation, local * d["top"])
    canvas.circle(eye, 0.2 * d["top"], paints["white"], bias=d["top"], opacity=visible)
    canvas.circle(eye + rotate(rotation, [0, 0, 0.1 * d["top"]]), 0.1 * d["top"], paints["pupil"], bias=1.1 * d["top"],
                  opacity=visible)
  if extras["antenna"]:
    tip = head + rotate(rotation, vec(0.25 * d["top"] * np.sin(pose.phase), 1.5 * d["top"], 0))
    canvas.capsule(head + rotate(rotation, [0, 0.8 * d["top"], 0]), tip, 0.05 * d["top"], 0.05 * d["top"],
                   paints["extra"], bias=-0.1 * d["top"])
    canvas.circle(tip, 0.14 * d["top"], paints["extra"])


def _snake(canvas: Canvas, member: Member, pose: PoseParams, floor: float, segments: int = 12) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  length, thick = d["length"], d["thick"]
  j = np.arange(segments)[None, :]
  f = j / (segments - 1)
  wave = pose.phase[:, None] - d["wavelength"] * j
  head_raise = (d["neck"] + 0.3 * length * np.clip(pose.arms[..., 0].mean(1) / 2.5, 0, 1)[:, None]) * np.exp(-j / 2.5)
  tail_raise = 0.15 * length * np.clip(pose.legs[..., 1].mean(1) + 0.3 * pose.lift[:] * 10, 0, 1)[:, None] * f**3
  radii = thick * (1 - 0.65 * f)  # 1 J
  x = d["wave_x"] * np.sin(wave) * (0.3 + 0.7 * f) + 0.15 * length * pose.lean[:, None] * (1 - f)
  y = (d["wave_y"] * (1 + np.sin(wave)) / 2 * (1 - 0.5 * f) + head_raise + tail_raise
       - 0.15 * length * np.clip(pose.bend, -1, 1)[:, None] * np.exp(-j / 2))
  z = length / 2 - f * length
  body = np.stack(np.broadcast_arrays(x, y, z), -1)  # T J 3
  lift = -np.min(body[..., 1] - radii, axis=1)
  yaw = rot_y(pose.yaw)
  root = vec(member.x + pose.x, floor + pose.lift + lift, member.z)
  world = root[:, None] + np.einsum("tij,tkj->tki", yaw, body)
  arc = 0.0
  for k in range(segments - 1, 0, -1):  # tail first: the head ends up on top at equal depth
    canvas.capsule(world[:, k], world[:, k - 1], radii[:, k], radii[:, k - 1], paints["body"], u0=arc)
    arc = arc + np.linalg.norm(body[:, k] - body[:, k - 1], axis=-1)
  head_r = d["head"] * thick
  forward = body[:, 0] - body[:, 1]
  forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
  head_pos = body[:, 0] + 0.4 * head_r * forward
  head = root + rotate(yaw, head_pos)
  canvas.circle(head, head_r, paints["body"], bias=1e-3)
  facing_dir = rotate(yaw, forward)
  side_axis = rotate(yaw, np.cross(np.array([0.0, 1.0, 0.0]), forward))  # the snake's left
  for side in (-1.0, 1.0):
    toward = (side * side_axis + facing_dir)[:, 2]
    eye = head + 0.55 * head_r * (side * side_axis + 0.7 * facing_dir) + vec(0, 0.35 * head_r, 0)
    canvas.circle(eye, 0.22 * head_r, paints["eyes"], bias=head_r, opacity=np.clip((toward + 0.3) / 0.3, 0, 1))
  flick = np.clip(np.sin(2 * pose.phase), 0, 1)
  canvas.capsule(head + 0.8 * head_r * facing_dir, head + (0.8 + 0.9 * flick[:, None]) * head_r * facing_dir,
                 0.12 * head_r, 0.08 * head_r, paints["tongue"], bias=-0.2 * head_r, opacity=(flick > 0.05) * 1.0)
  if extras["crown"]:
    e_up, e_right = canvas.screen_up(head, np.broadcast_to([0.0, 1.0, 0.0], head.shape))
    base = canvas.project(head + vec(0, 0.8 * head_r, 0))
    r = head_r * canvas.project.scale[:, None]
    points = np.stack([base - 0.55 * r * e_right, base + 0.55 * r * e_right, base + 0.8 * r * e_right + 0.8 * r * e_up,
                       base - 0.8 * r * e_right + 0.8 * r * e_up], 1)
    canvas.polygon(points, paints["extra"], z=head[:, 2] + 2 * head_r)


def _robot_arm(canvas: Canvas, member: Member, pose: PoseParams, floor: float) -> None:
  d, paints, extras = member.body.dims, member.body.paints, member.body.extras
  frames = pose.frames
  arm_r, arm_l = pose.arms[:, 0], pose.arms[:, 1]
  knees = pose.legs[..., 3].mean(1)
  theta1 = 0.5 + 0.8 * pose.bend - 0.3 * pose.arms[..., 0].mean(1) + 0.35 * arm_r[:, 1] + 0.4 * pose.lean
  theta2 = theta1 + 0.8 + 0.7 * arm_r[:, 2] + 0.5 * arm_r[:, 3] + 0.25 * knees
  theta3 = theta2 + 0.4 + 0.8 * pose.head[:, 1] + 0.4 * arm_l[:, 1] - 0.3 * arm_l[:, 0]
  grip = 0.25 + 0.1 * (1 + np.sin(pose.phase)) + 0.15 * np.clip(arm_l[:, 0], 0, 2)
  reach = lambda theta: vec(0, np.cos(theta), np.sin(theta))  # noqa: E731  (from vertical toward +z)
  yaw = rot_y(pose.yaw + np.pi / 2)  # the arm reaches sideways when the motion faces the camera
  root = vec(member.x + pose.x, floor, member.z)
  shoulder = vec(0, d["base_h"] + d["turret"] + 0.8 * pose.lift, 0)
  j1 = shoulder + d["link1"] * reach(theta1)
  j2 = j1 + d["link2"] * reach(theta2)
  j3 = j2 + d["link3"] * reach(theta3)
  w = lambda v: root + rotate(yaw, v)  # noqa: E731
  r = d["radius"]
  base_centre = canvas.project(root + vec(0, d["base_h"] / 2, 0))
  scale = canvas.project.scale[:, None]
  canvas.box(base_centre, np.concatenate([d["base_w"] * scale, d["base_h"] / 2 * scale], -1), np.zeros(frames),
             0.25 * d["base_h"] * scale[:, 0], paints["base"], z=root[:, 2] - 2 * d["base_w"])
  canvas.capsule(w(vec(0, d["base_h"] * 0.5, 0)), w(shoulder), 1.3 * r, 1.1 * r, paints["base"], bias=-1.5 * r)
  if extras["lamp"]:
    canvas.circle(w(vec(0, d["base_h"] * 1.1, 0)), 0.6 * r, paints["lamp"], bias=-r)
  for a, b, ra, rb in ((shoulder, j1, r, 0.9 * r), (j1, j2, 0.9 * r, 0.75 * r), (j2, j3, 0.7 * r, 0.6 * r)):
    canvas.capsule(w(a), w(b), ra, rb, paints["links"])
  for joint, size in ((shoulder, 1.35 * r), (j1, 1.2 * r), (j2, r)):
    canvas.circle(w(joint), size, paints["joints"], bias=0.5 * r)
  for side in (-1.0, 1.0):
    knuckle = j3 + d["finger"] * 0.6 * reach(theta3 + side * grip)
    tip = knuckle + d["finger"] * 0.5 * reach(theta3 + side * (grip - (1.0 if extras["claw"] else 0.3)))
    canvas.capsule(w(j3), w(knuckle), 0.35 * r, 0.3 * r, paints["joints"])
    canvas.capsule(w(knuckle), w(tip), 0.3 * r, 0.2 * r, paints["joints"])


DRAW = {"humanoid": _humanoid, "quadruped": _quadruped, "blob": _blob, "snake": _snake, "robot_arm": _robot_arm}
