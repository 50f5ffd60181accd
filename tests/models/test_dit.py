"""Parity of the NNX Wan2.1 DiT with diffusers' WanTransformer3DModel, and its structure."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax.configs import base
from conftest import assert_close, make_torch_dit, run_jax_dit, run_torch_dit, save_torch_dit, torch_dit_inputs
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.convert import load_torch_dit
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.models.dit import expand_input_channels


@pytest.mark.parametrize("variant, frames, height, width", [
    ("t2v", 3, 10, 14),
    ("t2v", 1, 6, 4),
    ("i2v", 2, 8, 12),
    ("i2v", 1, 4, 10),
])
def test_matches_diffusers(tmp_path, variant, frames, height, width):
  image_dim = 24 if variant == "i2v" else None
  torch_model = make_torch_dit(in_channels=36 if image_dim else 16, image_dim=image_dim)
  model, config = load_torch_dit(save_torch_dit(torch_model, tmp_path))
  assert (config.in_channels, config.image_dim, config.num_heads) == (torch_model.config.in_channels, image_dim, 3)
  inputs = torch_dit_inputs(torch_model, frames=frames, height=height, width=width)
  ref = run_torch_dit(torch_model, inputs)
  ours = run_jax_dit(model, inputs)
  assert ours.shape == ref.shape == (2, frames, height, width, 16)
  assert_close(ours, ref)


def test_matches_diffusers_other_sizes_and_remat(tmp_path):
  # head_dim 24 splits rope as 8/8/8, ffn wider than dim, 3 layers, out_channels != in_channels.
  torch_model = make_torch_dit(heads=2, head_dim=24, layers=3, ffn=72, in_channels=12, out_channels=8,
                               text_dim=10, freq_dim=16, seed=3)
  inputs = torch_dit_inputs(torch_model, batch=3, frames=4, height=6, width=8, text_len=9)
  ref = run_torch_dit(torch_model, inputs)
  for remat in ("none", "full", "dots_saveable"):
    model, _ = load_torch_dit(save_torch_dit(torch_model, tmp_path / remat), remat=remat)
    assert_close(run_jax_dit(model, inputs), ref)


def ti2v_timesteps(batch: int, grid: tuple[int, int, int], seed: int = 4):
  """Per-token timesteps `[B, L]` as Wan2.2 TI2V gives them (first latent frame 0, the rest one level
  per sample), plus a random spread so that a token mixed up with another shows."""
  import torch

  frames, height, width = grid
  level = torch.linspace(150.0, 900.0, batch)[:, None, None, None].expand(batch, frames, height, width).clone()
  level[:, 0] = 0.0
  spread = torch.rand(batch, frames, height, width, generator=torch.Generator().manual_seed(seed)) * 40.0
  return (level + spread * (level > 0)).flatten(1)


def test_per_token_timesteps_match_diffusers(tmp_path):
  # TI2V-shaped: channels in = out (the latents), no image branch; timestep [B, L] as diffusers'
  # expand_timesteps pipelines pass it. Grid 3 x 3 x 5 tokens, 2 heads of 24.
  torch_model = make_torch_dit(heads=2, head_dim=24, layers=2, ffn=56, in_channels=12, out_channels=12, seed=8)
  model, config = load_torch_dit(save_torch_dit(torch_model, tmp_path))
  assert (config.in_channels, config.out_channels, config.image_dim) == (12, 12, None)
  inputs = torch_dit_inputs(torch_model, batch=2, frames=3, height=6, width=10, text_len=7)
  inputs["timestep"] = ti2v_timesteps(2, (3, 3, 5))
  ref = run_torch_dit(torch_model, inputs)
  assert_close(run_jax_dit(model, inputs), ref)
  # a per-sample timestep is the per-token one with every token equal
  level = jnp.array([80.0, 640.0])
  latents, text = jnp.asarray(inputs["hidden_states"].numpy().transpose(0, 2, 3, 4, 1)), jnp.zeros((2, 7, 20))
  np.testing.assert_allclose(model(latents, jnp.repeat(level[:, None], 45, axis=1), text),
                             model(latents, level, text), rtol=1e-5, atol=1e-5)


def test_blockwise_attention_path_matches_diffusers(tmp_path):
  torch_model = make_torch_dit(seed=5)
  model, _ = load_torch_dit(save_torch_dit(torch_model, tmp_path), attention="blockwise")
  inputs = torch_dit_inputs(torch_model, frames=2, height=8, width=6)
  assert_close(run_jax_dit(model, inputs), run_torch_dit(torch_model, inputs))


def test_bf16_compute_stays_close(tmp_path):
  torch_model = make_torch_dit(seed=2)
  model, config = load_torch_dit(save_torch_dit(torch_model, tmp_path), dtype="bf16")
  assert config.param_dtype == config.dtype == "bfloat16"
  assert all(v.dtype == jnp.bfloat16 for v in model_params(model).values())
  inputs = torch_dit_inputs(torch_model)
  ours = run_jax_dit(model, inputs)
  assert ours.dtype == np.float32
  assert_close(ours, run_torch_dit(torch_model, inputs), rel=5e-2)


def test_expanded_input_channels_ignore_new_inputs(tmp_path):
  t2v, config = load_torch_dit(save_torch_dit(make_torch_dit(), tmp_path))
  params, wide_config = expand_input_channels(model_params(t2v), config, 36)
  wide, wide_config2 = load_torch_dit(tmp_path, in_channels=36)
  assert wide_config == wide_config2 and wide_config.in_channels == 36
  np.testing.assert_array_equal(model_params(wide)["patch_embed"], params["patch_embed"])
  latents = jax.random.normal(jax.random.key(0), (2, 2, 6, 8, 16))
  extra = jax.random.normal(jax.random.key(1), (2, 2, 6, 8, 20))
  text = jax.random.normal(jax.random.key(2), (2, 5, 20))
  timestep = jnp.array([100.0, 700.0])
  np.testing.assert_allclose(wide(jnp.concatenate([latents, extra], -1), timestep, text),
                             t2v(latents, timestep, text), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="in_channels=8 is fewer than the checkpoint's 16"):
    expand_input_channels(model_params(t2v), config, 8)


def test_rejects_bad_inputs():
  model = WanDiT(DiTConfig.from_mapping(base.get_config("tiny").model), rngs=nnx.Rngs(0))
  text = jnp.zeros((1, 4, 20))
  with pytest.raises(ValueError, match=r"must be \[B, F, H, W, 16\]"):
    model(jnp.zeros((1, 1, 4, 4, 36)), jnp.zeros(1), text)
  with pytest.raises(ValueError, match="divisible by patch_size"):
    model(jnp.zeros((1, 1, 5, 4, 16)), jnp.zeros(1), text)
  i2v = WanDiT(dataclasses.replace(model.config, in_channels=36, image_dim=8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="image_context .* is needed exactly when model.image_dim is set; image_dim=8, got None"):
    i2v(jnp.zeros((1, 1, 4, 4, 36)), jnp.zeros(1), text)
  with pytest.raises(ValueError, match=r"timestep has shape \(1, 3\): expected \[B\] or \[B, L=4\]"):
    model(jnp.zeros((1, 1, 4, 4, 16)), jnp.zeros((1, 3)), text)
  with pytest.raises(ValueError, match="model.condition='mask' is not one of 'channels', 'timestep'"):
    DiTConfig(condition="mask")
  with pytest.raises(ValueError, match="unknown DiTConfig keys \\['depth'\\]"):
    DiTConfig.from_mapping({"depth": 3})


@pytest.mark.parametrize("name", sorted(base.MODELS))
def test_configs_build_abstractly_with_diffusers_param_counts(name):
  import torch
  from diffusers import WanTransformer3DModel

  config = DiTConfig.from_mapping(base.get_config(name).model)
  abstract = nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  ours = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
  with torch.device("meta"):
    ref = WanTransformer3DModel(
        num_attention_heads=config.num_heads, attention_head_dim=config.head_dim, in_channels=config.in_channels,
        out_channels=config.out_channels, text_dim=config.text_dim, freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim, num_layers=config.num_layers, image_dim=config.image_dim,
        added_kv_proj_dim=config.dim if config.image_dim else None)
  assert ours == sum(p.numel() for p in ref.parameters())
  if name == "wan2.1-t2v-1.3b":
    assert 1.40e9 < ours < 1.45e9
  if name == "wan2.2-ti2v-5b":  # Wan2.2's "5B"; 48 channels in and out, no image branch
    assert 4.99e9 < ours < 5.01e9 and config.condition == "timestep"


def test_every_parameter_has_logical_axis_names():
  config = DiTConfig.from_mapping({**base.get_config("tiny").model, "image_dim": 8, "in_channels": 36})
  state = nnx.state(nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0))), nnx.Param)
  names = {}
  for path, variable in nnx.to_flat_state(state):
    axes = variable.get_metadata()["out_sharding"]
    assert len(axes) == len(variable.shape), path
    names[".".join(map(str, path))] = axes
  assert names["blocks.self_attn.q.kernel"] == ("layers", "embed", "heads")
  assert names["blocks.ffn.down.kernel"] == ("layers", "mlp", "embed")
  assert names["patch_embed"] == (None, None, None, None, "embed")
  assert all(axes[0] == "layers" for path, axes in names.items() if path.startswith("blocks."))
