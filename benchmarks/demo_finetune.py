"""One recipe change measured cheaply: the bundled demo model fine-tuned briefly with it, scored on the
moving split of the benchmark against copy-the-reference.

  python benchmarks/demo_finetune.py --workdir runs/finetune/control                     # the recipe as it is
  python benchmarks/demo_finetune.py --workdir runs/finetune/sigmas --sigmas uniform     # noise levels as sampled
  python benchmarks/demo_finetune.py --workdir runs/finetune/continue --continuation-prob 0.3
  python benchmarks/demo_finetune.py --workdir runs/finetune/change --prediction change

Stage 2 (full layout) continues from the bundle's weights (`assets/demo/model`, its codec kept) for
`--steps` steps on `--pairs` cross-identity triplets the world renders exactly (`synthetic.pair_records`,
shared by every run in `--pairs-dir`), so the rows differ in the one change only; the control row
is the same fine-tune with the recipe unchanged. The benchmark (`dreamactor_jax.demo.make_benchmark`,
rendered once into `--benchmark`) is scored on the moving split of its frame-0 track, `--samples`
samples per triplet: the first alone (what a user gets) and their mean. Prints the moving split's
PSNR, PSNR over the character and silhouette IoU per kind for copy-the-reference and the fine-tuned
model (the bundle's own scores: `python -m dreamactor_jax.demo --evaluate-only`), and writes
`<workdir>/finetune.json`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli, demo  # noqa: E402
from dreamactor_jax.evaluation import report, triplets  # noqa: E402
from dreamactor_jax.sampling.bundle import load_bundle  # noqa: E402
from dreamactor_jax.training.loop import train  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "demo" / "model"


FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "This run's checkpoints, evaluation and finetune.json.", required=True,
                    flag_values=FLAGS)
flags.DEFINE_string("pairs-dir", "runs/finetune/pairs", "The world's stage-2 pairs (shared by every run).",
                    flag_values=FLAGS)
flags.DEFINE_string("benchmark", "runs/finetune/benchmark", "The benchmark's triplets (shared by every run).",
                    flag_values=FLAGS)
flags.DEFINE_string("bundle", str(BUNDLE), "The stage-2 bundle to continue from.", flag_values=FLAGS)
flags.DEFINE_integer("pairs", 400, "World-rendered triplets to fine-tune on.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("steps", 300, "Fine-tuning steps.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("samples", 2, "Samples per triplet in the evaluation.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("sigmas", None, ["logit_normal", "uniform"],
                  "Training noise levels before the shift (demo: logit_normal).", flag_values=FLAGS)
flags.DEFINE_float("sigma-shift", None, "Their shift (demo: 3).", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_float("continuation-prob", None, "Share of steps trained as a continued segment (demo: 0).",
                   lower_bound=0, upper_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("prediction", None, ["video", "change"], "What the DiT predicts (demo: video).", flag_values=FLAGS)


def finetune() -> None:
  args = cli.namespace(FLAGS)
  workdir, pairs_dir, benchmark = Path(args.workdir), Path(args.pairs_dir), Path(args.benchmark)
  workdir.mkdir(parents=True, exist_ok=True)
  recipe = dataclasses.replace(demo.Recipe(), world_pairs=args.pairs, stage2_steps=args.steps,
                               eval_samples=args.samples)
  changes = {key: value for key, value in dict(distribution=args.sigmas, shift=args.sigma_shift).items()
             if value is not None}
  times = {}

  def timed(name, fn):
    start = time.perf_counter()
    fn()
    times[name] = time.perf_counter() - start

  if not (pairs_dir / ".done").exists():
    timed("pairs", lambda: demo.make_world_pairs(pairs_dir, recipe))
    (pairs_dir / ".done").touch()
  if not (benchmark / "first" / "index.json").exists():
    timed("benchmark", lambda: demo.make_benchmark(benchmark, recipe))

  config = demo.stage_config("stage2", workdir, recipe)
  config.init.dit, config.init.vae = str(Path(args.bundle) / "dit"), str(Path(args.bundle) / "vae")
  config.data.stage2_dir = str(pairs_dir)
  config.sampling.train.update(changes)
  if args.continuation_prob is not None:
    config.train.continuation_prob = args.continuation_prob
  if args.prediction is not None:
    config.animation.prediction = args.prediction
  if not (workdir / "stage2" / "bundle").exists():
    timed("finetune", lambda: train(config, workdir / "stage2"))

  methods = {"copy-reference": triplets.copy_reference,
             "fine-tuned": demo.rgb_driven(load_bundle(workdir / "stage2" / "bundle"))}
  start = time.perf_counter()
  scored = report.evaluate(benchmark / "first", methods, workdir / "evaluation", samples=args.samples,
                           moving_only=True, save_videos=False, progress=False)
  times["evaluate"] = time.perf_counter() - start
  summary = scored.summary["moving"]
  result = dict(args=vars(args), sampling_train=dict(config.sampling.train), seconds=times, summary=summary)
  (workdir / "finetune.json").write_text(json.dumps(result, indent=1))
  print(", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items()))
  print("| kind | n | copy-reference PSNR / PSNR-fg / IoU | fine-tuned | fine-tuned, mean of samples |")
  print("|---|---|---|---|---|")
  mean = report.mean_name("fine-tuned", args.samples)
  for kind, rows in summary.items():
    cells = [f"{rows[m]['psnr']:.2f} / {rows[m]['psnr_fg']:.2f} / {rows[m]['iou']:.3f}" if m in rows else "-"
             for m in ("copy-reference", "fine-tuned", mean)]
    print(f"| {kind} | {int(rows['copy-reference']['n'])} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
  return cli.run(finetune, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
