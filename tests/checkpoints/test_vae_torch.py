"""PyTorch import of the Wan VAEs (2.1 and 2.2): both layouts, other configs, the CLI and bad checkpoints."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from flax import nnx

from conftest import assert_close, make_torch_vae
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, load_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.importers import tensor_specs
from dreamactor_jax.models.vae import VAE_SIZES, VAEConfig, WanVAE

# The shape diffusers' own converter assumes (4 stages, 2 residual blocks), at a tiny width.
CONVERTER_SHAPE = dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2)
# Wan2.2's VAE at a tiny width, with its 48 latent channels and their statistics.
WAN22 = VAE_SIZES["wan2.2"]
WAN22_SHAPE = dict(base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=[1, 2, 4, 2], num_res_blocks=2,
                   is_residual=True, patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=16,
                   latents_mean=list(WAN22.latents_mean), latents_std=list(WAN22.latents_std))

# diffusers -> official Wan2.2 (`wan/modules/vae2_2.py`) tensor names, read off the official module: flat
# Sequentials per stage (residual blocks, then the resampler), `residual.{0,2,3,6}`, `middle`, `head`.
_WAN22_RULES = [
    (r"^quant_conv\.", "conv1."), (r"^post_quant_conv\.", "conv2."), (r"\.conv_in\.", ".conv1."),
    (r"\.norm_out\.", ".head.0."), (r"\.conv_out\.", ".head.2."),
    (r"mid_block\.resnets\.0\.", "middle.0."), (r"mid_block\.attentions\.0\.", "middle.1."),
    (r"mid_block\.resnets\.1\.", "middle.2."),
    (r"down_blocks\.(\d+)\.resnets\.(\d+)\.", r"downsamples.\1.downsamples.\2."),
    (r"down_blocks\.(\d+)\.downsampler\.", r"downsamples.\1.downsamples.{blocks}."),
    (r"up_blocks\.(\d+)\.resnets\.(\d+)\.", r"upsamples.\1.upsamples.\2."),
    (r"up_blocks\.(\d+)\.upsampler\.", r"upsamples.\1.upsamples.{blocks_up}."),
    (r"\.norm1\.", ".residual.0."), (r"(samples|middle)\.(\d+)\.conv1\.", r"\1.\2.residual.2."),
    (r"\.norm2\.", ".residual.3."), (r"\.conv2\.", ".residual.6."), (r"\.conv_shortcut\.", ".shortcut."),
]


def original_state(torch_model, config: VAEConfig) -> dict[str, torch.Tensor]:
  """The diffusers model's tensors under the original Wan names our mapping gives."""
  state = torch_model.state_dict()
  diffusers_names = {s.path: s.torch_names[0] for s in tensor_specs("vae", config, "diffusers")[0]}
  return {s.torch_names[0]: state[diffusers_names[s.path]] for s in tensor_specs("vae", config, "original")[0]}


def torch_encode_decode(model, video):
  with torch.no_grad():
    latents = model.encode(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())).latent_dist.mode()
    decoded = model.decode(latents).sample
  return latents.numpy().transpose(0, 2, 3, 4, 1), decoded.numpy().transpose(0, 2, 3, 4, 1)


def test_original_names_agree_with_diffusers_converter(tmp_path):
  torch_model = make_torch_vae(**CONVERTER_SHAPE)
  config = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2)
  original = original_state(torch_model, config)
  converted = convert_wan_vae_to_diffusers(original)
  reference = torch_model.state_dict()
  assert sorted(converted) == sorted(reference)
  for name, tensor in converted.items():
    assert torch.equal(tensor, reference[name]), name


@pytest.mark.parametrize("shape", [
    CONVERTER_SHAPE,
    # Another net: 3 stages (x4 space), time halved once, in the first stage; 3 blocks per stage.
    dict(base_dim=6, z_dim=5, dim_mult=[1, 3, 2], num_res_blocks=3, temperal_downsample=[True, False]),
])
def test_original_pth_loads_and_matches(shape, tmp_path):
  """The original .pth gives the config, exactly the parameters of the diffusers folder of the same
  model, and PyTorch's encode and decode."""
  torch_model = make_torch_vae(**shape)
  config = VAEConfig(base_dim=shape["base_dim"], z_dim=shape["z_dim"], dim_mult=tuple(shape["dim_mult"]),
                     num_res_blocks=shape["num_res_blocks"],
                     temporal_downsample=tuple(shape.get("temperal_downsample", (False, True, True))))
  torch.save(original_state(torch_model, config), tmp_path / "Wan2.1_VAE.pth")
  torch_model.save_pretrained(tmp_path / "diffusers")
  vae, loaded = convert.load_torch_vae(tmp_path / "Wan2.1_VAE.pth")
  assert loaded.to_dict() == config.to_dict()
  from_diffusers = model_params(convert.load_torch_vae(tmp_path / "diffusers")[0])
  params = model_params(vae)
  assert params.keys() == from_diffusers.keys()
  for name, value in params.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(from_diffusers[name]), err_msg=name)
  space = config.space_factor
  video = np.random.default_rng(0).uniform(-1, 1, (1, 9, 3 * space, 5 * space, 3)).astype(np.float32)
  ref_latents, ref_video = torch_encode_decode(torch_model, video)
  latents = np.asarray(nnx.jit(lambda vae, x: vae.encode(x))(vae, jnp.asarray(video)))
  assert latents.shape == (1, 1 + 8 // config.time_factor, 3, 5, shape["z_dim"])
  assert_close(latents, ref_latents)
  assert_close(np.asarray(nnx.jit(lambda vae, z: vae.decode(z))(vae, jnp.asarray(ref_latents))), ref_video)


def test_cli_converts_diffusers_folder(tmp_path, capsys):
  torch_model = make_torch_vae(**CONVERTER_SHAPE, latents_mean=[0.1, 0.2, 0.3, 0.4], latents_std=[1, 2, 3, 4])
  torch_model.save_pretrained(tmp_path / "vae")
  assert convert.main(["vae", "--src", str(tmp_path / "vae"), "--out", str(tmp_path / "ours")]) == 0
  restored, config = load_model(tmp_path / "ours", WanVAE, VAEConfig)
  direct, _ = convert.load_torch_vae(tmp_path / "vae")
  assert config.latents_std == (1, 2, 3, 4)
  for name, value in model_params(direct).items():
    np.testing.assert_array_equal(np.asarray(model_params(restored)[name]), np.asarray(value), err_msg=name)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
     r"missing \(1\): decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
    (lambda s: s.update({"encoder.extra.weight": torch.zeros(1)}), r"unexpected \(1\): encoder.extra.weight"),
    (lambda s: s.update({"encoder.mid_block.attentions.0.norm.gamma": torch.ones(16, 1, 1, 1)}),
     r"wrong shape \(1\): encoder.mid_block.attentions.0.norm.gamma: \(16, 1, 1, 1\) vs expected \(16, 1, 1\)"),
])
def test_bad_checkpoints_name_the_keys(edit, message, tmp_path):
  state = make_torch_vae(**CONVERTER_SHAPE).state_dict()
  edit(state)
  torch.save(state, tmp_path / "vae.pth")
  with pytest.raises(CheckpointError, match=r"vae.pth does not match the VAE: " + message):
    convert.load_torch_vae(tmp_path / "vae.pth")


def test_attention_in_stages_is_refused(tmp_path):
  make_torch_vae(**CONVERTER_SHAPE).save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, "attn_scales": [0.5]}))
  with pytest.raises(CheckpointError, match=r"attn_scales=\[0.5\]; Wan VAEs have attention only in the middle"):
    convert.load_torch_vae(tmp_path)


def test_foreign_checkpoint_is_refused(tmp_path):
  torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
  with pytest.raises(CheckpointError, match="not a Wan VAE checkpoint"):
    convert.load_torch_vae(tmp_path / "other.pth")


def official_wan22_state(torch_model) -> dict[str, torch.Tensor]:
  """A diffusers Wan2.2 VAE's tensors under the official `Wan2.2_VAE.pth` names."""
  blocks = torch_model.config.num_res_blocks
  rules = [(pattern, target.format(blocks=blocks, blocks_up=blocks + 1)) for pattern, target in _WAN22_RULES]
  state = {}
  for name, tensor in torch_model.state_dict().items():
    for pattern, target in rules:
      name = re.sub(pattern, target, name)
    state[name] = tensor
  return state


@pytest.fixture(scope="module")
def wan22_checkpoints(tmp_path_factory):
  """One tiny random Wan2.2 VAE written as a diffusers folder and as an official .pth."""
  folder = tmp_path_factory.mktemp("wan22")
  torch_model = make_torch_vae(**WAN22_SHAPE)
  torch_model.save_pretrained(folder / "vae")
  torch.save(official_wan22_state(torch_model), folder / "Wan2.2_VAE.pth")
  return folder


def test_wan22_layouts_import_identically(wan22_checkpoints, tmp_path):
  expected = VAEConfig(base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=(1, 2, 4, 2), num_res_blocks=2,
                       patch_size=2, residual_stages=True, latents_mean=WAN22.latents_mean,
                       latents_std=WAN22.latents_std)
  from_folder, config = convert.load_torch_vae(wan22_checkpoints / "vae")
  assert config == expected  # the official .pth has no config.json: its statistics are the released 48
  assert convert.main(["vae", "--src", str(wan22_checkpoints / "Wan2.2_VAE.pth"), "--out", str(tmp_path / "ours")]) == 0
  from_pth, config = load_model(tmp_path / "ours", WanVAE, VAEConfig)
  assert config == expected
  ours, theirs = model_params(from_pth), model_params(from_folder)
  assert sorted(ours) == sorted(theirs)
  for name, value in theirs.items():
    np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(value), err_msg=name)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("decoder.upsamples.1.upsamples.3.time_conv.weight"),
     r"does not match the VAE: missing \(1\): decoder.upsamples.1.upsamples.3.time_conv.weight"),
    (lambda s: s.update({"encoder.conv1.weight": torch.zeros(4, 13, 3, 3, 3)}),
     r"reads 13 channels; expected 3 p\^2"),
    (lambda s: [s.pop(name) for name in list(s) if name.startswith("encoder.downsamples.1.downsamples.2.")],
     r"cannot read the encoder's stages \(residual blocks \[2, 2, 2, 2\], downsamplings \['down2d', None, "
     r"'down3d', None\]\)"),
])
def test_bad_wan22_checkpoints_name_the_problem(wan22_checkpoints, edit, message, tmp_path, capsys):
  state = torch.load(wan22_checkpoints / "Wan2.2_VAE.pth", weights_only=True)
  edit(state)
  torch.save(state, tmp_path / "Wan2.2_VAE.pth")
  assert convert.main(["vae", "--src", str(tmp_path / "Wan2.2_VAE.pth"), "--out", str(tmp_path / "out")]) == 2
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and re.match(r"error: \S*Wan2.2_VAE.pth", error)
  assert re.search(message, error), error
