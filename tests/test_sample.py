"""sample.py end to end on a tiny random bundle, its one-line errors, and the bundle format."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from PIL import Image

import sample
from conftest import ROOT, make_torch_dit, make_torch_vae, numpy_random_model, save_torch_dit
from dreamactor_jax import media
from dreamactor_jax.checkpoints import save_lora
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.convert import load_torch_dit, load_torch_vae
from dreamactor_jax.models import UMT5Config, UMT5Encoder, WanDiT, lora_params, merge_lora, with_lora
from dreamactor_jax.models.lora import rebuild
from dreamactor_jax.models.text_encoder import encode_prompts, load_tokenizer
from dreamactor_jax.sampling.bundle import BundleError, BundleInfo, load_bundle, read_info, save_bundle
from dreamactor_jax.sampling.prompt_cache import PromptCache
from tiny_bundle import (SIZE, SIZE_16X, TEXT_DIM, TEXT_LEN, dit_config, fake_encoder, ti2v_models, tiny_models,
                         write_tiny_bundle)


@pytest.fixture(scope="module")
def models():
  return tiny_models()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, models):
  """A bundle, a 6-frame 40 x 56 driving mp4 at 4 fps and a 30 x 20 RGBA reference."""
  folder = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  media.write_video(folder / "driving.mp4", rng.integers(0, 256, (6, 40, 56, 3), np.uint8), 4.0)
  Image.fromarray(rng.integers(0, 256, (30, 20, 4), np.uint8), "RGBA").save(folder / "reference.png")
  write_tiny_bundle(folder / "bundle", models.dit, models.vae)
  return folder


def write_inputs(folder: Path, frames: int) -> tuple[Path, Path]:
  """A random `frames`-frame 40 x 64 driving mp4 at 4 fps and a 40 x 56 RGB reference in `folder`."""
  rng = np.random.default_rng(1)
  media.write_video(folder / "driving.mp4", rng.integers(0, 256, (frames, 40, 64, 3), np.uint8), 4.0)
  Image.fromarray(rng.integers(0, 256, (40, 56, 3), np.uint8)).save(folder / "reference.png")
  return folder / "driving.mp4", folder / "reference.png"


def run_sample(monkeypatch, capsys, *args):
  """sample.py's main in this process; returns (exit status, stdout, stderr)."""
  status = sample.main(list(args))
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def test_end_to_end(inputs, tmp_path, monkeypatch, capsys):
  """4 of 6 frames at 4 fps, 0.25 s lead-in (animation.json): one 5-frame segment, 2 steps."""
  out = tmp_path / "out" / "dance.mp4"
  status, stdout, stderr = run_sample(monkeypatch, capsys, f"--checkpoint={inputs / 'bundle'}",
                                      f"--reference={inputs / 'reference.png'}", f"--driving={inputs / 'driving.mp4'}",
                                      "--frames=4", "--seed=3", f"--output={out}")
  assert status == 0, stderr
  assert "stage rgb" in stdout and "2 steps, guidance 3.0" in stdout
  video = media.read_video(out)
  assert video.frames.shape == (4, *SIZE, 3) and video.fps == 4.0
  preview = media.read_video(tmp_path / "out" / "dance_preview.mp4")
  # reference | driving | result with 4 px gaps, enlarged 8x to 256 px tall
  assert preview.frames.shape == (4, 8 * 32, 8 * (3 * 48 + 2 * 4), 3)
  assert media.read_image(tmp_path / "out" / "dance_sheet.png").shape == (4 * 256 + 3 * 4, 8 * 152, 3)


def test_ti2v_bundle_end_to_end(inputs, tmp_path, monkeypatch, capsys):
  """A tiny random TI2V-shaped bundle (Wan2.2's 16x VAE shape, the DiT reading 12 latent channels alone
  with given tokens at timestep 0) animates: the 40 x 56 driving video fitted to its 64 x 96, a
  one-frame start transition, one 5-frame segment, 2 steps."""
  models = ti2v_models()
  write_tiny_bundle(tmp_path / "bundle", models.dit, models.vae, size=SIZE_16X)
  loaded = load_bundle(tmp_path / "bundle")
  assert loaded.dit.config.condition == "timestep" and loaded.vae.config.space_factor == 16
  out = tmp_path / "out" / "ti2v.mp4"
  status, stdout, stderr = run_sample(monkeypatch, capsys, f"--checkpoint={tmp_path / 'bundle'}",
                                      f"--reference={inputs / 'reference.png'}", f"--driving={inputs / 'driving.mp4'}",
                                      "--frames=4", f"--output={out}")
  assert status == 0, stderr
  video = media.read_video(out)
  assert video.frames.shape == (4, *SIZE_16X, 3) and video.fps == 4.0
  status, _, stderr = run_sample(monkeypatch, capsys, f"--checkpoint={tmp_path / 'bundle'}", "--resolution=48x96",
                                 f"--reference={inputs / 'reference.png'}", f"--driving={inputs / 'driving.mp4'}",
                                 "--frames=4", f"--output={tmp_path / 'bad.mp4'}")
  assert status == 2 and "multiples of 32" in stderr, stderr


def test_converted_pytorch_weights(inputs, tmp_path, monkeypatch, capsys):
  """A user's path from Wan weights: a diffusers T2V transformer widened to the canvas's 36 input
  channels and a diffusers VAE, imported, bundled and animated by sample.py."""
  save_torch_dit(make_torch_dit(text_dim=TEXT_DIM), tmp_path / "torch_dit")
  make_torch_vae(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                 temperal_downsample=[False, True, True]).save_pretrained(tmp_path / "torch_vae")
  dit, _ = load_torch_dit(tmp_path / "torch_dit", in_channels=36)
  vae, _ = load_torch_vae(tmp_path / "torch_vae", mode="single")
  write_tiny_bundle(tmp_path / "bundle", dit, vae)
  out = tmp_path / "converted.mp4"
  status, stdout, stderr = run_sample(monkeypatch, capsys, f"--checkpoint={tmp_path / 'bundle'}",
                                      f"--reference={inputs / 'reference.png'}", f"--driving={inputs / 'driving.mp4'}",
                                      "--frames=4", f"--output={out}")
  assert status == 0, stderr
  video = media.read_video(out).frames
  assert video.shape == (4, *SIZE, 3) and video.std() > 0


def test_errors(inputs, models, tmp_path, monkeypatch, capsys):
  bundle, reference, driving = inputs / "bundle", inputs / "reference.png", inputs / "driving.mp4"
  (tmp_path / "broken.mp4").write_bytes(b"not a video")
  (tmp_path / "no_frames").mkdir()
  Image.new("CMYK", (20, 30)).save(tmp_path / "cmyk.jpg")
  t2v = numpy_random_model(lambda: WanDiT(dit_config(in_channels=16), rngs=nnx.Rngs(0)))
  write_tiny_bundle(tmp_path / "t2v", t2v, models.vae)
  write_tiny_bundle(tmp_path / "no_vae", models.dit, models.vae)
  (tmp_path / "no_vae" / "vae").rename(tmp_path / "no_vae" / "vae.moved")

  good = [f"--checkpoint={bundle}", f"--reference={reference}", f"--driving={driving}"]
  cases = [
      ([], "checkpoint assets/demo/model does not exist; expected a bundle folder"),  # the demo, not yet added
      ([f"--checkpoint={bundle}"], r"assets/demo/reference.png does not exist \(--reference\)"),
      ([*good, f"--driving={tmp_path / 'broken.mp4'}"], "broken.mp4: not a readable video"),
      ([*good, f"--driving={tmp_path / 'no_frames'}", "--fps=8"], "no_frames: folder holds no frames"),
      ([*good, f"--reference={tmp_path / 'cmyk.jpg'}"], "image mode 'CMYK' is not supported"),
      ([*good, f"--checkpoint={tmp_path / 't2v'}"], "t2v: checkpoint has in_channels=16; the canvas layout needs 36"),
      ([*good, f"--checkpoint={tmp_path / 'no_vae'}"], r"no_vae: missing vae \(the VAE\)"),
      # (--config first: config_flags registers --config.* overrides when it parses --config)
      ([*good, f"--config={ROOT / 'dreamactor_jax/configs/base.py'}", "--config.animation.fit_frames=error"],
       r"driving 6 \+ start transition 1 \(0.25 s at 4.0 fps\) = 7 frames; Wan needs 1 \+ 4k frames"),
      ([*good, "--prompt=a cat"], f"checkpoint {bundle} has no text encoder .* prompt 'a cat' cannot be used"),
      ([*good, "--resolution=480by832"], "--resolution=480by832: expected HxW, two positive integers, e.g. 480x832"),
      ([*good, "--resolution=100000x100000"], "--resolution=100000x100000: expected at most 4096 per side"),
      ([*good, "--resolution=40x48"], "--resolution 40x48: H and W must be positive multiples of 16"),
      ([*good, "--guidance=nan"], "--guidance=nan: expected a finite number"),
      ([*good, "--frames=0"], "--frames=0: 0 is not a positive integer"),
      ([*good, "--frames=-1"], "--frames=-1: -1 is not a positive integer"),
      ([*good, "--steps=0"], "--steps=0: 0 is not a positive integer"),
      ([*good, "--fps=inf"], "--fps=inf: expected a finite frame rate above 0"),
      ([*good, "--output=out.gif"], r"--output=out.gif: expected a video file name ending in .mp4, .mov, .mkv"),
      ([*good, "--output=/proc/no/out.mp4"], "--output=/proc/no/out.mp4: cannot write in /proc/no"),
      ([*good, "--config.sampling.nope=1"], "--config.sampling.nope: the config has no such field"),
      ([*good, "stray"], "stray: unexpected arguments"),
      ([*good, "--config=missing.py"], r"--config: \[Errno 2\] No such file or directory: 'missing.py'"),
  ]
  monkeypatch.chdir(tmp_path)
  for args, message in cases:
    status, _, stderr = run_sample(monkeypatch, capsys, *args)
    assert status == 2, (args, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert re.search(message, lines[0]), (message, lines[0])


def test_help_explains_every_flag():
  result = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
  assert result.returncode == 0 and result.stdout.startswith("Animate a reference image"), result.stderr
  text = " ".join(result.stdout.split())
  for flag in ["checkpoint", "reference", "driving", "fps", "prompt", "lora", "steps", "guidance", "seed", "frames",
               "resolution", "layout", "dtype", "output", "config"]:
    assert f"--{flag}:" in text or f"--[no]{flag}:" in text, flag
  assert "pose video: rendered OpenPose skeletons" in text and "_preview.mp4" in text


def test_bundle_info_and_errors(models, tmp_path):
  info = BundleInfo(stage="pose", size=(32, 48), fps=8.0, text="none", layout="motion_cache", text_len=7,
                    animation={"start_seconds": 0.5, "given_frames": 1}, sampling={"steps": 9, "train": {"std": 1.0}})
  folder = save_bundle(tmp_path / "b", info, dit=models.dit, vae=models.vae)
  assert read_info(folder) == info
  assert json.loads((folder / "animation.json").read_text())["format"] == 1
  loaded = load_bundle(folder)
  assert loaded.size == (32, 48) and loaded.clip is None and loaded.name == f"checkpoint {folder}"
  assert loaded.options.layout == "motion_cache" and loaded.options.steps == 9 and loaded.options.start_seconds == 0.5
  np.testing.assert_array_equal(loaded.text(["", ""]), np.zeros((2, TEXT_LEN, TEXT_DIM)))

  # --lora: adapters from a save_lora folder, merged for sampling; --dtype recasts the DiT
  adapted = with_lora(models.dit, rank=2)
  adapters = lora_params(adapted)
  rng = np.random.default_rng(0)
  adapted = rebuild(WanDiT, adapted.config, {**model_params(adapted), **{
      k: rng.standard_normal(v.shape).astype(np.float32) for k, v in adapters.items()}})
  save_lora(tmp_path / "lora", adapted)
  loaded = load_bundle(folder, lora=tmp_path / "lora", dtype="bfloat16")
  assert loaded.dit.config.lora_rank == 0 and loaded.dit.config.dtype == loaded.dit.config.param_dtype == "bfloat16"
  merged, base = (model_params(m)["blocks.ffn.up.kernel"] for m in (merge_lora(adapted), models.dit))
  ours = np.asarray(model_params(loaded.dit)["blocks.ffn.up.kernel"], np.float32)
  np.testing.assert_allclose(ours, merged, rtol=1e-2, atol=1e-2)  # bf16 rounding
  assert np.abs(ours - base).max() > 1.0  # the adapters changed it

  with pytest.raises(BundleError, match="exists already"):
    save_bundle(folder, info, dit=models.dit, vae=models.vae)
  with pytest.raises(BundleError, match="text 'umt5' needs umt5"):
    save_bundle(tmp_path / "c", BundleInfo(stage="rgb", size=(32, 48), fps=8.0), dit=models.dit, vae=models.vae)
  with pytest.raises(BundleError, match="the DiT has image_dim=None; give clip exactly when it is set"):
    save_bundle(tmp_path / "c", info, dit=models.dit, vae=models.vae, clip=folder / "vae")
  with pytest.raises(BundleError, match=r"checkpoint .*dit has no animation.json \(it is a bare model folder"):
    read_info(folder / "dit")
  (folder / "animation.json").write_text(json.dumps({**info.to_json(), "stage": "video"}))
  with pytest.raises(BundleError, match=r"animation.json: stage='video' is not one of 'pose', 'rgb'"):
    read_info(folder)
  malformed = [({**info.to_json(), "sampling": {"steps": "abc"}}, r"sampling.steps='abc'; expected int"),
               ({**info.to_json(), "sampling": None}, r"sampling=None; expected an object of sampling settings"),
               ({**info.to_json(), "animation": {"start_seconds": True}}, "animation.start_seconds=True; expected float"),
               ({**info.to_json(), "sampling": {"steps": 0}}, "steps=0; expected at least 1"),
               ({**info.to_json(), "sampling": {"low_noise_guidance": "4"}}, "low_noise_guidance='4'; expected float"),
               ([], "expected a JSON object, found list")]
  for values, message in malformed:
    (folder / "animation.json").write_text(json.dumps(values))
    with pytest.raises(BundleError, match=message):
      read_info(folder)


def test_text_from_a_prompt_cache_or_umt5(models, tmp_path):
  import sentencepiece

  cache = PromptCache.build(tmp_path / "prompts.safetensors", ["a cat", ""], fake_encoder(), progress=False)
  info = BundleInfo(stage="rgb", size=(32, 48), fps=8.0, text="cache", text_len=TEXT_LEN)
  folder = save_bundle(tmp_path / "cache", info, dit=models.dit, vae=models.vae, prompts=cache.path)
  text = load_bundle(folder).text
  np.testing.assert_array_equal(text(["a cat"]), cache.padded(["a cat"], TEXT_LEN))
  with pytest.raises(ValueError, match=r"prompt 'a dog' is not in .*prompts.safetensors and checkpoint .* has no "
                                       r"text encoder \(umt5/ \+ tokenizer/\)"):
    text(["a dog"])

  # umt5: prompts missing from the cache are encoded by UMT5 (loaded once, then dropped)
  tokenizer = tmp_path / "tokenizer"
  tokenizer.mkdir()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(["a cat walks", "a dog runs", "the robot dances"] * 3),
      model_prefix=str(tokenizer / "spiece"),
      vocab_size=20, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
  (tokenizer / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
  umt5 = numpy_random_model(lambda: UMT5Encoder(UMT5Config(vocab_size=32, dim=TEXT_DIM, ffn_dim=12, num_heads=2,
                                                           head_dim=4, num_layers=1), rngs=nnx.Rngs(0)))
  info = BundleInfo(stage="rgb", size=(32, 48), fps=8.0, text="umt5", text_len=TEXT_LEN)
  folder = save_bundle(tmp_path / "umt5", info, dit=models.dit, vae=models.vae, umt5=umt5, tokenizer=tokenizer,
                       prompts=cache.path)
  loaded = load_bundle(folder, prompts=["a dog runs"])
  expected = encode_prompts(umt5, load_tokenizer(tokenizer), ["a dog runs"], max_length=TEXT_LEN)
  np.testing.assert_allclose(loaded.text(["a dog runs", "a cat"]),
                             np.stack([np.pad(expected[0], ((0, TEXT_LEN - len(expected[0])), (0, 0))),
                                       cache.padded(["a cat"], TEXT_LEN)[0]]), atol=1e-6)


def test_bundle_info_keeps_nested_config_sections():
  """A training config's sampling section (a plain dict holding the `train` ConfigDict, as the loop
  passes it) keeps the training noise levels' values, not just their keys."""
  from dreamactor_jax.configs import demo

  config = demo.get_config("stage2")
  info = BundleInfo(stage="rgb", size=(64, 64), fps=4.0, sampling=dict(config.sampling))
  assert info.to_json()["sampling"]["train"] == {"distribution": "logit_normal", "mean": 0.0, "shift": 3.0, "std": 1.0}


def test_animate2_bundle_info_presets():
  """An animate2 bundle names its preset; the preset's sections sit below the bundle's own."""
  info = BundleInfo(stage="rgb", size=(800, 640), fps=24.0, layout="animate2", preset="distilled",
                    sampling={"steps": 12})
  assert info.sampling["steps"] == 12 and info.sampling["guidance"] == 1.0 and info.sampling["grid"] == "flowmatch"
  assert info.animation == {"segment_frames": 81, "overlap_frames": 1}
  assert BundleInfo(**{k: v for k, v in info.to_json().items() if k != "format"}) == info  # round trip
  options = info.options()
  assert (options.layout, options.steps, options.guidance, options.shift) == ("animate2", 12, 1.0, 5.0)
  assert "preset" not in BundleInfo(stage="rgb", size=(32, 48), fps=8.0).to_json()  # earlier bundles read as before
  with pytest.raises(ValueError, match=r"preset=None; expected one of \['base', 'distilled'\] with layout 'animate2'"):
    BundleInfo(stage="rgb", size=(800, 640), fps=24.0, layout="animate2")
  with pytest.raises(ValueError, match="preset='base'; expected .* none otherwise"):
    BundleInfo(stage="rgb", size=(32, 48), fps=8.0, preset="base")
