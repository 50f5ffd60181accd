"""The Wan-Animate-2 frame-aligned attention and the animate2 DiT on 8 simulated devices (context
axis split 4 ways, Ulysses and ring) equal one device, and so does its training step. Frames of 15
and 5 tokens: no context size divides them, so frame boundaries fall inside device blocks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from dreamactor_jax.models import DiTConfig, WanDiT, attention
from dreamactor_jax.models.attention import frame_aligned_attention
from dreamactor_jax.parallel import make_plan
from dreamactor_jax.training.latent_batch import LatentBatch
from dreamactor_jax.training.objective import animation_loss
from dreamactor_jax.training.step import (abstract_train_state, batch_shardings, create_train_state, jit_train_step,
                                          train_step)

MESHES = {"fsdp2_context4": {"fsdp": 2, "context": 4}, "data2_tensor2_context2": {"data": 2, "tensor": 2, "context": 2}}
# 4 generation frames of 5 tokens, 3 driving frames; 4 heads (tensor x context divides them).
SHAPES = [(2, 20, 4, 8)] * 3 + [(2, 15, 4, 8)] * 2


def _attentions(q, k, v, frame_k, frame_v):
  plain = frame_aligned_attention(q, k, v, frame_k, frame_v)
  biased = frame_aligned_attention(q, k, v, frame_k, frame_v, key_log_scale=-1.3)
  return plain, biased, *attention(q, k, v, return_lse=True)


def _loss_and_grads(plan):
  keys = jax.random.split(jax.random.key(0), len(SHAPES))
  inputs = [jax.random.normal(key, shape) * 2 for key, shape in zip(keys, SHAPES)]

  def loss(*inputs):
    if plan is None:
      outs = _attentions(*inputs)
    else:
      with plan.activate():
        outs = _attentions(*inputs)
    return sum((out * jnp.cos(jnp.arange(out.size)).reshape(out.shape)).sum() for out in outs), outs

  return jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(inputs))), has_aux=True))(*inputs)


_reference = {}


def _check_attention_matches_one_device(mesh, strategy):
  if "attention" not in _reference:
    _reference["attention"] = _loss_and_grads(None)
  (_, ref_outs), ref_grads = _reference["attention"]
  plan = make_plan(mesh, {**base.get_config("tiny").parallel, "sequence_parallel": strategy})
  (_, outs), grads = _loss_and_grads(plan)
  for ours, ref in zip((*outs, *grads), (*ref_outs, *ref_grads)):
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-5 * float(np.abs(ref).max()), rtol=0)
  return True


@pytest.mark.parametrize("strategy", ["ulysses", "ring"])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_frame_aligned_attention_matches_one_device(on_8_devices, mesh, strategy):
  assert on_8_devices(_check_attention_matches_one_device, MESHES[mesh], strategy)


# I2V-shaped, 4 heads of 12; driving latents 2 x 6 x 10 (token grid 2 x 3 x 5), generation 3 frames.
CONFIG = DiTConfig.from_mapping({**base.get_config("tiny").model, "num_heads": 4, "in_channels": 36, "image_dim": 24,
                                 "num_layers": 3, "layout": "animate2", "motion_timestep": 1.0,
                                 "unconditional_skip_layers": (1,), "key_log_scale": -1.3, "text_len": 9})


def _animate(plan):
  model = WanDiT(CONFIG, rngs=nnx.Rngs(0))
  keys = iter(jax.random.split(jax.random.key(1), 6))
  driving = jax.random.normal(next(keys), (2, 2, 6, 10, 36))
  latents = jax.random.normal(next(keys), (2, 3, 6, 10, 36))
  text_d, text = (jax.random.normal(next(keys), (2, 7, 20)) for _ in range(2))
  clip_d, clip_r = (jax.random.normal(next(keys), (2, 5, 24)) for _ in range(2))

  @nnx.jit
  def run(model):
    cache = model.encode_motion(driving, text_d, image_context=clip_d)
    return model(latents, jnp.array([100.0, 800.0]), text, image_context=clip_r, motion=cache,
                 unconditional=jnp.array([False, True]))

  if plan is None:
    return run(model)
  with plan.activate():
    return run(model)


def _check_dit_matches_one_device(strategy):
  if "dit" not in _reference:
    _reference["dit"] = _animate(None)
  ref = _reference["dit"]
  out = _animate(make_plan(MESHES["fsdp2_context4"], {**base.get_config("tiny").parallel,
                                                       "sequence_parallel": strategy}))
  np.testing.assert_allclose(out, ref, atol=1e-5 * float(np.abs(ref).max()), rtol=0)
  return True


@pytest.mark.parametrize("strategy", ["ulysses", "ring"])
def test_animate2_dit_matches_one_device(on_8_devices, strategy):
  assert on_8_devices(_check_dit_matches_one_device, strategy)


def _check_train_step_matches_one_device():
  # The animate2 training step (driving and generation passes in one loss) sharded over data x tensor x
  # context (ring) equals one device: loss, gradient norm and every parameter's update (plain SGD).
  plan = make_plan(MESHES["data2_tensor2_context2"], {**base.get_config("tiny").parallel, "sequence_parallel": "ring"})
  keys = iter(jax.random.split(jax.random.key(2), 7))
  mask = jnp.zeros((2, 3, 6, 10, 4)).at[:, 0].set(1.0)  # the reference frame given
  batch = LatentBatch(target=jax.random.normal(next(keys), (2, 3, 6, 10, 16)),
                      condition=jax.random.normal(next(keys), (2, 3, 6, 10, 16)), mask=mask,
                      text=jax.random.normal(next(keys), (2, 9, 20)), image=jax.random.normal(next(keys), (2, 5, 24)),
                      driving=jax.random.normal(next(keys), (2, 2, 6, 10, 16)),
                      driving_text=jax.random.normal(next(keys), (2, 9, 20)),
                      driving_image=jax.random.normal(next(keys), (2, 5, 24)))
  loss_fn = functools.partial(animation_loss, sigmas={}, layout="animate2")
  sgd = optax.apply_if_finite(optax.sgd(0.1), 3)  # the trainer's optimizers skip non-finite steps
  make_model = lambda: WanDiT(dataclasses.replace(CONFIG, attention="blockwise"), rngs=nnx.Rngs(0))
  graphdef, abstract = abstract_train_state(make_model, sgd)
  state = create_train_state(make_model, sgd)
  initial = jax.device_get(state.params)  # numpy: the sharded step donates its input
  ref_state, ref_metrics = jax.jit(lambda s, b, k: train_step(graphdef, s, b, k, optimizer=sgd, plan=None,
                                                              loss_fn=loss_fn))(state, batch, jax.random.key(7))
  shardings = plan.param_shardings(abstract)
  step = jit_train_step(graphdef, sgd, plan, shardings, batch_shardings(batch, plan), loss_fn=loss_fn)
  new_state, metrics = step(jax.device_put(state, shardings), batch, jax.random.key(7))
  np.testing.assert_allclose(metrics.loss, ref_metrics.loss, rtol=1e-5)
  np.testing.assert_allclose(metrics.grad_norm, ref_metrics.grad_norm, rtol=1e-5)
  for (path, new), (_, ref), (_, old) in zip(nnx.to_flat_state(new_state.params), nnx.to_flat_state(ref_state.params),
                                             nnx.to_flat_state(initial)):
    np.testing.assert_allclose(new[...] - old[...], ref[...] - old[...], atol=1e-6, err_msg="/".join(map(str, path)))
  return True


def test_animate2_train_step_matches_one_device(on_8_devices):
  assert on_8_devices(_check_train_step_matches_one_device)
