"""The demo recipe at other sizes: how the held-out score of stage 2 moves with the DiT's width, the
batch, the steps and the number of training identities, beside copy-the-reference.

  python benchmarks/demo_scaling.py --workdir runs/scaling/base                          # the demo's sizes
  python benchmarks/demo_scaling.py --workdir runs/scaling/w256b16 --dim 256 --heads 4 --ffn 768 --batch 16
  python benchmarks/demo_scaling.py --workdir runs/scaling/d3 --identities 126 --pairs-per-clip 1
  python benchmarks/demo_scaling.py --workdir runs/scaling/aug --appearance-prob 0.5 --flip-prob 0.5

Each run renders its own world (`--identities`), fits the codec, trains stage 1, bootstraps, trains
stage 2 (the full layout; the motion_cache model and the bundle are left out) and scores copy-the-
reference and stage 2 on the moving split of the demo's held-out triplets (frame-0 reference track,
one sample), the same at every size. It prints PSNR and silhouette IoU per kind, the last training
loss of each stage (a loss far below the other sizes' with no better held-out score means the model
memorised its training pairs) and the wall time of each phase, and writes `<workdir>/scaling.json`.
On a GPU pass `--workers 12`: the data pipeline on the main thread, not the DiT, bounds the step
rate there.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax
from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli, demo  # noqa: E402
from dreamactor_jax.evaluation import report, triplets  # noqa: E402
from dreamactor_jax.sampling.bundle import load_bundle  # noqa: E402
from dreamactor_jax.training.loop import train  # noqa: E402


FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "This size's world, checkpoints and scaling.json (resumable).", required=True,
                    flag_values=FLAGS)
for _name, _help in (("dim", "DiT width (demo: 128)."), ("heads", "Attention heads (demo: 4)."),
                     ("ffn", "Feed-forward width (demo: 384)."), ("layers", "DiT blocks (demo: 6)."),
                     ("batch", "Clips per step in both stages (demo: 4)."),
                     ("patch", "DiT patch height and width in latents (demo: 2).")):
  flags.DEFINE_integer(_name, None, _help, lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("workers", None, "Data-loader processes (demo: 0).", lower_bound=0, flag_values=FLAGS)
for _name, _help in (("stage1-steps", "Stage-1 steps."), ("stage2-steps", "Stage-2 steps."),
                     ("identities", "Training identities."), ("pairs-per-clip", "Bootstrap pairs per humanoid clip.")):
  flags.DEFINE_integer(_name, getattr(demo.Recipe, _name.replace("-", "_")), _help, lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float("appearance-prob", None, "Share of training examples recoloured, target and reference together "
                   "(demo: 0).", lower_bound=0, upper_bound=1, flag_values=FLAGS)
flags.DEFINE_float("flip-prob", None, "Stage 2's shared horizontal flip (demo: 0).", lower_bound=0, upper_bound=1,
                   flag_values=FLAGS)


def benchmark() -> None:
  args = cli.namespace(FLAGS)
  recipe = dataclasses.replace(demo.Recipe(), identities=args.identities, pairs_per_clip=args.pairs_per_clip,
                               stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps)
  model = {key: value for key, value in dict(dim=args.dim, num_heads=args.heads, ffn_dim=args.ffn,
                                             num_layers=args.layers).items() if value is not None}
  if args.patch is not None:
    model["patch_size"] = (1, args.patch, args.patch)
  data = {key: value for key, value in dict(batch_size=args.batch, num_workers=args.workers,
                                            appearance_prob=args.appearance_prob,
                                            stage2_flip_prob=args.flip_prob).items() if value is not None}
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  def stage_config(name: str):
    config = demo.stage_config(name, workdir, recipe, **model)
    config.data.update(data)
    return config

  def train_stage(name: str) -> None:
    logged = train(stage_config(name), workdir / name)  # metrics of the last logging interval
    (workdir / name / "last_metrics.json").write_text(json.dumps(logged))

  phases = demo.Phases(workdir)
  phases.run("world", lambda: demo.make_world(workdir, recipe))
  phases.run("codec", lambda: demo.fit_codec(workdir, recipe))
  phases.run("stage1", lambda: train_stage("stage1"))
  phases.run("bootstrap", lambda: demo.make_pairs(workdir, recipe))
  phases.run("stage2", lambda: train_stage("stage2"))

  def evaluate() -> None:
    methods = {"copy-reference": triplets.copy_reference,
               "stage-2": demo.rgb_driven(load_bundle(workdir / "stage2" / "bundle"))}
    report.evaluate(workdir / "world" / "test" / "first", methods, workdir / "evaluation", moving_only=True,
                    save_videos=False)

  phases.run("evaluate", evaluate)
  summary = json.loads((workdir / "evaluation" / "results.json").read_text())["summary"]["moving"]
  losses = {stage: json.loads((workdir / stage / "last_metrics.json").read_text())["loss"]
            for stage in ("stage1", "stage2")}
  result = dict(recipe=dataclasses.asdict(recipe), model=model, data=data, losses=losses,
                seconds=phases.times, device=jax.devices()[0].device_kind, summary=summary)
  (workdir / "scaling.json").write_text(json.dumps(result, indent=1))
  print(f"{jax.devices()[0].device_kind}; model {model or 'as the demo'}, data {data or 'as the demo'}, "
        f"steps {recipe.stage1_steps}/{recipe.stage2_steps}, {recipe.identities} identities; "
        f"last loss stage 1 {losses['stage1']:.3f}, stage 2 {losses['stage2']:.3f}; "
        + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in phases.times.items()))
  print("| kind | copy-reference PSNR / IoU | stage-2 PSNR / IoU |\n|---|---|---|")
  for kind, rows in summary.items():
    copy, ours = rows["copy-reference"], rows["stage-2"]
    print(f"| {kind} | {copy['psnr']:.2f} / {copy['iou']:.3f} | {ours['psnr']:.2f} / {ours['iou']:.3f} |")


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
