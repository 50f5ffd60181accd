"""Resumable dataset building: each video (or stage-2 record) is first encoded into its own staged
file, written atomically, so an interrupted build redoes only what is missing; a TFDS
`GeneratorBasedBuilder` then writes the ArrayRecord dataset from the staged files in key order.

A staged file is an `.npz` of plain arrays (no pickles): byte lists (JPEG frames) are one uint8
buffer plus offsets, strings are 0-d unicode arrays. A file that could not be used leaves a
`.bad.json` naming the file and the reason, so a resumed build counts it without retrying it.
The dataset's per-record index (sizes, frame counts, fps, ...) goes into TFDS's `metadata.json`, so
the pipelines choose clips and buckets without reading any frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds


class DataError(ValueError):
  """A dataset that cannot be built or read; the message is one line naming the path."""


def pack_bytes(items: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """Byte strings -> (uint8 buffer, int64 offsets `[N + 1]`)."""
  offsets = np.zeros(len(items) + 1, np.int64)
  offsets[1:] = np.cumsum([len(item) for item in items])
  return np.frombuffer(b"".join(items), np.uint8), offsets


def unpack_bytes(buffer: np.ndarray, offsets: np.ndarray) -> list[bytes]:
  data = buffer.tobytes()
  return [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def staged_name(key: str) -> str:
  """A file-system-safe name for a record key (a video id may hold '/' and odd characters)."""
  return hashlib.sha1(key.encode()).hexdigest()[:20]


def write_staged(path: Path, arrays: dict[str, Any]) -> None:
  """Writes an `.npz` atomically (tmp + rename), so a killed build never leaves half a file."""
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
  os.replace(tmp, path)


def write_bad(path: Path, source: str, reason: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps({"source": source, "reason": reason}))
  os.replace(tmp, path)


def read_staged(path: Path) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def check_options(staging: Path, options: dict) -> None:
  """Records the build options in the staging folder; refuses to resume one made with others."""
  staging.mkdir(parents=True, exist_ok=True)
  path = staging / "options.json"
  if path.exists():
    old = json.loads(path.read_text())
    if old != options:
      changed = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in options.items() if old.get(k) != v)
      raise DataError(f"{staging} was staged with other options ({changed}); delete it or build with the same options")
  else:
    path.write_text(json.dumps(options, sort_keys=True))


class StagedBuilder(tfds.core.GeneratorBasedBuilder):
  """Writes one ArrayRecord split `train` from the staged `.npz` files of `staging_dir`, in the
  sorted order of their keys; `metadata["index"]` gets one row of `INDEX_COLUMNS` per record."""

  VERSION = tfds.core.Version("1.0.0")
  INDEX_COLUMNS: tuple[str, ...] = ()

  def __init__(self, *, staging_dir: str | os.PathLike | None = None, **kwargs):
    self._staging_dir = Path(staging_dir) if staging_dir else None
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    # Nothing is downloaded, so no checksums file is looked up beside the code; TFDS's own lookup
    # imports the `importlib_resources` backport, which current etils no longer installs.
    return None

  def _features(self) -> dict:
    raise NotImplementedError

  def _example(self, staged: dict[str, np.ndarray]) -> tuple[str, dict, list]:
    """A staged file -> (key, TFDS example, index row)."""
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    # disable_shuffling: record i is the i-th key in sorted order, matching metadata["index"][i].
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(self._features()),
                                 disable_shuffling=True, metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    staged = [(key, path) for path in self._staging_dir.glob("*.npz") if not path.name.endswith(".tmp.npz")
              for key in [str(np.load(path, allow_pickle=False)["key"])]]
    rows = []
    for i, (_, path) in enumerate(sorted(staged)):
      _, example, row = self._example(read_staged(path))
      rows.append(row)
      yield i, example
    self.info.metadata["index_columns"] = list(self.INDEX_COLUMNS)
    self.info.metadata["index"] = rows


def prepare(builder_cls: type[StagedBuilder], out_dir: str | os.PathLike, staging_dir: Path) -> Path:
  """(Re)writes the dataset of `builder_cls` under `out_dir` from the staged files; returns its folder."""
  builder = builder_cls(data_dir=str(out_dir), staging_dir=staging_dir)
  if Path(builder.data_dir).exists():
    shutil.rmtree(builder.data_dir)  # a rebuild replaces the old version whole
    builder = builder_cls(data_dir=str(out_dir), staging_dir=staging_dir)
  builder.download_and_prepare(download_dir=str(staging_dir / "downloads"))
  return Path(builder.data_dir)


def dataset_dir(path: str | os.PathLike, name: str) -> Path:
  """The version folder of dataset `name`: `path` itself, or `path/<name>/<latest version>`."""
  path = Path(path)
  if (path / "dataset_info.json").exists():
    return path
  versions = sorted((path / name).glob("*/dataset_info.json"))
  if not versions:
    raise DataError(f"{path}: no {name} dataset here; expected {path}/{name}/<version>/dataset_info.json "
                    f"(build it first)")
  return versions[-1].parent


class LazySource:
  """A TFDS ArrayRecord data source opened on first use in each process (so it pickles as a path)."""

  def __init__(self, path: str | os.PathLike):
    self.path = str(path)
    self._source = None

  def __getstate__(self):
    return {"path": self.path, "_source": None}

  def _open(self):
    if self._source is None:
      self._source = tfds.builder_from_directory(self.path).as_data_source(split="train")
    return self._source

  def __len__(self) -> int:
    return len(self._open())

  def __getitem__(self, index: int) -> dict:
    return self._open()[index]


def read_index(path: Path) -> list[dict]:
  """The per-record index of a built dataset: one dict of `INDEX_COLUMNS` per record."""
  metadata = json.loads((path / "metadata.json").read_text())
  columns = metadata["index_columns"]
  return [dict(zip(columns, row)) for row in metadata["index"]]


def text(value) -> str:
  """A TFDS Text feature (bytes when read without TF) or a numpy string -> str."""
  return value.decode() if isinstance(value, bytes) else str(value)
