"""Scores animation results against ground truth, per character kind (issue 8).

  python -m dreamactor_jax.data.synthetic --out data/synth-test --split test --identities 12 --motions 8
  python -m dreamactor_jax.evaluation --triplets data/synth-test --baseline copy-reference --out eval/
  python -m dreamactor_jax.evaluation --triplets data/synth-test --results stage2=out/stage2 \\
      --results stage1=out/stage1 --baseline copy-reference --out eval/

`--triplets` is a folder of (reference, driving, truth) triplets: the synthetic world's test split
or your own (see dreamactor_jax/evaluation/triplets.py for the layout). Each `--results` folder
holds one video per triplet name (`<name>.npz` with `video` uint8 [T, H, W, 3], or `<name>.mp4`).
Writes results.md and results.json (per-kind means and per-triplet scores) and grid.png
(reference | driving | results | truth). The table comes twice, the "moving" split first: triplets
whose reference and truth silhouettes (exact, `reference_mask.npz` and `truth_mask.npz`) overlap
little (IoU < 0.5 averaged over frames 1..), where copying the reference cannot score; then all
triplets. Frame 0 (the given reference) is left out of every score (`--noskip-first` keeps it). A
results `.npz` holding `samples` [N, T, H, W, 3] is scored as its first sample alone (with the
samples' spread over their mean's error) and as their pixel mean. A sub-folder of `--triplets`
lacking its reference, driving video or truth is named in a warning and skipped; `--strict` refuses
it instead.

Metrics: PSNR, PSNR over the character's pixels, SSIM (scikit-image), silhouette IoU against the
exact truth silhouette, centroid-trajectory error, for humanoids PCK against the result's
silhouette and (when `<name>.pose.npz` sits beside a result) against its keypoints, GMSD and
temporal error; definitions in dreamactor_jax/evaluation/metrics.py. More metrics plug in with
`--metric NAME=module:factory[@ARG]`: `factory(ARG)` returns `fn(result, truth) -> float` on uint8
[T, H, W, 3] videos. LPIPS, for instance, needs pretrained weights that are not downloaded here:
write a factory that loads yours.

From Python, models plug in as functions `animate(reference uint8 [H, W, 3], driving uint8
[T, H, W, 3]) -> uint8 [T, H, W, 3]`:

  from dreamactor_jax.evaluation import copy_reference, evaluate
  evaluate("data/synth-test", {"copy-reference": copy_reference, "stage2": animate}, out="eval")
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from absl import flags

from dreamactor_jax import cli
from dreamactor_jax.evaluation.metrics import MASK_THRESHOLD, FrameMetric
from dreamactor_jax.evaluation.report import GROUPS, evaluate
from dreamactor_jax.evaluation.triplets import copy_reference

BASELINES = {"copy-reference": copy_reference}

FLAGS = flags.FlagValues()
_TRIPLETS = flags.DEFINE_string("triplets", None, "Folder of triplet sub-folders (reference, driving, truth).",
                                required=True, flag_values=FLAGS)
_RESULTS = flags.DEFINE_multi_string("results", [], "A method's results folder, [NAME=]DIR, one video per triplet "
                                     "name (repeatable).", flag_values=FLAGS)
_BASELINE = flags.DEFINE_multi_enum("baseline", [], sorted(BASELINES), "Built-in baseline to score too: "
                                    "copy-reference = the reference repeated (repeatable).", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Output folder: results.md, results.json, grid.png.", required=True,
                           flag_values=FLAGS)
_GROUP_BY = flags.DEFINE_enum("group-by", "kind", list(GROUPS), "Table rows: the reference's kind, the driver's, "
                              "the pair, the motion type.", flag_values=FLAGS)
_SKIP_FIRST = flags.DEFINE_bool("skip-first", True, "Leave frame 0 (the given reference) out of scores.",
                                flag_values=FLAGS)
_MOVING_ONLY = flags.DEFINE_bool("moving-only", False, "Score only the moving split (reference-vs-truth silhouette "
                                 "IoU < 0.5).", flag_values=FLAGS)
_MASK_THRESHOLD = flags.DEFINE_float("mask-threshold", MASK_THRESHOLD, "Background difference (0..1) above which "
                                     "a pixel is character.", lower_bound=0.0, upper_bound=1.0, flag_values=FLAGS)
_METRIC = flags.DEFINE_multi_string("metric", [], "An extra metric NAME=module:factory[@ARG]: factory(ARG) returns "
                                    "fn(result, truth) -> float (repeatable).", flag_values=FLAGS)
_GRID_EXAMPLES = flags.DEFINE_integer("grid-examples", 6, "Triplets in grid.png, one per group.", lower_bound=1,
                                      flag_values=FLAGS)
_GRID_FRAMES = flags.DEFINE_integer("grid-frames", 6, "Frames per row in grid.png.", lower_bound=1, flag_values=FLAGS)
_NO_PROGRESS = flags.DEFINE_bool("no-progress", False, "No progress bar.", flag_values=FLAGS)
_STRICT = flags.DEFINE_bool("strict", False, "Refuse a triplet sub-folder lacking its reference, driving video or "
                            "truth (default: warn and skip it).", flag_values=FLAGS)


def load_metric(spec: str) -> tuple[str, FrameMetric]:
  """"NAME=module:factory[@ARG]" -> (NAME, factory(ARG) or factory())."""
  name, _, target = spec.partition("=")
  target, _, arg = target.partition("@")
  module_name, _, factory_name = target.partition(":")
  if not name or not module_name or not factory_name:
    raise ValueError(f"--metric={spec}: expected NAME=module:factory[@ARG]")
  try:
    factory = getattr(importlib.import_module(module_name), factory_name)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"--metric={spec}: {e}") from None
  return name, factory(arg) if arg else factory()


def parse_results(spec: str) -> tuple[str, Path]:
  """"NAME=DIR" or "DIR" (named after the folder)."""
  name, sep, folder = spec.partition("=")
  path = Path(folder if sep else spec)
  if not path.is_dir():
    raise ValueError(f"--results={spec}: {path} is not a folder")
  return (name if sep else path.name), path


def run() -> None:
  methods = {name: BASELINES[name] for name in _BASELINE.value}
  for spec in _RESULTS.value:
    name, folder = parse_results(spec)
    if name in methods:
      raise ValueError(f"--results={spec}: method name {name!r} is already used")
    methods[name] = folder
  if not methods:
    raise ValueError("--results/--baseline: nothing to score: give --results DIR and/or --baseline copy-reference")
  extra = dict(load_metric(spec) for spec in _METRIC.value)
  report = evaluate(_TRIPLETS.value, methods, _OUT.value, skip_first=_SKIP_FIRST.value,
                    mask_threshold=_MASK_THRESHOLD.value, group_by=_GROUP_BY.value, moving_only=_MOVING_ONLY.value,
                    extra_metrics=extra,
                    grid_examples=_GRID_EXAMPLES.value, grid_frames=_GRID_FRAMES.value, progress=not _NO_PROGRESS.value,
                    strict=_STRICT.value)
  print(report.markdown)
  print("wrote " + ", ".join(str(p) for p in report.files))


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
