"""Scores animation results against ground truth, per character kind (issue 8).

  python -m dreamactor_jax.data.synthetic --out data/synth-test --split test --identities 12 --motions 8
  python -m dreamactor_jax.evaluate --triplets data/synth-test --baseline copy-reference --out eval/
  python -m dreamactor_jax.evaluate --triplets data/synth-test --results stage2=out/stage2 \\
      --results stage1=out/stage1 --baseline copy-reference --out eval/

`--triplets` is a folder of (reference, driving, truth) triplets: the synthetic world's test split
or your own (see dreamactor_jax/evaluation/triplets.py for the layout). Each `--results` folder
holds one video per triplet name (`<name>.npz` with `video` uint8 [T, H, W, 3], or `<name>.mp4`).
Writes results.md and results.json (per-kind means and per-triplet scores) and grid.png
(reference | driving | results | truth).

Metrics: PSNR, foreground PSNR, SSIM (scikit-image), GMSD, temporal error, silhouette IoU and,
when `<name>.pose.npz` sits beside a result and the truth has keypoints, PCK; definitions in
dreamactor_jax/evaluation/metrics.py. More metrics plug in with `--metric NAME=module:factory[@ARG]`:
`factory(ARG)` returns `fn(result, truth) -> float` on uint8 [T, H, W, 3] videos. LPIPS, for
instance, needs pretrained weights that are not downloaded here: write a factory that loads yours.

From Python, models plug in as functions `animate(reference uint8 [H, W, 3], driving uint8
[T, H, W, 3]) -> uint8 [T, H, W, 3]`:

  from dreamactor_jax.evaluation import copy_reference, evaluate
  evaluate("data/synth-test", {"copy-reference": copy_reference, "stage2": animate}, out="eval")
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dreamactor_jax.evaluation.metrics import MASK_THRESHOLD, FrameMetric
from dreamactor_jax.evaluation.report import GROUPS, evaluate
from dreamactor_jax.evaluation.triplets import copy_reference

BASELINES = {"copy-reference": copy_reference}


def load_metric(spec: str) -> tuple[str, FrameMetric]:
  """"NAME=module:factory[@ARG]" -> (NAME, factory(ARG) or factory())."""
  name, _, target = spec.partition("=")
  target, _, arg = target.partition("@")
  module_name, _, factory_name = target.partition(":")
  if not name or not module_name or not factory_name:
    raise ValueError(f"--metric {spec!r}: expected NAME=module:factory[@ARG]")
  factory = getattr(importlib.import_module(module_name), factory_name)
  return name, factory(arg) if arg else factory()


def parse_results(spec: str) -> tuple[str, Path]:
  """"NAME=DIR" or "DIR" (named after the folder)."""
  name, sep, folder = spec.partition("=")
  path = Path(folder if sep else spec)
  if not path.is_dir():
    raise ValueError(f"--results {spec!r}: {path} is not a folder")
  return (name if sep else path.name), path


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m dreamactor_jax.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--triplets", required=True, help="folder of triplet sub-folders (reference, driving, truth)")
  parser.add_argument("--results", action="append", default=[], metavar="[NAME=]DIR",
                      help="a method's results folder, one video per triplet name (repeatable)")
  parser.add_argument("--baseline", action="append", default=[], choices=sorted(BASELINES),
                      help="built-in baseline to score too: copy-reference = the reference repeated (repeatable)")
  parser.add_argument("--out", required=True, help="output folder: results.md, results.json, grid.png")
  parser.add_argument("--group-by", choices=GROUPS, default="kind",
                      help="table rows: the reference's kind (default), the driver's, the pair, the motion type")
  parser.add_argument("--skip-first", action="store_true", help="leave frame 0 (the given reference) out of scores")
  parser.add_argument("--mask-threshold", type=float, default=MASK_THRESHOLD,
                      help=f"background difference (0..1) above which a pixel is character (default {MASK_THRESHOLD})")
  parser.add_argument("--metric", action="append", default=[], metavar="NAME=module:factory[@ARG]",
                      help="an extra metric: factory(ARG) returns fn(result, truth) -> float (repeatable)")
  parser.add_argument("--grid-examples", type=int, default=6, help="triplets in grid.png, one per group (default 6)")
  parser.add_argument("--grid-frames", type=int, default=6, help="frames per row in grid.png (default 6)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  try:
    methods = {name: BASELINES[name] for name in args.baseline}
    for spec in args.results:
      name, folder = parse_results(spec)
      if name in methods:
        raise ValueError(f"--results {spec!r}: method name {name!r} is already used")
      methods[name] = folder
    if not methods:
      raise ValueError("nothing to score: give --results DIR and/or --baseline copy-reference")
    extra = dict(load_metric(spec) for spec in args.metric)
    report = evaluate(args.triplets, methods, args.out, skip_first=args.skip_first, mask_threshold=args.mask_threshold,
                      group_by=args.group_by, extra_metrics=extra, grid_examples=args.grid_examples,
                      grid_frames=args.grid_frames, progress=not args.no_progress)
  except (ValueError, FileNotFoundError, ImportError, AttributeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(report.markdown)
  print("wrote " + ", ".join(str(p) for p in report.files))
  return 0


if __name__ == "__main__":
  sys.exit(main())
