"""Shared fixtures: tiny random PyTorch Wan models built offline, and repo-root imports."""

import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

# Tiny shapes: compiling dominates, so XLA's backend optimisations cost more than they save (about 2x
# on this suite), and the CPU backend's older loop emitters compile in about 2/3 of the time of its
# MLIR fusion emitters. Set before anything imports jax; subprocesses (train.py runs) inherit it.
FAST_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                "--xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE)

# One persistent compilation cache for the whole run, made by the first process (pytest, or xdist's
# controller) and inherited by the workers, the 8-device worker and the train.py runs they start: a
# train.py run in a subprocess then loads what the test process compiled for the same config.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = OWN_CACHE = tempfile.mkdtemp(prefix="dreamactor-jax-tests-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
else:
  OWN_CACHE = None

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # train.py, sample.py and benchmarks/ live at the repo root

# Fixtures of sub-folders live in plugin modules, not in more conftest.py files: test modules import
# helpers with `from conftest import ...`, which must always mean this file.
pytest_plugins = ["tests.data.fixtures", "tests.parallel.devices"]

# xdist hands out whole files (--dist loadfile) in collection order (--no-loadscope-reorder): the
# longest files, minutes each on a 2-core machine (`pytest --durations=0`), go first, so that no worker
# runs one of them alone at the end while the other idles. Every other file keeps pytest's order.
LONGEST_FIRST = ("training/test_train_resume.py", "parallel/test_dit_sharded.py", "parallel/test_animate2_sharded.py",
                 "models/test_vae.py", "training/test_objective.py", "test_sample.py",
                 "parallel/test_sharded_sampling.py")


def pytest_unconfigure(config: pytest.Config) -> None:
  if OWN_CACHE is not None:
    shutil.rmtree(OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  stale = [name for name in LONGEST_FIRST if not (ROOT / "tests" / name).is_file()]
  if stale:
    raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names files that do not exist: {stale}")

  def rank(item: pytest.Item) -> int:
    name = item.path.relative_to(ROOT / "tests").as_posix()
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # stable: the order within a file and among the rest is kept


def make_torch_dit(*, heads=3, head_dim=16, layers=2, ffn=40, in_channels=16, out_channels=16, text_dim=20,
                   freq_dim=32, image_dim=None, seed=0):
  """A tiny random diffusers WanTransformer3DModel, with every parameter perturbed off its init."""
  import torch
  from diffusers import WanTransformer3DModel

  torch.manual_seed(seed)
  model = WanTransformer3DModel(
      patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=in_channels,
      out_channels=out_channels, text_dim=text_dim, freq_dim=freq_dim, ffn_dim=ffn, num_layers=layers,
      image_dim=image_dim, added_kv_proj_dim=heads * head_dim if image_dim else None).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)  # norms and biases start at 1/0: move them so a mix-up shows
  return model


def make_torch_animate2(*, seed=0, layers=3, **config):
  """A tiny random diffusers Wan-Animate-2 DiT (3 heads of 16, ffn 40), every parameter moved off its init."""
  import torch
  from diffusers import WanAnimate2Transformer3DModel

  torch.manual_seed(seed)
  model = WanAnimate2Transformer3DModel(dim=48, num_heads=3, ffn_dim=40, freq_dim=32, text_dim=20,
                                        num_layers=layers, **config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)  # norms and biases start at 1/0: move them so a mix-up shows
  return model


def make_torch_vae(*, seed=0, **config):
  """A tiny random diffusers AutoencoderKLWan, every parameter perturbed off its init."""
  import torch
  from diffusers import AutoencoderKLWan

  torch.manual_seed(seed)
  model = AutoencoderKLWan(**config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)
  return model


def save_torch_dit(model, folder: Path, *, max_shard_size="1GB") -> Path:
  """Saves with diffusers' own writer (sharded safetensors + index json + config.json)."""
  model.save_pretrained(folder, max_shard_size=max_shard_size)
  return folder


def torch_dit_inputs(model, *, batch=2, frames=3, height=10, width=14, text_len=512, image_len=7, seed=1):
  """Random channels-first inputs for a diffusers DiT; returns a dict of torch tensors."""
  import torch

  generator = torch.Generator().manual_seed(seed)
  config = model.config
  inputs = {
      "hidden_states": torch.randn(batch, config.in_channels, frames, height, width, generator=generator),
      "timestep": torch.linspace(3.0, 970.0, batch),
      "encoder_hidden_states": torch.randn(batch, text_len, config.text_dim, generator=generator),
  }
  if config.image_dim:
    inputs["encoder_hidden_states_image"] = torch.randn(batch, image_len, config.image_dim, generator=generator)
  return inputs


def run_torch_dit(model, inputs) -> np.ndarray:
  """Channels-last fp32 output of a diffusers DiT."""
  import torch

  with torch.no_grad():
    out = model(**inputs, return_dict=False)[0]
  return out.numpy().transpose(0, 2, 3, 4, 1)


def run_jax_dit(model, inputs) -> np.ndarray:
  import jax.numpy as jnp

  image = inputs.get("encoder_hidden_states_image")
  out = model(jnp.asarray(inputs["hidden_states"].numpy().transpose(0, 2, 3, 4, 1)),
              jnp.asarray(inputs["timestep"].numpy()), jnp.asarray(inputs["encoder_hidden_states"].numpy()),
              image_context=None if image is None else jnp.asarray(image.numpy()))
  return np.asarray(out)


def numpy_random_model(build, *, seed=0, scale=0.1):
  """`build()`'s model with every parameter drawn by numpy (normal * scale, norm scales near 1).

  Eager NNX initialisation compiles one small XLA program per parameter shape (tens of seconds for
  a VAE on 2 cores); filling an abstract model from numpy compiles nothing.
  """
  from dreamactor_jax.checkpoints.model_state import abstract_params, merge_params

  rng = np.random.default_rng(seed)
  graphdef, state, shapes = abstract_params(build)
  params = {path: (rng.standard_normal(s.shape) * scale + (1.0 if path.endswith(("scale", "gamma")) else 0.0))
                  .astype(s.dtype) for path, s in shapes.items()}
  return merge_params(graphdef, state, params)


def assert_close(ours, ref, rel=1e-4):
  """Max abs error within `rel` of the reference's scale (max |ref|)."""
  scale = float(np.abs(ref).max())
  err = float(np.abs(np.asarray(ours, np.float64) - ref).max())
  assert err <= rel * scale, f"max abs error {err:.3g} > {rel} x scale {scale:.3g}"


@pytest.fixture
def write_json():
  def write(path: Path, data):
    path.write_text(json.dumps(data))
    return path
  return write


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
  """Scalars from TensorBoard event files (TFRecord framing: length, crc, payload, crc)."""
  scalars: dict[str, list[tuple[int, float]]] = {}
  from tensorboardX.proto import event_pb2

  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars
