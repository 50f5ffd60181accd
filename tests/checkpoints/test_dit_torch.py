"""PyTorch import/export of the DiT: layouts, round trips, the CLI and bad checkpoints."""

import json

import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from safetensors.torch import load_file, save_file

from conftest import assert_close, make_torch_dit, run_jax_dit, run_torch_dit, save_torch_dit, torch_dit_inputs
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, export_torch_dit, load_dit
from dreamactor_jax.checkpoints.model_state import model_params


@pytest.fixture(scope="module")
def i2v(tmp_path_factory):
  """A tiny I2V diffusers model saved as sharded safetensors (several shards + index json)."""
  model = make_torch_dit(in_channels=36, image_dim=24, seed=7)
  folder = save_torch_dit(model, tmp_path_factory.mktemp("i2v"), max_shard_size="40KB")
  assert len(list(folder.glob("*.safetensors"))) > 1 and list(folder.glob("*.index.json"))
  return model, folder


def export(model, config, folder, layout, dtype="float32"):
  export_torch_dit(model_params(model), config, folder, layout=layout, dtype=dtype)
  return folder / "diffusion_pytorch_model.safetensors"


def test_single_layer_model_loads(tmp_path):
  # One layer: the per-layer tensors still stack on our leading `layers` axis (of size 1).
  torch_model = make_torch_dit(layers=1, seed=5)
  model, config = convert.load_torch_dit(save_torch_dit(torch_model, tmp_path))
  assert config.num_layers == 1
  inputs = torch_dit_inputs(torch_model, batch=1, frames=1)
  assert_close(run_jax_dit(model, inputs), run_torch_dit(torch_model, inputs))


def test_original_layout_checked_by_diffusers_converter(i2v, tmp_path):
  torch_model, folder = i2v
  model, config = convert.load_torch_dit(folder)
  original = load_file(export(model, config, tmp_path, "original"))
  assert "blocks.0.cross_attn.k_img.weight" in original and "blocks.1.norm3.weight" in original
  # diffusers' own single-file converter maps the original names back; it must rebuild the model.
  rebuilt = make_torch_dit(in_channels=36, image_dim=24, seed=99)
  rebuilt.load_state_dict(convert_wan_transformer_to_diffusers(dict(original)), strict=True)
  inputs = torch_dit_inputs(torch_model)
  np.testing.assert_array_equal(run_torch_dit(rebuilt, inputs), run_torch_dit(torch_model, inputs))


@pytest.mark.parametrize("prefix, suffix", [("", ".safetensors"), ("model.diffusion_model.", ".safetensors"),
                                            ("model.diffusion_model.", ".pth")])
def test_imports_original_files(i2v, tmp_path, prefix, suffix):
  torch_model, folder = i2v
  model, config = convert.load_torch_dit(folder)
  original = load_file(export(model, config, tmp_path / "export", "original"))
  path = tmp_path / f"wan{suffix}"
  renamed = {prefix + k: v for k, v in original.items()}
  renamed[prefix + "blocks.0.attn2.norm_added_q.weight"] = torch.ones(3)  # shipped, never used
  (save_file if suffix == ".safetensors" else torch.save)(renamed, path)
  # No config.json beside the file: the head count is given (Wan's own default is dim / 128).
  reloaded, reloaded_config = convert.load_torch_dit(path, num_heads=3)
  assert reloaded_config == config
  inputs = torch_dit_inputs(torch_model, frames=2)
  assert_close(run_jax_dit(reloaded, inputs), run_torch_dit(torch_model, inputs))


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_round_trip_is_exact(i2v, tmp_path, layout):
  _, folder = i2v
  model, config = convert.load_torch_dit(folder)
  export(model, config, tmp_path, layout)
  again, again_config = convert.load_torch_dit(tmp_path)
  assert again_config == config
  first, second = model_params(model), model_params(again)
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_cli_converts_and_exports(i2v, tmp_path):
  torch_model, folder = i2v
  assert convert.main(["dit", "--src", str(folder), "--out", str(tmp_path / "ours")]) == 0
  assert not list((tmp_path / "ours").glob(".staging-*"))
  model, config = load_dit(tmp_path / "ours")
  inputs = torch_dit_inputs(torch_model, frames=1)
  assert_close(run_jax_dit(model, inputs), run_torch_dit(torch_model, inputs))
  assert convert.main(["export-dit", "--src", str(tmp_path / "ours"), "--out", str(tmp_path / "back")]) == 0
  exported = load_file(tmp_path / "back" / "diffusion_pytorch_model.safetensors")
  reference = torch_model.state_dict()
  assert exported.keys() == reference.keys()
  for key in reference:
    torch.testing.assert_close(exported[key], reference[key], rtol=0, atol=0, msg=key)
  assert json.loads((tmp_path / "back" / "config.json").read_text())["num_attention_heads"] == 3


def test_cli_bf16_and_channel_expansion(tmp_path):
  folder = save_torch_dit(make_torch_dit(seed=4), tmp_path / "t2v")
  assert convert.main(["dit", "--src", str(folder), "--out", str(tmp_path / "wide"), "--dtype", "bf16",
                       "--in-channels", "36"]) == 0
  model, config = load_dit(tmp_path / "wide")
  params = model_params(model)
  assert config.in_channels == 36 and config.param_dtype == "bfloat16"
  assert params["patch_embed"].shape == (1, 2, 2, 36, 48) and params["patch_embed"].dtype.name == "bfloat16"
  assert not np.asarray(params["patch_embed"][..., 16:, :], np.float32).any()
  exported = export_torch_dit(params, config, tmp_path / "out", dtype="bfloat16")
  assert load_file(exported)["patch_embedding.weight"].dtype == torch.bfloat16


def test_ti2v_imports_from_both_layouts_with_per_token_timesteps(tmp_path):
  # TI2V-shaped (48 channels in and out, no image branch, 2 heads of 16): diffusers folder and the
  # official single file (model.diffusion_model. prefix, config.json model_type "ti2v") import alike.
  torch_model = make_torch_dit(heads=2, in_channels=48, out_channels=48, layers=1, seed=6)
  model, config = convert.load_torch_dit(save_torch_dit(torch_model, tmp_path / "diffusers"))
  assert (config.condition, config.in_channels, config.dim, config.image_dim) == ("timestep", 48, 32, None)
  export(model, config, tmp_path / "official", "original")
  assert json.loads((tmp_path / "official" / "config.json").read_text())["model_type"] == "ti2v"
  original = load_file(tmp_path / "official" / "diffusion_pytorch_model.safetensors")
  save_file({"model.diffusion_model." + k: v for k, v in original.items()}, tmp_path / "official" / "wan.safetensors")
  (tmp_path / "official" / "diffusion_pytorch_model.safetensors").unlink()
  official, official_config = convert.load_torch_dit(tmp_path / "official" / "wan.safetensors")
  assert official_config == config
  inputs = torch_dit_inputs(torch_model, frames=2, height=4, width=6, text_len=5)
  inputs["timestep"] = torch.tensor([[0.0] * 6 + [500.0] * 6, [0.0] * 6 + [900.0] * 6])
  assert_close(run_jax_dit(official, inputs), run_torch_dit(torch_model, inputs))


@pytest.fixture
def tensors(i2v, tmp_path):
  """The i2v checkpoint as one editable dict, and where to write a corrupted copy."""
  torch_model, _ = i2v
  return {k: v.contiguous() for k, v in torch_model.state_dict().items()}, tmp_path / "bad.safetensors"


def write_config(folder):
  (folder / "config.json").write_text(json.dumps({"num_attention_heads": 3}))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("blocks.1.ffn.net.2.bias"), r"missing \(1\): blocks.1.ffn.net.2.bias"),
    (lambda t: t.update({"blocks.0.extra.weight": torch.zeros(2)}), r"unexpected \(1\): blocks.0.extra.weight"),
    (lambda t: t.update({"blocks.0.attn1.to_q.weight": torch.zeros(48, 40)}),
     r"wrong shape \(1\): blocks.0.attn1.to_q.weight: \(48, 40\) vs expected \(48, 48\)"),
])
def test_bad_checkpoints_name_the_keys(tensors, edit, message):
  state, path = tensors
  edit(state)
  save_file(state, path)
  write_config(path.parent)
  with pytest.raises(CheckpointError, match=message):
    convert.load_torch_dit(path)


def test_truncated_and_foreign_files(tensors, capsys):
  state, path = tensors
  save_file(state, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 100])
  with pytest.raises(CheckpointError, match=r"bad.safetensors: truncated: tensors need \d+ bytes, the file has \d+"):
    convert.load_torch_dit(path)
  assert convert.main(["dit", "--src", str(path), "--out", str(path.parent / "o")]) == 2
  assert "truncated" in capsys.readouterr().err
  save_file({"encoder.weight": torch.zeros(2)}, path)
  with pytest.raises(CheckpointError, match="not a Wan2.1 DiT checkpoint"):
    convert.load_torch_dit(path)
  with pytest.raises(CheckpointError, match="no such file or folder"):
    convert.load_torch_dit(path.parent / "nothing")
  with pytest.raises(CheckpointError, match="cannot infer the head count of dim=48"):
    state_file = path.parent / "plain" / "w.safetensors"
    state_file.parent.mkdir()
    save_file(state, state_file)
    convert.load_torch_dit(state_file)


def test_wrong_rank_is_reported_as_wrong_shape(tensors):
  state, path = tensors
  state["blocks.1.scale_shift_table"] = torch.zeros(2, 6, 48)
  state["blocks.0.attn1.to_q.bias"] = torch.zeros(1, 48)
  save_file(state, path)
  write_config(path.parent)
  with pytest.raises(CheckpointError, match=r"wrong shape \(2\): blocks.0.attn1.to_q.bias: \(1, 48\) vs expected "
                     r"\(48,\), blocks.1.scale_shift_table: \(2, 6, 48\) vs expected \(1, 6, 48\)"):
    convert.load_torch_dit(path)
  state["patch_embedding.weight"] = torch.zeros(48, 36, 2, 2)
  save_file(state, path)
  with pytest.raises(CheckpointError, match=r"patch embedding has shape \(48, 36, 2, 2\), expected a Conv3d"):
    convert.load_torch_dit(path)
