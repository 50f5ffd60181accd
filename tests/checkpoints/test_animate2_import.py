"""Wan-Animate-2 checkpoints: both layouts import to the same parameters, export back exactly, and
bad checkpoints give one line (ANIMATE2.md, "Layouts"). Forward parity lives in tests/models."""

import json

import numpy as np
import pytest
import torch
from diffusers import WanAnimate2Transformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_animate_2_transformer_to_diffusers
from safetensors.torch import load_file, save_file

from conftest import make_torch_animate2, make_torch_dit, save_torch_dit
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, export_torch_dit, load_dit
from dreamactor_jax.checkpoints.model_state import model_params

# Not the defaults (1, 0, -1, 1), so a field read from the wrong place shows.
DRIVING = {"refer_offset_t": 2, "refer_offset_h": 3, "refer_offset_w": -1, "refer_stride": 2}


@pytest.fixture(scope="module")
def animate2(tmp_path_factory):
  """The diffusers model, its folder (sharded safetensors + config.json) and our import of it."""
  torch_model = make_torch_animate2(seed=3, **DRIVING)
  folder = save_torch_dit(torch_model, tmp_path_factory.mktemp("animate2"), max_shard_size="2MB")
  assert len(list(folder.glob("*.safetensors"))) > 1
  model, config = convert.load_torch_dit(folder)
  return torch_model, folder, model, config


def export(model, config, folder, layout):
  return export_torch_dit(model_params(model), config, folder, layout=layout)


def assert_same_params(model, other):
  first, second = model_params(model), model_params(other)
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def assert_same_tensors(tensors, reference):
  assert tensors.keys() == reference.keys()
  for key in reference:
    torch.testing.assert_close(tensors[key], reference[key], rtol=0, atol=0, msg=key)


def test_diffusers_folder_gives_an_animate2_config(animate2):
  _, _, _, config = animate2
  assert config.layout == "animate2"
  assert (config.dim, config.num_heads, config.num_layers, config.ffn_dim) == (48, 3, 3, 40)
  assert (config.in_channels, config.out_channels, config.image_dim, config.text_dim) == (36, 16, 1280, 20)
  assert {key: getattr(config, key) for key in DRIVING} == DRIVING
  assert config.motion_timestep == 1.0 and config.text_len == 512
  assert config.unconditional_skip_layers == ()  # block 9, skipped by the references, is past these 3


def test_unconditional_branch_skips_block_9(tmp_path):
  _, config = convert.load_torch_dit(save_torch_dit(make_torch_animate2(layers=10), tmp_path))
  assert config.unconditional_skip_layers == (9,)


def test_diffusers_names_reach_our_parameters(animate2):
  torch_model, _, model, _ = animate2
  state, params = torch_model.state_dict(), model_params(model)
  # One tensor per kind of transform and per renamed module, checked by value.
  np.testing.assert_array_equal(params["blocks.self_attn.q.kernel"][1], state["blocks.1.self_attn.to_q.weight"].T)
  np.testing.assert_array_equal(params["blocks.cross_attn.norm_image_k.scale"][2],
                                state["blocks.2.cross_attn.norm_added_k.weight"])
  np.testing.assert_array_equal(params["blocks.norm_cross.bias"][0], state["blocks.0.norm3.bias"])
  np.testing.assert_array_equal(params["blocks.modulation"][2], state["blocks.2.modulation"][0])
  np.testing.assert_array_equal(params["patch_embed"], state["patch_embedding.weight"].permute(2, 3, 4, 1, 0))
  np.testing.assert_array_equal(params["head.kernel"], state["head.head.weight"].T)
  np.testing.assert_array_equal(params["image_embed.mlp.down.kernel"], state["img_emb.proj.3.weight"].T)


def test_official_file_matches_diffusers_converter(animate2, tmp_path):
  torch_model, _, model, config = animate2
  official = load_file(export(model, config, tmp_path, "original"))
  assert "blocks.1.block.self_attn.q.weight" in official and "blocks.2.block.cross_attn.k_img.weight" in official
  # diffusers' own single-file converter must turn our official names into its exact state dict.
  assert_same_tensors(convert_wan_animate_2_transformer_to_diffusers(dict(official)), torch_model.state_dict())


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_official_file_imports_to_the_same_params(animate2, tmp_path, prefix):
  _, _, model, config = animate2
  official = load_file(export(model, config, tmp_path / "export", "original"))
  path = tmp_path / "wan_animate_2_bf16.safetensors"
  save_file({prefix + name: tensor for name, tensor in official.items()}, path)
  # Alone (no config.json): heads given, driving offsets at their defaults.
  alone, alone_config = convert.load_torch_dit(path, num_heads=3)
  assert alone_config.layout == "animate2"
  assert (alone_config.refer_offset_t, alone_config.refer_offset_h, alone_config.refer_offset_w,
          alone_config.refer_stride) == (1, 0, -1, 1)
  assert_same_params(alone, model)
  # Beside the exported config.json: everything as from the diffusers folder.
  (tmp_path / "config.json").write_text((tmp_path / "export" / "config.json").read_text())
  beside, beside_config = convert.load_torch_dit(path)
  assert beside_config == config
  assert_same_params(beside, model)


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_round_trip_is_exact(animate2, tmp_path, layout):
  _, _, model, config = animate2
  export(model, config, tmp_path, layout)
  again, again_config = convert.load_torch_dit(tmp_path)
  assert again_config == config
  assert_same_params(again, model)


def test_diffusers_loads_our_export(animate2, tmp_path):
  torch_model, _, model, config = animate2
  export(model, config, tmp_path, "diffusers")
  loaded = WanAnimate2Transformer3DModel.from_pretrained(tmp_path)
  assert {key: loaded.config[key] for key in DRIVING} == DRIVING
  assert (loaded.config.num_heads, loaded.config.num_layers, loaded.config.use_img_emb) == (3, 3, True)
  assert_same_tensors(loaded.state_dict(), torch_model.state_dict())


def test_cli_converts_and_exports_both_layouts(animate2, tmp_path):
  torch_model, folder, model, _ = animate2
  assert convert.main(["dit", "--src", str(folder), "--out", str(tmp_path / "ours")]) == 0
  ours, ours_config = load_dit(tmp_path / "ours")
  assert ours_config.layout == "animate2" and ours_config.refer_stride == 2
  assert_same_params(ours, model)
  for layout in ("diffusers", "original"):
    out = tmp_path / layout
    assert convert.main(["export-dit", "--src", str(tmp_path / "ours"), "--out", str(out), "--layout", layout]) == 0
    assert json.loads((out / "config.json").read_text())["_class_name"] == "WanAnimate2Transformer3DModel"
  assert_same_tensors(load_file(tmp_path / "diffusers" / "diffusion_pytorch_model.safetensors"),
                      torch_model.state_dict())


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_wan21_is_not_taken_for_animate2(tmp_path, layout):
  wan = make_torch_dit(in_channels=36, image_dim=24, seed=2)
  model, config = convert.load_torch_dit(save_torch_dit(wan, tmp_path / "wan"))
  export_torch_dit(model_params(model), config, tmp_path / "out", layout=layout)
  again, again_config = convert.load_torch_dit(tmp_path / "out")
  assert config.layout == again_config.layout == "full"
  assert_same_params(again, model)


@pytest.fixture
def official(animate2, tmp_path):
  """The official tensors as one editable dict, and where to write a corrupted copy (heads in config.json)."""
  _, _, model, config = animate2
  tensors = load_file(export(model, config, tmp_path / "export", "original"))
  (tmp_path / "config.json").write_text(json.dumps({"num_heads": 3}))
  return tensors, tmp_path / "bad.safetensors"


def unwrap_block(tensors, block):
  """`blocks.N.block.x` -> `blocks.N.x` for one block: half official, half original Wan2.1."""
  return {name.replace(f"blocks.{block}.block.", f"blocks.{block}."): t for name, t in tensors.items()}


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("blocks.2.block.ffn.2.bias"), r"missing \(1\): blocks.2.block.ffn.2.bias"),
    (lambda t: t.update({"blocks.1.block.self_attn.k.weight": torch.zeros(48, 40)}),
     r"wrong shape \(1\): blocks.1.block.self_attn.k.weight: \(48, 40\) vs expected \(48, 48\)"),
    (lambda t: t.update(unwrap_block(t, 1)) or [t.pop(n) for n in list(t) if n.startswith("blocks.1.block.")],
     r"mixes the tensor names of Wan2.1 original and Wan-Animate-2 original; expected one layout"),
])
def test_bad_official_files_give_one_line(official, capsys, edit, message):
  tensors, path = official
  edit(tensors)
  save_file(tensors, path)
  with pytest.raises(CheckpointError, match=message):
    convert.load_torch_dit(path)
  assert convert.main(["dit", "--src", str(path), "--out", str(path.parent / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {path}") and err.count("\n") == 1


def test_config_class_must_agree_with_the_names(animate2, tmp_path):
  _, folder, _, _ = animate2
  for file in folder.iterdir():
    (tmp_path / file.name).write_bytes(file.read_bytes())
  config = json.loads((folder / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "WanTransformer3DModel"}))
  with pytest.raises(CheckpointError, match="config.json names WanTransformer3DModel but the tensors are named as "
                                            "in Wan-Animate-2 diffusers"):
    convert.load_torch_dit(tmp_path)
