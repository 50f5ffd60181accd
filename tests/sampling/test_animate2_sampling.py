"""Wan-Animate-2 sampling (docs/animate2.md): one denoising step of our pipeline equals diffusers'
modular pipeline's step composed of its own blocks (tiny random models, fp32), and sample.py animates
a converted tiny random checkpoint end to end.

The diffusers transformer compiles a flex-attention block mask per shape (minutes on CPU): one model
and one shape in this module, built once."""

import re
import types

import jax
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.modular_pipelines.wan_animate_2 import denoise as modular
from diffusers.modular_pipelines.wan_animate_2.encoders import encode_vae, get_i2v_mask
from flax import nnx

from conftest import ROOT, make_torch_animate2, make_torch_vae, numpy_random_model, save_torch_dit
from dreamactor_jax import diffusion, media
from dreamactor_jax.checkpoints import save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.convert import load_torch_dit, load_torch_vae
from dreamactor_jax.convert import main as convert_main
from dreamactor_jax.models import CLIPVisionConfig, CLIPVisionEncoder
from dreamactor_jax.sampling.animate import AnimateOptions, Models, _Segments, _velocity
from dreamactor_jax.sampling.bundle import main as bundle_main
from dreamactor_jax.sampling.bundle import read_info
from dreamactor_jax.sampling.prompt_cache import PromptCache, TextEmbedder
from test_sample import run_sample, write_inputs
from tiny_bundle import fake_encoder

TEXT_DIM, TEXT_LEN = 20, 512
HEIGHT, WIDTH = 32, 48  # latents 4 x 6, tokens 2 x 3 per frame
SEGMENT = 5  # frames per segment: 2 driving latent frames, 3 generation latent frames
STEPS, GUIDANCE = 4, 3.0
# CLIP at Wan's width (the DiT's image branch reads 1280), otherwise as small as it goes.
CLIP = CLIPVisionConfig(image_size=12, patch_size=6, dim=1280, ffn_dim=16, num_heads=2, num_layers=1)
VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """The diffusers DiT and VAE, saved with their own writers, and a tiny CLIP of ours."""
  folder = tmp_path_factory.mktemp("animate2")
  transformer, vae = make_torch_animate2(layers=10), make_torch_vae(seed=1, **VAE)  # block 9 exists
  save_torch_dit(transformer, folder / "torch_dit")
  vae.save_pretrained(folder / "torch_vae")
  clip = numpy_random_model(lambda: CLIPVisionEncoder(CLIP, rngs=nnx.Rngs(0)), seed=2)
  save_model(folder / "clip", model_params(clip), clip.config)
  return types.SimpleNamespace(folder=folder, transformer=transformer, vae=vae, clip=clip)


def to_torch_video(frames: np.ndarray) -> torch.Tensor:
  """Ours `[B, T, H, W, 3]` -> diffusers' `[B, 3, T, H, W]`."""
  return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 4, 1, 2, 3)))


def test_one_step_matches_diffusers_modular_step(checkpoints):
  """Segment 1 of a driving video (its frame 0 carried over from segment 0): diffusers' segment
  blocks (VAE encode, previous frames, reference extraction, one guided denoising step) on the
  same pixels, prompts, CLIP tokens and noise as our pipeline's conditions and one sampler step."""
  rng = np.random.default_rng(0)
  driving = rng.uniform(-1, 1, (1, 2 * SEGMENT - 1, HEIGHT, WIDTH, 3)).astype(np.float32)  # 2 segments of 5
  reference = rng.uniform(-1, 1, (1, HEIGHT, WIDTH, 3)).astype(np.float32)
  previous = rng.uniform(-1, 1, (1, SEGMENT, HEIGHT, WIDTH, 3)).astype(np.float32)  # segment 0's decoded frames
  clip_r, clip_d = (rng.standard_normal((1, 5, 1280)).astype(np.float32) for _ in range(2))
  embed = TextEmbedder(TEXT_DIM, TEXT_LEN, load_encoder=fake_encoder, source="tiny")
  prompt, negative, driving_prompt = (embed([p]) for p in ("a dancer", "blurry", "the driving video"))

  # diffusers: its segment blocks, called as its loop wrapper calls them (k = 1)
  transformer, scheduler = checkpoints.transformer, FlowMatchEulerDiscreteScheduler(shift=5.0)
  components = types.SimpleNamespace(
      vae=checkpoints.vae, transformer=transformer, scheduler=scheduler,
      guider=ClassifierFreeGuidance(guidance_scale=GUIDANCE), _execution_device=torch.device("cpu"),
      vae_scale_factor_spatial=8, vae_scale_factor_temporal=4, num_channels_latents=16)
  h, w = HEIGHT // 8, WIDTH // 8
  with torch.no_grad():
    reference_latents = encode_vae(checkpoints.vae, to_torch_video(reference[:, None]))[0]
    state = types.SimpleNamespace(
        driving_video_pixels=to_torch_video(driving), segment_frame_length=SEGMENT, effective_segment=SEGMENT - 1,
        prev_segment_conditioning_frames=1, out_frames=to_torch_video(previous), num_inference_steps=STEPS,
        reference_image_latents=torch.cat([get_i2v_mask(1, h, w, 1, device="cpu"), reference_latents]),
        generator=torch.Generator().manual_seed(0), num_segments=2, height=HEIGHT, width=WIDTH,
        condition_clip_context=torch.from_numpy(clip_d), prompt_ref_embeds=torch.from_numpy(driving_prompt),
        prompt_embeds=torch.from_numpy(prompt), negative_prompt_embeds=torch.from_numpy(negative),
        denoiser_input_fields={"encoder_hidden_states_image": torch.from_numpy(clip_r)},
        grid_sizes_ref=torch.tensor([[2, h // 2, w // 2]]), max_seq_len=3 * (h // 2) * (w // 2),
        max_seq_len_ref=2 * (h // 2) * (w // 2))
    for block in (modular.WanAnimate2SegmentVaeEncoderStep, modular.WanAnimate2SegmentPrevFramesStep,
                  modular.WanAnimate2SegmentPrepareStep, modular.WanAnimate2SegmentSchedulerResetStep,
                  modular.WanAnimate2RefExtractStep):
      block()(components, state, k=1)
    noise = state.latents.numpy().transpose(1, 2, 3, 0)[None]  # C F h w -> B F h w C
    state.timesteps = state.timesteps[:1]
    modular.WanAnimate2SegmentDenoiseInner()(components, state, k=1)
  expected = state.latents.numpy().transpose(1, 2, 3, 0)[None]

  # ours: the same segment's conditions, one step of the sampler's table
  dit, config = load_torch_dit(checkpoints.folder / "torch_dit")
  assert config.layout == "animate2" and config.unconditional_skip_layers == (9,)
  vae, _ = load_torch_vae(checkpoints.folder / "torch_vae", mode="single")
  options = AnimateOptions(layout="animate2", steps=STEPS, guidance=GUIDANCE, shift=5.0, sampler="euler",
                           grid="euler", segment_frames=SEGMENT, overlap_frames=1)
  models = Models(dit=dit, vae=vae, text=embed, clip=checkpoints.clip, options=options)
  run = _Segments(models, options, reference, prompt, negative, False, None, driving[:, 0])
  run.image, run.driving_image = clip_r, clip_d  # CLIP itself is tested in tests/models
  run.driving_text = driving_prompt
  conditions = run.conditions(driving[:, SEGMENT - 1:], previous[:, -1:])
  condition = state.reference_latents.numpy().transpose(1, 2, 3, 0)[None]
  np.testing.assert_allclose(conditions.context.latents.mask, condition[..., :4], atol=0)
  np.testing.assert_allclose(conditions.context.latents.condition, condition[..., 4:], rtol=1e-4, atol=1e-5)
  assert conditions.uncond is not None and conditions.motion.k.shape[1] == 1  # one cache for [cond; uncond]
  first = jax.tree.map(lambda a: a[:1], run.table)
  ours = diffusion.sample(_velocity, diffusion.Expert((*run.dit, conditions.motion), GUIDANCE), noise,
                          conditions.context, first, uncond_context=conditions.uncond)
  scale = np.abs(expected - noise).max()
  np.testing.assert_allclose(np.asarray(ours) - noise, expected - noise, rtol=0, atol=1e-4 * scale)


def test_sample_animates_a_converted_checkpoint(checkpoints, tmp_path, monkeypatch, capsys):
  """Convert the diffusers folder, bundle it with the base preset, sample 7 driving frames in
  5-frame segments (2 segments, zigzag-padded to 9) with guidance: the outputs have the driving
  video's length at the size of the reference's aspect."""
  folder = checkpoints.folder
  assert convert_main(["dit", "--src", str(folder / "torch_dit"), "--out", str(tmp_path / "dit")]) == 0
  assert convert_main(["vae", "--src", str(folder / "torch_vae"), "--out", str(tmp_path / "vae")]) == 0
  PromptCache.build(tmp_path / "prompts.safetensors", ["", "a dancer", "人物动作的参考视频"], fake_encoder())
  assert bundle_main(["--out", str(tmp_path / "bundle"), "--dit", str(tmp_path / "dit"), "--vae",
                      str(tmp_path / "vae"), "--clip", str(folder / "clip"), "--prompts",
                      str(tmp_path / "prompts.safetensors"), "--size", "32x48", "--fps", "4"]) == 0
  info = read_info(tmp_path / "bundle")
  assert (info.layout, info.preset, info.sampling["steps"], info.sampling["guidance"]) == ("animate2", "base", 40, 3.0)
  driving, reference = write_inputs(tmp_path, 7)
  out = tmp_path / "out" / "dance.mp4"
  status, stdout, stderr = run_sample(
      monkeypatch, capsys, f"--checkpoint={tmp_path / 'bundle'}", f"--reference={reference}", f"--driving={driving}",
      "--prompt=a dancer", "--steps=2", f"--output={out}",
      f"--config={ROOT / 'dreamactor_jax/configs/base.py'}",  # --config registers overrides
      "--config.animation.segment_frames=5")
  assert status == 0, stderr
  assert "layout animate2, 2 steps, guidance 3.0" in stdout
  video = media.read_video(out)
  assert video.frames.shape == (7, HEIGHT, WIDTH, 3) and video.fps == 4.0 and video.frames.std() > 0
  preview = media.read_video(tmp_path / "out" / "dance_preview.mp4")
  scale = -(-256 // HEIGHT)  # enlarged nearest-neighbour to at least 256 px tall
  assert preview.frames.shape == (7, scale * HEIGHT, scale * (3 * WIDTH + 2 * 4), 3)
  assert (tmp_path / "out" / "dance_sheet.png").is_file()


def test_bundle_cli_errors(checkpoints, tmp_path, capsys):
  vae = str(tmp_path / "missing_vae")
  cases = [
      (["--out", str(tmp_path / "b"), "--dit", str(tmp_path / "nope"), "--vae", vae], "--dit: .*nope does not exist"),
      (["--out", str(tmp_path / "b"), "--dit", str(checkpoints.folder / "clip"), "--vae", str(checkpoints.folder),
        "--umt5", str(checkpoints.folder)], "--umt5 and --tokenizer: give both"),
      (["--out", str(checkpoints.folder), "--dit", str(checkpoints.folder / "clip"), "--vae", str(checkpoints.folder)],
       "--out: .* exists already"),
  ]
  for args, message in cases:
    assert bundle_main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), (message, lines[0])
