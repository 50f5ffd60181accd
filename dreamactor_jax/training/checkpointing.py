"""Training checkpoints: Orbax `CheckpointManager` holding everything a resume needs.

One checkpoint per saved step, with items `trainable` (all parameters in full fine-tuning, only the
LoRA parameters with LoRA: the frozen base is reloaded from its own folder), `opt_state`, `ema`,
`rng`, `data` (the Grain iterator state) and `meta` (step and config, JSON). Saves are async and
atomic: Orbax writes into a temporary folder and renames it when complete, so a process killed at
any moment leaves the last finished checkpoint restorable. SIGTERM (preemption) asks the loop to
save at the next step boundary and stop. A save that fails (read-only folder, full disk) raises
`SaveError` naming the folder and the OS error at once; nothing then waits on the failed save again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

_ARRAY_ITEMS = ("trainable", "opt_state", "ema")


class SaveError(OSError):
  """A checkpoint that could not be written: `filename` is the folder, `strerror` what went wrong."""


def check_writable(directory: Path) -> None:
  """Makes `directory` and writes a file in it, so a folder that cannot take a checkpoint fails before
  training does."""
  try:
    directory.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=directory).close()
  except OSError as e:
    raise SaveError(e.errno, f"cannot write checkpoints here ({e.strerror or e})", str(directory)) from None


def _save_error(directory: Path, step: int, error: Exception) -> SaveError:
  """Orbax's failure, often a page of TensorStore text, as the OS error it comes from."""
  code = re.search(r"os_error_code='?(\d+)", str(error))
  if isinstance(error, OSError) and error.errno:
    code, reason = error.errno, f"{error.strerror} ({error.filename})"
  elif code:
    code = int(code[1])
    reason = os.strerror(code)
  else:
    code, reason = errno.EIO, str(error).splitlines()[0][:200]
  return SaveError(code, f"saving the checkpoint failed: {reason}", f"{directory}/{step}")


class Checkpointer:
  """Saves and restores train states under `directory/<step>/`.

  `save_every` steps (plus forced saves), keeping the last `keep_last` and every step divisible by
  `keep_every` (0: none kept beyond the last ones).
  """

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep_last: int = 3, keep_every: int = 0,
               async_save: bool = True):
    self.directory = Path(directory).absolute()
    check_writable(self.directory)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every, max_to_keep=keep_last, keep_period=keep_every or None,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._stop_requested = False
    self._saving: int | None = None  # the step of the save in flight

  @contextlib.contextmanager
  def preemption_handler(self) -> Iterator[None]:
    """Inside, SIGTERM makes `should_stop` true (the loop then saves and exits cleanly); the process's
    own handler is back afterwards, so a run called from Python leaves no trace on its caller."""
    def request_stop(signum, frame):
      self._stop_requested = True
    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
      yield
    finally:
      signal.signal(signal.SIGTERM, previous)

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
    if step in self._manager.all_steps() or not (force or self._manager.should_save(step)):
      return False
    items = {name: ocp.args.StandardSave(state[name]) for name in _ARRAY_ITEMS if state.get(name) is not None}
    items["rng"] = ocp.args.StandardSave({"key_data": jax.random.key_data(state["rng"])})
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    items["meta"] = ocp.args.JsonSave({"step": step, **(meta or {})})
    self.wait()  # the previous save's failure surfaces here, named, not inside Orbax's next save
    self._saving = step
    try:
      saving = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
    except (OSError, ValueError, RuntimeError) as e:  # Orbax's words for one OS error
      self._saving = None
      raise _save_error(self.directory, step, e) from None
    self._saving = step if saving else None
    return saving

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
    """Blocks until async saves are on disk; raises SaveError (once) if the last one failed."""
    step, self._saving = self._saving, None
    if step is None:
      return
    try:
      self._manager.wait_until_finished()
    except (OSError, ValueError, RuntimeError) as e:
      raise _save_error(self.directory, step, e) from None

  def close(self) -> None:
    self._manager.close()


def abstract_like(tree: Any, shardings: Any | None = None) -> Any:
  """`jax.ShapeDtypeStruct`s of `tree`'s arrays, with `shardings` (a matching tree) if given."""
  if shardings is None:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
