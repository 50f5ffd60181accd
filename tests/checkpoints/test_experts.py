"""Wan2.2 A14B's two experts: `convert a14b` reads diffusers' pipeline folder and the official
release's folders into one two-expert folder with its boundary, and refuses what is not one."""

import json
import types

import numpy as np
import pytest

from conftest import make_torch_dit, save_torch_dit
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import export_torch_dit, load_dit
from dreamactor_jax.checkpoints.experts import (denoiser_config, expert_folders, is_experts, read_boundary,
                                                 torch_experts)
from dreamactor_jax.checkpoints.model_state import model_params


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """Two tiny diffusers DiTs of A14B I2V's shape (36 input channels, no CLIP branch) and ours of them."""
  folder = tmp_path_factory.mktemp("a14b")
  high = save_torch_dit(make_torch_dit(in_channels=36, seed=3), folder / "high")
  low = save_torch_dit(make_torch_dit(in_channels=36, seed=4), folder / "low")
  return types.SimpleNamespace(high=high, low=low, ours=[convert.load_torch_dit(high)[0],
                                                         convert.load_torch_dit(low)[0]])


def assert_converted(out, released, boundary):
  assert is_experts(out) and read_boundary(out) == boundary
  assert sorted(p.name for p in out.iterdir()) == ["experts.json", "high_noise", "low_noise"]
  for folder, expected in zip(expert_folders(out), released.ours):
    ours, stored = model_params(load_dit(folder)[0]), model_params(expected)
    assert ours.keys() == stored.keys()
    for key in ours:
      np.testing.assert_array_equal(ours[key], stored[key], err_msg=f"{folder.name}: {key}")
  assert denoiser_config(out) == released.ours[0].config and denoiser_config(out).in_channels == 36


def test_diffusers_pipeline_folder(released, tmp_path, capsys):
  src = tmp_path / "Wan2.2-I2V-A14B-Diffusers"
  src.mkdir()
  (src / "model_index.json").write_text(json.dumps({"_class_name": "WanImageToVideoPipeline", "boundary_ratio": 0.9}))
  (src / "transformer").symlink_to(released.high)
  (src / "transformer_2").symlink_to(released.low)
  out = tmp_path / "i2v-a14b"
  assert convert.main(["a14b", "--src", str(src), "--out", str(out)]) == 0
  assert "boundary 0.9" in capsys.readouterr().out
  assert_converted(out, released, 0.9)
  # a failing conversion leaves the folder there whole; --boundary overrides the release's
  assert convert.main(["a14b", "--src", str(released.high), "--out", str(out)]) == 2
  assert "expected a Wan2.2 A14B folder: diffusers' (model_index.json, transformer/, transformer_2/)" in \
      capsys.readouterr().err
  assert_converted(out, released, 0.9)
  assert not (tmp_path / "i2v-a14b.partial").exists() and not (tmp_path / "i2v-a14b.replaced").exists()


def test_official_release_folders(released, tmp_path, capsys):
  """high_noise_model/ and low_noise_model/ in the original layout; the boundary is wan/configs' for
  the model_type of their config.json (I2V: 0.9), and without one it must be given."""
  src = tmp_path / "Wan2.2-I2V-A14B"
  for model, name in zip(released.ours, ("high_noise_model", "low_noise_model")):
    export_torch_dit(model_params(model), model.config, src / name, layout="original")
  config_file = src / "high_noise_model" / "config.json"
  config = json.loads(config_file.read_text())
  config_file.write_text(json.dumps({key: value for key, value in config.items() if key != "model_type"}))
  out = tmp_path / "ours"
  assert convert.main(["a14b", "--src", str(src), "--out", str(out)]) == 2
  assert "no model_type 'i2v' or 't2v' to take the boundary of wan/configs from; give it (--boundary" in \
      capsys.readouterr().err
  assert not out.exists()
  assert convert.main(["a14b", "--src", str(src), "--out", str(out), "--boundary", "0.875"]) == 0
  assert_converted(out, released, 0.875)
  config_file.write_text(json.dumps({**config, "model_type": "i2v"}))  # as the release's (no CLIP in Wan2.2)
  assert torch_experts(src) == (src / "high_noise_model", src / "low_noise_model", 0.9)
  assert convert.main(["a14b", "--src", str(src), "--out", str(tmp_path / "bad"), "--boundary", "1.5"]) == 2
  assert "boundary=1.5; expected a number between 0 and 1" in capsys.readouterr().err
