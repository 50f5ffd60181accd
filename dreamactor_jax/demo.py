"""The demo recipe: DreamActor-M2's whole pipeline, at toy scale, on a 2-core CPU in about an hour.

  python -m dreamactor_jax.demo --out assets/demo --workdir runs/demo

1. world: the synthetic world (`data/synthetic.py`) renders a training video folder (humanoids with
   keypoints, and characters no skeleton describes) and held-out evaluation triplets with ground truth;
   `data.build` makes the stage-1 dataset.
2. codec: no pretrained VAE fits this budget, and a Wan VAE narrow enough to train here draws
   characters as blurs, so a linear patch codec (`models/patch_codec.py`) is fit to the training
   canvases (`training/codec.py`): same latent layout, 4x space and 4x time.
3. stage 1: `train.py`'s loop with `dreamactor_jax/configs/demo.py:stage1` (pose-driven, PAPER.md 3).
4. bootstrap: the stage-1 model animates other identities with each humanoid clip's skeleton
   (PAPER.md 4), plus colour-augmented self pairs of the characters without keypoints; beside them
   (`Recipe.world_pairs`) cross-identity pairs the world renders exactly, new identities each.
5. stage 2: RGB-driven, from stage 1's weights (PAPER.md 5), in the full layout and in the
   motion_cache layout.
6. evaluate: every model (several samples each) and the copy-the-reference floor on the moving
   split of the benchmark's held-out triplets, in its two tracks (`BENCHMARK_TRACKS`).
7. bundle: the stage-2 model, an example reference and driving video for `python sample.py`, and
   `preview.png` (the README's picture: a held-out character that moves, one sample beside the truth).

`--evaluate-only` scores the bundled model (`<out>/model`) on the benchmark without training, and
redraws `preview.png`.

Each phase leaves its output in `--workdir` and is skipped when that output exists, so an interrupted
run continues where it stopped. The wall time of each phase goes to `<out>/recipe.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from dreamactor_jax import cli, media
from dreamactor_jax.bootstrap import BootstrapConfig, run_bootstrap
from dreamactor_jax.checkpoints import save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.conditioning import decode_latents, encode_video
from dreamactor_jax.configs import demo as demo_config
from dreamactor_jax.data import DataConfig, Pose, build_dataset, stage1_dataset
from dreamactor_jax.data import synthetic, write_stage2_dataset
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.evaluation import report, triplets
from dreamactor_jax.models.patch_codec import PatchCodecConfig
from dreamactor_jax.sampling.animate import Models, animate_batch
from dreamactor_jax.sampling.bundle import load_bundle
from dreamactor_jax.training import codec
from dreamactor_jax.training.loop import train

log = logging.getLogger(__name__)

SIZE = (64, 64)  # each half of the canvas
FPS = 4  # the world's frame rate: a 9-frame clip spans 2 s
# Humanoids twice as often: only they have keypoints, the stage-1 data.
TRAIN_KINDS = ("humanoid", "quadruped", "humanoid", "blob", "snake", "robot_arm", "group")
# 4x4 patches on 6 directions per frame: z_dim 24, about 28 dB on the world's canvases (README "Demo").
CODEC = PatchCodecConfig(patch=4, components=6)
# The bootstrap renders stage 2's driving videos with a full-length sampler: sharp like the real
# videos that drive at inference, where the bundle's 2-step sampler would give its blurrier mean.
BOOTSTRAP_STEPS = 16
# The benchmark's two tracks: the reference is frame 0 of the truth, or the character at rest.
BENCHMARK_TRACKS = ("first", "neutral")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Sizes of the run (the defaults make the bundled model; `--quick` shrinks them for a smoke test)."""

  identities: int = 42
  motions: int = 8
  per_identity: int = 4
  video_frames: int = 17
  test_identities: int = 18  # 3 of each kind, each in test_motions motions of its own
  test_motions: int = 4
  eval_samples: int = 4  # samples per triplet: the first is scored alone, all of them as their mean
  codec_clips: int = 256
  stage1_steps: int = 2500
  stage2_steps: int = 2500
  stage2_cache_steps: int = 1500
  pairs_per_clip: int = 2
  world_pairs: int = 0  # exact cross-identity stage-2 pairs rendered by the world, beside the bootstrap's
  seed: int = 0


QUICK = Recipe(identities=7, motions=2, per_identity=2, video_frames=9, test_identities=6, test_motions=2,
               eval_samples=2, codec_clips=8, stage1_steps=4, stage2_steps=4, stage2_cache_steps=4, pairs_per_clip=1)


class Phases:
  """Runs named phases once: a phase whose marker file exists is skipped; wall times are recorded."""

  def __init__(self, workdir: Path):
    self.workdir = workdir
    self.times: dict[str, float] = {}

  def run(self, name: str, fn: Callable[[], None]) -> None:
    marker = self.workdir / f".done-{name}"
    if marker.exists():
      log.info("%s: done before, skipped", name)
      self.times[name] = json.loads(marker.read_text())["seconds"]
      return
    log.info("%s ...", name)
    start = time.perf_counter()
    fn()
    self.times[name] = time.perf_counter() - start
    marker.write_text(json.dumps({"seconds": self.times[name]}))
    log.info("%s: %.0f s", name, self.times[name])


def make_benchmark(folder: Path, recipe: Recipe) -> None:
  """Held-out triplets, every identity in motions of its own, once per track (`folder/<track>`)."""
  for track in BENCHMARK_TRACKS:
    synthetic.write_triplets(folder / track, identities=recipe.test_identities, motions=recipe.test_motions,
                             per_identity=recipe.test_motions, frames=9, size=SIZE, fps=FPS, seed=recipe.seed,
                             reference=track, progress=False)


def make_world(workdir: Path, recipe: Recipe) -> None:
  synthetic.write_video_folder(workdir / "world" / "train", identities=recipe.identities, motions=recipe.motions,
                               per_identity=recipe.per_identity, frames=recipe.video_frames, size=SIZE, fps=FPS,
                               seed=recipe.seed, kinds=TRAIN_KINDS)
  make_benchmark(workdir / "world" / "test", recipe)
  shutil.rmtree(workdir / "data", ignore_errors=True)
  build_dataset(workdir / "world" / "train", workdir / "data", workers=2, min_frames=9, short_side=0)


def _training_canvases(workdir: Path, seed: int) -> Iterator[np.ndarray]:
  """Whole canvases `[1, 9, 64, 128, 3]` (-1..1) as the VAE sees them in training and sampling: on the
  left a clip or its first frame then blank, on the right its skeleton or another clip (stage 2)."""
  batches = iter(stage1_dataset(DataConfig.from_config(stage_config("stage1", workdir).data)))
  others = [media.read_video(p).frames for p in sorted((workdir / "world" / "train").glob("*.mp4"))]
  rng = np.random.default_rng(seed)
  while True:
    data = next(batches)
    for video, skeleton in zip(data["video"], data["driving"]):
      left = media.to_unit(video)
      if rng.random() < 0.3:
        left[1:] = 0.0  # the condition canvas: the reference, then blank
      other = others[rng.integers(len(others))]
      start = rng.integers(0, len(other) - len(video) + 1)
      right = media.to_unit(skeleton if rng.random() < 0.5 else other[start:start + len(video)])
      yield np.concatenate([left, right], axis=2)[None]


def fit_codec(workdir: Path, recipe: Recipe) -> None:
  fitted = codec.fit_patch_codec(CODEC, _training_canvases(workdir, recipe.seed), batches=recipe.codec_clips)
  save_model(workdir / "codec", model_params(fitted), fitted.config)


def stage_config(name: str, workdir: Path, recipe: Recipe = Recipe(), **model):
  """`dreamactor_jax/configs/demo.py:<stage>` with this run's paths and step counts."""
  config = demo_config.get_config("stage1" if name == "stage1" else "stage2")
  config.init.vae = str(workdir / "codec")
  config.data.stage1_dir = str(workdir / "data")
  config.data.stage2_dir = str(workdir / "pairs")
  config.train.seed = config.data.seed = recipe.seed
  steps = {"stage1": recipe.stage1_steps, "stage2": recipe.stage2_steps, "stage2_cache": recipe.stage2_cache_steps}
  config.train.steps = steps[name]
  config.optimizer.decay_steps = steps[name]
  if name != "stage1":
    config.init.dit = str(workdir / "stage1" / "bundle" / "dit")
    config.optimizer.learning_rate /= 2
  config.model.update(model)
  return config


def make_pairs(workdir: Path, recipe: Recipe) -> None:
  run_bootstrap(BootstrapConfig(checkpoint=str(workdir / "stage1" / "bundle"), data=str(workdir / "data"),
                                out=str(workdir / "pairs"), pairs_per_clip=recipe.pairs_per_clip, batch_size=8,
                                num_frames=9, seed=recipe.seed, self_pairs="no-keypoints", min_score=0.0,
                                prompt="", steps=BOOTSTRAP_STEPS))


def make_world_pairs(pairs: Path, recipe: Recipe) -> None:
  """`recipe.world_pairs` exact cross-identity triplets (`synthetic.pair_records`) added to the
  stage-2 dataset in `pairs`."""
  records = synthetic.pair_records(count=recipe.world_pairs, frames=9, size=SIZE, seed=recipe.seed,
                                   kinds=TRAIN_KINDS, fps=FPS)
  write_stage2_dataset(pairs, records, progress=False)


def skeleton_video(triplet: triplets.Triplet, height: int, width: int) -> np.ndarray:
  """The driving video's keypoints drawn as the stage-1 pipeline draws them (`config.data.pose`); black
  frames when the driver has no keypoints (every non-humanoid)."""
  frames = triplet.driving.shape[0]
  if triplet.driving_body is None:
    return np.zeros((frames, height, width, 3), np.uint8)
  people = triplet.driving_body.shape[1]
  pose = Pose(triplet.driving_body, np.zeros((frames, people, 2, 21, 3), np.float32),
              np.zeros((frames, people, 68, 3), np.float32))
  drawing = PoseDrawing.from_mapping(stage_config("stage1", Path(".")).data.pose)
  source_box = (0.0, 0.0, float(triplet.driving.shape[2]), float(triplet.driving.shape[1]))
  return drawing.draw(drawing.place(pose, height, width, source_box), height, width)


def rgb_driven(models: Models):
  """The RGB-driven model as an evaluation method: `samples` samples of one triplet at once."""
  def animate_samples(reference: np.ndarray, driving: np.ndarray, *, samples: int) -> np.ndarray:
    return animate_batch(models, [reference] * samples, np.repeat(driving[None], samples, 0), [""] * samples,
                         fps=FPS, size=SIZE)
  return animate_samples


def codec_ceiling(models: Models):
  """The truth through the codec and back: what the latents can hold, so no method scores above it."""
  def round_trip(reference, driving, *, triplet):
    truth = jnp.asarray(media.to_unit(triplet.truth))[None]
    return media.to_uint8(np.asarray(decode_latents(models.vae, encode_video(models.vae, truth)))[0])
  return round_trip


def score_benchmark(folder: Path, methods: dict, out: Path, recipe: Recipe) -> None:
  """Every method on the moving split of each track: `<out>/evaluation/<track>/results.md` etc."""
  shutil.rmtree(out / "evaluation", ignore_errors=True)
  for track in BENCHMARK_TRACKS:
    scored = report.evaluate(folder / track, methods, out / "evaluation" / track, samples=recipe.eval_samples,
                             moving_only=True, save_videos=False)
    print(f"## reference: {track}\n\n{scored.markdown}")


def evaluate_models(workdir: Path, out: Path, recipe: Recipe) -> None:
  stage1 = load_bundle(workdir / "stage1" / "bundle")

  def pose_driven(reference, driving, *, triplet, samples):
    skeleton = skeleton_video(triplet, *reference.shape[:2])
    return animate_batch(stage1, [reference] * samples, np.repeat(skeleton[None], samples, 0), [""] * samples,
                         fps=FPS, size=SIZE)

  methods = {"codec round trip of the truth (ceiling)": codec_ceiling(stage1),
             "copy-reference": triplets.copy_reference, "stage-1 (pose)": pose_driven,
             "stage-2 (RGB, full)": rgb_driven(load_bundle(workdir / "stage2" / "bundle")),
             "stage-2 (RGB, motion_cache)": rgb_driven(load_bundle(workdir / "stage2_cache" / "bundle"))}
  score_benchmark(workdir / "world" / "test", methods, out, recipe)


def evaluate_bundle(workdir: Path, out: Path, recipe: Recipe) -> None:
  """The bundled model (`<out>/model`) against copy-the-reference and the codec's ceiling on the
  benchmark, rendered into `<workdir>/benchmark` unless there."""
  folder = workdir / "benchmark"
  if not all((folder / track / "index.json").exists() for track in BENCHMARK_TRACKS):
    make_benchmark(folder, recipe)
  bundle = load_bundle(out / "model")
  methods = {"codec round trip of the truth (ceiling)": codec_ceiling(bundle),
             "copy-reference": triplets.copy_reference, "stage-2 (RGB, full)": rgb_driven(bundle)}
  score_benchmark(folder, methods, out, recipe)
  write_picture(folder, bundle, out)


def write_picture(folder: Path, models: Models, out: Path) -> None:
  """`<out>/preview.png`, the README's picture: the held-out humanoid of the benchmark's frame-0 track
  (in `folder`) that moves most (lowest reference-vs-truth silhouette IoU; chosen before sampling, any
  kind when none is a humanoid), one sample next to the truth."""
  cases = [triplets.load_triplet(path) for path in triplets.find_triplets(folder / BENCHMARK_TRACKS[0])]
  triplet = min(cases, key=lambda t: (t.kind != "humanoid", t.reference_iou))
  method = "one sample"
  result = rgb_driven(models)(triplet.reference, triplet.driving, samples=1)[0]
  media.write_image(out / "preview.png", report.grid_picture([(triplet, {method: result})], [method], frames=8,
                                                             min_tile=160))


def write_example(workdir: Path, out: Path, seed: int) -> None:
  """The stage-2 bundle plus an example: a held-out character, and another held-out character
  dancing for 6 s (longer than a training clip, so `sample.py` continues it over segments)."""
  shutil.rmtree(out / "model", ignore_errors=True)
  shutil.copytree(workdir / "stage2" / "bundle", out / "model")
  character = synthetic.sample_identity("humanoid", synthetic.TEST_OFFSET, seed)
  driver = synthetic.sample_identity("humanoid", synthetic.DRIVER_OFFSET + 7, seed)
  motion = synthetic.sample_motion("dance", synthetic.TEST_OFFSET + 5, seed)
  media.write_image(out / "reference.png", synthetic.render_reference(character, motion, SIZE).video[0])
  media.write_video(out / "driving.mp4", synthetic.render(driver, motion, 25, SIZE).video, FPS)


FLAGS = flags.FlagValues()
_OUT = flags.DEFINE_string("out", "assets/demo", "Where the bundled model, example and results go.", flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Intermediate data, checkpoints and logs (resumable).",
                               flag_values=FLAGS)
_QUICK = flags.DEFINE_bool("quick", False, "A few steps per phase: checks the recipe, trains nothing.",
                           flag_values=FLAGS)
_EVALUATE_ONLY = flags.DEFINE_bool("evaluate-only", False, "Only score the bundled model in --out/model on the "
                                   "benchmark (rendered into --workdir/benchmark) into --out/evaluation.",
                                   flag_values=FLAGS)


def run() -> None:
  recipe = QUICK if _QUICK.value else Recipe()
  workdir, out = Path(_WORKDIR.value), Path(_OUT.value)
  workdir.mkdir(parents=True, exist_ok=True)
  out.mkdir(parents=True, exist_ok=True)
  if _EVALUATE_ONLY.value:
    evaluate_bundle(workdir, out, recipe)
    return
  phases = Phases(workdir)
  phases.run("world", lambda: make_world(workdir, recipe))
  phases.run("codec", lambda: fit_codec(workdir, recipe))
  phases.run("stage1", lambda: train(stage_config("stage1", workdir, recipe), workdir / "stage1"))
  phases.run("bootstrap", lambda: make_pairs(workdir, recipe))
  if recipe.world_pairs:
    phases.run("world_pairs", lambda: make_world_pairs(workdir / "pairs", recipe))
  phases.run("stage2", lambda: train(stage_config("stage2", workdir, recipe), workdir / "stage2"))
  phases.run("stage2_cache", lambda: train(stage_config("stage2_cache", workdir, recipe, layout="motion_cache"),
                                           workdir / "stage2_cache"))
  phases.run("evaluate", lambda: evaluate_models(workdir, out, recipe))
  phases.run("bundle", lambda: write_example(workdir, out, recipe.seed))
  phases.run("picture", lambda: write_picture(workdir / "world" / "test", load_bundle(out / "model"), out))
  (out / "recipe.json").write_text(json.dumps(dict(recipe=dataclasses.asdict(recipe), seconds=phases.times,
                                                   total_seconds=sum(phases.times.values()),
                                                   device=jax.devices()[0].device_kind), indent=1))
  print(f"wrote {out}: model/, reference.png, driving.mp4, evaluation/ ({sum(phases.times.values()) / 60:.0f} min)")


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
