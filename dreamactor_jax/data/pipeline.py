"""Grain input pipelines for both training stages, yielding the training batch of CONTRACTS.md.

  it = iter(stage1_dataset(DataConfig.from_config(config.data), process_index=jax.process_index(),
                           process_count=jax.process_count(), text_fn=cache.padded))
  batch = next(it)   # video [B, T, H, W, 3] uint8, reference [B, H, W, 3], driving [B, T, H, W, 3],
                     # text [B, L, D] float32, fps [B] float32, video_id [B] str
  ocp.args.Composite(..., data=grain.checkpoint.CheckpointSave(it))   # exact resume

Stage 1 (PAPER.md section 3): a clip of T = 1 + 4k frames at a stride, the reference (the clip's
first frame, or a random frame outside the clip), and the clip's keypoints, bone-scaled and
box-normalised (augment.py), rendered as OpenPose skeletons (skeleton.py). Stage 2 (section 5): the
bootstrap's triplets (stage2.py) with one crop and flip shared by target, reference and driving.
Both stages can recolour a share of examples (`appearance_prob`): one colour map on the target and
its reference, another on a stage-2 driving clip. With few identities the model otherwise learns
their colours by heart instead of reading them from the reference.

Batches and buckets. Every batch has one frame size: each record goes to the bucket nearest its
aspect ratio (from the dataset's index, no frame read). For epoch e a generator seeded by
(seed, e) permutes each bucket's records, cuts them into global batches of
`batch_size * process_count`, and permutes the list of all global batches; global batch i is a
pure function of (seed, i). Process p takes records `p::process_count` of each global batch, so
processes partition the data and all processes see the same bucket at every step. The Grain chain
is a MapDataset over batch indices -> load -> to_iter_dataset -> mp_prefetch (workers) -> attach
text (main process). Its state is the next batch index (plus skip counts), so get_state/set_state
resume exactly, with any worker count.

Bad data. Records too short for the clip, without keypoints (stage 1) or below the score bar
(stage 2) are left out when the index is read, and counted. A record that fails to decode, or
whose clip has no keypoint, is replaced within its slot by another record of the same bucket,
drawn deterministically, so the batch size never changes; each event is counted (`iterator.stats()`
gives the counts for the trainer's metrics) and warned about, naming the video, at most every
`warn_every_s`. A slot where `max_retries` records fail in a row stops with DataError, as does an
index with nothing usable.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import grain
import numpy as np
from absl import flags

from dreamactor_jax.data import augment, build, stage2, staging
from dreamactor_jax.data.keypoints import Pose
from dreamactor_jax.data.skeleton import PoseDrawing
from dreamactor_jax.data.staging import DataError
from dreamactor_jax.data.video import (Bucket, cover_box, decode_jpeg, decode_jpegs, jpeg_size, nearest_bucket,
                                       parse_buckets)

log = logging.getLogger(__name__)

# captions [B] -> text embeddings [B, L, D], e.g. PromptCache(path).padded; run in the main process.
TextFn = Callable[[list[str]], np.ndarray]
# Exceptions of a corrupt record (PIL, zlib, TFDS parsing); anything else is a bug and propagates.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, zlib.error)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The `config.data` section (dreamactor_jax/configs/base.py explains each field)."""

  stage1_dir: str = ""
  stage2_dir: str = ""
  num_frames: int = 81
  frame_stride: int = 2
  stage2_frame_stride: int = 1
  reference: Literal["first", "outside"] = "first"
  buckets: tuple[tuple[int, int], ...] = ((480, 832), (832, 480), (624, 624), (544, 720), (720, 544))
  random_crop: bool = True
  batch_size: int = 2
  seed: int = 0
  num_epochs: int | None = None
  num_workers: int = 2
  worker_buffer_size: int = 2
  threads_per_worker: int = 1
  pose: PoseDrawing = PoseDrawing()
  bone_scale_prob: float = 0.3
  bone_scale_range: tuple[float, float] = (0.8, 1.2)
  stage2_min_score: float | None = None
  stage2_flip_prob: float = 0.0
  allow_self_pairs: bool = False
  appearance_prob: float = 0.0
  text_len: int = 512
  text_dim: int = 4096
  max_retries: int = 16
  warn_every_s: float = 60.0

  @classmethod
  def from_config(cls, section: Any) -> DataConfig:
    """From `config.data` (a ConfigDict or dict); lists become tuples, unknown keys are refused."""
    values = dict(section.to_dict() if hasattr(section, "to_dict") else section)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ValueError(f"config.data has unknown fields {unknown}; expected some of {sorted(fields)}")
    for name in ("buckets", "bone_scale_range"):
      if name in values:
        values[name] = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in values[name])
    if "pose" in values:
      values["pose"] = PoseDrawing.from_mapping(values["pose"])
    config = cls(**values)
    config.check()
    return config

  def check(self) -> None:
    if self.num_frames < 1 or (self.num_frames - 1) % 4:
      raise ValueError(f"data.num_frames={self.num_frames}; expected 1 + 4k (e.g. 81)")
    if self.frame_stride < 1 or self.stage2_frame_stride < 1:
      raise ValueError("data.frame_stride and data.stage2_frame_stride must be >= 1")
    if self.reference not in ("first", "outside"):
      raise ValueError(f"data.reference={self.reference!r}; expected 'first' or 'outside'")
    if not 0.0 <= self.appearance_prob <= 1.0:
      raise ValueError(f"data.appearance_prob={self.appearance_prob}; expected a probability in [0, 1]")
    if self.batch_size < 1:
      raise ValueError(f"data.batch_size={self.batch_size}; expected >= 1")
    parse_buckets(self.buckets)


# --------------------------------------------------------------------------------------- plan


@dataclasses.dataclass
class Index:
  """The usable records of a dataset and their buckets; `excluded` maps a reason to record ids."""

  rows: list[dict]
  records: np.ndarray  # [N] usable record indices
  bucket_of: np.ndarray  # [N] bucket of each usable record
  excluded: dict[str, list[str]]


def make_index(rows: Sequence[dict], buckets: Sequence[Bucket], usable: Callable[[dict], str | None],
               name: str) -> Index:
  """Keeps the rows `usable` returns None for (else a reason) and assigns each to its bucket."""
  records, bucket_of, excluded = [], [], collections.defaultdict(list)
  for i, row in enumerate(rows):
    reason = usable(row)
    if reason:
      excluded[reason].append(row["video_id"])
      continue
    records.append(i)
    bucket_of.append(nearest_bucket(row["height"], row["width"], buckets))
  if excluded:
    summary = ", ".join(f"{len(ids)} {reason} (e.g. {ids[0]})" for reason, ids in excluded.items())
    log.warning("%s: left out %s", name, summary)
  if not records:
    summary = ", ".join(f"{len(ids)} {reason}" for reason, ids in excluded.items()) or "empty"
    raise DataError(f"{name}: no usable record out of {len(rows)} ({summary})")
  return Index(list(rows), np.array(records, np.int64), np.array(bucket_of, np.int64), dict(excluded))


class BatchPlan:
  """Global batch i -> (bucket, this process's records): deterministic, random access (module doc)."""

  def __init__(self, index: Index, *, batch_size: int, process_index: int, process_count: int, seed: int,
               num_epochs: int | None, name: str, buckets: Sequence[Bucket]):
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index={process_index} is not in 0..{process_count - 1}")
    self.global_batch = batch_size * process_count
    self.process_index, self.process_count, self.seed = process_index, process_count, seed
    self.bucket_records = [index.records[index.bucket_of == b] for b in range(len(buckets))]
    self.batches_per_epoch = sum(len(r) // self.global_batch for r in self.bucket_records)
    unused = [f"{b.height}x{b.width}: {len(r)}" for b, r in zip(buckets, self.bucket_records)
              if 0 < len(r) < self.global_batch]
    if unused:
      log.warning("%s: buckets with fewer records than a global batch of %d are never used (%s)", name,
                  self.global_batch, ", ".join(unused))
    if not self.batches_per_epoch:
      raise DataError(f"{name}: no bucket holds a global batch of {self.global_batch} records "
                      f"({len(index.records)} usable records over {len(buckets)} buckets)")
    epochs = num_epochs if num_epochs is not None else 2 ** 40 // self.batches_per_epoch
    self.length = epochs * self.batches_per_epoch
    self._cache: tuple[int, list] = (-1, [])  # (epoch, its batches): one attribute, so threads see a pair

  def __len__(self) -> int:
    return self.length

  def _epoch_batches(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    cached_epoch, batches = self._cache
    if cached_epoch != epoch:
      rng = np.random.default_rng([self.seed, epoch])
      batches = []
      for bucket, records in enumerate(self.bucket_records):
        records = rng.permutation(records)
        for start in range(0, len(records) - self.global_batch + 1, self.global_batch):
          batches.append((bucket, records[start:start + self.global_batch]))
      batches = [batches[i] for i in rng.permutation(len(batches))]
      self._cache = (epoch, batches)
    return batches

  def __getitem__(self, i: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """`(i, bucket, records [B], global slots [B])` for this process."""
    if not 0 <= i < self.length:
      raise IndexError(i)
    bucket, records = self._epoch_batches(i // self.batches_per_epoch)[i % self.batches_per_epoch]
    slots = np.arange(self.process_index, self.global_batch, self.process_count)
    return i, bucket, records[slots], slots


# ------------------------------------------------------------------------------------ loading


class Skip(Exception):
  """A record that cannot make an example; `reason` is the counter it goes to."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason


class BatchLoader:
  """`(i, bucket, records, slots)` -> one batch dict; subclasses make one example."""

  def __init__(self, path, config: DataConfig, plan: BatchPlan, index: Index):
    self.source = staging.LazySource(path)
    self.config, self.plan, self.index = config, plan, index
    self.buckets = parse_buckets(config.buckets)

  def example(self, record: dict, row: dict, bucket: Bucket, rng: np.random.Generator,
              out: dict[str, np.ndarray]) -> dict:
    """Writes the example's `video`, `reference`, `driving` into `out`; returns its other fields."""
    raise NotImplementedError

  def __call__(self, item) -> dict:
    i, bucket_index, records, slots = item
    bucket = self.buckets[bucket_index]
    # The frames go straight into the batch's arrays: at 480p x 81 frames every extra copy of a
    # 97 MB clip costs more than decoding it.
    frames, size = self.config.num_frames, (bucket.height, bucket.width)
    batch = {"video": np.empty((len(records), frames, *size, 3), np.uint8),
             "reference": np.empty((len(records), *size, 3), np.uint8),
             "driving": np.empty((len(records), frames, *size, 3), np.uint8)}
    examples, skipped = [], []
    for b, (record, slot) in enumerate(zip(records, slots)):
      out = {key: value[b] for key, value in batch.items()}
      rng = np.random.default_rng([self.config.seed, i, slot])  # slot: unique over processes
      candidates = self.plan.bucket_records[bucket_index]
      for attempt in range(self.config.max_retries + 1):
        if attempt:
          record = candidates[rng.integers(len(candidates))]
        row = self.index.rows[record]
        try:
          examples.append(self.example(self.source[int(record)], row, bucket, rng, out))
          break
        except Skip as e:
          skipped.append(f"{e.reason}\t{row['video_id']}\t{e}")
        except DECODE_ERRORS as e:
          skipped.append(f"decode_error\t{row['video_id']}\tdecode_error: {type(e).__name__}: {e}".splitlines()[0])
      else:
        raise DataError(f"{self.config.max_retries + 1} records in a row failed for one slot of bucket "
                        f"{bucket.height}x{bucket.width}; last: {skipped[-1].split(chr(9), 2)[2]} "
                        f"({row['video_id']}); is the dataset readable?")
    batch.update({key: np.stack([example[key] for example in examples]) for key in examples[0]})
    batch["skipped"] = np.array(skipped, dtype=np.str_)
    return batch

  def clip_frames(self, num_frames: int, stride: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Frame indices `[T]` of a random clip of `num_frames` source frames, and the clip's span."""
    span = 1 + (self.config.num_frames - 1) * stride
    start = int(rng.integers(0, num_frames - span + 1))
    return start + stride * np.arange(self.config.num_frames), span

  def crop_offset(self, rng: np.random.Generator) -> tuple[float, float]:
    return (float(rng.random()), float(rng.random())) if self.config.random_crop else (0.5, 0.5)

  def recolour(self, rng: np.random.Generator, out: dict[str, np.ndarray], driving: bool) -> None:
    """With probability `appearance_prob`, one colour map on the target clip and its reference together
    (augment.py), and with `driving` another, independent one on the driving clip."""
    if not self.config.appearance_prob or rng.random() >= self.config.appearance_prob:
      return  # nothing drawn at probability 0: the batches are those of a pipeline without the option
    recolour = augment.colour_map(rng)
    recolour(out["reference"], out=out["reference"])
    recolour(out["video"], out=out["video"])
    if driving:
      augment.colour_map(rng)(out["driving"], out=out["driving"])


class Stage1Loader(BatchLoader):
  """One stage-1 example: clip, reference, rendered skeletons (module docstring)."""

  def example(self, record, row, bucket, rng, out):
    config, size = self.config, (bucket.height, bucket.width)
    frames, span = self.clip_frames(int(record["num_frames"]), config.frame_stride, rng)
    reference = frames[0]
    outside = np.setdiff1d(np.arange(int(record["num_frames"])), np.arange(frames[0], frames[0] + span))
    if config.reference == "outside" and len(outside):
      reference = int(rng.choice(outside))
    pose = Pose(record["body"], record["hands"], record["face"]).frames(frames)
    if not (pose.body[..., 2] >= config.pose.threshold).any():
      raise Skip("no_keypoints", f"no body joint above {config.pose.threshold} in frames {frames[0]}..{frames[-1]}")
    box = cover_box(int(record["height"]), int(record["width"]), bucket, self.crop_offset(rng))
    factors = augment.bone_scale_factors(rng, prob=config.bone_scale_prob, low=config.bone_scale_range[0],
                                         high=config.bone_scale_range[1])
    if factors:
      pose = augment.scale_bones(pose, factors)
    pose = config.pose.place(pose, *size, box)
    jpegs = record["frames"]
    decode_jpegs([jpegs[f] for f in frames], box, size, out=out["video"])
    decode_jpeg(jpegs[reference], box, size, out=out["reference"])
    config.pose.draw(pose, *size, out=out["driving"])
    self.recolour(rng, out, driving=False)  # a skeleton has no appearance to hide
    return {
        "caption": staging.text(record["caption"]),
        "fps": np.float32(record["fps"] / config.frame_stride),
        "video_id": staging.text(record["video_id"]),
    }


class Stage2Loader(BatchLoader):
  """One stage-2 example: target clip of A, reference of A, B's driving clip; one crop and flip."""

  def example(self, record, row, bucket, rng, out):
    config, size = self.config, (bucket.height, bucket.width)
    height, width = int(record["height"]), int(record["width"])
    frames, _ = self.clip_frames(int(record["num_frames"]), config.stage2_frame_stride, rng)
    box = cover_box(height, width, bucket, self.crop_offset(rng))
    flip = bool(rng.random() < config.stage2_flip_prob)
    driving = record["driving"]
    # The driving video may have another size: the same box in relative coordinates.
    driving_w, driving_h = jpeg_size(driving[0])
    scale = np.array([driving_w / width, driving_h / height] * 2)
    driving_box = tuple(float(v) for v in np.array(box) * scale)
    decode_jpegs([record["target"][f] for f in frames], box, size, flip=flip, out=out["video"])
    decode_jpeg(record["reference"], box, size, flip=flip, out=out["reference"])
    decode_jpegs([driving[f] for f in frames], driving_box, size, flip=flip, out=out["driving"])
    self.recolour(rng, out, driving=True)
    return {
        "caption": staging.text(record["caption"]),
        "fps": np.float32(record["fps"] / config.stage2_frame_stride),
        "video_id": staging.text(record["video_id"]),
    }


# ------------------------------------------------------------------ the main-process end stage


class _Finish(grain.IterDataset):
  """Attaches text and counts skipped records, in the main process (after the workers)."""

  def __init__(self, parent: grain.IterDataset, *, text_fn: TextFn | None, config: DataConfig,
               excluded: dict[str, list[str]], name: str):
    super().__init__(parent)
    self._text_fn, self._config, self._excluded, self._name = text_fn, config, excluded, name

  def __iter__(self) -> PipelineIterator:
    return PipelineIterator(self._parent.__iter__(), self)


class PipelineIterator(grain.DatasetIterator):
  """The training-batch iterator; `get_state`/`set_state` include the skip counts, `stats()` reports them."""

  def __init__(self, parent: grain.DatasetIterator, finish: _Finish):
    super().__init__(parent)
    self._finish = finish
    self._skipped: collections.Counter = collections.Counter()
    self._last_warning = -float("inf")
    self._unwarned = 0

  def __next__(self) -> dict:
    batch = dict(next(self._parent))
    self._count(batch.pop("skipped"))
    captions = [str(c) for c in batch.pop("caption")]
    config = self._finish._config
    if self._finish._text_fn is None:
      text = np.zeros((len(captions), config.text_len, config.text_dim), np.float32)
    else:
      text = np.asarray(self._finish._text_fn(captions), np.float32)
    batch["text"] = text
    return batch

  def _count(self, skipped: np.ndarray) -> None:
    for line in skipped:
      reason, video_id, detail = str(line).split("\t", 2)
      self._skipped[reason] += 1
      self._unwarned += 1
      now = time.monotonic()
      if now - self._last_warning >= self._finish._config.warn_every_s:
        totals = ", ".join(f"{k} {v}" for k, v in sorted(self._skipped.items()))
        log.warning("%s: skipped %s (%s); %d skipped since the last warning; totals: %s", self._finish._name,
                    video_id, detail, self._unwarned, totals)
        self._last_warning, self._unwarned = now, 0

  def stats(self) -> dict[str, int]:
    """Counts for metrics: `skipped/<reason>` while iterating, `excluded/<reason>` from the index."""
    out = {f"excluded/{reason}": len(ids) for reason, ids in self._finish._excluded.items()}
    out.update({f"skipped/{reason}": n for reason, n in self._skipped.items()})
    return out

  def get_state(self) -> dict:
    return {"pipeline": self._parent.get_state(), "skipped": dict(self._skipped)}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["pipeline"])
    self._skipped = collections.Counter(state["skipped"])


# ------------------------------------------------------------------------------- the pipelines


def _chain(loader: BatchLoader, plan: BatchPlan, config: DataConfig, text_fn: TextFn | None, index: Index,
           name: str) -> grain.IterDataset:
  ds = grain.MapDataset.source(plan).map(loader)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.threads_per_worker,
                                            prefetch_buffer_size=config.worker_buffer_size))
  if config.num_workers > 0:
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app keep their defaults
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.num_workers,
                                                     per_worker_buffer_size=config.worker_buffer_size))
  return _Finish(ds, text_fn=text_fn, config=config, excluded=index.excluded, name=name)


def _dataset(path, loader: type[BatchLoader], config: DataConfig, usable: Callable[[dict], str | None], name: str,
             process_index: int, process_count: int, text_fn: TextFn | None) -> grain.IterDataset:
  """The chain of one stage over its dataset `path`: index, bucketed batch plan, loader."""
  buckets = parse_buckets(config.buckets)
  index = make_index(staging.read_index(path), buckets, usable, f"{name} {path}")
  plan = BatchPlan(index, batch_size=config.batch_size, process_index=process_index, process_count=process_count,
                   seed=config.seed, num_epochs=config.num_epochs, name=f"{name} {path}", buckets=buckets)
  return _chain(loader(path, config, plan, index), plan, config, text_fn, index, name)


def stage1_dataset(config: DataConfig, *, process_index: int = 0, process_count: int = 1,
                   text_fn: TextFn | None = None) -> grain.IterDataset:
  """The stage-1 pipeline over `config.stage1_dir` (the `data.build --out` folder); iterate it."""
  span = 1 + (config.num_frames - 1) * config.frame_stride

  def usable(row):
    if row["num_frames"] < span:
      return "too_short"
    if row["num_persons"] == 0:
      return "no_keypoints"
    return None

  return _dataset(build.open_videos(config.stage1_dir), Stage1Loader, config, usable, "stage-1 data", process_index,
                  process_count, text_fn)


def stage2_dataset(config: DataConfig, *, process_index: int = 0, process_count: int = 1,
                   text_fn: TextFn | None = None) -> grain.IterDataset:
  """The stage-2 pipeline over `config.stage2_dir` (the `write_stage2_dataset` folder); iterate it."""
  span = 1 + (config.num_frames - 1) * config.stage2_frame_stride

  def usable(row):
    if row["num_frames"] < span:
      return "too_short"
    scores = row["scores"]
    if config.stage2_min_score is not None and (not scores or np.mean(list(scores.values())) < config.stage2_min_score):
      return "low_score"
    return None

  path = stage2.open_stage2(config.stage2_dir)
  if not config.allow_self_pairs:
    stage2.refuse_self_pairs(staging.read_index(path), f"data.stage2_dir {config.stage2_dir}")
  return _dataset(path, Stage2Loader, config, usable, "stage-2 data", process_index, process_count, text_fn)


def dataset_captions(path: str, stage: Literal[1, 2] = 1) -> list[str]:
  """Every distinct caption of a dataset, for `PromptCache.build` before training."""
  folder = build.open_videos(path) if stage == 1 else stage2.open_stage2(path)
  return list(dict.fromkeys(row["caption"] for row in staging.read_index(folder)))
