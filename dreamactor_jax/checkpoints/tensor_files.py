"""Reading and writing PyTorch tensor files without torch and without holding them in memory.

safetensors files are memory-mapped: a tensor is read from disk only when sliced, so a 14B
checkpoint converts tensor by tensor. `.pth`/`.pt` pickles are read only through
`torch.load(weights_only=True, mmap=True)` (the optional torch extra); nothing else is unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not match the model; the message is one line."""


def _is_entry(info: object) -> bool:
  """Whether a safetensors header entry has a dtype name, an int shape and two int data offsets."""
  def ints(value, length=None):
    return (isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value)
            and (length is None or len(value) == length))
  return (isinstance(info, dict) and isinstance(info.get("dtype"), str) and ints(info.get("shape"))
          and ints(info.get("data_offsets"), 2))


def _read_header(path: Path) -> tuple[dict, int]:
  size = path.stat().st_size
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) < 8:
      raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len > size - 8:
      raise CheckpointError(f"{path}: truncated or not safetensors (header of {header_len} bytes, file {size})")
    try:
      header = json.loads(f.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
  if not isinstance(header, dict):
    raise CheckpointError(f"{path}: safetensors header is a JSON {type(header).__name__}, expected an object "
                          "of tensor entries")
  header.pop("__metadata__", None)
  for name, info in header.items():
    if not _is_entry(info):
      raise CheckpointError(f"{path}: safetensors entry {name} is {json.dumps(info)[:80]}, expected "
                            '{"dtype": str, "shape": [int, ...], "data_offsets": [begin, end]}')
  data_start = 8 + header_len
  end = max((info["data_offsets"][1] for info in header.values()), default=0)
  if data_start + end > size:
    raise CheckpointError(f"{path}: truncated: tensors need {data_start + end} bytes, the file has {size}")
  return header, data_start


def open_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Maps each tensor name of a safetensors file to a read-only memory-mapped array."""
  path = Path(path)
  header, data_start = _read_header(path)
  tensors = {}
  for name, info in header.items():
    if info["dtype"] not in _DTYPES:
      raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
    begin, end = info["data_offsets"]
    dtype = np.dtype(_DTYPES[info["dtype"]])
    shape = tuple(info["shape"])
    if end - begin != dtype.itemsize * int(np.prod(shape)):
      raise CheckpointError(f"{path}: tensor {name} has {end - begin} bytes, shape {shape} needs "
                            f"{dtype.itemsize * int(np.prod(shape))}")
    tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=data_start + begin, shape=shape)
  return tensors


def _open_torch_pickle(path: Path) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError:
    raise CheckpointError(f"{path}: reading .pth needs torch (pip install 'dreamactor_jax[torch]'), "
                          "or convert it to safetensors") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  except Exception as e:  # torch raises many types for corrupt archives
    raise CheckpointError(f"{path}: cannot read torch checkpoint ({type(e).__name__}: {e})".splitlines()[0]) from None
  if isinstance(state, Mapping) and "state_dict" in state:
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a mapping of tensor names to tensors")
  tensors = {}
  for name, tensor in state.items():
    if not isinstance(tensor, torch.Tensor):
      raise CheckpointError(f"{path}: entry {name!r} is a {type(tensor).__name__}, expected a tensor")
    if tensor.dtype == torch.bfloat16:
      tensors[name] = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
      tensors[name] = tensor.numpy()
  return tensors


def weight_files(src: str | os.PathLike) -> list[Path]:
  """The weight files of a checkpoint: one file, or every weight file in a folder (shards)."""
  src = Path(src)
  if not src.exists():
    raise CheckpointError(f"{src}: no such file or folder")
  if src.is_file():
    return [src]
  files = sorted(p for p in src.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
  safetensors = [p for p in files if p.suffix == ".safetensors"]
  if not files:
    raise CheckpointError(f"{src}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) in this folder")
  return safetensors or files


def open_tensors(src: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint file or sharded folder, lazily (safetensors) by name."""
  tensors: dict[str, np.ndarray] = {}
  for path in weight_files(src):
    part = open_safetensors(path) if path.suffix == ".safetensors" else _open_torch_pickle(path)
    duplicated = sorted(set(part) & set(tensors))
    if duplicated:
      raise CheckpointError(f"{path}: tensors {duplicated[:5]} appear in more than one shard")
    tensors.update(part)
  return tensors


def write_safetensors(path: str | os.PathLike, shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                      tensors: Iterable[tuple[str, np.ndarray]]) -> None:
  """Streams tensors to a safetensors file, one at a time, in the order of `shapes`.

  `shapes` gives each name's shape and dtype up front (the header comes first); `tensors` yields
  the arrays in that same order. Written to a temporary name and renamed, so a crash leaves no
  half-written checkpoint.
  """
  header, offset = {}, 0
  for name, (shape, dtype) in shapes.items():
    nbytes = np.dtype(dtype).itemsize * int(np.prod(shape))
    header[name] = {"dtype": _NAMES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)
  path = Path(path)
  tmp = path.with_name(path.name + ".partial")
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw)
    for (name, array), expected in zip(tensors, header):
      if name != expected or tuple(array.shape) != tuple(header[name]["shape"]):
        raise ValueError(f"tensor {name} {array.shape} arrived out of order; expected {expected}")
      f.write(np.ascontiguousarray(array, dtype=shapes[name][1]).tobytes())
  os.replace(tmp, path)
