"""Train checkpoints: exact round trip with the Grain iterator, retention, atomicity under SIGKILL, a
failed save named at once."""

import subprocess
import sys
import textwrap

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dreamactor_jax.training.checkpointing import Checkpointer, SaveError, abstract_like


def make_state(seed: int):
  params = {"w": jax.random.normal(jax.random.key(seed), (3, 5)), "b": {"c": jnp.arange(4.0)}}
  opt_state = optax.adamw(1e-3).init(params)
  return {"trainable": params, "opt_state": opt_state, "ema": None, "rng": jax.random.key(seed + 100)}


def dataset():
  return grain.MapDataset.range(50).shuffle(seed=3).map(lambda i: i * 2).to_iter_dataset().batch(4)


def test_round_trip_restores_arrays_rng_and_iterator_exactly(tmp_path):
  state = make_state(0)
  iterator = iter(dataset())
  for _ in range(3):
    next(iterator)
  checkpointer = Checkpointer(tmp_path, save_every=1)
  assert checkpointer.save(7, state, data_iterator=iterator, meta={"stage": 1})
  checkpointer.wait()
  upcoming = [next(iterator) for _ in range(2)]

  fresh_iterator = iter(dataset())
  abstract = {k: abstract_like(v) for k, v in state.items() if k in ("trainable", "opt_state")}
  restored = Checkpointer(tmp_path, save_every=1).restore(7, abstract, data_iterator=fresh_iterator)
  assert restored["meta"] == {"step": 7, "stage": 1}
  for ours, theirs in zip(jax.tree.leaves(restored["trainable"]) + jax.tree.leaves(restored["opt_state"]),
                          jax.tree.leaves(state["trainable"]) + jax.tree.leaves(state["opt_state"])):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
  np.testing.assert_array_equal(jax.random.key_data(restored["rng"]), jax.random.key_data(state["rng"]))
  for expected in upcoming:
    np.testing.assert_array_equal(next(fresh_iterator), expected)


def test_keeps_the_last_k_and_every_mth(tmp_path):
  checkpointer = Checkpointer(tmp_path, save_every=1, keep_last=2, keep_every=4, async_save=False)
  state = make_state(1)
  for step in range(1, 10):
    checkpointer.save(step, state)
  assert checkpointer.all_steps() == [4, 8, 9] and checkpointer.latest_step() == 9
  # A preemption right after an interval save forces a second save at the same step: a no-op, not an error.
  assert not checkpointer.save(9, make_state(2), force=True)
  abstract = {"trainable": abstract_like(state["trainable"])}
  np.testing.assert_array_equal(checkpointer.restore(9, abstract)["trainable"]["w"], state["trainable"]["w"])
  checkpointer.close()


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_restorable(tmp_path):
  # The child saves step 1 completely, starts an async save of step 2 with a large tree and is
  # killed while that write is in flight.
  script = textwrap.dedent(f"""
      import os, signal, jax, jax.numpy as jnp
      from dreamactor_jax.training.checkpointing import Checkpointer
      ckpt = Checkpointer({str(tmp_path)!r}, save_every=1)
      small = {{"trainable": {{"w": jnp.ones((4,))}}, "rng": jax.random.key(0)}}
      ckpt.save(1, small); ckpt.wait()
      big = {{"trainable": {{f"w{{i}}": jnp.full((512, 1024), float(i)) for i in range(48)}}, "rng": jax.random.key(1)}}
      ckpt.save(2, big)
      os.kill(os.getpid(), signal.SIGKILL)
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
  assert result.returncode == -9, result.stderr[-2000:]
  assert any(path.name.startswith("2.") for path in tmp_path.iterdir()), "the kill came after the save finished"
  checkpointer = Checkpointer(tmp_path, save_every=1)
  assert checkpointer.latest_step() == 1
  restored = checkpointer.restore(1, {"trainable": {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}})
  np.testing.assert_array_equal(restored["trainable"]["w"], 1.0)


UNWRITABLE = "/proc/1"  # a folder no process may create files in, root included (chmod does not stop root)


def test_a_save_that_fails_raises_at_once_naming_the_folder_and_the_os_error(tmp_path):
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(directory, save_every=1)
  assert checkpointer.save(1, make_state(0))
  checkpointer.wait()
  directory.rename(tmp_path / "moved")
  directory.symlink_to(UNWRITABLE)  # the folder vanishes under the run, as a disk that goes read-only
  with pytest.raises(SaveError, match="saving the checkpoint failed: No such file or directory") as failed:
    checkpointer.save(2, make_state(0))
    checkpointer.wait()
  assert failed.value.filename == f"{directory}/2"
  checkpointer.wait()  # the failed save is not waited on again
  with pytest.raises(SaveError, match=r"cannot write checkpoints here \(No such file or directory\)") as refused:
    Checkpointer(directory, save_every=1)
  assert refused.value.filename == str(directory)
