"""LoRA on the DiT: structure and axis names, fresh == base, merge/unmerge, LoRA-only gradients, config errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from conftest import assert_close, numpy_random_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.models.lora import lora_params, merge_lora, unmerge_lora, with_lora

ALL_GROUPS = ("ffn", "self_attn", "cross_attn_q", "cross_attn_out")


@pytest.fixture(scope="module")
def i2v_base() -> WanDiT:
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "in_channels": 36, "image_dim": 8})
  return numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)))


def inputs(config: DiTConfig, seed: int = 0) -> dict:
  keys = jax.random.split(jax.random.key(seed), 4)
  return {"latents": jax.random.normal(keys[0], (2, 3, 6, 10, config.in_channels)),
          "timestep": jnp.array([25.0, 640.0]), "text": jax.random.normal(keys[1], (2, 7, config.text_dim)),
          "image_context": jax.random.normal(keys[2], (2, 5, config.image_dim))}


# One compiled forward per model structure (eager calls would recompile the block scan each time).
forward = nnx.jit(lambda model, batch: model(**batch))


def random_lora(model: WanDiT, seed: int) -> WanDiT:
  """The model with every adapter drawn at random (B nonzero), so the adapters change the output."""
  rng = np.random.default_rng(seed)
  nnx.update(model, jax.tree.map(lambda x: jnp.asarray(0.2 * rng.standard_normal(x.shape), x.dtype),
                                 nnx.state(model, nnx.LoRAParam)))
  return model


def test_adapters_sit_in_the_stacked_blocks_with_axis_names(i2v_base):
  config = dataclasses.replace(i2v_base.config, lora_rank=4, lora_targets=("ffn", "cross_attn_q"),
                               param_dtype="bfloat16")
  state = nnx.state(nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0))), nnx.LoRAParam)
  found = {".".join(map(str, path)): (v.shape, v.dtype, v.get_metadata()["out_sharding"])
           for path, v in nnx.to_flat_state(state)}
  f32 = jnp.dtype("float32")  # adapters stay fp32 under a bf16 base (model.lora_dtype)
  assert found == {
      "blocks.ffn.up.lora_a": ((2, 48, 4), f32, ("layers", "embed", "lora")),
      "blocks.ffn.up.lora_b": ((2, 4, 40), f32, ("layers", "lora", "mlp")),
      "blocks.ffn.down.lora_a": ((2, 40, 4), f32, ("layers", "mlp", "lora")),
      "blocks.ffn.down.lora_b": ((2, 4, 48), f32, ("layers", "lora", "embed")),
      "blocks.cross_attn.q.lora_a": ((2, 48, 4), f32, ("layers", "embed", "lora")),
      "blocks.cross_attn.q.lora_b": ((2, 4, 48), f32, ("layers", "lora", "heads")),
  }


def test_fresh_adapters_keep_the_output_and_merge_matches(i2v_base):
  batch = inputs(i2v_base.config)
  plain = forward(i2v_base, batch)
  model = with_lora(i2v_base, rank=4, alpha=6.0, targets=ALL_GROUPS)
  assert model.config.lora_rank == 4 and model.config.lora_alpha == 6.0
  assert all(not np.asarray(v).any() for k, v in lora_params(model).items() if k.endswith("lora_b"))
  # B = 0: the base model's function. (Equal up to rounding: another program, which XLA may fuse and
  # order differently.)
  assert_close(forward(model, batch), plain, rel=1e-6)

  adapted = random_lora(model, seed=1)
  lora = lora_params(adapted)
  out = forward(adapted, batch)
  assert np.abs(out - plain).max() > 0.1 * np.abs(plain).max()
  merged = merge_lora(adapted)
  assert merged.config == dataclasses.replace(adapted.config, lora_rank=0, lora_alpha=None)
  assert model_params(merged).keys() == model_params(i2v_base).keys()
  assert_close(forward(merged, batch), np.asarray(out), rel=1e-5)

  # Inverse: the merged kernels minus the adapters give back the base, and the same function.
  again = unmerge_lora(merged, lora, adapted.config)
  restored, original = model_params(again), model_params(adapted)
  assert restored.keys() == original.keys()
  for key in original:
    np.testing.assert_allclose(restored[key], original[key], rtol=0, atol=1e-6, err_msg=key)
  assert_close(forward(again, batch), np.asarray(out), rel=1e-5)


def test_trainer_differentiates_only_the_adapters(i2v_base):
  model = random_lora(with_lora(i2v_base, rank=3, targets=("ffn",)), seed=2)
  batch = inputs(model.config, seed=3)
  base_before, lora_before = nnx.clone(nnx.state(model, nnx.Not(nnx.LoRAParam))), lora_params(model)

  def loss(model):
    return jnp.mean(jnp.square(model(**batch)))

  # A jitted train step over the split model: gradients of the adapters, the base closed over.
  graphdef, lora, frozen = nnx.split(model, nnx.LoRAParam, nnx.Param)
  grads = jax.jit(jax.grad(lambda lora: loss(nnx.merge(graphdef, lora, frozen))))(lora)
  flat_grads = {".".join(map(str, path)): g[...] for path, g in nnx.to_flat_state(grads)}
  assert flat_grads.keys() == lora_before.keys()
  assert all(np.abs(g).max() > 0 for g in flat_grads.values())

  # The same with NNX's filters: nnx.grad(argnums=nnx.DiffState(0, nnx.LoRAParam)) and an optimizer
  # over nnx.LoRAParam; a step moves the adapters only.
  @nnx.jit
  def train_step(model, optimizer):
    step_grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
    optimizer.update(model, step_grads)
    return step_grads

  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.LoRAParam)
  step_grads = train_step(model, optimizer)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), step_grads, grads)
  jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Not(nnx.LoRAParam)), base_before)
  for key, before in lora_before.items():
    np.testing.assert_allclose(lora_params(model)[key], before - 0.1 * flat_grads[key], rtol=1e-5, atol=1e-7)


def test_config_refuses_the_text_branch_and_bad_values(i2v_base):
  tiny = dict(base.get_config("tiny").model)
  for group in ("cross_attn_kv", "text_embed", "cross_attn_k"):
    with pytest.raises(ValueError, match=f"model.lora_targets: '{group}' would adapt the text branch"):
      DiTConfig.from_mapping({**tiny, "lora_rank": 4, "lora_targets": ("ffn", group)})
  with pytest.raises(ValueError, match=r"unknown group 'mlp'; choose from \['cross_attn_out', 'cross_attn_q', "
                     r"'ffn', 'self_attn'\]"):
    DiTConfig.from_mapping({**tiny, "lora_rank": 4, "lora_targets": ["mlp"]})
  with pytest.raises(ValueError, match="model.lora_rank=-1 must be >= 0"):
    DiTConfig.from_mapping({**tiny, "lora_rank": -1})
  with pytest.raises(ValueError, match="model.layout='canvas' is not one of 'full', 'motion_cache'"):
    DiTConfig.from_mapping({**tiny, "layout": "canvas"})
  assert DiTConfig.from_mapping({**tiny, "lora_targets": "ffn,self_attn"}).lora_targets == ("ffn", "self_attn")
  adapted = nnx.eval_shape(lambda: WanDiT(dataclasses.replace(i2v_base.config, lora_rank=2), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r"the model already has LoRA \(rank 2\); merge_lora it first"):
    with_lora(adapted, rank=2)
  with pytest.raises(ValueError, match="unmerge_lora takes a merged model without LoRA"):
    unmerge_lora(adapted, {}, adapted.config)
