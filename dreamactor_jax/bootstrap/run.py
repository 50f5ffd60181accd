"""Renders and scores the bootstrap's pairs (PAPER.md section 4): the options (`BootstrapConfig`,
each field also a flag of `python -m dreamactor_jax.bootstrap`), the clips of identity A and the
identities B each is paired with, `animate_batch` in batches of one size, fps and length, and the
candidate files under OUT (the package docstring lists them). `sync.py` then writes review.csv and
the stage-2 dataset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jax
import numpy as np
from tqdm import tqdm

from dreamactor_jax import animation, media
from dreamactor_jax.bootstrap import review
from dreamactor_jax.bootstrap.pairs import (ClipData, ClipPlan, DatasetReferences, FolderReferences, Reference,
                                            augment_rng, plan_clips, read_clip, record_identities)
from dreamactor_jax.bootstrap.scores import DEFINITIONS, PairScorer, parse_thresholds
from dreamactor_jax.bootstrap.sync import finalize_review
from dreamactor_jax.checkpoints.orbax_model import load_config, load_model
from dreamactor_jax.cli import option, parse_size
from dreamactor_jax.data import augment, open_videos, stage2_key, staging
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.models.dit import DiTConfig
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.sampling.animate import animate_batch
from dreamactor_jax.sampling.bundle import BundleInfo, load_bundle, read_info, size_multiple

log = logging.getLogger(__name__)
OPTIONS_FILE = "bootstrap.json"
SelfPairs = Literal["none", "no-keypoints", "all"]
# What drives the pair generator: A's rendered skeleton (a stage-1 bundle) or A's clip (Wan-Animate-2).
DrivingSignal = Literal["skeleton", "rgb"]


class BootstrapError(ValueError):
  """A bootstrap that cannot run as asked; the message is one line naming the flag or path."""


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
  """The options of a bootstrap run; each `option` is also a command-line flag (`cli.define_options`)."""

  checkpoint: str = option(help="Bundle folder (sampling/bundle.py) that renders the pairs: stage 1 (pose), driven "
                           "by the clips' skeletons, or Wan-Animate-2 (layout animate2, stage rgb), by the clips "
                           "themselves.")
  data: str = option(help="Stage-1 dataset (`python -m dreamactor_jax.data.build --out` folder).")
  out: str = option(help="Output folder (module docstring); rerun to resume.")
  references: str | None = option(None, help="Folder of reference images of identities B (identity = file stem, or "
                                  "the sub-folder's name); default: the first frame of each other identity's video.")
  pairs_per_clip: int = option(1, help="Identities B rendered per clip of A.")
  batch_size: int = option(1, help="Pairs per animate_batch call.")
  min_score: float = option(0.5, help="Accept pairs whose mean score (all scores lie in 0..1) is at least this.")
  thresholds: dict[str, float] = option(help="Per-score minimums, e.g. temporal=0.6,pose=0.5 (scores: temporal, "
                                        "color or clip, pose).", parse=parse_thresholds,
                                        default_factory=dict)
  pose_model: str | None = option(None, help="DWPose/RTMPose SimCC .onnx file: adds the pose score (PCK against "
                                  "A's keypoints); needs onnxruntime (pip install '.[pose]').")
  clip: str | None = option(None, help="CLIP vision folder (or a bundle holding clip/) for the clip score; default: "
                            "the checkpoint's own CLIP if it has one, else the weight-free color score.")
  seed: int = option(0, help="Clip starts, reference picks, noise.")
  steps: int | None = option(None, help="Denoising steps (default: the checkpoint's).")
  max_clips: int | None = option(None, help="Use only the first N clips of the dataset (all hosts together).")
  num_frames: int = option(81, help="Frames per clip, 1 + 4k.")
  frame_stride: int | None = option(None, help="Source frames per clip frame (default: the stride nearest the "
                                    "checkpoint's fps).")
  size: tuple[int, int] | None = option(None, help="HxW of the pairs, multiples of the checkpoint's size multiple "
                                        "(16 for Wan2.1; default: its size; portrait records get it transposed).",
                                        parse=parse_size)
  prompt: str = option("{a}", help="Prompt template: {a} = A's caption, {b} = B's identity (a checkpoint without "
                       "text gets empty prompts).")
  self_pairs: SelfPairs = option("none", help="Also pair clips with themselves under a colour augmentation as "
                                 "driving video: clips without keypoints (which stage 1 cannot render), or all clips.")
  sheet_frames: int = option(4, help="Frames per contact sheet.")
  progress: bool = option(True, help="Progress bars (--noprogress: none).")

  def check(self) -> None:
    checks = [("--pairs-per-clip", self.pairs_per_clip >= 1), ("--batch-size", self.batch_size >= 1),
              ("--max-clips", self.max_clips is None or self.max_clips >= 1),
              ("--steps", self.steps is None or self.steps >= 1),
              ("--frame-stride", self.frame_stride is None or self.frame_stride >= 1),
              ("--sheet-frames", self.sheet_frames >= 1)]
    for flag, ok in checks:
      if not ok:
        raise BootstrapError(f"{flag} must be at least 1")
    if self.num_frames < 1 or (self.num_frames - 1) % 4:
      raise BootstrapError(f"--num-frames={self.num_frames}; expected 1 + 4k (e.g. 81)")
    if self.self_pairs not in ("none", "no-keypoints", "all"):
      raise BootstrapError(f"--self-pairs={self.self_pairs!r}; expected none, no-keypoints or all")
    try:
      self.prompt.format(a="", b="")
    except (KeyError, IndexError, ValueError) as e:
      raise BootstrapError(f"--prompt {self.prompt!r}: only {{a}} (A's caption) and {{b}} (B's identity) may be "
                           f"filled in ({type(e).__name__}: {e})") from None

  def render_options(self) -> dict:
    """What the candidates depend on: a rerun into the same OUT must give the same values."""
    resolved = lambda path: None if path is None else str(Path(path).resolve())  # noqa: E731
    return dict(checkpoint=resolved(self.checkpoint), data=resolved(self.data), references=resolved(self.references),
                pose_model=resolved(self.pose_model), clip=resolved(self.clip), seed=self.seed, steps=self.steps,
                num_frames=self.num_frames, frame_stride=self.frame_stride,
                size=None if self.size is None else list(self.size), prompt=self.prompt)


@dataclasses.dataclass
class Summary:
  """What a run did (this process): pairs planned, rendered now, self pairs written now, found done;
  after finalising: pairs accepted (all processes) and the stage-2 dataset folder (None if empty)."""

  planned: int = 0
  rendered: int = 0
  self_pairs: int = 0
  done_before: int = 0
  candidates: int | None = None
  accepted: int | None = None
  dataset: Path | None = None


# ------------------------------------------------------------------------------------- files


def file_name(key: str) -> str:
  """A readable, unique, file-system-safe name for a key (ids may hold '/' and odd characters)."""
  return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', key)[:80]}-{staging.staged_name(key)[:8]}"


def self_key(video_id: str) -> str:
  return f"{video_id}@self"


def _save_npz(path: Path, **arrays) -> None:
  """Compressed `.npz`, written atomically (a stopped run never leaves half a candidate)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
  os.replace(tmp, path)


def _candidate_path(out: Path, key: str) -> Path:
  return out / "candidates" / f"{file_name(key)}.npz"


def _check_options(out: Path, config: BootstrapConfig) -> None:
  path = out / OPTIONS_FILE
  options = config.render_options()
  if path.exists():
    old = json.loads(path.read_text())["options"]
    changed = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in options.items() if old.get(k) != v]
    if changed:
      raise BootstrapError(f"{out} holds pairs made with other options ({', '.join(changed)}); use another --out "
                           "or the same options")
    return
  out.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dict(options=options, scores=DEFINITIONS), indent=1))


def _clip_data(out: Path, source: staging.LazySource, clip: ClipPlan, drawing: PoseDrawing) -> ClipData:
  """A's clip: from clips/ when an earlier run decoded it (the pairs were rendered against it), else decoded."""
  path = out / "clips" / f"{file_name(clip.video_id)}.npz"
  if path.exists():
    with np.load(path) as stored:
      optional = {name: stored[name] if stored[name].size else None for name in ("skeleton", "body")}
      return ClipData(video=stored["video"], reference=stored["reference"], **optional)
  data = read_clip(source[clip.record], clip, drawing)
  empty = np.zeros((0,), np.uint8)
  _save_npz(path, video_id=clip.video_id, identity=clip.identity, caption=clip.caption, fps=clip.fps,
            video=data.video, reference=data.reference,
            skeleton=empty if data.skeleton is None else data.skeleton, body=empty if data.body is None else data.body)
  return data


def _save_candidate(out: Path, key: str, clip: ClipPlan, *, driving_identity: str, reference: str, driving: np.ndarray,
                    driving_reference: np.ndarray, scores: dict[str, float], sheet: np.ndarray) -> None:
  media.write_image(out / "sheets" / f"{file_name(key)}.png", sheet)  # first: a candidate implies its sheet
  _save_npz(_candidate_path(out, key), key=key, video_id=clip.video_id, identity=clip.identity,
            driving_identity=driving_identity, reference=reference, caption=clip.caption, fps=clip.fps,
            clip=file_name(clip.video_id), scores=json.dumps(scores), driving=driving,
            driving_reference=driving_reference)


# ------------------------------------------------------------------------------------ render


def _driving_signal(checkpoint: str, info: BundleInfo) -> DrivingSignal:
  """A stage-1 (pose) bundle animates A's skeleton; a Wan-Animate-2 (rgb) bundle animates A's clip."""
  if info.stage == "pose":
    return "skeleton"
  if info.layout == "animate2":
    return "rgb"
  raise BootstrapError(f"--checkpoint {checkpoint} is a stage-2 (rgb) bundle; the bootstrap renders with a stage-1 "
                       "(pose) bundle, driven by skeleton videos, or a Wan-Animate-2 bundle (layout animate2)")


def pose_drawing(info: BundleInfo) -> PoseDrawing:
  """How the stage-1 model's skeletons were drawn: its bundle's "pose" (defaults for a bundle from
  before it was recorded), so the bootstrap's skeleton videos look like those it was trained on."""
  try:
    return PoseDrawing.from_mapping(info.pose)
  except ValueError as e:
    raise BootstrapError(f"--checkpoint: animation.json {e}") from None


def _load_clip(folder: str) -> CLIPVisionEncoder:
  """`--clip`: a CLIP model folder (config.json + params) or a bundle holding clip/."""
  path = Path(folder)
  if (path / "clip").is_dir():
    path = path / "clip"
  if not path.is_dir():
    raise BootstrapError(f"--clip {folder} is not a folder; expected a CLIP model folder (convert clip) or a bundle")
  return load_model(path, CLIPVisionEncoder, CLIPVisionConfig)[0]


@dataclasses.dataclass
class _Job:
  clip: ClipPlan
  data: ClipData
  reference: Reference
  prompt: str

  @property
  def key(self) -> str:
    return stage2_key(self.clip.video_id, self.reference.identity)


class _Renderer:
  """Renders jobs in batches of one size, fps and length (`animate_batch` takes one of each), scores
  them and writes candidates. A short last batch is padded with repeats, so every call has the
  batch size and compiles once."""

  def __init__(self, config: BootstrapConfig, out: Path, pool, prompts: Sequence[str], driving: DrivingSignal,
               progress: tqdm, drawing: PoseDrawing):
    self.config, self.out, self.pool, self.driving, self.progress = config, out, pool, driving, progress
    try:
      import skimage  # noqa: F401  (the temporal score's SSIM; checked before anything is rendered)
    except ImportError:
      raise BootstrapError("the temporal score needs scikit-image: pip install 'dreamactor_jax[eval]'") from None
    self.models = load_bundle(config.checkpoint, prompts=prompts)
    options = self.models.options
    self.options = dataclasses.replace(options, steps=config.steps or options.steps)
    clip = _load_clip(config.clip) if config.clip else self.models.clip
    pose = None
    if config.pose_model:
      from dreamactor_jax.data.pose import PoseEstimator

      pose = PoseEstimator(config.pose_model)
    self.scorer = PairScorer(clip=clip, pose=pose, pose_threshold=drawing.threshold)
    self.groups: dict[tuple, list[_Job]] = {}
    self.rendered = 0

  def motion(self, data: ClipData) -> np.ndarray:
    """A's driving video `[T, H, W, 3]` uint8: its skeleton or, for Wan-Animate-2, the clip."""
    return data.skeleton if self.driving == "skeleton" else data.video

  def add(self, job: _Job) -> None:
    group = (job.clip.bucket, job.clip.fps, len(job.clip.frames))
    self.groups.setdefault(group, []).append(job)
    if len(self.groups[group]) == self.config.batch_size:
      self.flush(self.groups.pop(group))

  def finish(self) -> None:
    for group in list(self.groups):
      self.flush(self.groups.pop(group))

  def flush(self, jobs: list[_Job]) -> None:
    batch = jobs + [jobs[-1]] * (self.config.batch_size - len(jobs))
    height, width = jobs[0].clip.bucket
    images = [self.pool.image(job.reference) for job in batch]
    # animate_batch draws sample b's noise from (options.seed, b): a seed per batch varies it over batches.
    seed = zlib.crc32(json.dumps([self.config.seed, [job.key for job in batch]]).encode()) & 0x7FFFFFFF
    results = animate_batch(self.models, images, np.stack([self.motion(job.data) for job in batch]),
                            [job.prompt for job in batch], fps=jobs[0].clip.fps,
                            options=dataclasses.replace(self.options, seed=seed), size=(height, width))
    for job, image, result in zip(jobs, images, results):
      fitted = media.to_uint8(animation.fit_reference(image, height, width, pad=self.options.blank))
      scores = self.scorer(result, fitted, job.data.body)
      sheet = review.sheet_image([fitted, self.motion(job.data), result], num_frames=self.config.sheet_frames)
      _save_candidate(self.out, job.key, job.clip, driving_identity=job.reference.identity,
                      reference=job.reference.source, driving=result, driving_reference=fitted, scores=scores,
                      sheet=sheet)
      self.rendered += 1
      self.progress.update()


def _score_names(config: BootstrapConfig) -> set[str]:
  """The scores rendered pairs get under `config` (to check `--thresholds` before rendering)."""
  has_clip = config.clip is not None or load_config(Path(config.checkpoint) / "dit", DiTConfig).image_dim is not None
  return {"temporal", "clip" if has_clip else "color"} | ({"pose"} if config.pose_model else set())


def run_bootstrap(config: BootstrapConfig, *, process_index: int | None = None, process_count: int | None = None,
                  finalize: bool | None = None) -> Summary:
  """Renders and scores this process's pairs, then (process 0 by default) writes review.csv and the
  stage-2 dataset. `process_index`/`process_count` default to JAX's; with several JAX processes they
  meet at a barrier before the finalising process reads everyone's candidates."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  finalize = process_index == 0 if finalize is None else finalize
  config.check()
  info = read_info(config.checkpoint)
  driving = _driving_signal(config.checkpoint, info)
  if config.size is not None:
    animation.check_frame_size("--size", config.size, size_multiple(config.checkpoint))
  drawing = pose_drawing(info)  # a malformed "pose" fails here, before any work
  unknown = sorted(set(config.thresholds) - _score_names(config))
  if unknown:
    raise BootstrapError(f"--thresholds {unknown[0]}: pairs get no {unknown[0]} score with these options (scores: "
                         f"{', '.join(sorted(_score_names(config)))}; pose needs --pose-model, clip a CLIP tower)")
  path = open_videos(config.data)
  out = Path(config.out)
  _check_options(out, config)
  rows = staging.read_index(path)
  source = staging.LazySource(path)
  identities = record_identities(source, rows, out / "identities.json", progress=config.progress)
  height, width = config.size or info.size
  buckets = [(height, width)] + ([(width, height)] if height != width else [])
  clips, too_short = plan_clips(rows, identities, num_frames=config.num_frames, frame_stride=config.frame_stride,
                                target_fps=info.fps, buckets=buckets, seed=config.seed)
  if too_short:
    log.warning("%d records are too short for a clip of %d frames (e.g. %s)", len(too_short), config.num_frames,
                too_short[0])
  clips = clips[:config.max_clips]
  cross = [clip for clip in clips if clip.has_pose or driving == "rgb"]
  selves = [clip for clip in clips if config.self_pairs == "all" or
            (config.self_pairs == "no-keypoints" and not clip.has_pose)]
  if not cross and not selves:
    hint = "" if config.self_pairs != "none" else "; --self-pairs no-keypoints pairs videos without them"
    raise BootstrapError(f"--data {path}: no clip to pair ({len(rows)} records: {len(too_short)} too short for "
                         f"{config.num_frames} frames, none of the {len(clips)} others with keypoints{hint})")
  cross, selves = cross[process_index::process_count], selves[process_index::process_count]

  pool = FolderReferences(config.references) if config.references else DatasetReferences(source, rows, identities)
  picks = [(clip, pool.pick(clip.identity, config.pairs_per_clip, seed=config.seed, video_id=clip.video_id))
           for clip in cross]
  planned = [(clip, ref) for clip, refs in picks for ref in refs]
  pending = [(clip, ref) for clip, ref in planned
             if not _candidate_path(out, stage2_key(clip.video_id, ref.identity)).exists()]
  pending_selves = [clip for clip in selves if not _candidate_path(out, self_key(clip.video_id)).exists()]
  summary = Summary(planned=len(planned) + len(selves),
                    done_before=len(planned) - len(pending) + len(selves) - len(pending_selves))
  with_text = info.text != "none"  # a model without text reads zeros: only the empty prompt
  prompt = lambda clip, ref: config.prompt.format(a=clip.caption, b=ref.identity) if with_text else ""  # noqa: E731
  if pending:
    with tqdm(total=len(pending), desc="render pairs", unit="pair", disable=not config.progress) as bar:
      # every prompt a render embeds (negative, animate2's driving prompt) encoded before the DiT loads
      prompts = sorted({text for c, r in pending for text in info.options().prompts(prompt(c, r))})
      renderer = _Renderer(config, out, pool, prompts, driving, bar, drawing)
      data = None
      for clip, ref in pending:  # pending is in clip order: each clip is decoded once
        if data is None or data[0] is not clip:
          data = clip, _clip_data(out, source, clip, drawing)
        renderer.add(_Job(clip, data[1], ref, prompt(clip, ref)))
      renderer.finish()
    summary.rendered = renderer.rendered
  for clip in tqdm(pending_selves, desc="self pairs", unit="pair", disable=not config.progress):
    data = _clip_data(out, source, clip, drawing)
    driving = augment.appearance_augment(data.video, augment_rng(config.seed, clip.video_id))
    _save_candidate(out, self_key(clip.video_id), clip, driving_identity=clip.identity, reference="self",
                    driving=driving, driving_reference=data.reference, scores={"self": 1.0},
                    sheet=review.sheet_image([data.reference, data.video, driving], num_frames=config.sheet_frames))
    summary.self_pairs += 1
  if process_count > 1 and jax.process_count() == process_count:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("dreamactor_jax.bootstrap: pairs rendered")
  if finalize:
    summary.candidates, summary.accepted, summary.dataset = finalize_review(
        out, thresholds=config.thresholds, min_score=config.min_score, progress=config.progress)
  return summary
