"""Character animation end to end: reference image + driving video + prompt -> video (PAPER.md
sections 2-5; WAN.md "Flow matching and sampling" and "I2V").

`animate(models, reference, driving, prompt, fps=...)` is the one function user code, `sample.py`
and the bootstrap share; `animate_batch` is its batch-first core (B references and driving videos
of one size and length), `animate` a one-sample wrapper. A stage-1 (pose) checkpoint takes rendered
skeleton videos as driving videos, a stage-2 (rgb) one any RGB video.

The steps:
1. Size. The driving frames are scaled to cover H x W keeping their aspect and centre-cropped
   (`fit_driving`; never stretched). H x W is `size` when given, else the checkpoint's trained size
   (swapped to H < W or H > W as the driving video is landscape or portrait), else the driving
   video's own size rounded down to multiples of the model's `size_multiple` (16 for Wan2.1: VAE x8,
   patch 2; 32 on Wan2.2's 16x VAE). The reference is fitted inside H x W, aspect kept, padded with the
   blank value (`animation.fit_reference`).
2. Start transition (`animation.plan_timeline`): the transition's blank motion frames are prepended
   and the last driving frame is repeated up to 3 times to make 1 + 4k frames; both are cut from the
   output, which has the driving video's frame count (frame t shows driving frame t).
3. Segments: the timeline (lead-in + driving + tail) is cut into 1 + 4k-frame segments
   (`animation.plan_segments`); each later segment takes the last `overlap_frames` frames already
   generated as its given left frames, and `animation.stitch` writes only generated frames.
4. Per segment: canvas (`animation.build_canvas`) -> VAE -> condition latents and packed mask
   (`conditioning.encode_canvas`) -> noise -> `diffusion.sample` (CFG on text, the negative prompt
   batched with the prompt) -> VAE decode of the whole canvas latents -> its left half -> stitch.
   As in training (`conditioning.model_latents`, loss region "generated"), the DiT reads the clean
   condition latents at given positions (the reference frame, continued frames, the motion half) at
   every step, and the decoded latents hold them there too: only the generated region comes from
   the sampler. Noise of sample b in segment s comes from (seed, b, s), so a sample's result does
   not depend on the batch it is in.

Layouts (`AnimateOptions.layout`): `full` denoises the whole canvas latent `[B, F, h, 2w, 16]` (the
paper). `motion_cache` runs the motion half once per segment (`WanDiT.encode_motion` on the clean
driving latents, for the prompt and the negative prompt together under guidance) and denoises only
the left half `[B, F, h, w, 16]`. The cache rides with the weights in the sampler's `params`: its
arrays are `[layers, B, ...]` (what the layer scan reads), so the sampler's stacking of contexts on
axis 0 cannot double it; it is computed for the stacked [prompt; negative] batch instead.

On a TI2V DiT (`model.condition="timestep"`: Wan2.2-TI2V-5B on its 16x VAE) the canvas is the same; the
DiT reads its latents alone, given tokens clean at timestep 0 and the generated ones at the step's
(`conditioning.dit_inputs`), and sizes are multiples of 32.

`animate2` (Wan-Animate-2, ANIMATE2.md; docs/animate2.md) changes steps 1-4: H x W holds about the
`size` area in the reference's aspect (`area_size`), the reference and the driving frames are
letterboxed into it on black; there is no start transition; segments all have `segment_frames`
frames, each later one carrying `overlap_frames` generated frames over (`plan_segments(...,
last="pad")`), the driving video zigzag-padded to whole segments and the output cut back to its
length. Per segment: the reference's latent frame (encoded once, mask 1), then the VAE latents of
the carried frames and blank (`animation.given_then_blank`) are the condition of latents
`[B, 1 + F, h, w, 16]`, all noised; the driving frames' latents run once through
`WanDiT.encode_motion` (driving prompt, CLIP of the driving's first frame); that cache of B samples
serves both guidance branches of the batched [prompt; negative] call (the DiT tiles it a layer at a
time), the negative's samples marked `unconditional` (the DiT skips `unconditional_skip_layers` for
them); latent frame 0 is dropped before decoding.

Guidance is skipped (one velocity call of B per step) when it is 1 or when the prompt's text equals
the negative prompt's (e.g. models without text, whose text is zeros) outside animate2: it would not
change the result.

Wan2.2 A14B (`Models.low_noise_dit`, `Models.boundary`; docs/sampling.md): two DiTs share each
segment's steps, the high-noise one those with timestep >= boundary * 1000 at `guidance`, the
low-noise one the rest at `low_noise_guidance`. Both are kept in pinned host memory (`offload`); each
is put on the device (sharded by the plan, if any) when its first step comes, after the other's
device copy is gone, so one expert is on the device at a time and a segment moves each once
host-to-device. Layout `full` only (a motion cache would be one per expert).

Compilation: the VAE, CLIP, motion pass and sampler are module-level jitted functions of
`(graphdef, state, arrays)`, so each compiles once per shape and is reused by every segment, call and
model of that shape. The VAE runs one sample at a time (its memory at 480p is several GiB per clip),
so its programs do not depend on the batch size either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from dreamactor_jax import animation, diffusion, media
from dreamactor_jax.conditioning import (CanvasLatents, change_base, decode_latents, dit_inputs, driving_dit_input,
                                         encode_canvas, encode_video, model_latents, prepend_reference,
                                         reference_frame, reference_tokens, split_for_motion_cache)
from dreamactor_jax.models.config import check_choice
from dreamactor_jax.models.dit import Layout, MotionCache, WanDiT
from dreamactor_jax.models.image_encoder import CLIPVisionEncoder
from dreamactor_jax.models.patch_codec import Codec
from dreamactor_jax.parallel import ShardingPlan
from dreamactor_jax.sampling import offload
from dreamactor_jax.sampling.prompt_cache import TextEmbedder
from dreamactor_jax.sampling.sizes import LETTERBOX_FILL, area_size, fit_driving, resolve_size

# (segment index, denoising steps done in it) after every step.
StepHook = Callable[[int, int], None]


# Wan-Animate-2's sampling presets: the `animation` and `sampling` config sections a bundle of that
# family carries (`bundle.BundleInfo.preset`). Both references sample the base model with 40 steps and
# guidance 3 and the distilled one with 10 steps and no guidance (diffusers' modular blocks, DiffSynth-
# Studio's examples); the Euler sampler on DiffSynth's FlowMatchScheduler("Wan") grid at shift 5 (the
# diffusers pipeline takes its scheduler from the checkpoint folder); 81-frame segments carrying 1
# frame over (both); the driving prompt is diffusers' default `prompt_ref`.
_ANIMATE2 = dict(animation=dict(segment_frames=81, overlap_frames=1),
                 sampling=dict(sampler="euler", grid="flowmatch", shift=5.0, driving_prompt="人物动作的参考视频"))
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "base": {**_ANIMATE2, "sampling": {**_ANIMATE2["sampling"], "steps": 40, "guidance": 3.0}},
    "distilled": {**_ANIMATE2, "sampling": {**_ANIMATE2["sampling"], "steps": 10, "guidance": 1.0}},
}


@dataclasses.dataclass(frozen=True)
class AnimateOptions:
  """How to sample; defaults are `dreamactor_jax/configs/base.py`'s `animation` and `sampling` sections."""

  steps: int = 40  # denoising steps
  guidance: float = 5.0  # classifier-free guidance on text; 1.0 turns it off (A14B: the high-noise expert's)
  low_noise_guidance: float | None = None  # A14B: the low-noise expert's guidance (None: `guidance`)
  shift: float = 3.0  # sigma shift of the sampling grid
  sampler: diffusion.Sampler = "unipc"
  grid: diffusion.SigmaGrid = "wan"
  negative_prompt: str = ""
  driving_prompt: str = ""  # animate2: the text of the driving pass
  start_seconds: float = 1.0  # start transition: blank motion prepended, then cut
  fit_frames: animation.FitFrames = "pad"  # pad | error: lead-in + driving frames must be 1 + 4k (pad: repeat the last)
  blank: float = animation.BLANK
  segment_frames: int = 81  # frames per segment of a long video (1 + 4k)
  overlap_frames: int = 5  # frames each later segment continues from
  layout: Layout = "full"
  loss_region: animation.LossRegion = "generated"  # as trained: "generated" reads given positions clean
  prediction: str = "video"  # as trained: video | change (from the first given left frame held still)
  seed: int = 0

  def __post_init__(self):
    check_choice("layout", self.layout, Layout)
    if self.steps < 1:
      raise ValueError(f"steps={self.steps}; expected at least 1")
    check_choice("loss_region", self.loss_region, animation.LossRegion)
    if self.prediction not in ("video", "change") or (self.prediction == "change" and self.layout == "animate2"):
      raise ValueError(f"prediction {self.prediction!r}; expected 'video', or 'change' outside layout animate2")

  @classmethod
  def from_config(cls, animation_config: Any = None, sampling_config: Any = None, **overrides) -> AnimateOptions:
    """Options from the `animation` and `sampling` config sections (dicts or ConfigDicts; fields this
    class does not know, such as training-only ones, are ignored), then `overrides`."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for section in (animation_config, sampling_config):
      values.update({k: v for k, v in (section or {}).items() if k in names})
    return cls(**{**values, **overrides})

  def prompts(self, prompt: str) -> list[str]:
    """Every prompt a call with `prompt` embeds (to `TextEmbedder.prepare` them at once)."""
    return [prompt, self.negative_prompt, *([self.driving_prompt] if self.layout == "animate2" else [])]


@dataclasses.dataclass
class Models:
  """What `animate` runs: the DiT, VAE, text embedder, CLIP (for DiTs with an image branch).

  `size`: the (H, W) the DiT was trained at (the default resolution); `options`: the checkpoint's
  sampling defaults; `name`: the checkpoint, in messages. `bundle.load_bundle` builds one.
  """

  dit: WanDiT
  vae: Codec
  text: TextEmbedder
  clip: CLIPVisionEncoder | None = None
  size: tuple[int, int] | None = None
  options: AnimateOptions = AnimateOptions()
  name: str = "the model"
  # Wan2.2 A14B: `dit` is the high-noise expert, `low_noise_dit` denoises the timesteps below
  # boundary * 1000 (module docstring).
  low_noise_dit: WanDiT | None = None
  boundary: float | None = None

  def __post_init__(self):
    if (self.low_noise_dit is None) != (self.boundary is None):
      raise ValueError(f"{self.name}: low_noise_dit={'given' if self.low_noise_dit is not None else None}, boundary="
                       f"{self.boundary}; a two-expert model needs both, a single DiT neither")
    if self.boundary is not None and not 0 < self.boundary < 1:
      raise ValueError(f"{self.name}: boundary={self.boundary}; expected a share of the timesteps between 0 and 1")
    config = self.dit.config
    if self.low_noise_dit is not None and self.low_noise_dit.config != config:
      raise ValueError(f"{self.name}: the experts' configs differ ({config} vs {self.low_noise_dit.config}); "
                       "expected two DiTs of one architecture")
    try:
      animation.check_dit_channels(config.in_channels, self.vae.config.z_dim, config.condition,
                                   self.options.loss_region)
    except ValueError as e:
      raise ValueError(f"{self.name}: {e}") from None
    if config.out_channels != self.vae.config.z_dim:
      raise ValueError(f"{self.name}: DiT out_channels={config.out_channels} differs from the VAE's "
                       f"z_dim={self.vae.config.z_dim}")
    if (config.image_dim is None) != (self.clip is None):
      raise ValueError(f"{self.name}: the DiT has image_dim={config.image_dim}; CLIP is needed exactly when it is set")
    if self.text.text_dim != config.text_dim:
      raise ValueError(f"{self.name}: text embeddings of width {self.text.text_dim}; the DiT reads "
                       f"text_dim={config.text_dim}")
    if self.size is not None:
      animation.check_frame_size(f"{self.name}: trained size", self.size, self.size_multiple)

  @property
  def size_multiple(self) -> int:
    """Pixels per DiT token along H and W: frame sides are multiples of it (16 for Wan2.1)."""
    return self.dit.config.pixel_multiple(self.vae.config.space_factor)


def fit_inputs(reference: np.ndarray, driving: np.ndarray | None, height: int, width: int,
               options: AnimateOptions) -> tuple[np.ndarray, np.ndarray | None]:
  """A uint8 reference `[h0, w0(, c)]` and driving video `[..., T, h, w, 3]` (or None) fitted to
  H x W as `animate` fits them (module docstring, step 1; animate2: both letterboxed on black): the
  reference float32 `[H, W, 3]` in -1..1, the driving uint8 `[..., T, H, W, 3]`."""
  animate2 = options.layout == "animate2"
  reference = animation.fit_reference(reference, height, width, pad=LETTERBOX_FILL if animate2 else options.blank)
  return reference, None if driving is None else fit_driving(driving, height, width, letterbox=animate2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StepContext:
  """Per-sample inputs of every velocity call, for the latents the sampler denoises (the canvas, its
  left half under motion_cache, the reference frame and the video frames under animate2): their
  condition latents `[B, F, h, w, z]` and mask `[B, F, h, w, 4]`, text `[B, Lt, text_dim]`, image
  `[B, Li, image_dim]` CLIP tokens or None, `unconditional` `[B]` bool (animate2: the guidance branch,
  whose DiT skips `unconditional_skip_layers`) or None, and (static) the loss region the model was
  trained with, which says whether given positions are read clean (`conditioning.model_latents`)."""

  latents: CanvasLatents
  text: jax.Array
  image: jax.Array | None
  unconditional: jax.Array | None = None
  base: jax.Array | None = None  # `[B, F, h, w, z]`: a "change" model predicts relative to it
  region: animation.LossRegion = dataclasses.field(default="generated", metadata=dict(static=True))
  plan: ShardingPlan | None = dataclasses.field(default=None, metadata=dict(static=True))


def _sharded(plan: ShardingPlan | None):
  """Inside a jitted function: the plan the DiT's constraints and attention read (none: one device)."""
  return contextlib.nullcontext() if plan is None else plan.activate()


def _velocity(params: tuple[nnx.GraphDef, nnx.State, MotionCache | None], latents: jax.Array, timestep: jax.Array,
              context: StepContext) -> jax.Array:
  """The sampler's velocity function: the DiT on `[noisy, mask, condition]` (or, TI2V, the latents with
  given tokens at timestep 0: `conditioning.dit_inputs`), given positions clean as in training (one
  fixed function object, so `diffusion.sample` compiles once per shape)."""
  graphdef, state, motion = params
  model = nnx.merge(graphdef, state)
  branch = {} if context.unconditional is None else {"unconditional": context.unconditional}

  def dit(noisy: jax.Array, timestep: jax.Array) -> jax.Array:
    inputs, timesteps = dit_inputs(noisy, context.latents, timestep, region=context.region,
                                   condition=model.config.condition, patch_size=model.config.patch_size)
    with _sharded(context.plan):
      return model(inputs, timesteps, context.text, image_context=context.image, motion=motion, **branch)

  velocity = dit if context.base is None else diffusion.relative_velocity(dit, context.base)
  return velocity(latents, timestep)


@functools.partial(jax.jit, static_argnums=0)
def _encode_canvas(graphdef: nnx.GraphDef, state: nnx.State, canvas: animation.Canvas) -> CanvasLatents:
  return encode_canvas(nnx.merge(graphdef, state), canvas)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _change_base(graphdef: nnx.GraphDef, frames: int, blank: float, state: nnx.State, first: jax.Array) -> jax.Array:
  return change_base(nnx.merge(graphdef, state), first, frames, blank=blank)


@functools.partial(jax.jit, static_argnums=0)
def _encode_video(graphdef: nnx.GraphDef, state: nnx.State, video: jax.Array) -> jax.Array:
  return encode_video(nnx.merge(graphdef, state), video)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _decode(graphdef: nnx.GraphDef, left: bool, state: nnx.State, latents: jax.Array) -> jax.Array:
  """Latents `[1, F, h, w', z]` decoded whole (canvases as the VAE saw them in training) -> the video
  `[1, T, H, W', 3]`, or with `left` its left half."""
  video = decode_latents(nnx.merge(graphdef, state), latents)
  return animation.left_half(video) if left else video


@functools.partial(jax.jit, static_argnums=0)
def _reference_tokens(graphdef: nnx.GraphDef, state: nnx.State, reference: jax.Array) -> jax.Array:
  return reference_tokens(nnx.merge(graphdef, state), reference)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _motion_cache(graphdef: nnx.GraphDef, plan: ShardingPlan | None, state: nnx.State, motion_input: jax.Array,
                  text: jax.Array, image: jax.Array | None) -> MotionCache:
  """Keys/values of the motion input (`conditioning.split_for_motion_cache`, `conditioning.driving_dit_input`)."""
  with _sharded(plan):
    return nnx.merge(graphdef, state).encode_motion(motion_input, text, image_context=image)


def _on_device(graphdef: nnx.GraphDef, state: nnx.State, shardings: Any) -> tuple[nnx.GraphDef, nnx.State, None]:
  """An A14B expert's sampler params: its weights put on the device (`shardings`: the plan's, or
  None: the device of their host copy), no motion cache."""
  return graphdef, offload.place(state, "device", shardings), None


def _noise(seed: int, segment: int, shape: tuple[int, ...]) -> jax.Array:
  """`[B, ...]` standard normal, sample b drawn from (seed, b, segment)."""
  base = jax.random.key(seed)
  return jnp.stack([jax.random.normal(jax.random.fold_in(jax.random.fold_in(base, b), segment), shape[1:])
                    for b in range(shape[0])])


def _per_sample(fn: Callable[..., Any], *arrays: Any) -> Any:
  """`fn` on each sample's slice `[1, ...]` of the arrays (pytrees), results concatenated on axis 0."""
  batch = jax.tree.leaves(arrays)[0].shape[0]
  outs = [fn(*jax.tree.map(lambda a: a[b:b + 1], arrays)) for b in range(batch)]
  return jax.tree.map(lambda *parts: jnp.concatenate(parts), *outs)


def _both(x: Any) -> Any:
  """A pytree with leading batch B -> 2B, for the stacked [prompt; negative] batch."""
  return jax.tree.map(lambda a: jnp.concatenate([a, a]), x)


@dataclasses.dataclass(frozen=True)
class _Conditions:
  """What one segment's sampling reads: the context of the latents it denoises, the guidance branch's
  context (None without guidance), the motion cache, and how its sampled latents become the segment's
  video (`finish`: latents -> `[B, S, H, W, 3]`)."""

  context: StepContext
  uncond: StepContext | None
  motion: MotionCache | None
  finish: Callable[[jax.Array], np.ndarray]


class _Segments:
  """The per-segment work of one `animate_batch` call (models split once)."""

  def __init__(self, models: Models, options: AnimateOptions, reference: np.ndarray, text: np.ndarray,
               uncond: np.ndarray | None, progress: bool | StepHook, plan: ShardingPlan | None,
               driving_first: np.ndarray):
    self.options, self.progress, self.plan = options, progress, plan
    graphdef, state = nnx.split(models.dit)
    shardings = None if plan is None else plan.param_shardings(state)
    self.dit, self.experts, self.boundary = None, None, models.boundary
    if models.low_noise_dit is None:
      self.dit = graphdef, state if plan is None else jax.device_put(state, shardings)
    else:  # A14B (module docstring): each expert's loader puts its pinned host copy on the device
      self.experts = [functools.partial(_on_device, graphdef, offload.place(nnx.state(dit), "pinned_host", shardings),
                                        shardings) for dit in (models.dit, models.low_noise_dit)]
    self.vae = nnx.split(models.vae)
    self.space_factor, self.condition = models.vae.config.space_factor, models.dit.config.condition
    self.text, self.uncond = jnp.asarray(text), None if uncond is None else jnp.asarray(uncond)
    clip = None if models.clip is None else nnx.split(models.clip)
    self.image = None if clip is None else _reference_tokens(*clip, jnp.asarray(reference))
    self.table = diffusion.solver_table(diffusion.sampling_schedule(options.steps, options.shift, options.grid),
                                        options.sampler)
    if options.layout == "animate2":  # what every segment shares: the reference frame, the driving pass's text and image
      self.reference = _per_sample(functools.partial(_encode_canvas, *self.vae), reference_frame(jnp.asarray(reference)))
      self.driving_text = jnp.asarray(models.text([options.driving_prompt] * len(reference)))
      self.driving_image = None if clip is None else _reference_tokens(*clip, jnp.asarray(driving_first))

  def _canvas(self, driving: np.ndarray, given: np.ndarray) -> _Conditions:
    """full and motion_cache: the canvas of the driving and given frames."""
    options, guided = self.options, self.uncond is not None
    canvas = animation.build_canvas(jnp.asarray(driving), jnp.asarray(given), blank=options.blank,
                                    space_factor=self.space_factor)
    latents = _per_sample(functools.partial(_encode_canvas, *self.vae), canvas)
    part, motion = latents, None  # the latents of what the sampler denoises: the canvas, or its left half
    if options.layout == "motion_cache":  # the cache for the [prompt; negative] batch the sampler will run
      part, motion_input = split_for_motion_cache(latents, self.condition)
      stack = _both if guided else (lambda x: x)
      text = jnp.concatenate([self.text, self.uncond]) if guided else self.text
      motion = _motion_cache(self.dit[0], self.plan, self.dit[1], stack(motion_input), text, stack(self.image))
    base = None
    if options.prediction == "change":  # relative to the first given left frame held still, as trained
      base = _per_sample(functools.partial(_change_base, self.vae[0], driving.shape[1], options.blank, self.vae[1]),
                         jnp.asarray(given[:, 0]))
      base = animation.left_half(base) if options.layout == "motion_cache" else base
    context = StepContext(latents=part, text=self.text, image=self.image, base=base, region=options.loss_region,
                          plan=self.plan)

    def finish(sampled: jax.Array) -> np.ndarray:
      sampled = model_latents(sampled, part, options.loss_region)  # given positions as the DiT read them
      if motion is not None:
        sampled = animation.join_halves(sampled, animation.split_halves(latents.condition)[1])
      return np.asarray(_per_sample(functools.partial(_decode, self.vae[0], True, self.vae[1]), sampled))

    return _Conditions(context, dataclasses.replace(context, text=self.uncond) if guided else None, motion, finish)

  def _animate2(self, driving: np.ndarray, given: np.ndarray) -> _Conditions:
    """animate2 (ANIMATE2.md): the reference frame, then the given frames and blank, every position
    noised and denoised as the references do; the driving pass once, its cache for both branches."""
    frames = animation.given_then_blank(jnp.asarray(given), driving.shape[1], blank=self.options.blank)
    latents = prepend_reference(self.reference, _per_sample(functools.partial(_encode_canvas, *self.vae), frames))
    driving_latents = _per_sample(functools.partial(_encode_video, *self.vae), jnp.asarray(driving))
    motion = _motion_cache(self.dit[0], self.plan, self.dit[1], driving_dit_input(driving_latents),
                           self.driving_text, self.driving_image)
    branch = jnp.zeros(driving.shape[:1], bool)
    context = StepContext(latents=latents, text=self.text, image=self.image, unconditional=branch, region="canvas",
                          plan=self.plan)
    uncond = None
    if self.uncond is not None:  # the driving pass reads neither prompt: one cache serves both branches
      uncond = dataclasses.replace(context, text=self.uncond, unconditional=~branch)

    def finish(sampled: jax.Array) -> np.ndarray:  # latent frame 0 is the reference's slot, not video
      return np.asarray(_per_sample(functools.partial(_decode, self.vae[0], False, self.vae[1]), sampled[:, 1:]))

    return _Conditions(context, uncond, motion, finish)

  def conditions(self, driving: np.ndarray, given: np.ndarray) -> _Conditions:
    """What sampling one segment reads (arguments as `__call__`'s)."""
    return (self._animate2 if self.options.layout == "animate2" else self._canvas)(driving, given)

  def denoisers(self, motion: MotionCache | None) -> list[diffusion.Expert]:
    """The sampler's experts: the DiT (with the segment's motion cache), or A14B's two, split at the
    boundary, each with its guidance and put on the device when its steps come."""
    options = self.options
    if self.experts is None:
      return [diffusion.Expert((*self.dit, motion), options.guidance)]
    low_noise_guidance = options.guidance if options.low_noise_guidance is None else options.low_noise_guidance
    return [diffusion.Expert(self.experts[0], options.guidance, self.boundary * diffusion.NUM_TRAIN_TIMESTEPS),
            diffusion.Expert(self.experts[1], low_noise_guidance)]

  def denoise(self, index: int, count: int, conditions: _Conditions, noise: jax.Array) -> jax.Array:
    """Segment `index` of `count`: `noise` like the latents `conditions` describe -> the sampled latents."""
    with tqdm(total=self.options.steps, desc=f"segment {index + 1}/{count}", unit="step",
              disable=self.progress is not True) as bar:
      def report(done: int) -> None:
        bar.update(1)
        if callable(self.progress):
          self.progress(index, done)

      return diffusion.sample(_velocity, self.denoisers(conditions.motion), noise, conditions.context, self.table,
                              uncond_context=conditions.uncond, progress=report if self.progress else None)

  def __call__(self, index: int, count: int, driving: np.ndarray, given: np.ndarray) -> np.ndarray:
    """One segment: driving `[B, S, H, W, 3]` and given frames `[B, g, H, W, 3]` (-1..1) -> the
    character's S frames `[B, S, H, W, 3]`."""
    conditions = self.conditions(driving, given)
    noise = _noise(self.options.seed, index, conditions.context.latents.condition.shape)  # what the sampler denoises
    return conditions.finish(self.denoise(index, count, conditions, noise))


@dataclasses.dataclass(frozen=True)
class _Frames:
  """The frames one call samples: the fitted references `[B, H, W, 3]`, the driving timeline
  `[B, N, H, W, 3]` (-1..1), its segments, the output buffer `[B, N, H, W, 3]` and the output's frames."""

  reference: np.ndarray
  timeline: np.ndarray
  segments: list[animation.Segment]
  output: np.ndarray
  keep: slice


def _plan_frames(models: Models, options: AnimateOptions, references: Sequence[np.ndarray], driving: np.ndarray,
                 fps: float, size: tuple[int, int] | None) -> _Frames:
  """Steps 1-3 of the module docstring (animate2: its own sizing, no start transition, padded segments)."""
  frames = driving.shape[1]
  if options.layout != "animate2":
    height, width = resolve_size(size, models.size, driving.shape[2:4], models.size_multiple)
    timeline_plan = animation.plan_timeline(frames, fps, options.start_seconds, options.fit_frames)
    reference = np.stack([fit_inputs(r, None, height, width, options)[0] for r in references])
    timeline = np.asarray(animation.extend_driving(media.to_unit(fit_driving(driving, height, width)), timeline_plan,
                                                   blank=options.blank))
    segments = (animation.plan_segments(timeline.shape[1], options.segment_frames, options.overlap_frames)
                if timeline.shape[1] > 1 else [])  # else the only frame is the reference itself
    return _Frames(reference, timeline, segments, animation.output_buffer(reference[:, None], timeline.shape[1],
                                                                          blank=options.blank),
                   slice(timeline_plan.lead, timeline_plan.lead + frames))
  area = resolve_size(size, models.size, driving.shape[2:4], models.size_multiple)
  sizes = {area_size(area, np.shape(r)[:2], models.size_multiple) for r in references}
  if len(sizes) > 1:
    raise ValueError(f"the references' aspects give Wan-Animate-2 sizes {sorted(sizes)}; animate references of "
                     "different aspect one call at a time")
  height, width = sizes.pop()
  reference = np.stack([fit_inputs(r, None, height, width, options)[0] for r in references])
  segments = animation.plan_segments(frames, options.segment_frames, options.overlap_frames, first_given=0,
                                     last="pad")
  timeline = animation.zigzag_pad(media.to_unit(fit_driving(driving, height, width, letterbox=True)),
                                  segments[-1].stop)
  return _Frames(reference, timeline, segments, animation.output_buffer(reference[:, None][:, :0], timeline.shape[1],
                                                                        blank=options.blank), slice(0, frames))


def animate_batch(models: Models, references: Sequence[np.ndarray] | np.ndarray, driving: np.ndarray,
                  prompts: Sequence[str], *, fps: float, options: AnimateOptions | None = None,
                  size: tuple[int, int] | None = None, progress: bool | StepHook = False,
                  plan: ShardingPlan | None = None) -> np.ndarray:
  """Animates B references with B driving videos; returns uint8 `[B, T, H, W, 3]`.

  references: B uint8 images `[h_b, w_b(, c)]` (any sizes; RGB, grayscale or RGBA); driving: uint8
  `[B, T, h, w, 3]` at `fps` frames per second; prompts: B strings. `options` default to
  `models.options`; `size` (H, W) as in the module docstring. `progress`: True shows a tqdm bar over
  each segment's denoising steps; a callable is called as `(segment, steps_done)` after each step.
  `plan` (`parallel.make_plan`) runs the DiT over several devices: its weights sharded by their
  logical axes, the tokens of the canvas split over `context` (sequence-parallel attention).
  """
  options = models.options if options is None else options
  driving = np.asarray(driving)
  if driving.dtype != np.uint8 or driving.ndim != 5 or driving.shape[-1] != 3:
    raise ValueError(f"driving videos are {driving.dtype} {driving.shape}; expected uint8 [B, T, H, W, 3]")
  batch, frames = driving.shape[:2]
  if len(references) != batch or len(prompts) != batch:
    raise ValueError(f"{len(references)} references and {len(prompts)} prompts for {batch} driving videos")
  if not frames:
    raise ValueError("the driving video has no frames")
  dit_layout = models.dit.config.layout
  if (options.layout == "animate2") != (dit_layout == "animate2"):
    raise ValueError(f"{models.name}: sampling layout {options.layout!r} does not fit its DiT (layout "
                     f"{dit_layout!r}); Wan-Animate-2 DiTs sample only in layout 'animate2'")
  if models.low_noise_dit is not None and options.layout != "full":
    raise ValueError(f"{models.name}: sampling layout {options.layout!r}; two experts (Wan2.2 A14B) sample only in "
                     "layout 'full'")
  plan_frames = _plan_frames(models, options, references, driving, fps, size)
  output = plan_frames.output
  if plan_frames.segments:
    text = models.text(list(prompts))
    uncond = models.text([options.negative_prompt] * batch)
    # Guidance changes nothing when both branches read the same inputs; under animate2 they differ
    # anyway: the unconditional branch skips DiT blocks.
    scales = {options.guidance, *([options.low_noise_guidance] if models.low_noise_dit is not None else [])}
    guided = bool(scales - {1.0, None}) and (options.layout == "animate2" or not np.array_equal(text, uncond))
    run = _Segments(models, options, plan_frames.reference, text, uncond if guided else None, progress, plan,
                    plan_frames.timeline[:, 0])
    for index, segment in enumerate(plan_frames.segments):
      video = run(index, len(plan_frames.segments), plan_frames.timeline[:, segment.start:segment.stop],
                  animation.given_frames(output, segment))
      animation.stitch(output, video, segment)
  return media.to_uint8(output[:, plan_frames.keep])


def animate(models: Models, reference_image: np.ndarray, driving: np.ndarray, prompt: str = "", *, fps: float,
            options: AnimateOptions | None = None, size: tuple[int, int] | None = None,
            progress: bool | StepHook = False, plan: ShardingPlan | None = None) -> np.ndarray:
  """One reference uint8 `[h0, w0, 3]` and driving video uint8 `[T, h, w, 3]` at `fps` -> uint8
  `[T, H, W, 3]`: `animate_batch` with B = 1."""
  return animate_batch(models, [reference_image], np.asarray(driving)[None], [prompt], fps=fps, options=options,
                       size=size, progress=progress, plan=plan)[0]
