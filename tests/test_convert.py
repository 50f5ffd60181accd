"""The conversion CLI's edges: output folders replaced whole or not at all, checked before work
starts, and one loader for every model family behind the README's names."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import make_torch_dit, save_torch_dit
from dreamactor_jax import checkpoints, convert
from dreamactor_jax.checkpoints import load_dit
from dreamactor_jax.checkpoints.model_state import model_params


def assert_same_params(model, other):
  first, second = model_params(model), model_params(other)
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
  folder = tmp_path_factory.mktemp("torch")
  return save_torch_dit(make_torch_dit(seed=1), folder / "a"), save_torch_dit(make_torch_dit(seed=2), folder / "b")


def test_convert_over_an_existing_model(two_models, tmp_path, capsys):
  first, second = two_models
  out = tmp_path / "ours"
  assert convert.main(["dit", "--src", str(first), "--out", str(out)]) == 0
  # A failing conversion leaves the model there untouched ...
  assert convert.main(["dit", "--src", str(tmp_path / "nothing"), "--out", str(out)]) == 2
  assert "no such file or folder" in capsys.readouterr().err
  assert_same_params(load_dit(out)[0], convert.load_torch_dit(first)[0])
  # ... a finished one replaces it, leaving nothing else behind.
  assert convert.main(["dit", "--src", str(second), "--out", str(out)]) == 0
  assert_same_params(load_dit(out)[0], convert.load_torch_dit(second)[0])
  assert sorted(p.name for p in out.iterdir()) == ["config.json", "params"]


@contextlib.contextmanager
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
  """A folder this process cannot create files in: a chmod'ed one. Root ignores permissions, so as
  root the process acts as user nobody (effective uid 65534) until the block ends, on a folder made
  in the system's temporary folder, which that user can reach (pytest's folders are root's alone)."""
  root = os.geteuid() == 0
  folder = (Path(tempfile.mkdtemp()) if root else tmp_path) / "read-only"
  folder.mkdir()
  folder.chmod(0o555)
  folder.parent.chmod(0o755)
  if root:
    os.seteuid(65534)
  try:
    with pytest.raises(PermissionError):
      (folder / "probe").touch()
    yield folder
  finally:
    if root:
      os.seteuid(0)
      shutil.rmtree(folder.parent)


@pytest.mark.parametrize("command", ["dit", "export-dit"])
def test_unwritable_out_is_refused_before_work(tmp_path, capsys, command):
  with unwritable_folder(tmp_path) as folder:
    out = folder / "ours"
    # --src does not exist either: the output is checked first, before any reading.
    assert convert.main([command, "--src", str(tmp_path / "nothing"), "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert err == f"error: {out}: expected a folder this process can write (Permission denied)\n"


def test_out_under_a_file_is_refused(two_models, tmp_path, capsys):
  first, _ = two_models
  out = first / "config.json" / "ours"
  assert convert.main(["dit", "--src", str(first), "--out", str(out)]) == 2
  assert capsys.readouterr().err == f"error: {first / 'config.json'}: is a file; expected a folder for the output {out}\n"


def test_one_loader_behind_the_public_names(two_models):
  first, _ = two_models
  model, config = checkpoints.load_torch("dit", first, in_channels=36, attention="blockwise", num_heads=3)
  assert (config.in_channels, config.attention, config.num_heads) == (36, "blockwise", 3)
  public, public_config = convert.load_torch_dit(first, in_channels=36, attention="blockwise")
  assert public_config == config
  assert_same_params(public, model)


@pytest.mark.parametrize("argv, line", [
    ([], "error: <command>: expected a command, one of dit, a14b, vae, t5, clip, export-dit"),
    (["dits", "--src", "x"], "error: dits: expected a command, one of dit, a14b, vae, t5, clip, export-dit"),
    (["dit", "--src", "x"], "error: --out=None: Flag --out must have a value other than None."),
    (["dit", "--src", "x", "--out", "y", "--num-heads", "0"], "error: --num-heads=0: 0 is not a positive integer"),
    (["export-dit", "--src", "x", "--out", "y", "--layout", "wan"],
     "error: --layout=wan: value should be one of <diffusers|original>"),
])
def test_bad_command_lines_give_one_line(capsys, argv, line):
  assert convert.main(argv) == 2
  assert capsys.readouterr().err == line + "\n"


def test_help_lists_commands_and_their_flags(capsys):
  assert convert.main(["--help"]) == 0
  assert "  export-dit: Orbax DiT folder -> PyTorch safetensors + config.json" in capsys.readouterr().out
  assert convert.main(["dit", "--help"]) == 0
  text = capsys.readouterr().out
  assert text.startswith("python -m dreamactor_jax.convert dit: ")
  assert all(f"  --{name}: " in text for name in ("src", "out", "dtype", "num-heads", "in-channels"))
