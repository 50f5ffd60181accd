"""sampling.animate on tiny random models: the output is the generated region, segments keep given
frames, motion_cache and CFG batching call the DiT as designed, one compile per shape, error lines.

Every run uses 5-frame segments of a 32 x 48 video, so the VAE compiles once for the module."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax import animation, media
from dreamactor_jax.conditioning import decode_latents
from dreamactor_jax.sampling import animate as animate_lib
from dreamactor_jax.sampling.animate import AnimateOptions, animate, animate_batch
from dreamactor_jax.sampling.sizes import area_size, fit_driving, resolve_size
from tiny_bundle import OPTIONS, SIZE, tiny_models

HEIGHT, WIDTH = SIZE


@pytest.fixture(scope="module")
def models():
  return tiny_models()


@pytest.fixture(scope="module")
def i2v_models():
  return tiny_models(image=True, text=True, seed=3)


def videos(seed, batch, frames, height=40, width=56):
  rng = np.random.default_rng(seed)
  driving = rng.integers(0, 256, (batch, frames, height, width, 3), np.uint8)
  references = [rng.integers(0, 256, (30 + 20 * b, 20 + 50 * b, 3), np.uint8) for b in range(batch)]
  return references, driving


def flow_to_marked_condition(params, latents, timestep, context):
  """A stub velocity whose x0 prediction is always the condition latents + 0.5: v = (x - x0) / sigma."""
  x0 = context.latents.condition + 0.5
  return (latents - x0) / (timestep[:, None, None, None, None] / 1000.0)


class Recorder:
  """Wraps a sampling.animate function: trace-time calls (shapes) and, with `runtime`, executed calls."""

  def __init__(self, fn, runtime=False):
    self.fn, self.runtime, self.traced, self.executed = fn, runtime, [], 0

  def __call__(self, *args):
    self.traced.append(jax.tree.map(lambda a: a.shape, args))
    if self.runtime:
      jax.debug.callback(self._count)
    return self.fn(*args)

  def _count(self):
    self.executed += 1


@pytest.mark.parametrize("layout, region, frames", [("full", "generated", 4), ("motion_cache", "generated", 4),
                                                    ("full", "canvas", 4), ("full", "generated", 3)])
def test_output_is_the_generated_region(models, layout, region, frames, monkeypatch):
  """With x0 predicted as condition + 0.5, the output must be the decoded canvas latents holding the
  condition at given positions and condition + 0.5 in the generated region (loss region "generated",
  either layout; "canvas": everywhere denoised), left half, after the lead-in: driving frames 40 x 56
  -> cover-cropped to 32 x 48, 1 s lead-in at 1 fps cut. 3 driving frames: 1 + 3 is not 1 + 4k, so
  the last driving frame is repeated once (the lead-in stays 1 frame) and cut from the output."""
  monkeypatch.setattr(animate_lib, "_velocity", flow_to_marked_condition)
  references, driving = videos(0, 1, frames)
  options = dataclasses.replace(OPTIONS, sampler="euler", grid="euler", layout=layout, loss_region=region)
  out = animate(models, references[0], driving[0], fps=1.0, options=options)  # float timesteps: sigma = t / 1000
  assert out.shape == (frames, HEIGHT, WIDTH, 3) and out.dtype == np.uint8

  timeline = animation.Timeline(lead=1, driving=frames, tail=4 - frames)
  motion = animation.extend_driving(media.to_unit(fit_driving(driving, HEIGHT, WIDTH)), timeline)
  reference = animation.fit_reference(references[0], HEIGHT, WIDTH)
  canvas = animation.build_canvas(motion, jnp.asarray(reference)[None, None])
  vae = nnx.split(models.vae)
  latents = animate_lib._encode_canvas(*vae, canvas)  # jit(conditioning.encode_canvas), compiled already
  generated = animation.generated_region(latents.mask)[..., None]  # [1, 2, 4, 12, 1]: left half of latent frame 1
  assert generated.sum() == 4 * 6
  marked = latents.condition + 0.5 * (generated if region == "generated" else 1.0)
  decoded = decode(vae, marked)  # [1, 5, 32, 96, 3]
  expected = media.to_uint8(animation.cut_to_driving(animation.left_half(decoded), timeline))[0]
  assert np.abs(out.astype(int) - expected).max() <= 1
  unmarked = media.to_uint8(animation.cut_to_driving(animation.left_half(decode(vae, latents.condition)), timeline))[0]
  assert np.abs(out.astype(int) - unmarked).mean() > 2


@functools.cache
def _decode_fn(graphdef):
  return jax.jit(lambda state, latents: decode_latents(nnx.merge(graphdef, state), latents))


def decode(vae, latents):
  return _decode_fn(vae[0])(vae[1], latents)


def test_segments_keep_given_frames_and_compile_once(models, monkeypatch):
  """13 frames, no lead-in: 3 segments of 5 frames (given 1 each). The first 5 output frames equal a
  5-frame run (later segments never rewrite them), each later segment's given frame is the output frame
  before it, and the sampler traces once and runs steps x segments velocity calls."""
  velocity = Recorder(animate_lib._velocity, runtime=True)
  monkeypatch.setattr(animate_lib, "_velocity", velocity)
  first_left_frames = []
  encode = animate_lib._encode_canvas

  def recording_encode(graphdef, state, canvas):
    first_left_frames.append(np.asarray(canvas.video[0, 0, :, :WIDTH]))
    return encode(graphdef, state, canvas)

  monkeypatch.setattr(animate_lib, "_encode_canvas", recording_encode)
  options = dataclasses.replace(OPTIONS, start_seconds=0.0)
  references, driving = videos(1, 1, 13)
  long = animate(models, references[0], driving[0], fps=8.0, options=options)
  assert long.shape == (13, HEIGHT, WIDTH, 3)
  assert len(velocity.traced) == 1 and velocity.executed == 3 * options.steps  # no CFG: text is zeros
  assert velocity.traced[0][1] == (1, 2, 4, 12, 16)  # one sample, the whole canvas (full layout)
  given = [media.to_uint8(frame) for frame in first_left_frames]
  np.testing.assert_array_equal(given[0], media.to_uint8(animation.fit_reference(references[0], HEIGHT, WIDTH)))
  np.testing.assert_array_equal(given[1], long[4])
  np.testing.assert_array_equal(given[2], long[8])
  short = animate(models, references[0], driving[0, :5], fps=8.0, options=options)
  np.testing.assert_array_equal(long[:5], short)
  assert len(velocity.traced) == 1  # the same shapes: no new trace
  assert np.abs(long[5:].astype(int) - long[4].astype(int)).mean() > 1  # later frames are generated


@pytest.mark.parametrize("layout", ["full", "motion_cache"])
def test_layouts_and_cfg_batching(i2v_models, layout, monkeypatch):
  """Two references of other sizes, CLIP tokens, a prompt and a negative prompt: each step is one velocity
  call on [prompt; negative] (2B); motion_cache denoises the left half only, with the motion half encoded
  once per segment for both prompts."""
  velocity = Recorder(animate_lib._velocity, runtime=True)
  motion = Recorder(animate_lib._motion_cache)
  monkeypatch.setattr(animate_lib, "_velocity", velocity)
  monkeypatch.setattr(animate_lib, "_motion_cache", motion)
  options = dataclasses.replace(OPTIONS, layout=layout, negative_prompt="blurry")
  references, driving = videos(2, 2, 4)
  out = animate_batch(i2v_models, references, driving, ["a cat", "a dog"], fps=1.0, options=options)
  assert out.shape == (2, 4, HEIGHT, WIDTH, 3) and out.dtype == np.uint8
  assert velocity.executed == options.steps and len(velocity.traced) == 1
  params, latents, timestep, context = velocity.traced[0]
  width = 6 if layout == "motion_cache" else 12
  assert latents == (4, 2, 4, width, 16) and timestep == (4,)
  # the sampler stacks [prompt; negative] contexts: 2B
  assert context.latents.condition == (4, 2, 4, width, 16) and context.latents.mask == (4, 2, 4, width, 4)
  assert context.text == (4, 7, 20) and context.image == (4, 5, 8)
  if layout == "motion_cache":
    assert len(motion.traced) == 1
    _, _, _, motion_input, text, image = motion.traced[0]  # graphdef, plan, state, ...
    assert motion_input == (4, 2, 4, 6, 36) and text == (4, 7, 20) and image == (4, 5, 8)
    assert params[2].k == (2, 4, 2 * 2 * 3, 3, 16)  # [layers, 2B, left tokens F*h*w, heads, head dim]
  else:
    assert not motion.traced and params[2] is None
  # batch-independent: sample 0 alone gives the same video (noise from (seed, sample, segment))
  alone = animate(i2v_models, references[0], driving[0], "a cat", fps=1.0, options=options)
  assert np.abs(alone.astype(int) - out[0]).max() <= 1


def test_guidance_is_skipped_when_it_cannot_change_the_result(i2v_models, monkeypatch):
  velocity = Recorder(animate_lib._velocity)
  monkeypatch.setattr(animate_lib, "_velocity", velocity)
  references, driving = videos(3, 1, 4)
  for prompt, guidance in [("blurry", 4.0), ("a cat", 1.0)]:  # prompt = negative prompt; guidance 1
    options = dataclasses.replace(OPTIONS, negative_prompt="blurry", guidance=guidance, layout="motion_cache")
    animate(i2v_models, references[0], driving[0], prompt, fps=1.0, options=options)
  assert [shapes[1][0] for shapes in velocity.traced] == [1]  # latents  # batch 1 both times: no CFG, one trace


def test_driving_is_cover_cropped_and_sizes_resolved():
  frame = np.zeros((20, 60, 3), np.uint8)
  frame[:, 20:40] = 255  # the middle third white: x 15..45 is kept, scaled by 1.6
  out = fit_driving(np.stack([frame, 255 - frame]), 32, 48)
  assert out.shape == (2, 32, 48, 3)
  assert (out[0, :, 10:38] > 250).all() and (out[0, :, :5] < 5).all() and (out[0, :, -5:] < 5).all()
  np.testing.assert_array_equal(out[1], 255 - out[0])  # frames resized alike
  assert resolve_size(None, (32, 48), (90, 60), 16) == (48, 32)  # a portrait driving video turns the trained size
  assert resolve_size(None, (32, 48), (60, 90), 16) == (32, 48)
  assert resolve_size((64, 16), (32, 48), (60, 90), 16) == (64, 16)
  assert resolve_size(None, None, (50, 70), 16) == (48, 64)
  with pytest.raises(ValueError, match="resolution 40x48: H and W must be positive multiples of 16"):
    resolve_size((40, 48), None, (60, 90), 16)


def test_errors(models):
  references, driving = videos(4, 1, 6)
  with pytest.raises(ValueError, match=r"driving 6 \+ start transition 4 \(1.0 s at 4.0 fps\) = 10 frames; "
                                       r"Wan needs 1 \+ 4k frames \(nearest: 9 or 13\)"):
    animate(models, references[0], driving[0], fps=4.0, options=dataclasses.replace(OPTIONS, fit_frames="error"))
  with pytest.raises(ValueError, match="tiny has no text encoder .* prompt 'a cat' cannot be used"):
    animate(models, references[0], driving[0], "a cat", fps=4.0)
  with pytest.raises(ValueError, match=r"expected uint8 \[B, T, H, W, 3\]"):
    animate(models, references[0], driving[0].astype(np.float32), fps=4.0)
  with pytest.raises(ValueError, match="the driving video has no frames"):
    animate(models, references[0], driving[0, :0], fps=4.0)
  with pytest.raises(ValueError, match=r"reference image has shape \(30, 20, 2\)"):
    animate(models, references[0][:, :, :2], driving[0], fps=4.0)
  t2v = dataclasses.replace(models.dit.config, in_channels=16)
  with pytest.raises(ValueError, match=r"the model: checkpoint has in_channels=16; the canvas layout needs 36"):
    animate_lib.Models(dit=nnx.eval_shape(lambda: animate_lib.WanDiT(t2v, rngs=nnx.Rngs(0))), vae=models.vae,
                    text=models.text)
  with pytest.raises(ValueError, match="the DiT has image_dim=None; CLIP is needed exactly when it is set"):
    animate_lib.Models(dit=models.dit, vae=models.vae, text=models.text, clip=object())


def test_options_from_config_sections():
  from dreamactor_jax.configs import base

  config = base.get_config("tiny")
  options = AnimateOptions.from_config(config.animation, config.sampling, steps=7)
  assert options == AnimateOptions(steps=7)  # the dataclass defaults are base.py's


def test_animate2_size_letterbox_and_prompts():
  """Wan-Animate-2: the target area in the reference's aspect (diffusers' rule), letterboxing on black."""
  assert area_size((800, 640), (1280, 720), 16) == (944, 528)  # a portrait 720p reference
  assert area_size((800, 640), (1080, 1920), 16) == (528, 944)  # its aspect from 1072 x 1920
  assert area_size((32, 48), (40, 56), 16) == (32, 48)
  with pytest.raises(ValueError, match="reference image 10x40: Wan-Animate-2 needs at least 16 pixels on each side"):
    area_size((32, 48), (10, 40), 16)
  frame = np.full((20, 60, 3), 200, np.uint8)  # wide: fitted 16 x 48, 8 black rows above and below
  out = fit_driving(frame[None], 32, 48, letterbox=True)
  assert out.shape == (1, 32, 48, 3)
  assert (out[0, :8] == 0).all() and (out[0, -8:] == 0).all() and (out[0, 8:24] == 200).all()
  distilled = animate_lib.PRESETS["distilled"]
  options = AnimateOptions(**{**distilled["animation"], **distilled["sampling"]}, layout="animate2")
  assert (options.steps, options.guidance, options.grid, options.sampler) == (10, 1.0, "flowmatch", "euler")
  assert options.prompts("a cat") == ["a cat", "", "人物动作的参考视频"]
  assert AnimateOptions().prompts("a cat") == ["a cat", ""]


def test_animate2_errors(models):
  references, driving = videos(4, 2, 6)
  animate2 = dataclasses.replace(OPTIONS, layout="animate2")
  with pytest.raises(ValueError, match=r"the model: sampling layout 'animate2' does not fit its DiT \(layout 'full'\)"):
    animate_batch(models, references, driving, ["", ""], fps=4.0, options=animate2)
  with pytest.raises(ValueError, match="sampling layout 'full' does not fit its DiT"):
    dit = nnx.eval_shape(lambda: animate_lib.WanDiT(dataclasses.replace(models.dit.config, layout="animate2"),
                                                 rngs=nnx.Rngs(0)))
    animate_batch(dataclasses.replace(models, dit=dit), references, driving, ["", ""], fps=4.0)
  with pytest.raises(ValueError, match=r"the references' aspects give Wan-Animate-2 sizes \[\(32, 48\), \(48, 32\)\]"):
    wide, tall = np.zeros((40, 60, 3), np.uint8), np.zeros((60, 40, 3), np.uint8)
    animate_batch(dataclasses.replace(models, dit=dit), [wide, tall], driving, ["", ""], fps=4.0, options=animate2)
  with pytest.raises(ValueError, match="layout='motion' is not one of 'full', 'motion_cache', 'animate2'"):
    AnimateOptions(layout="motion")
  with pytest.raises(ValueError, match="prediction 'change'; expected 'video', or 'change' outside layout animate2"):
    AnimateOptions(layout="animate2", prediction="change")
