"""The `motion_cache` layout equals a full-canvas forward in which motion queries see only motion keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from conftest import assert_close, numpy_random_model
from dreamactor_jax.models import DiTConfig, WanDiT, attention
from dreamactor_jax.models import dit as dit_module

# Canvas latents [B, F, H, 2W, C]: 3 frames, 6 x (10 + 10) latents -> a token grid of 3 x 3 x (5 + 5).
BATCH, FRAMES, HEIGHT, HALF = 2, 3, 6, 10


def make_model(variant: str, **overrides) -> WanDiT:
  image = {"in_channels": 36, "image_dim": 8} if variant == "i2v" else {}
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "num_layers": 3, **image, **overrides})
  return numpy_random_model(lambda: WanDiT(config, rngs=nnx.Rngs(0)), seed=1)


def make_inputs(config: DiTConfig, seed: int = 2) -> dict:
  keys = jax.random.split(jax.random.key(seed), 3)
  inputs = {
      "canvas": jax.random.normal(keys[0], (BATCH, FRAMES, HEIGHT, 2 * HALF, config.in_channels)),
      "timestep": jnp.array([40.0, 730.0]),
      "text": jax.random.normal(keys[1], (BATCH, 6, config.text_dim)),
      "image_context": None,
  }
  if config.image_dim:
    inputs["image_context"] = jax.random.normal(keys[2], (BATCH, 5, config.image_dim))
  return inputs


def motion_cache_forward(model: WanDiT, canvas, timestep, text, image_context) -> jax.Array:
  """The motion_cache layout: encode the right half once, then run the left half against the cache."""
  cache = model.encode_motion(canvas[:, :, :, HALF:], text, timestep=timestep, image_context=image_context)
  return model(canvas[:, :, :, :HALF], timestep, text, image_context=image_context, motion=cache)


def masked_full_forward(model: WanDiT, canvas, timestep, text, image_context, monkeypatch) -> jax.Array:
  """Reference: the plain full-canvas forward, its self-attention biased so motion queries see only motion keys."""
  grid_width = 2 * HALF // 2
  tokens = FRAMES * (HEIGHT // 2) * grid_width
  is_motion = (jnp.arange(tokens) % grid_width) >= grid_width // 2  # tokens ordered F, H, W
  bias = jnp.where(is_motion[:, None] & ~is_motion[None, :], -1e30, 0.0)  # [Lq, Lk]

  def masked_attention(q, k, v, **kwargs):
    if q.shape[1] == k.shape[1] == tokens:  # self-attention over the canvas (cross-attention reads text)
      return attention(q, k, v, bias=bias, implementation="xla")
    return attention(q, k, v, **kwargs)

  graphdef, state = nnx.split(model)
  with monkeypatch.context() as patch:
    patch.setattr(dit_module, "attention", masked_attention)
    out = jax.jit(lambda state: nnx.merge(graphdef, state)(canvas, timestep, text, image_context=image_context))(state)
  return out[:, :, :, :HALF]


@pytest.mark.parametrize("variant, implementation", [("t2v", "blockwise"), ("i2v", "auto")])
def test_matches_masked_full_canvas_under_jit(variant, implementation, monkeypatch):
  model = make_model(variant, attention=implementation)  # blockwise: query and key lengths differ
  inputs = make_inputs(model.config)
  graphdef, state = nnx.split(model)
  jitted = jax.jit(lambda state, inputs: motion_cache_forward(nnx.merge(graphdef, state), **inputs))
  ours = np.asarray(jitted(state, inputs))
  reference = np.asarray(masked_full_forward(model, **inputs, monkeypatch=monkeypatch))
  assert ours.shape == (BATCH, FRAMES, HEIGHT, HALF, 16)
  assert_close(ours, reference, rel=1e-5)
  # The mask matters: the unmasked full forward's left half differs by over 10x the tolerance.
  unmasked = np.asarray(model(inputs["canvas"], inputs["timestep"], inputs["text"],
                              image_context=inputs["image_context"]))[:, :, :, :HALF]
  assert np.abs(unmasked - reference).max() > 1e-4 * np.abs(reference).max()


def test_gradients_match_masked_full_canvas(monkeypatch):
  """Gradients flow through both passes (the cache's keys and values carry half of every self-attention's
  keys), with adapters and remat, as training needs."""
  model = make_model("i2v", remat="full", lora_rank=4, lora_targets=("ffn", "self_attn"))  # nonzero adapters
  inputs = make_inputs(model.config, seed=4)
  weights = jax.random.normal(jax.random.key(5), (BATCH, FRAMES, HEIGHT, HALF, 16))
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(forward, params, **extra):
    return jnp.sum(forward(nnx.merge(graphdef, params), **inputs, **extra) * weights)

  ours = jax.jit(jax.grad(lambda params: loss(motion_cache_forward, params)))(params)
  reference = jax.grad(lambda params: loss(masked_full_forward, params, monkeypatch=monkeypatch))(params)
  flat_ours, flat_ref = nnx.to_flat_state(ours), dict(nnx.to_flat_state(reference))
  assert {path for path, _ in flat_ours} == set(flat_ref)
  for path, grad in flat_ours:
    assert_close(grad[...], np.asarray(flat_ref[path][...]), rel=1e-5)


def test_rejects_a_cache_of_another_grid():
  model = make_model("t2v", num_layers=2)
  inputs = make_inputs(model.config)
  cache = nnx.eval_shape(lambda model: model.encode_motion(inputs["canvas"][:, :, :, HALF:], inputs["text"]), model)
  assert cache.k.shape == cache.v.shape == (2, BATCH, FRAMES * 3 * 5, 3, 16) and cache.grid == (3, 3, 5)
  with pytest.raises(ValueError, match=r"token grid \(3, 3, 4\)\) do not fit the motion cache of grid \(3, 3, 5\)"):
    model(inputs["canvas"][:, :, :, :8], inputs["timestep"], inputs["text"], motion=cache)


def test_step_flops_are_half_the_full_layout():
  """Per denoising step, motion_cache costs half the full canvas: every per-token cost halves and
  self-attention is L x 2L instead of 2L x 2L (plain Wan on the left half would be L x L)."""
  model = make_model("i2v")
  inputs = make_inputs(model.config)
  canvas, timestep, text, image = inputs["canvas"], inputs["timestep"], inputs["text"], inputs["image_context"]
  cache = nnx.eval_shape(lambda model: model.encode_motion(canvas[:, :, :, HALF:], text, image_context=image), model)
  graphdef, state = nnx.split(model)

  def flops(fn, *args):
    return jax.jit(fn).lower(state, *args).compile().cost_analysis()["flops"]

  full = flops(lambda s, x: nnx.merge(graphdef, s)(x, timestep, text, image_context=image), canvas)
  step = flops(lambda s, x, c: nnx.merge(graphdef, s)(x, timestep, text, image_context=image, motion=c),
               canvas[:, :, :, :HALF], cache)
  assert 0.45 < step / full < 0.55, step / full


@pytest.mark.parametrize("layout", ["motion_cache", "animate2"])
def test_a_cache_of_fewer_samples_serves_a_batch_that_repeats_them(layout):
  """One driving pass serves both guidance branches: a batch-1 cache gives what it gives tiled to the batch."""
  model = make_model("i2v", layout=layout, unconditional_skip_layers=(1,))
  inputs = make_inputs(model.config)
  latents, driving = inputs["canvas"][:, :, :, :HALF], inputs["canvas"][:1, :, :, HALF:]
  if layout == "animate2":  # a leading reference frame, then one frame per driving frame
    latents = jnp.concatenate([latents[:, :1], latents], axis=1)
  cache = model.encode_motion(driving, inputs["text"][:1], image_context=inputs["image_context"][:1])
  assert cache.k.shape[1] == 1
  tiled = jax.tree.map(lambda x: jnp.concatenate([x, x], axis=1), cache)
  step = lambda motion: model(latents, inputs["timestep"], inputs["text"], image_context=inputs["image_context"],
                              motion=motion, unconditional=jnp.array([False, True]))
  assert_close(step(cache), np.asarray(step(tiled)), rel=1e-6)
  three = lambda x: jnp.concatenate([x, x[:1]])
  with pytest.raises(ValueError, match=r"hold \[num_layers=3, a divisor of B=3, ...\]"):
    model(three(latents), three(inputs["timestep"]), three(inputs["text"]), image_context=three(inputs["image_context"]),
          motion=tiled)
