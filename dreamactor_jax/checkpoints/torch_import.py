"""The model-independent half of PyTorch import/export: tensor specs, layout transforms, the strict
key check and streaming in both directions.

Each model (DiT, VAE, UMT5, CLIP) supplies only a list of `TensorSpec`s: which PyTorch tensor(s)
hold each of our parameters and how the layouts differ (`kind`). Everything else is shared here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import jax
import numpy as np
from tqdm import tqdm

from dreamactor_jax.checkpoints.tensor_files import CheckpointError

# How a PyTorch tensor relates to ours:
#   linear   [out, in] -> [in, out]            conv1x1  [out, in, 1, 1] -> [in, out]
#   conv2d   O I H W -> H W I O                conv3d   O I D H W -> D H W I O
#   table    [1, n, D] -> [n, D]               vector   unchanged (also any tensor kept as is)
#   gamma2d  [C, 1, 1] -> [C]                  gamma3d  [C, 1, 1, 1] -> [C]
Kind = Literal["linear", "conv1x1", "conv2d", "conv3d", "table", "vector", "gamma2d", "gamma3d"]
Allocate = Callable[[str, tuple[int, ...], np.dtype], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """Where one of our parameters lives in a PyTorch checkpoint."""

  path: str  # our parameter, dotted: "blocks.ffn.up.kernel"
  torch_names: tuple[str, ...]  # one per layer for a stacked parameter, else one
  kind: Kind
  stacked: bool = False  # one tensor per layer, stacked on our leading `layers` axis (also with 1 layer)

  @classmethod
  def from_template(cls, path: str, template: str, kind: Kind, num_layers: int) -> TensorSpec:
    """A spec whose PyTorch name holds "{i}" once per layer (a stacked parameter), or no "{i}"."""
    if "{i}" not in template:
      return cls(path, (template,), kind)
    return cls(path, tuple(template.format(i=i) for i in range(num_layers)), kind, stacked=True)


def to_ours(tensor: np.ndarray, kind: Kind) -> np.ndarray:
  """One PyTorch tensor (one layer) in our layout, as a view where possible."""
  if kind == "linear":
    return tensor.T
  if kind == "conv1x1":
    return tensor.reshape(tensor.shape[:2]).T
  if kind == "conv2d":
    return tensor.transpose(2, 3, 1, 0)
  if kind == "conv3d":
    return tensor.transpose(2, 3, 4, 1, 0)
  if kind == "table":
    return tensor.reshape(tensor.shape[1:])
  if kind in ("gamma2d", "gamma3d"):
    ones = 2 if kind == "gamma2d" else 3
    if tensor.shape[1:] != (1,) * ones:
      raise ValueError(f"expected [C{', 1' * ones}]")
    return tensor.reshape(tensor.shape[:1])
  return tensor


def to_torch(array: np.ndarray, kind: Kind) -> np.ndarray:
  """Inverse of `to_ours`."""
  if kind == "linear":
    return array.T
  if kind == "conv1x1":
    return array.T[:, :, None, None]
  if kind == "conv2d":
    return array.transpose(3, 2, 0, 1)
  if kind == "conv3d":
    return array.transpose(4, 3, 0, 1, 2)
  if kind == "table":
    return array[None]
  if kind in ("gamma2d", "gamma3d"):
    return array.reshape(array.shape + (1,) * (2 if kind == "gamma2d" else 3))
  return array


def layout_shape(shape: tuple[int, ...], kind: Kind, *, to: Literal["ours", "torch"]) -> tuple[int, ...] | None:
  """The shape a tensor takes in the other layout, or None if it cannot (computed on a view)."""
  view = np.broadcast_to(np.int8(0), shape)
  try:
    return tuple((to_ours if to == "ours" else to_torch)(view, kind).shape)
  except ValueError:  # wrong rank for this kind of tensor
    return None


def detect_layout(names: Mapping[str, object], probes: Mapping[str, str], *, model: str, source: str) -> str:
  """The first layout whose probe tensor is among `names` (`probes`: layout -> tensor name)."""
  for layout, probe in probes.items():
    if probe in names:
      return layout
  raise CheckpointError(f"{source}: not a {model} checkpoint (none of {', '.join(probes.values())} is present)")


def check_keys(tensors: Mapping[str, np.ndarray], specs: list[TensorSpec], shapes: Mapping[str, tuple[int, ...]], *,
               model: str, source: str, ignored: Callable[[str], bool] = lambda name: False) -> None:
  """Raises one CheckpointError naming every missing, unexpected and mis-shaped tensor.

  `shapes` are our parameter shapes by path; `ignored` names stored tensors no computation reads.
  """
  expected, misshaped = set(), []
  for spec in specs:
    ours = tuple(shapes[spec.path])
    per_tensor = ours[1:] if spec.stacked else ours
    for name in spec.torch_names:
      expected.add(name)
      if name in tensors:
        stored = tuple(tensors[name].shape)
        if layout_shape(stored, spec.kind, to="ours") != per_tensor:
          misshaped.append(f"{name}: {stored} vs expected {layout_shape(per_tensor, spec.kind, to='torch')}")
  missing = sorted(expected - set(tensors))
  unexpected = sorted(n for n in set(tensors) - expected if not ignored(n))
  misshaped.sort()
  if missing or unexpected or misshaped:
    parts = [f"{label} ({len(items)}): {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)) if items]
    raise CheckpointError(f"{source} does not match the {model}: " + "; ".join(parts))


def stream_params(tensors: Mapping[str, np.ndarray], specs: list[TensorSpec], shapes: Mapping[str, tuple[int, ...]], *,
                  dtype: np.dtype, allocate: Allocate | None = None, progress: bool = False) -> dict[str, np.ndarray]:
  """Our flat parameters, filled tensor by tensor into arrays from `allocate(path, shape, dtype)`.

  Call `check_keys` first. With memory-mapped `tensors` and disk-backed `allocate`, RAM holds one
  tensor at a time.
  """
  allocate = allocate or (lambda path, shape, dt: np.empty(shape, dt))
  params = {}
  total = sum(len(s.torch_names) for s in specs)
  with tqdm(total=total, desc="import", unit="tensor", disable=not progress) as bar:
    for spec in specs:
      target = allocate(spec.path, tuple(shapes[spec.path]), np.dtype(dtype))
      for layer, name in enumerate(spec.torch_names):
        target[layer if spec.stacked else ...] = to_ours(tensors[name], spec.kind)
        bar.update()
      params[spec.path] = target
  return params


def iter_torch_tensors(params: Mapping[str, np.ndarray | jax.Array], specs: list[TensorSpec], dtype: np.dtype
                       ) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype]], Iterator[tuple[str, np.ndarray]]]:
  """PyTorch names with shapes, and a generator of the tensors in that order, for an export."""
  shapes = {}
  for spec in specs:
    ours = params[spec.path].shape[1:] if spec.stacked else params[spec.path].shape
    torch_shape = layout_shape(tuple(ours), spec.kind, to="torch")
    shapes.update({name: (torch_shape, dtype) for name in spec.torch_names})

  def generate():
    for spec in specs:
      value = params[spec.path]
      for layer, name in enumerate(spec.torch_names):
        yield name, to_torch(np.asarray(value[layer] if spec.stacked else value), spec.kind)

  return shapes, generate()
