"""Our model folders: replaced only once the new model is complete, and a damaged folder gives one
line naming the file, with no traceback from Orbax's threads."""

import json

import numpy as np
import pytest
from flax import nnx

from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, load_dit, save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models.dit import DiTConfig, WanDiT

CONFIG = DiTConfig(dim=32, num_heads=2, num_layers=2, ffn_dim=24, text_dim=8, freq_dim=16)


def saved(folder, seed=0):
  params = model_params(WanDiT(CONFIG, rngs=nnx.Rngs(seed)))
  save_model(folder, params, CONFIG)
  return params


def assert_params(folder, expected):
  loaded = model_params(load_dit(folder)[0])
  assert loaded.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)


def test_save_replaces_an_existing_model(tmp_path):
  saved(tmp_path / "model", seed=0)
  second = saved(tmp_path / "model", seed=1)
  assert_params(tmp_path / "model", second)
  assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "params"]


def test_failed_save_leaves_the_old_model_whole(tmp_path):
  first = saved(tmp_path / "model", seed=0)

  class Unwritable:  # fails after the new params are written, before anything is swapped
    def to_dict(self):
      raise OSError(28, "No space left on device")

  with pytest.raises(OSError, match="No space left"):
    save_model(tmp_path / "model", model_params(WanDiT(CONFIG, rngs=nnx.Rngs(1))), Unwritable())
  assert_params(tmp_path / "model", first)
  assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "params"]


def export_fails_with(folder, capfd, message):
  assert convert.main(["export-dit", "--src", str(folder), "--out", str(folder.parent / "out")]) == 2
  err = capfd.readouterr().err
  assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_truncated_metadata(tmp_path, capfd):
  saved(tmp_path / "model")
  metadata = tmp_path / "model" / "params" / "_METADATA"
  metadata.write_bytes(metadata.read_bytes()[:40])
  with pytest.raises(CheckpointError, match=f"^{metadata}: expected Orbax's JSON tree metadata"):
    load_dit(tmp_path / "model")
  export_fails_with(tmp_path / "model", capfd, f"error: {metadata}: expected Orbax's JSON tree metadata")


def test_zero_byte_data_files(tmp_path, capfd):
  saved(tmp_path / "model")
  data = sorted(p for p in (tmp_path / "model" / "params").rglob("*") if p.is_file() and p.parent.name == "d")
  for path in data:  # all of them: one empty file made Orbax fail in many threads at once
    path.write_bytes(b"")
  with pytest.raises(CheckpointError, match=f"^{data[0]}: empty Orbax data file"):
    load_dit(tmp_path / "model")
  export_fails_with(tmp_path / "model", capfd, f"error: {data[0]}: empty Orbax data file")


def test_truncated_data_file(tmp_path, capfd):
  saved(tmp_path / "model")
  largest = max((p for p in (tmp_path / "model" / "params").rglob("*") if p.parent.name == "d"),
                key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:100])
  with pytest.raises(CheckpointError, match=f"^{tmp_path / 'model' / 'params'}: cannot read the saved parameters"):
    load_dit(tmp_path / "model")


def test_missing_params_folder(tmp_path):
  (tmp_path / "model").mkdir()
  (tmp_path / "model" / "config.json").write_text(json.dumps(CONFIG.to_dict()))
  with pytest.raises(CheckpointError, match=r"params: no such folder; expected the Orbax parameters"):
    load_dit(tmp_path / "model")
