"""Input pipeline throughput: clips per second per worker, both stages, at 480p x 81 frames and tiny.

  python benchmarks/data.py                          # both sizes, both stages, in-process (1 worker)
  python benchmarks/data.py --size 480p --stage 1 --batches 4 --workers 2

Writes a synthetic dataset in a temp folder (smooth frames with moving shapes, so the JPEGs are
about the size of real footage, and a drifting skeleton), then times `stage1_dataset` /
`stage2_dataset` after one warm-up batch. `--workers 0` loads in the main process: that rate is the
rate of one worker. Stage 1 per clip: decode T + 1 JPEGs with a crop and resize, augment and render
T skeleton frames. Stage 2: decode 2T + 1 JPEGs. `--step-seconds` prints how many workers a
training step of that length needs at batch size `--batch-size`.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dreamactor_jax import cli  # noqa: E402
from dreamactor_jax.data import staging  # noqa: E402
from dreamactor_jax.data.build import VideoFolder  # noqa: E402
from dreamactor_jax.data.keypoints import Pose  # noqa: E402
from dreamactor_jax.data.pipeline import DataConfig, stage1_dataset, stage2_dataset  # noqa: E402
from dreamactor_jax.data.stage2 import write_stage2_dataset  # noqa: E402
from dreamactor_jax.data.video import encode_jpeg  # noqa: E402

SIZES = {  # name: (H, W, frames per clip, stride, source short side)
    "480p": (480, 832, 81, 2, 480),
    "tiny": (64, 64, 9, 1, 64),
}


def frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
  """Smooth gradients, moving rectangles and mild noise: JPEG sizes like real video, not like noise."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  base = np.stack([x / width * 180 + 40, y / height * 160 + 50, (x + y) / (width + height) * 120 + 60], -1)
  video = np.empty((count, height, width, 3), np.uint8)
  for t in range(count):
    frame = base + rng.normal(0, 4, (height, width, 3))
    for k in range(4):
      x0 = int((k * 0.23 + t * 0.004) % 0.8 * width)
      y0 = int((k * 0.19 + 0.1) * height)
      frame[y0:y0 + height // 6, x0:x0 + width // 8] = (60 * k + 40, 200 - 40 * k, 90)
    video[t] = np.clip(frame, 0, 255)
  return video


def skeleton(count: int, height: int, width: int) -> Pose:
  pose = Pose.empty(count, 1)
  rng = np.random.default_rng(0)
  joints = rng.uniform([0.3 * width, 0.1 * height], [0.7 * width, 0.9 * height], (18, 2))
  for t in range(count):
    pose.body[t, 0, :, :2] = joints + [t * width / count * 0.2, 0]
    pose.hands[t, 0, :, :, :2] = joints[[7, 4], None] + rng.normal(0, 5, (2, 21, 2))
    pose.face[t, 0, :, :2] = joints[0] + rng.normal(0, 5, (68, 2))
  pose.body[..., 2] = pose.hands[..., 2] = pose.face[..., 2] = 0.9
  return pose


def make_stage1(folder: Path, videos: int, source_frames: int, height: int, width: int) -> None:
  stage_dir = folder / "staging1"
  stage_dir.mkdir()
  for v in range(videos):
    clip = frames(source_frames, height, width, v)
    data, offsets = staging.pack_bytes([encode_jpeg(f) for f in clip])
    pose = skeleton(source_frames, height, width)
    staging.write_staged(stage_dir / f"{v}.npz", dict(
        key=f"video{v}", identity=f"person{v}", caption="a person dancing", fps=np.float32(30), height=height,
        width=width, frames_data=data, frames_offsets=offsets, body=pose.body, hands=pose.hands, face=pose.face))
  staging.prepare(VideoFolder, folder / "stage1", stage_dir)


def make_stage2(folder: Path, records: int, clip_frames: int, height: int, width: int) -> None:
  def record(i):
    clip = frames(clip_frames, height, width, i)
    return dict(video=clip, reference=clip[0], driving=clip[:, :, ::-1].copy(), fps=15.0, caption="c",
                scores={"mean": 5.0}, video_id=f"video{i}", identity=f"person{i}", driving_identity="cartoon")
  write_stage2_dataset(folder / "stage2", (record(i) for i in range(records)), progress=False)


def run(args, size: str, stage: int, folder: Path) -> None:
  height, width, clip_frames, stride, _ = SIZES[size]
  config = DataConfig(stage1_dir=str(folder / "stage1"), stage2_dir=str(folder / "stage2"), num_frames=clip_frames,
                      frame_stride=stride, buckets=((height, width),), batch_size=args.batch_size,
                      num_workers=args.workers, text_len=512, text_dim=16, bone_scale_prob=0.3)
  dataset = (stage1_dataset if stage == 1 else stage2_dataset)(config)
  it = iter(dataset)
  next(it)  # warm-up: workers start, first batch
  start = time.perf_counter()
  for _ in range(args.batches):
    batch = next(it)
  elapsed = time.perf_counter() - start
  clips = args.batches * args.batch_size
  rate = clips / elapsed
  workers = max(args.workers, 1)
  print(f"stage {stage} {size} ({height}x{width} x {clip_frames} frames, stride {stride if stage == 1 else 1}): "
        f"{rate:.2f} clips/s with {args.workers} workers = {rate / workers:.2f} clips/s per worker "
        f"({elapsed / clips:.2f} s per clip; batch {tuple(batch['video'].shape)})")
  if args.step_seconds:
    need = args.batch_size / args.step_seconds
    print(f"  a {args.step_seconds:g} s step at batch {args.batch_size} needs {need:.2f} clips/s: "
          f"{math.ceil(need / (rate / workers))} worker(s)")


FLAGS = flags.FlagValues()
flags.DEFINE_enum("size", "all", [*SIZES, "all"], "Clip size.", flag_values=FLAGS)
flags.DEFINE_enum("stage", "all", ["1", "2", "all"], "Which stage's pipeline.", flag_values=FLAGS)
flags.DEFINE_integer("batches", None, "Timed batches (default: 2 at 480p, 20 tiny).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("batch-size", 1, "Clips per batch.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("workers", 0, "Grain worker processes (0: in-process = 1 worker).", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_float("step-seconds", None, "Train step time to compare against.", lower_bound=0, flag_values=FLAGS)


def benchmark() -> None:
  args = cli.namespace(FLAGS)
  print("command: python benchmarks/data.py " + " ".join(sys.argv[1:]))
  sizes = list(SIZES) if args.size == "all" else [args.size]
  stages = [1, 2] if args.stage == "all" else [int(args.stage)]
  for size in sizes:
    height, width, clip_frames, stride, _ = SIZES[size]
    batches = args.batches
    args.batches = batches or (2 if size == "480p" else 20)
    with tempfile.TemporaryDirectory() as tmp:
      folder = Path(tmp)
      records = 2 * args.batch_size
      if 1 in stages:
        make_stage1(folder, records, 1 + (clip_frames - 1) * stride + 4, height, width)
      if 2 in stages:
        make_stage2(folder, records, clip_frames, height, width)
      for stage in stages:
        run(args, size, stage, folder)
    args.batches = batches


def main(argv: list[str] | None = None) -> int:
  return cli.run(benchmark, FLAGS, argv, doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
