"""PyTorch import of the Wan2.1 VAE: both layouts, other configs, the CLI and bad checkpoints."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

from conftest import assert_close, make_torch_vae
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, load_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.importers import tensor_specs
from dreamactor_jax.models.vae import VAEConfig, WanVAE

# The shape diffusers' own converter assumes (4 stages, 2 residual blocks), at a tiny width.
CONVERTER_SHAPE = dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2)


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
    dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2),
    # Another net: 3 stages (x4 space), time halved once, in the first stage; 3 blocks per stage.
    dict(base_dim=6, z_dim=5, dim_mult=[1, 3, 2], num_res_blocks=3, temperal_downsample=[True, False]),
])
def test_original_pth_loads_and_matches(shape, tmp_path):
  torch_model = make_torch_vae(**shape)
  config = VAEConfig(base_dim=shape["base_dim"], z_dim=shape["z_dim"], dim_mult=tuple(shape["dim_mult"]),
                     num_res_blocks=shape["num_res_blocks"],
                     temporal_downsample=tuple(shape.get("temperal_downsample", (False, True, True))))
  torch.save(original_state(torch_model, config), tmp_path / "Wan2.1_VAE.pth")
  vae, loaded = convert.load_torch_vae(tmp_path / "Wan2.1_VAE.pth")
  assert loaded.to_dict() == config.to_dict()
  space = config.space_factor
  video = np.random.default_rng(0).uniform(-1, 1, (1, 9, 3 * space, 5 * space, 3)).astype(np.float32)
  ref_latents, ref_video = torch_encode_decode(torch_model, video)
  latents = np.asarray(vae.encode(jnp.asarray(video)))
  assert latents.shape == (1, 1 + 8 // config.time_factor, 3, 5, shape["z_dim"])
  assert_close(latents, ref_latents)
  assert_close(np.asarray(vae.decode(jnp.asarray(ref_latents))), ref_video)


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


def test_wan22_vae_is_refused(tmp_path):
  make_torch_vae(**CONVERTER_SHAPE).save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, "is_residual": True}))
  with pytest.raises(CheckpointError, match="is_residual=True; only the Wan2.1 VAE"):
    convert.load_torch_vae(tmp_path)


def test_foreign_checkpoint_is_refused(tmp_path):
  torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
  with pytest.raises(CheckpointError, match="not a Wan2.1 VAE checkpoint"):
    convert.load_torch_vae(tmp_path / "other.pth")
