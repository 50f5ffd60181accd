"""The base of every model config: a frozen dataclass that round-trips through dicts (config.json,
ml-collections) and names unknown keys; and the one check of a choice against its Literal type."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Self


def check_choice(key: str, value: Any, choices: Any) -> None:
  """Raises ValueError unless `value` is one of the Literal type `choices`: `key='x' is not one of 'a', 'b'`."""
  options = typing.get_args(choices)
  if value not in options:
    raise ValueError(f"{key}={value!r} is not one of {', '.join(map(repr, options))}")


class ModelConfig:
  """Mixin for `@dataclasses.dataclass(frozen=True)` configs: `from_mapping` and `to_dict`."""

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> Self:
    """Builds a config from a dict or ConfigDict, rejecting unknown keys by name; lists (JSON) become tuples."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"unknown {cls.__name__} keys {unknown}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)
