"""A training checkpoint saved on one mesh restores onto another (parameters and AdamW state)."""

import tempfile

import jax
import numpy as np
from flax import nnx

from dreamactor_jax.configs import base
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.parallel import make_plan
from dreamactor_jax.training.checkpointing import Checkpointer, abstract_like
from dreamactor_jax.training.optimizer import make_optimizer
from dreamactor_jax.training.step import init_train_state


def _check_restore_on_another_mesh():
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "num_heads": 4, "in_channels": 36})
  optimizer = make_optimizer(base.get_config("tiny").optimizer)
  rules = base.get_config("tiny").parallel
  saved_on, restored_on = make_plan({"fsdp": 8}, rules), make_plan({"fsdp": 2, "context": 2, "tensor": 2}, rules)
  graphdef, state = init_train_state(WanDiT(config, rngs=nnx.Rngs(3)), optimizer)
  state = jax.device_put(state, saved_on.param_shardings(state))
  with tempfile.TemporaryDirectory() as folder:
    checkpointer = Checkpointer(folder, save_every=1, async_save=False)
    checkpointer.save(1, {"trainable": state.params, "opt_state": state.opt_state, "rng": jax.random.key(0)})
    target = restored_on.param_shardings(state)
    restored = checkpointer.restore(1, {"trainable": abstract_like(state.params, target.params),
                                        "opt_state": abstract_like(state.opt_state, target.opt_state)})
  for ours, saved, sharding in zip(jax.tree.leaves(restored["trainable"]), jax.tree.leaves(state.params),
                                   jax.tree.leaves(target.params)):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(saved))
    assert ours.sharding == sharding, (ours.sharding, sharding)
  return True


def test_restore_on_another_mesh(on_8_devices):
  assert on_8_devices(_check_restore_on_another_mesh)
