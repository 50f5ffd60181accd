"""Malformed PyTorch tensor files give one line naming the file and what was expected."""

import json
import struct

import numpy as np
import pytest
import torch

from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError
from dreamactor_jax.checkpoints.tensor_files import open_tensors, write_safetensors


def write_header(path, header):
  raw = json.dumps(header).encode()
  path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(64))
  return path


def assert_one_line_exit_2(path, capsys, message):
  assert convert.main(["dit", "--src", str(path), "--out", str(path.parent / "out")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and message in err, err


def test_round_trip_of_a_valid_file(tmp_path):
  array = np.arange(6, dtype=np.float32).reshape(2, 3)
  write_safetensors(tmp_path / "ok.safetensors", {"w": ((2, 3), np.float32)}, [("w", array)])
  np.testing.assert_array_equal(open_tensors(tmp_path / "ok.safetensors")["w"], array)


@pytest.mark.parametrize("header, message", [
    ([1, 2], "safetensors header is a JSON list, expected an object of tensor entries"),
    ({"w": {"dtype": "F32", "shape": [2]}}, 'safetensors entry w is {"dtype": "F32", "shape": [2]}, expected'),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, "safetensors entry w is"),
    ({"w": [0, 8]}, "safetensors entry w is [0, 8], expected"),
])
def test_malformed_safetensors_headers(tmp_path, capsys, header, message):
  path = write_header(tmp_path / "bad.safetensors", header)
  with pytest.raises(CheckpointError, match=f"^{path}: " + message.replace("[", r"\[").replace("]", r"\]")):
    open_tensors(path)
  assert_one_line_exit_2(path, capsys, message)


@pytest.mark.parametrize("content, message", [
    (torch.zeros(3), "holds a Tensor, expected a mapping of tensor names to tensors"),
    ([torch.zeros(3)], "holds a list, expected a mapping of tensor names to tensors"),
    ({"w": torch.zeros(3), "step": 7}, "entry 'step' is a int, expected a tensor"),
    ({"state_dict": {"w": "text"}}, "entry 'w' is a str, expected a tensor"),
])
def test_pth_that_is_not_a_tensor_mapping(tmp_path, capsys, content, message):
  path = tmp_path / "bad.pth"
  torch.save(content, path)
  with pytest.raises(CheckpointError, match=f"^{path}: {message}$"):
    open_tensors(path)
  assert_one_line_exit_2(path, capsys, message)
