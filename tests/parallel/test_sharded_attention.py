"""Ulysses and ring attention on 8 simulated devices equal one-device attention, forward and
gradients, for every attention layout of the in-context model: self-attention over the canvas,
the motion_cache layout (generated queries attend to their own keys plus cached motion keys of
another length; motion queries to motion keys only) and cross-attention to unsplit context.
Token counts divide neither the context size nor anything else (37, 11, 5 tokens)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.configs import base
from dreamactor_jax.models import attention
from dreamactor_jax.parallel import make_plan

MESHES = {"fsdp2_context4": {"fsdp": 2, "context": 4}, "data2_tensor2_context2": {"data": 2, "tensor": 2, "context": 2}}


def _layouts(q_gen, q_motion, k_gen, k_motion, v_gen, v_motion, k_text, v_text):
  """Every attention call of the in-context DiT, returning all outputs."""
  canvas = attention(q_gen, k_gen, v_gen)
  generated = attention(q_gen, jnp.concatenate([k_gen, k_motion], 1), jnp.concatenate([v_gen, v_motion], 1))
  motion = attention(q_motion, k_motion, v_motion)
  cross = attention(q_gen, k_text, v_text, kv_tokens="kv")
  return canvas, generated, motion, cross


def _inputs(heads):
  keys = iter(jax.random.split(jax.random.key(0), 9))
  shapes = [(2, 37, heads, 8), (2, 11, heads, 8), (2, 37, heads, 8), (2, 11, heads, 8), (2, 37, heads, 8),
            (2, 11, heads, 8), (2, 5, heads, 8), (2, 5, heads, 8)]
  return [jax.random.normal(next(keys), shape) * 2 for shape in shapes]


def _loss_and_grads(inputs, plan):
  weights = [jnp.cos(jnp.arange(np.prod(x.shape)).reshape(x.shape)) for x in _layouts(*inputs)]

  def loss(*inputs):
    if plan is None:
      outs = _layouts(*inputs)
    else:
      with plan.activate():
        outs = _layouts(*inputs)
    return sum((out * w).sum() for out, w in zip(outs, weights)), outs

  return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(inputs))), has_aux=True))(*inputs)


_reference = {}


def _check_matches_one_device(mesh, strategy):
  inputs = _inputs(heads=4)
  if not _reference:
    _reference["result"] = _loss_and_grads(inputs, None)
  (ref_loss, ref_outs), ref_grads = _reference["result"]
  plan = make_plan(mesh, {**base.get_config("tiny").parallel, "sequence_parallel": strategy})
  (loss, outs), grads = _loss_and_grads(inputs, plan)
  for ours, ref in zip((*outs, *grads), (*ref_outs, *ref_grads)):
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-5 * float(np.abs(ref).max()), rtol=0)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  return True


@pytest.mark.parametrize("strategy", ["ulysses", "ring"])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_matches_one_device(on_8_devices, mesh, strategy):
  assert on_8_devices(_check_matches_one_device, MESHES[mesh], strategy)


def _check_uneven_errors():
  parallel = base.get_config("tiny").parallel
  q = jnp.ones((2, 16, 3, 8))
  plan = make_plan({"fsdp": 2, "context": 4}, parallel)
  with plan.activate():
    with pytest.raises(ValueError, match=r"parallel.sequence_parallel='ulysses' splits the 3 heads per device over "
                                         r"context=4, which does not divide them; use 'ring' or another mesh"):
      attention(q, q, q)
    with pytest.raises(ValueError, match=r"batch size 3 is not divisible by mesh axes \('fsdp',\) of size 2 "
                                         r"\(parallel.rules.batch\)"):
      attention(q[:1].repeat(3, 0), q[:1].repeat(3, 0), q[:1].repeat(3, 0))
  plan = make_plan({"tensor": 2, "context": 4}, parallel)
  with plan.activate():
    with pytest.raises(ValueError, match=r"head count 3 is not divisible by mesh axes \('tensor',\) of size 2"):
      attention(q, q, q)
  return True


def test_uneven_errors(on_8_devices):
  assert on_8_devices(_check_uneven_errors)
