"""The training loop of both stages (PAPER.md sections 3-6): data -> frozen encoders -> sharded DiT step.

    python train.py --config=dreamactor_jax/configs/stage1.py:tiny --workdir=runs/tiny1

Each step: a Grain batch (CONTRACTS.md) becomes global arrays on the mesh, the frozen VAE (and CLIP
for I2V-shaped DiTs) turn it into a `LatentBatch` (`latent_batch.prepare_batch`), and the sharded
train step (`step.py`) takes one optimizer step on the trainable parameters (the LoRA adapters, or
all of the DiT). Every random draw derives from `config.train.seed` and the step number, and the
data iterator's state is checkpointed, so a run resumed from its last checkpoint continues exactly
as if it had never stopped. SIGTERM (preemption) saves and exits cleanly; NaN/inf steps are
skipped and counted, and `train.max_nonfinite` of them in a row stop the run with an error.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dreamactor_jax import animation, media, parallel
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.orbax_model import load_codec, load_dit, load_model, save_lora
from dreamactor_jax.data import DataConfig, stage1_dataset, stage2_dataset
from dreamactor_jax.models.dit import DiTConfig, WanDiT
from dreamactor_jax.models.image_encoder import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.models.lora import rebuild
from dreamactor_jax.sampling.animate import AnimateOptions, Models, animate_batch
from dreamactor_jax.sampling.bundle import BundleInfo, save_bundle
from dreamactor_jax.sampling.prompt_cache import PromptCache, TextEmbedder
from dreamactor_jax.training import metrics as metrics_lib
from dreamactor_jax.training.checkpointing import Checkpointer, abstract_like
from dreamactor_jax.training.latent_batch import prepare_batch
from dreamactor_jax.training.objective import animation_loss
from dreamactor_jax.training.optimizer import learning_rate_schedule, make_optimizer
from dreamactor_jax.training.step import batch_shardings, init_train_state, jit_train_step
from dreamactor_jax.training.workdir import lock_workdir, replace_folder

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per device, for the MFU estimate (vendor figures).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12,
              "TPU v6 lite": 918e12, "TPU v4": 275e12}
NOISE_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)


class TrainingError(ValueError):
  """Training cannot go on (a bad setting, or too many non-finite steps in a row)."""


class Preempted(RuntimeError):
  """SIGTERM stopped training early; its checkpoint is saved, and the same command resumes it."""


@dataclasses.dataclass(frozen=True)
class Encoders:
  """The encoders training never updates, split for jit: VAE and (I2V-shaped DiTs) CLIP. (The DiT's own
  untrained parameters are `TrainState.frozen`.)"""

  vae: tuple[nnx.GraphDef, nnx.State]
  clip: tuple[nnx.GraphDef, nnx.State] | None


# (key, lowest value): counts and intervals a run cannot work with below these.
_MINIMUMS = (("train.steps", 1), ("train.log_every", 1), ("train.grad_accum", 1), ("train.max_nonfinite", 1),
             ("train.sample_every", 0), ("train.num_samples", 1), ("train.sample_steps", 1),
             ("checkpoint.every", 1), ("checkpoint.keep_last", 1), ("checkpoint.keep_every", 0))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses, before anything loads, the settings the loop cannot run with, naming the key."""
  if config.stage not in (1, 2):
    raise TrainingError(f"config.stage={config.stage}; expected 1 (pose-driven) or 2 (RGB-driven)")
  for key, lowest in _MINIMUMS:
    section, field = key.split(".")
    value = config[section][field]
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
      raise TrainingError(f"config.{key}={value!r}: expected an integer >= {lowest}")
  for key in ("train.ema_decay", "train.text_dropout", "train.continuation_prob"):
    section, field = key.split(".")
    if not 0.0 <= config[section][field] <= 1.0:
      raise TrainingError(f"config.{key}={config[section][field]!r}: expected a share in [0, 1]")


def load_encoders(config: ml_collections.ConfigDict, dit_config: DiTConfig) -> Encoders:
  """The VAE and CLIP folders of `config.init`, refusing what the DiT cannot read."""
  if not config.init.vae:
    raise TrainingError("config.init.vae is empty: training encodes every canvas with the VAE; give a "
                        "`convert vae` folder (or the codec the demo recipe fits)")
  vae, vae_config = load_codec(config.init.vae)
  try:
    animation.check_dit_channels(dit_config.in_channels, vae_config.z_dim, dit_config.condition,
                                 config.animation.loss_region)
  except ValueError as e:
    raise TrainingError(f"config.init.vae has z_dim={vae_config.z_dim}, but the DiT's {e}") from None
  multiple = dit_config.pixel_multiple(vae_config.space_factor)
  for bucket in config.data.buckets:
    animation.check_frame_size("config.data.buckets has", tuple(bucket), multiple)
  clip = None
  if dit_config.image_dim is not None:
    if not config.init.clip:
      raise TrainingError("config.init.clip is empty, but the DiT has an image branch (model.image_dim): give a "
                          "`convert clip` folder")
    clip = nnx.split(load_model(config.init.clip, CLIPVisionEncoder, CLIPVisionConfig)[0])
  return Encoders(vae=nnx.split(vae), clip=clip)


def build_dit(config: ml_collections.ConfigDict) -> WanDiT:
  """The DiT to train: `config.init.dit` (plus adapters from `init.lora`, or fresh ones when
  `model.lora_rank` > 0) with the runtime fields of `config.model`; random when `init.dit` is empty."""
  model = config.model
  runtime = {name: model[name] for name in ("remat", "attention", "layout", "motion_timestep")}
  if not config.init.dit:
    return WanDiT(DiTConfig.from_mapping(model), rngs=nnx.Rngs(config.train.seed))
  lora = {}
  if config.init.lora:
    lora = dict(lora=config.init.lora)
  elif model.lora_rank:
    lora = dict(lora_rank=model.lora_rank, lora_alpha=model.lora_alpha, lora_targets=tuple(model.lora_targets),
                lora_seed=config.train.seed)
  dit, dit_config = load_dit(config.init.dit, dtype=model.param_dtype, **lora, **runtime)
  if dit_config.dtype != model.dtype:  # the compute dtype (`dtype=` above is the parameters')
    dit = rebuild(WanDiT, dataclasses.replace(dit_config, dtype=model.dtype), model_params(dit))
  return dit


def text_source(config: ml_collections.ConfigDict) -> tuple[Callable[[list[str]], np.ndarray] | None, np.ndarray]:
  """(captions -> embeddings for the data pipeline, or None for zeros; the negative prompt's embedding
  `[text_len, text_dim]`, which text dropout trains with and guidance samples with)."""
  text_len, text_dim = config.data.text_len, config.model.text_dim
  if not config.init.prompt_cache:
    return None, np.zeros((text_len, text_dim), np.float32)
  cache = PromptCache(config.init.prompt_cache)
  text_fn = functools.partial(cache.padded, length=text_len)
  return text_fn, text_fn([config.sampling.negative_prompt])[0]


def _given_frames(config: ml_collections.ConfigDict, step: int) -> tuple[int, bool]:
  """(left frames given at `step`, whether it trains a continued segment): the reference (1; layout
  animate2, whose reference has its own frame: 0), or `animation.overlap_frames` on a share
  `train.continuation_prob` of steps (segment continuation, as sampled: `prepare_batch`); a pure
  function of (seed, step)."""
  draw = np.random.default_rng([config.train.seed, step, 1]).random()
  if draw < config.train.continuation_prob:
    return config.animation.overlap_frames, True
  return int(config.model.layout != "animate2"), False


def _step_key(config: ml_collections.ConfigDict, step: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(config.train.seed), step)


def _peak_flops(config: ml_collections.ConfigDict) -> float | None:
  if config.train.peak_flops_per_device:
    return config.train.peak_flops_per_device
  kind = jax.devices()[0].device_kind
  return next((flops for name, flops in PEAK_FLOPS.items() if name in kind), None)


class Trainer:
  """Holds the run: models, data, compiled steps, checkpoints and metrics. `run()` trains to the end."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path):
    check_config(config)
    self.config = config
    self.workdir = Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    parallel.initialize_distributed()
    self._lock = lock_workdir(self.workdir) if jax.process_index() == 0 else None
    self.checkpointer = Checkpointer(self.workdir / "checkpoints", save_every=config.checkpoint.every,
                                     keep_last=config.checkpoint.keep_last, keep_every=config.checkpoint.keep_every,
                                     async_save=config.checkpoint.async_save)
    self.plan = parallel.make_plan(config.mesh, config.parallel)
    dit = build_dit(config)
    self.dit_config = dit.config
    self.encoders = load_encoders(config, self.dit_config)
    self.text_fn, self.null_text = text_source(config)
    # the animate2 driving pass's prompt (zeros, as the null prompt, without a prompt cache)
    self.driving_text = self.null_text if self.text_fn is None else self.text_fn([config.sampling.driving_prompt])[0]
    self.data_config = DataConfig.from_config(config.data)
    dataset = stage1_dataset if config.stage == 1 else stage2_dataset
    self.data = iter(dataset(self.data_config, process_index=jax.process_index(),
                             process_count=jax.process_count(), text_fn=self.text_fn))

    self.optimizer = make_optimizer(config.optimizer)
    self.schedule = learning_rate_schedule(config.optimizer)
    self.trainable = nnx.LoRAParam if self.dit_config.lora_rank else nnx.Param
    self.graphdef, state = init_train_state(dit, self.optimizer, self.trainable, ema=config.train.ema_decay > 0)
    self.state_shardings = self.plan.param_shardings(state)
    self.state = jax.device_put(state, self.state_shardings)
    self.step = 0
    self.clip_size: tuple[int, int] | None = None  # (H, W) and fps of the clips trained on: the bundle's defaults
    self.clip_fps: float | None = None
    latest = self.checkpointer.latest_step()
    if latest is not None:
      self._restore(latest)
    self._prepare: dict[tuple[int, bool], Callable] = {}  # (given frames, continuation) -> jitted
    self._train_steps: dict[tuple, tuple[Callable, float | None]] = {}
    self.flops_per_step = None

  # ---- checkpoints ----
  def _checkpoint_state(self) -> dict[str, Any]:
    return {"trainable": self.state.params, "opt_state": self.state.opt_state, "ema": self.state.ema,
            "rng": jax.random.key(self.config.train.seed)}

  def _restore(self, step: int) -> None:
    abstract = {name: abstract_like(value, shardings) for name, value, shardings in (
        ("trainable", self.state.params, self.state_shardings.params),
        ("opt_state", self.state.opt_state, self.state_shardings.opt_state),
        ("ema", self.state.ema, self.state_shardings.ema)) if value is not None}
    restored = self.checkpointer.restore(step, abstract, data_iterator=self.data)
    if restored["meta"].get("stage") != self.config.stage:
      raise TrainingError(f"{self.checkpointer.directory}/{step} is a stage-{restored['meta'].get('stage')} "
                          f"checkpoint; this run is stage {self.config.stage}: use another --workdir")
    self.state = dataclasses.replace(self.state, params=restored["trainable"], opt_state=restored["opt_state"],
                                     ema=restored.get("ema"), step=jnp.asarray(step, jnp.int32))
    self.step = step
    self.clip_size, self.clip_fps = tuple(restored["meta"]["clip_size"]), restored["meta"]["clip_fps"]
    log.info("resumed from %s at step %d", self.checkpointer.directory, step)

  def save(self, *, force: bool = False) -> None:
    meta = {"stage": self.config.stage, "config": json.loads(self.config.to_json_best_effort()),
            "clip_size": list(self.clip_size), "clip_fps": self.clip_fps}
    self.checkpointer.save(self.step, self._checkpoint_state(), data_iterator=self.data, meta=meta, force=force)

  # ---- compiled functions ----
  def _prepare_fn(self, given_frames: int, continuation: bool) -> Callable:
    if (given_frames, continuation) not in self._prepare:
      config = self.config
      vae_graph, clip_graph = self.encoders.vae[0], self.encoders.clip and self.encoders.clip[0]

      def prepare(vae_state, clip_state, batch, key):
        vae = nnx.merge(vae_graph, vae_state)
        clip = None if clip_graph is None else nnx.merge(clip_graph, clip_state)
        with self.plan.activate():
          return prepare_batch(vae, clip, batch, key, null_text=jnp.asarray(self.null_text),
                               given_frames=given_frames, start_seconds=config.animation.start_seconds,
                               blank=config.animation.blank, text_dropout=config.train.text_dropout,
                               layout=self.dit_config.layout, driving_text=jnp.asarray(self.driving_text),
                               continuation=continuation, prediction=config.animation.prediction)

      self._prepare[given_frames, continuation] = jax.jit(prepare)
    return self._prepare[given_frames, continuation]

  def _step_fn(self, latent_batch) -> Callable:
    """The train step compiled for this batch's shapes (one per aspect bucket), with its FLOP count."""
    shapes = tuple((x.shape, x.dtype) for x in jax.tree.leaves(latent_batch))
    if shapes not in self._train_steps:
      config = self.config
      loss_fn = functools.partial(animation_loss, sigmas=dict(config.sampling.train),
                                  region=config.animation.loss_region, layout=self.dit_config.layout)
      jitted = jit_train_step(self.graphdef, self.optimizer, self.plan, self.state_shardings,
                              batch_shardings(latent_batch, self.plan), loss_fn=loss_fn,
                              grad_accum=config.train.grad_accum, ema_decay=config.train.ema_decay)
      compiled = jitted.lower(self.state, latent_batch, _step_key(config, 0)).compile()
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, list) else cost
      self._train_steps[shapes] = compiled, (cost or {}).get("flops")
    compiled, self.flops_per_step = self._train_steps[shapes]
    return compiled

  # ---- the loop ----
  def train_one_step(self) -> tuple[Any, Any]:
    """One optimizer step on the next batch; returns the step's metrics and its LatentBatch."""
    host = next(self.data)
    self.clip_size, self.clip_fps = tuple(host["video"].shape[2:4]), float(host["fps"][0])
    batch = parallel.global_batch({k: v for k, v in host.items() if k != "video_id"}, self.plan)
    key = _step_key(self.config, self.step)
    prepare_key, train_key = jax.random.split(key)
    latent_batch = self._prepare_fn(*_given_frames(self.config, self.step))(
        self.encoders.vae[1], self.encoders.clip and self.encoders.clip[1], batch, prepare_key)
    self.state, step_metrics = self._step_fn(latent_batch)(self.state, latent_batch, train_key)
    self.step += 1
    return step_metrics, latent_batch

  def run(self) -> dict[str, float]:
    config = self.config
    total = config.train.steps
    writer = metrics_lib.MetricsWriter(self.workdir, total_steps=total, initial_step=self.step,
                                       enabled=jax.process_index() == 0)
    interval: list[tuple[Any, float]] = []
    last_logged: dict[str, float] = {}
    with self.checkpointer.preemption_handler():
      try:
        while self.step < total:
          start = time.perf_counter()
          step_metrics, latent_batch = self.train_one_step()
          nonfinite = int(step_metrics.nonfinite_in_a_row)
          seconds = time.perf_counter() - start
          interval.append((jax.device_get(step_metrics), seconds))
          writer.advance(loss=float(step_metrics.loss))
          if nonfinite >= config.train.max_nonfinite:
            raise TrainingError(f"{nonfinite} steps in a row had a non-finite loss or gradient (train.max_nonfinite="
                                f"{config.train.max_nonfinite}), the last at step {self.step}; lower "
                                "optimizer.learning_rate or check the data")
          if self.step % config.train.log_every == 0 or self.step == total:
            last_logged = self._log(writer, interval, latent_batch)
            interval = []
          self.save(force=self.step == total)
          if config.train.sample_every and self.step % config.train.sample_every == 0:
            self.write_samples(writer)
          if self.checkpointer.should_stop(self.step):
            self.save(force=True)
            raise Preempted(f"preempted at step {self.step} of {total}: checkpoint saved in "
                            f"{self.checkpointer.directory}; run the same command to resume")
      finally:
        self.checkpointer.wait()
        writer.close()
    if self.step == total and jax.process_index() == 0:
      self.export(self.workdir / "bundle")
    return last_logged

  def release(self) -> None:
    """Frees the workdir for the next run (a process that ends frees it anyway)."""
    if self._lock is not None:
      self._lock.close()
      self._lock = None

  # ---- what the run hands on: samples and the sampling bundle ----
  def current_model(self) -> WanDiT:
    """The DiT as trained so far (with the EMA weights when kept), gathered to this host."""
    params = self.state.params if self.state.ema is None else jax.tree.map(
        lambda ema, p: ema.astype(p.dtype), self.state.ema, self.state.params)
    return nnx.merge(self.graphdef, *jax.device_get((params, self.state.frozen)))

  def sampling_models(self) -> Models:
    vae = nnx.merge(*self.encoders.vae)
    clip = None if self.encoders.clip is None else nnx.merge(*self.encoders.clip)
    cache = PromptCache(self.config.init.prompt_cache) if self.config.init.prompt_cache else None
    text = TextEmbedder(self.dit_config.text_dim, self.config.data.text_len, cache=cache, source="training")
    options = AnimateOptions.from_config(self.config.animation, self.config.sampling, layout=self.dit_config.layout,
                                         steps=self.config.train.sample_steps)
    return Models(dit=self.current_model(), vae=vae, text=text, clip=clip, size=self.clip_size, options=options,
                  name=str(self.workdir))

  def write_samples(self, writer: metrics_lib.MetricsWriter) -> None:
    """Animates the first clips of a fixed validation batch: mp4s, previews and a TensorBoard image."""
    if not hasattr(self, "_validation"):
      dataset = stage1_dataset if self.config.stage == 1 else stage2_dataset
      validation = dataclasses.replace(self.data_config, seed=self.data_config.seed + 1, num_workers=0)
      self._validation = next(iter(dataset(validation, process_index=jax.process_index(),
                                           process_count=jax.process_count(), text_fn=self.text_fn)))
    count = min(self.config.train.num_samples, len(self._validation["video"]))
    batch = {k: v[:count] for k, v in self._validation.items()}
    results = animate_batch(self.sampling_models(), batch["reference"], batch["driving"], [""] * count,
                            fps=float(batch["fps"][0]))
    folder = self.workdir / "samples" / f"step_{self.step:07d}"
    for i in range(count):
      name = str(batch["video_id"][i]).replace("/", "_")
      preview = media.enlarge(media.side_by_side([batch["reference"][i], batch["driving"][i], results[i],
                                                     batch["video"][i]]))
      media.write_video(folder / f"{name}.mp4", results[i], float(batch["fps"][i]))
      media.write_video(folder / f"{name}_preview.mp4", preview, float(batch["fps"][i]))
      sheet = media.contact_sheet(preview, num_frames=4)
      media.write_image(folder / f"{name}_sheet.png", sheet)
      writer.image(self.step, f"samples/{name}", sheet)

  def export(self, out: Path) -> Path:
    """Writes the sampling bundle (`bundle.py`) of the current weights, and the adapters alone
    (`<workdir>/lora`, what `init.lora` of the next stage reads) when training LoRA."""
    config, model = self.config, self.current_model()
    if self.dit_config.lora_rank:
      staging = self.workdir / "lora.partial"
      shutil.rmtree(staging, ignore_errors=True)
      replace_folder(save_lora(staging, model), self.workdir / "lora")
    info = BundleInfo(stage="pose" if config.stage == 1 else "rgb", size=self.clip_size, fps=self.clip_fps,
                      text="cache" if config.init.prompt_cache else "none", layout=self.dit_config.layout,
                      text_len=config.data.text_len, animation=dict(config.animation), sampling=dict(config.sampling),
                      preset="base" if self.dit_config.layout == "animate2" else None,
                      pose=dataclasses.asdict(self.data_config.pose))
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    save_bundle(staging, info, dit=model, vae=config.init.vae, clip=config.init.clip or None,
                prompts=config.init.prompt_cache or None)
    replace_folder(staging, out)
    log.info("wrote the sampling bundle %s", out)
    return out

  def _log(self, writer: metrics_lib.MetricsWriter, interval: list[tuple[Any, float]], latent_batch) -> dict:
    losses = np.array([float(m.loss) for m, _ in interval])
    finite = np.isfinite(losses)
    seconds = float(np.mean([s for _, s in interval[1:]] or [interval[0][1]]))
    per_sample = np.concatenate([np.asarray(m.aux.per_sample) for m, _ in interval])
    sigmas = np.concatenate([np.asarray(m.aux.sigma) for m, _ in interval])
    target = latent_batch.target
    tokens = target.shape[0] * int(np.prod(target.shape[1:4])) // int(np.prod(self.dit_config.patch_size))
    values = {
        "loss": float(losses[finite].mean()) if finite.any() else float("nan"),
        "grad_norm": float(np.mean([float(m.grad_norm) for m, _ in interval])),
        "learning_rate": float(self.schedule(self.step)),
        "step_seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "nonfinite_steps": float((~finite).sum()),
        "mfu": metrics_lib.model_flops_utilization(self.flops_per_step or 0.0, seconds, jax.device_count(),
                                                   _peak_flops(self.config)),
        **metrics_lib.loss_by_noise_level(sigmas, per_sample, NOISE_BUCKETS),
        **{f"data/{name}": float(count) for name, count in self.data.stats().items()},
    }
    writer.scalars(self.step, values)
    return values


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, float]:
  """Trains to `config.train.steps` (resuming from `workdir`'s last checkpoint); returns the last metrics.
  Raises `Preempted` after saving when SIGTERM arrives. The workdir is free again when it returns or raises."""
  trainer = Trainer(config, workdir)
  try:
    return trainer.run()
  finally:
    trainer.release()
