"""The Wan-Animate-2 frame-aligned attention and the animate2 DiT on 8 simulated devices (context
axis split 4 ways, Ulysses and ring) equal one device. Frames of 15 and 5 tokens: no context size
divides them, so frame boundaries fall inside device blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base
from dreamactor_jax.models import DiTConfig, WanDiT, attention
from dreamactor_jax.models.attention import frame_aligned_attention
from dreamactor_jax.parallel import make_plan

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
