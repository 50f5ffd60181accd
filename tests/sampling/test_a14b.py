"""Wan2.2 A14B sampling (docs/sampling.md, "Wan2.2 A14B"): a tiny random two-expert pipeline of
diffusers (WanImageToVideoPipeline with transformer_2 and boundary_ratio, fp32) is saved, converted
by `convert a14b`, bundled and loaded; our sampler then switches experts at the same step and equals
diffusers' latents after every step, with only the active expert on the device; sample.py animates
the bundle end to end. One diffusers run for the module."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
from flax import nnx

import tiny_bundle
from conftest import ROOT, make_torch_dit, make_torch_vae, numpy_random_model
from dreamactor_jax import diffusion, media
from dreamactor_jax.checkpoints import save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.conditioning import CanvasLatents
from dreamactor_jax.convert import main as convert_main
from dreamactor_jax.models import WanVAE
from dreamactor_jax.sampling.animate import AnimateOptions, StepContext, _Conditions, _Segments, _velocity, animate
from dreamactor_jax.sampling.bundle import BundleError, BundleInfo, load_bundle
from dreamactor_jax.sampling.bundle import main as bundle_main
from dreamactor_jax.sampling.prompt_cache import PromptCache
from test_sample import run_sample, write_inputs
from tiny_bundle import TEXT_DIM, fake_encoder

HEIGHT, WIDTH, FRAMES = 32, 48, 9  # latents 3 x 4 x 6, tokens 2 x 3 per frame
STEPS, SHIFT, BOUNDARY = 6, 5.0, 0.9  # timesteps 999 961 909 | 833 714 501: three steps per expert
GUIDANCE, LOW_NOISE_GUIDANCE = 4.0, 2.5
VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True])


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
  """diffusers' two-expert I2V pipeline run once (the condition it builds, its latents after each
  step, which transformer each step called) and our bundle of its saved folder."""
  folder = tmp_path_factory.mktemp("a14b")
  high, low = make_torch_dit(in_channels=36, text_dim=TEXT_DIM, seed=0), make_torch_dit(in_channels=36,
                                                                                       text_dim=TEXT_DIM, seed=5)
  vae: AutoencoderKLWan = make_torch_vae(seed=1, **VAE)
  scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=SHIFT)
  pipe = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=high,
                                 transformer_2=low, boundary_ratio=BOUNDARY)
  rng = np.random.default_rng(0)
  image = torch.from_numpy(rng.uniform(0, 1, (1, 3, HEIGHT, WIDTH)).astype(np.float32))
  prompt, negative = (torch.from_numpy(rng.standard_normal((1, 7, TEXT_DIM)).astype(np.float32)) for _ in range(2))
  noise = torch.from_numpy(rng.standard_normal((1, 16, 3, HEIGHT // 8, WIDTH // 8)).astype(np.float32))
  run = types.SimpleNamespace(calls=[], latents=[])
  prepare = pipe.prepare_latents

  def prepare_latents(*args, **kwargs):
    latents, run.condition = prepare(*args, **kwargs)
    return latents, run.condition

  pipe.prepare_latents = prepare_latents
  for index, transformer in enumerate((high, low)):
    transformer.register_forward_hook(lambda module, args, output, index=index: run.calls.append(index))

  def on_step_end(pipeline, step, timestep, tensors):
    run.latents.append(tensors["latents"].numpy().transpose(0, 2, 3, 4, 1))  # B C F h w -> B F h w C
    return {}

  with torch.no_grad():
    pipe(image=image, prompt_embeds=prompt, negative_prompt_embeds=negative, height=HEIGHT, width=WIDTH,
         num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=GUIDANCE, guidance_scale_2=LOW_NOISE_GUIDANCE,
         latents=noise, output_type="latent", callback_on_step_end=on_step_end)
  pipe.save_pretrained(folder / "Wan2.2-I2V-A14B-Diffusers")  # transformer/, transformer_2/, model_index.json, vae/
  assert convert_main(["a14b", "--src", str(folder / "Wan2.2-I2V-A14B-Diffusers"), "--out", str(folder / "a14b")]) == 0
  vae = numpy_random_model(lambda: WanVAE(tiny_bundle.VAE, rngs=nnx.Rngs(0)), seed=2)  # single pass: compiles fast
  save_model(folder / "vae", model_params(vae), vae.config)
  PromptCache.build(folder / "prompts.safetensors", ["", "a dancer"], fake_encoder())
  assert bundle_main(["--out", str(folder / "bundle"), "--dit", str(folder / "a14b"), "--vae", str(folder / "vae"),
                      "--prompts", str(folder / "prompts.safetensors"), "--size", "32x48", "--fps", "4"]) == 0
  condition = run.condition.numpy().transpose(0, 2, 3, 4, 1)  # [mask 4; latents 16] channels last
  return types.SimpleNamespace(
      folder=folder, calls=run.calls, latents=run.latents, noise=noise.numpy().transpose(0, 2, 3, 4, 1),
      prompt=prompt.numpy(), negative=negative.numpy(),
      condition=CanvasLatents(condition=jnp.asarray(condition[..., 4:]), mask=jnp.asarray(condition[..., :4])))


def test_switches_experts_at_the_boundary_step_for_step_like_diffusers(a14b):
  models = load_bundle(a14b.folder / "bundle")
  assert models.boundary == BOUNDARY and models.low_noise_dit is not None
  kernel = models.dit.patch_embed[...]
  assert kernel.sharding.memory_kind == "pinned_host"  # loaded into host memory, one expert at a time
  options = AnimateOptions(steps=STEPS, guidance=GUIDANCE, low_noise_guidance=LOW_NOISE_GUIDANCE, shift=SHIFT,
                           sampler="unipc", grid="unipc")
  on_device = []  # per step: the live device copies of an expert's patch embedding
  # matched by value: earlier tests in this process may hold other arrays of the same shape
  expert_kernels = [np.asarray(kernel), np.asarray(models.low_noise_dit.patch_embed[...])]

  def count_experts(segment, done):
    on_device.append(sum(a.shape == kernel.shape and a.sharding.memory_kind == "device"
                         and any(np.array_equal(np.asarray(a), e) for e in expert_kernels) for a in jax.live_arrays()))

  run = _Segments(models, options, np.zeros((1, HEIGHT, WIDTH, 3), np.float32), a14b.prompt, a14b.negative,
                  count_experts, None, None)
  # I2V: every position noised and denoised, the first frame's latents given through the condition
  context = StepContext(latents=a14b.condition, text=jnp.asarray(a14b.prompt), image=None, region="canvas")
  uncond = dataclasses.replace(context, text=jnp.asarray(a14b.negative))
  sampled = run.denoise(0, 1, _Conditions(context, uncond, None, None), jnp.asarray(a14b.noise))
  assert on_device == [1] * STEPS

  # the same expert per step as diffusers (two calls per step: cond, uncond)
  experts = run.denoisers(None)
  spans = diffusion.expert_steps(experts, run.table.timesteps)
  assert spans == [range(0, 3), range(3, STEPS)]
  assert a14b.calls == [0, 0] * 3 + [1, 1] * 3
  assert [e.guidance for e in experts] == [GUIDANCE, LOW_NOISE_GUIDANCE]

  # our step loop with each expert's params and guidance: the latents after every step
  both = jax.tree.map(lambda c, u: jnp.concatenate([c, u]), context, uncond)
  step_fn = jax.jit(lambda params, state, step, guidance: diffusion.solver_step(
      state, diffusion.guided_velocity(_velocity, params, state.sample, step.timesteps, both, guidance), step))
  state = diffusion.init_state(jnp.asarray(a14b.noise))
  for expert, span in zip(experts, spans):
    params = expert.params()
    for i in span:
      state = step_fn(params, state, run.table.step(i), expert.guidance)
      expected = a14b.latents[i]
      error = float(np.abs(np.asarray(state.sample) - expected).max() / np.abs(expected).max())
      assert error < 1e-4, f"step {i}: relative error {error:.2e}"
  np.testing.assert_allclose(sampled, state.sample, rtol=0, atol=1e-5 * float(np.abs(a14b.latents[-1]).max()))


def test_sample_animates_the_a14b_bundle(a14b, tmp_path, monkeypatch, capsys):
  driving, reference = write_inputs(tmp_path, 4)
  out = tmp_path / "out" / "dance.mp4"
  status, stdout, stderr = run_sample(
      monkeypatch, capsys, f"--checkpoint={a14b.folder / 'bundle'}", f"--reference={reference}",
      f"--driving={driving}", "--prompt=a dancer", "--steps=3", "--guidance=3",
      "--low_noise_guidance=2", f"--output={out}",
      f"--config={ROOT / 'dreamactor_jax/configs/base.py'}", "--config.animation.start_seconds=0.25")
  assert status == 0, stderr
  assert "3 steps, two experts split at boundary 0.9, guidance 3.0 then 2.0" in stdout
  video = media.read_video(out)
  assert video.frames.shape == (4, HEIGHT, WIDTH, 3) and video.fps == 4.0 and video.frames.std() > 0


def test_two_experts_refusals(a14b):
  for guidance in (None, 2):  # a bundle's low-noise guidance: unset, or a number
    info = BundleInfo(stage="rgb", size=(32, 48), fps=4.0, sampling={"low_noise_guidance": guidance})
    assert info.options().low_noise_guidance == guidance
  models = load_bundle(a14b.folder / "bundle")
  with pytest.raises(ValueError, match="a two-expert model needs both, a single DiT neither"):
    dataclasses.replace(models, boundary=None)
  with pytest.raises(ValueError, match=r"boundary=1.5; expected a share of the timesteps between 0 and 1"):
    dataclasses.replace(models, boundary=1.5)
  with pytest.raises(ValueError, match="sampling layout 'motion_cache'; two experts \\(Wan2.2 A14B\\) sample only in"):
    animate(models, np.zeros((32, 48, 3), np.uint8), np.zeros((5, 32, 48, 3), np.uint8), fps=4.0,
            options=dataclasses.replace(models.options, layout="motion_cache"))
  with pytest.raises(BundleError, match="its DiT is two experts \\(Wan2.2 A14B\\); LoRA adapters fit one DiT"):
    load_bundle(a14b.folder / "bundle", lora=a14b.folder / "a14b")
