"""The tiny in-context DiT on 8 simulated devices: forward output and parameter gradients equal
one device's for every strategy and mesh shape, and the sharded train step equals the one-device
step (full fine-tuning, the in-context objective) or trains only the LoRA adapters (frozen base)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.parallel import make_plan
from dreamactor_jax.training.latent_batch import LatentBatch
from dreamactor_jax.training.objective import animation_loss
from dreamactor_jax.training.optimizer import make_optimizer
from dreamactor_jax.training.step import (abstract_train_state, batch_shardings, create_train_state, jit_train_step,
                                          train_step)

MESHES = {"fsdp2_context4": {"fsdp": 2, "context": 4}, "data2_tensor2_context2": {"data": 2, "tensor": 2, "context": 2}}
# I2V-shaped (36 input channels, CLIP branch) with 4 heads of 12 so that tensor x context = 4
# divides them; 3 latent frames of 6x10 = 45 tokens, which no context size divides.
CONFIG = DiTConfig.from_mapping({**base.get_config("tiny").model, "num_heads": 4, "in_channels": 36, "image_dim": 24})


def _make_model():
  return WanDiT(CONFIG, rngs=nnx.Rngs(0))


def _batch():
  keys = jax.random.split(jax.random.key(1), 4)
  return {"latents": jax.random.normal(keys[0], (2, 3, 6, 10, 16)),
          "condition": jax.random.normal(keys[1], (2, 3, 6, 10, 20)),
          "text": jax.random.normal(keys[2], (2, 7, 20)),
          "image": jax.random.normal(keys[3], (2, 5, 24))}


def _forward_and_grads(graphdef, params, plan):
  batch = _batch()
  inputs = jnp.concatenate([batch["latents"], batch["condition"]], -1)
  weights = jnp.cos(jnp.arange(np.prod(batch["latents"].shape))).reshape(batch["latents"].shape)

  def loss(params):
    def run():
      out = nnx.merge(graphdef, params)(inputs, jnp.array([100.0, 800.0]), batch["text"], image_context=batch["image"])
      return (out * weights).sum(), out
    if plan is None:
      return run()
    with plan.activate():
      return run()

  shardings = None if plan is None else plan.param_shardings(params)
  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True), in_shardings=(shardings,))(params)
  return out, grads


_reference = {}


def _check_dit_matches_one_device(mesh, strategy):
  graphdef, params = nnx.split(_make_model())
  if "dit" not in _reference:
    _reference["dit"] = _forward_and_grads(graphdef, params, None)
  ref_out, ref_grads = _reference["dit"]
  plan = make_plan(mesh, {**base.get_config("tiny").parallel, "sequence_parallel": strategy})
  out, grads = _forward_and_grads(graphdef, params, plan)
  np.testing.assert_allclose(out, ref_out, atol=1e-5 * float(np.abs(ref_out).max()), rtol=0)
  flat, ref_flat = nnx.to_flat_state(grads), dict(nnx.to_flat_state(ref_grads))
  for path, grad in flat:
    ref = ref_flat[path][...]
    np.testing.assert_allclose(grad[...], ref, atol=1e-5 * float(np.abs(ref).max()) + 1e-9, rtol=0,
                               err_msg="/".join(map(str, path)))
  return True


@pytest.mark.parametrize("strategy", ["ulysses", "ring"])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_dit_matches_one_device(on_8_devices, mesh, strategy):
  assert on_8_devices(_check_dit_matches_one_device, MESHES[mesh], strategy)


def _check_motion_cache_layout(mesh, strategy):
  # The motion_cache layout: the motion half encoded once (its keys/values cached per layer), the
  # left half's queries attending to their own keys plus the cached ones (another length). Halves of
  # 3 x 3 x 3 = 27 tokens, which no context size divides.
  graphdef, params = nnx.split(_make_model())
  batch = _batch()
  canvas = jnp.concatenate([batch["latents"], batch["condition"]], -1)[:, :, :, :6]
  canvas = jnp.concatenate([canvas, canvas[:, :, ::-1] * 0.5], axis=3)  # [B, F, H, 2 x 6, 36]
  weights = jnp.cos(jnp.arange(2 * 3 * 6 * 6 * 16)).reshape(2, 3, 6, 6, 16)

  def loss(params, plan):
    def run():
      model = nnx.merge(graphdef, params)
      cache = model.encode_motion(canvas[:, :, :, 6:], batch["text"], image_context=batch["image"])
      out = model(canvas[:, :, :, :6], jnp.array([100.0, 800.0]), batch["text"], image_context=batch["image"],
                  motion=cache)
      return (out * weights).sum(), out
    if plan is None:
      return run()
    with plan.activate():
      return run()

  grad = jax.value_and_grad(loss, has_aux=True)
  if "motion_cache" not in _reference:
    _reference["motion_cache"] = jax.jit(grad, static_argnums=1)(params, None)
  (_, ref_out), ref_grads = _reference["motion_cache"]
  plan = make_plan(mesh, {**base.get_config("tiny").parallel, "sequence_parallel": strategy})
  (_, out), grads = jax.jit(grad, static_argnums=1, in_shardings=(plan.param_shardings(params),))(params, plan)
  np.testing.assert_allclose(out, ref_out, atol=1e-5 * float(np.abs(ref_out).max()), rtol=0)
  for (path, got), (_, want) in zip(nnx.to_flat_state(grads), nnx.to_flat_state(ref_grads)):
    np.testing.assert_allclose(got[...], want[...], atol=1e-5 * float(np.abs(want[...]).max()) + 1e-9, rtol=0,
                               err_msg="/".join(map(str, path)))
  return True


@pytest.mark.parametrize("mesh, strategy", [("fsdp2_context4", "ulysses"), ("data2_tensor2_context2", "ring")])
def test_motion_cache_layout_matches_one_device(on_8_devices, mesh, strategy):
  assert on_8_devices(_check_motion_cache_layout, MESHES[mesh], strategy)


def _check_sampling_layout():
  # The sampler's layout: every device on context (8 > 4 heads: ring), the CFG batch of 2 whole on
  # each device, bf16 weights replicated across nothing (ZeRO-3 over context), forward only.
  graphdef, params = nnx.split(_make_model())
  batch = _batch()
  inputs = (jnp.concatenate([batch["latents"], batch["condition"]], -1), jnp.array([500.0, 500.0]), batch["text"])
  plan = make_plan({"context": 8}, {**base.get_config("tiny").parallel, "sequence_parallel": "ring"})

  def velocity(params, latents, timestep, text, image, plan):
    if plan is None:
      return nnx.merge(graphdef, params)(latents, timestep, text, image_context=image)
    with plan.activate():
      return nnx.merge(graphdef, params)(latents, timestep, text, image_context=image)

  ref = jax.jit(velocity, static_argnums=5)(params, *inputs, batch["image"], None)
  out = jax.jit(velocity, static_argnums=5, in_shardings=(plan.param_shardings(params),) + (None,) * 4)(
      params, *inputs, batch["image"], plan)
  np.testing.assert_allclose(out, ref, atol=1e-5 * float(np.abs(ref).max()), rtol=0)
  return True


def test_sampling_layout_matches_one_device(on_8_devices):
  assert on_8_devices(_check_sampling_layout)


def _latent_batch():
  """A LatentBatch of the tiny canvas: reference given at frame 0 on the left, motion half given."""
  batch = _batch()
  mask = jnp.zeros((2, 3, 6, 10, 4)).at[:, :, :, 5:].set(1.0).at[:, 0, :, :5].set(1.0)
  return LatentBatch(target=batch["latents"], condition=batch["condition"][..., :16], mask=mask, text=batch["text"],
                     image=batch["image"])


def _check_train_step():
  plan = make_plan(MESHES["data2_tensor2_context2"], {**base.get_config("tiny").parallel, "sequence_parallel": "ring"})
  batch, key = _latent_batch(), jax.random.key(7)
  loss_fn = functools.partial(animation_loss, sigmas={})  # the in-context objective, generated region
  # Plain SGD so the comparison with one device is exact up to float rounding.
  sgd = optax.apply_if_finite(optax.sgd(0.1), 3)  # the trainer's optimizers skip non-finite steps
  graphdef, abstract = abstract_train_state(_make_model, sgd)
  shardings = plan.param_shardings(abstract)
  one_device_state = create_train_state(_make_model, sgd)
  initial = jax.device_get(one_device_state.params)  # numpy: the sharded step donates its input
  ref_state, ref_metrics = jax.jit(lambda s, b, k: train_step(graphdef, s, b, k, optimizer=sgd, plan=None,
                                                              loss_fn=loss_fn))(one_device_state, batch, key)
  state = jax.device_put(one_device_state, shardings)
  step = jit_train_step(graphdef, sgd, plan, shardings, batch_shardings(batch, plan), loss_fn=loss_fn)
  state, metrics = step(state, batch, key)
  np.testing.assert_allclose(metrics.loss, ref_metrics.loss, rtol=1e-5)
  np.testing.assert_allclose(metrics.grad_norm, ref_metrics.grad_norm, rtol=1e-5)
  np.testing.assert_allclose(metrics.aux.per_sample, ref_metrics.aux.per_sample, rtol=1e-5)
  assert int(state.step) == 1
  for (path, new), (_, ref), (_, old) in zip(nnx.to_flat_state(state.params), nnx.to_flat_state(ref_state.params),
                                             nnx.to_flat_state(initial)):
    assert new[...].sharding.is_equivalent_to(plan.sharding(new.get_metadata()["out_sharding"]), new[...].ndim)
    np.testing.assert_allclose(new[...] - old[...], ref[...] - old[...], atol=1e-6, err_msg="/".join(map(str, path)))

  # The paper's recipe: LoRA on the FFNs, base frozen, the trainer's AdamW; state born sharded.
  optimizer_config = base.get_config("tiny").optimizer
  optimizer_config.warmup_steps = 0
  adamw = make_optimizer(optimizer_config)
  make_lora_model = lambda: WanDiT(dataclasses.replace(CONFIG, lora_rank=4), rngs=nnx.Rngs(0))
  graphdef, abstract = abstract_train_state(make_lora_model, adamw, nnx.LoRAParam)
  assert {path[:2] for path, _ in nnx.to_flat_state(abstract.params)} == {("blocks", "ffn")}
  shardings = plan.param_shardings(abstract)
  state = jax.jit(lambda: create_train_state(make_lora_model, adamw, nnx.LoRAParam), out_shardings=shardings)()
  before = jax.device_get((state.params, state.frozen))
  step = jit_train_step(graphdef, adamw, plan, shardings, batch_shardings(batch, plan), loss_fn=loss_fn)
  for _ in range(2):  # B starts at 0, so A moves from the second step
    state, metrics = step(state, batch, key)
  assert np.isfinite(metrics.loss) and metrics.grad_norm > 0
  for (_, new), (_, old) in zip(nnx.to_flat_state(state.frozen), nnx.to_flat_state(before[1])):
    np.testing.assert_array_equal(new[...], old[...])
  changed = [float(np.abs(new[...] - old[...]).max()) for (_, new), (_, old) in
             zip(nnx.to_flat_state(state.params), nnx.to_flat_state(before[0]))]
  assert min(changed) > 0
  return True


def test_train_step(on_8_devices):
  assert on_8_devices(_check_train_step)
