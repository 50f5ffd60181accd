"""Training checkpoints: Orbax `CheckpointManager` holding everything a resume needs.

One checkpoint per saved step, with items `trainable` (all parameters in full fine-tuning, only the
LoRA parameters with LoRA: the frozen base is reloaded from its own folder), `opt_state`, `ema`,
`rng`, `data` (the Grain iterator state) and `meta` (step and config, JSON). Saves are async and
atomic: Orbax writes into a temporary folder and renames it when complete, so a process killed at
any moment leaves the last finished checkpoint restorable. SIGTERM (preemption) asks the loop to
save at the next step boundary and stop.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

_ARRAY_ITEMS = ("trainable", "opt_state", "ema")


class Checkpointer:
  """Saves and restores train states under `directory/<step>/`.

  `save_every` steps (plus forced saves), keeping the last `keep_last` and every step divisible by
  `keep_every` (0: none kept beyond the last ones).
  """

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep_last: int = 3, keep_every: int = 0,
               async_save: bool = True):
    self.directory = Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every, max_to_keep=keep_last, keep_period=keep_every or None,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._stop_requested = False

  def install_preemption_handler(self) -> None:
    """SIGTERM makes `should_stop` true; the loop then saves and exits cleanly."""
    def request_stop(signum, frame):
      self._stop_requested = True
    signal.signal(signal.SIGTERM, request_stop)

  def should_stop(self, step: int) -> bool:
    """True after SIGTERM here, or when the jax distributed runtime reports a preemption."""
    return self._stop_requested or self._manager.reached_preemption(step)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Mapping[str, Any], *, data_iterator: Any | None = None,
           meta: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Starts saving `state` at `step`; returns whether it saves (by the interval, or `force`; never
    twice at one step, so a preemption right after an interval save does not fail).

    `state` holds `trainable`, `opt_state`, `ema` (pytrees, None to leave out) and `rng` (a key).
    """
    if step in self._manager.all_steps():
      return False
    items = {name: ocp.args.StandardSave(state[name]) for name in _ARRAY_ITEMS if state.get(name) is not None}
    items["rng"] = ocp.args.StandardSave({"key_data": jax.random.key_data(state["rng"])})
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    items["meta"] = ocp.args.JsonSave({"step": step, **(meta or {})})
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Mapping[str, Any], *, data_iterator: Any | None = None) -> dict:
    """Restores `step` onto `abstract_state` (trees of `jax.ShapeDtypeStruct`, with the shardings
    the arrays should have now: a different mesh than at save time works); the iterator in place."""
    items = {name: ocp.args.StandardRestore(abstract_state[name]) for name in _ARRAY_ITEMS
             if abstract_state.get(name) is not None}
    items["rng"] = ocp.args.StandardRestore()
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    items["meta"] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    state = {name: restored[name] for name in items if name not in ("data", "rng")}
    state["rng"] = jax.random.wrap_key_data(restored["rng"]["key_data"])
    return state

  def wait(self) -> None:
    """Blocks until async saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def abstract_like(tree: Any, shardings: Any | None = None) -> Any:
  """`jax.ShapeDtypeStruct`s of `tree`'s arrays, with `shardings` (a matching tree) if given."""
  if shardings is None:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
