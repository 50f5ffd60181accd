"""Mesh construction, the logical-axis rules, constrain and per-host batch assembly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from dreamactor_jax.configs import base
from dreamactor_jax.parallel import constrain, global_batch, make_mesh, make_plan, mesh_shape
from dreamactor_jax.parallel.mesh import launched_process_count
from dreamactor_jax.parallel.rules import ACTIVATION_AXES, WEIGHT_AXES, rules_from_config


def test_mesh_shape_fills_one_axis():
  assert mesh_shape({"fsdp": -1}, 8) == (1, 8, 1, 1)
  assert mesh_shape({"data": 2, "fsdp": 1, "context": -1, "tensor": 2}, 8) == (2, 1, 2, 2)
  assert mesh_shape({"data": 2, "fsdp": 2, "context": 2}, 8) == (2, 2, 2, 1)
  assert mesh_shape(dict(base.get_config("tiny").mesh), 256) == (1, 256, 1, 1)


@pytest.mark.parametrize("sizes, message", [
    ({"context": 3, "fsdp": -1}, r"mesh.context=3 does not divide 8 devices"),
    ({"fsdp": 4, "tensor": 4, "context": -1}, r"mesh fsdp=4 x tensor=4 \(16 devices\) does not divide 8 devices"),
    ({"fsdp": -1, "context": -1}, r"only one mesh axis may be -1, got mesh.fsdp=-1 and mesh.context=-1"),
    ({"fsdp": 2, "context": 2}, r"mesh axes multiply to 4 but there are 8 devices; set one axis to -1"),
    ({"fsdp": 0}, r"mesh.fsdp=0: expected a positive size or -1"),
    ({"sequence": 2}, r"unknown mesh axes \['sequence'\]"),
])
def test_mesh_shape_errors(sizes, message):
  with pytest.raises(ValueError, match=message):
    mesh_shape(sizes, 8)


def test_launched_process_count():
  assert launched_process_count({}) == 1
  assert launched_process_count({"JAX_NUM_PROCESSES": "4"}) == 4
  assert launched_process_count({"SLURM_NTASKS": "16"}) == 16
  assert launched_process_count({"TPU_WORKER_HOSTNAMES": "10.0.0.1,10.0.0.2"}) == 2
  assert launched_process_count({"TPU_WORKER_HOSTNAMES": "localhost"}) == 1


def test_config_rules_name_every_logical_axis():
  # The one table covers exactly the logical names models use, for every config file.
  from dreamactor_jax.configs import stage1, stage2

  for config in (base.get_config("tiny"), stage1.get_config("14b"), stage2.get_config("14b")):
    assert sorted(config.parallel.rules) == sorted(WEIGHT_AXES + ACTIVATION_AXES)
    assert rules_from_config(config.parallel.rules)["embed"] == ("fsdp", "context")


def test_rules_name_mesh_axes():
  with pytest.raises(ValueError, match=r"parallel.rules.tokens=\('ctx',\) names unknown mesh axes \['ctx'\]"):
    rules_from_config({"tokens": ("ctx",)})
  assert rules_from_config({"tokens": "context", "kv": None, "batch": ["data", "fsdp"]}) == {
      "tokens": ("context",), "kv": (), "batch": ("data", "fsdp")}


def test_constrain_without_plan_is_identity():
  x = jnp.arange(6.0).reshape(2, 3)
  assert constrain(x, ("batch", "tokens")) is x


def _check_mesh_and_specs():
  mesh = make_mesh({"fsdp": 2, "context": 2, "tensor": -1})
  assert dict(mesh.shape) == {"data": 1, "fsdp": 2, "context": 2, "tensor": 2}
  assert mesh.axis_types == (AxisType.Auto,) * 4
  plan = make_plan({"fsdp": 2, "context": 2, "tensor": -1}, base.get_config("tiny").parallel)
  assert plan.platform == "cpu" and plan.sequence_parallel == "ulysses"
  # Size-1 axes (data) disappear; a mesh axis is used once per tensor.
  assert plan.spec(("batch", "tokens", "act_embed")) == P("fsdp", "context", None)
  assert plan.spec(("layers", "embed", "heads")) == P(None, ("fsdp", "context"), "tensor")
  assert plan.spec(("embed", "embed")) == P(("fsdp", "context"), None)
  assert plan.axis_size("embed") == 4 and plan.axis_size("kv") == 1
  with pytest.raises(ValueError, match=r"no rule for logical axis 'vocab' in parallel.rules"):
    plan.spec(("vocab",))

  @jax.jit
  def f(x):
    with plan.activate():
      return constrain(x * 2, ("batch", "tokens", None))

  out = f(jnp.ones((4, 8, 3)))
  assert out.sharding.is_equivalent_to(jax.NamedSharding(plan.mesh, P("fsdp", "context", None)), 3)
  assert [shard.data.shape for shard in out.addressable_shards] == [(2, 4, 3)] * 8
  return True


def test_mesh_and_specs(on_8_devices):
  assert on_8_devices(_check_mesh_and_specs)


def _check_global_batch():
  plan = make_plan({"data": 2, "fsdp": 2, "context": 2}, base.get_config("tiny").parallel)
  local = {"latents": np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5), "video_id": np.array(list("abcd"))}
  batch = global_batch(local, plan)
  assert batch["latents"].sharding.spec == P(("data", "fsdp"), None, None)
  np.testing.assert_array_equal(batch["latents"], local["latents"])
  assert [shard.data.shape for shard in batch["latents"].addressable_shards] == [(1, 3, 5)] * 8
  assert batch["video_id"].tolist() == list("abcd")
  with pytest.raises(ValueError, match=r"global batch 6 \('latents': 6 per host x 1 hosts\) is not divisible by "
                                       r"mesh axes \('data', 'fsdp'\) of size 4 \(parallel.rules.batch\)"):
    global_batch({"latents": np.zeros((6, 2), np.float32)}, plan)
  return True


def test_global_batch(on_8_devices):
  assert on_8_devices(_check_global_batch)
