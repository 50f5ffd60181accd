"""Parity of the NNX CLIP vision tower with transformers' CLIPVisionModel (penultimate hidden states,
as Wan I2V reads them), Wan's preprocessing against torch, and the full ViT-H/14 structure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from transformers import CLIPVisionConfig as TorchCLIPConfig
from transformers import CLIPVisionModel

from conftest import assert_close
from dreamactor_jax.convert import load_torch_clip
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models.image_encoder import (CLIPVisionConfig, CLIPVisionEncoder, bicubic_matrix, preprocess,
                                                  resize_bicubic)


def make_torch_clip(*, activation="gelu", seed=0):
  """A tiny random CLIPVisionModel (image 30, patch 6: 25 patches + 1), every parameter moved off its init."""
  torch.manual_seed(seed)
  config = TorchCLIPConfig(image_size=30, patch_size=6, hidden_size=40, num_attention_heads=5, intermediate_size=56,
                           num_hidden_layers=3, hidden_act=activation)
  model = CLIPVisionModel(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)
  return model


def run_both(torch_model, model, *, batch=3, seed=1):
  """(ours, transformers' hidden_states[-2]) on the same random pixels, channels-last fp32."""
  pixels = torch.randn(batch, 3, 30, 30, generator=torch.Generator().manual_seed(seed))
  with torch.no_grad():
    ref = torch_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2].numpy()
  return np.asarray(model(jnp.asarray(pixels.numpy().transpose(0, 2, 3, 1)))), ref


@pytest.mark.parametrize("activation, remat", [("gelu", "none"), ("quick_gelu", "full"), ("gelu", "dots_saveable")])
def test_matches_transformers_penultimate_hidden_states(tmp_path, activation, remat):
  torch_model = make_torch_clip(activation=activation)
  torch_model.save_pretrained(tmp_path)
  model, config = load_torch_clip(tmp_path, remat=remat)
  assert (config.image_size, config.patch_size, config.dim, config.ffn_dim, config.num_heads, config.num_layers,
          config.activation) == (30, 6, 40, 56, 5, 2, activation)
  ours, ref = run_both(torch_model, model)
  assert ours.shape == ref.shape == (3, 26, 40)
  assert_close(ours, ref)


def test_bf16_compute_stays_close(tmp_path):
  torch_model = make_torch_clip(seed=2)
  torch_model.save_pretrained(tmp_path)
  model, config = load_torch_clip(tmp_path, dtype="bf16")
  assert config.param_dtype == config.dtype == "bfloat16"
  assert all(v.dtype == jnp.bfloat16 for v in model_params(model).values())
  ours, ref = run_both(torch_model, model)
  assert ours.dtype == np.float32
  assert_close(ours, ref, rel=5e-2)


@pytest.mark.parametrize("in_size, out_size", [((13, 22), (31, 9)), ((40, 17), (7, 50)), ((300, 260), (224, 224))])
def test_resize_matches_torch_bicubic(in_size, out_size):
  images = np.random.default_rng(0).uniform(-1, 1, (2, *in_size, 3))
  ref = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2), size=out_size, mode="bicubic",
                      align_corners=False).permute(0, 2, 3, 1).numpy()
  # float64 pins the formula; in fp32 torch's own rounding of its weights is up to 5e-5.
  exact = np.einsum("oh,bhwc,pw->bopc", bicubic_matrix(in_size[0], out_size[0]), images,
                    bicubic_matrix(in_size[1], out_size[1]), optimize=True)
  np.testing.assert_allclose(exact, ref, rtol=0, atol=1e-12)
  assert_close(resize_bicubic(jnp.asarray(images, jnp.float32), *out_size), ref, rel=1e-5)


@pytest.mark.parametrize("height, width", [(48, 80), (300, 260)])
def test_preprocess_matches_wan(height, width):
  images = np.random.default_rng(1).uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
  # Wan's CLIPModel.visual: F.interpolate bicubic to 224x224, x * 0.5 + 0.5, Normalize(OpenAI mean/std).
  x = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2), size=(224, 224), mode="bicubic",
                    align_corners=False).mul(0.5).add(0.5)
  mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
  std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
  ref = ((x - mean) / std).permute(0, 2, 3, 1).numpy()
  ours = preprocess(jnp.asarray(images))
  assert ours.shape == (2, 224, 224, 3)
  assert_close(ours, ref)


def test_vit_h_14_builds_abstractly_with_transformers_param_count():
  config = CLIPVisionConfig()
  assert (config.num_layers, config.num_tokens, config.head_dim) == (31, 257, 80)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: CLIPVisionEncoder(config, rngs=nnx.Rngs(0))))
  pixels = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, pixels)
  assert out.shape == (1, 257, 1280) and out.dtype == jnp.float32
  ours = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(nnx.merge(graphdef, state), nnx.Param)))
  with torch.device("meta"):
    ref = CLIPVisionModel(TorchCLIPConfig(image_size=224, patch_size=14, hidden_size=1280, intermediate_size=5120,
                                          num_attention_heads=16, num_hidden_layers=32, hidden_act="gelu"))
  unused = sum(p.numel() for p in [*ref.encoder.layers[-1].parameters(), *ref.post_layernorm.parameters()])
  assert ours == sum(p.numel() for p in ref.parameters()) - unused
  assert 6.10e8 < ours < 6.15e8


def test_every_parameter_has_logical_axis_names():
  config = CLIPVisionConfig(image_size=30, patch_size=6, dim=40, ffn_dim=56, num_heads=5, num_layers=2)
  state = nnx.state(nnx.eval_shape(lambda: CLIPVisionEncoder(config, rngs=nnx.Rngs(0))), nnx.Param)
  names = {}
  for path, variable in nnx.to_flat_state(state):
    axes = variable.get_metadata()["out_sharding"]
    assert len(axes) == len(variable.shape), path
    names[".".join(map(str, path))] = axes
  assert names["blocks.attn.q.kernel"] == ("layers", "embed", "heads")
  assert names["blocks.mlp.down.kernel"] == ("layers", "mlp", "embed")
  assert names["patch_embed"] == (None, None, None, "embed") and names["pos_embed"] == (None, "embed")
  assert all(axes[0] == "layers" for path, axes in names.items() if path.startswith("blocks."))


def test_rejects_bad_inputs():
  config = CLIPVisionConfig(image_size=12, patch_size=6, dim=8, ffn_dim=12, num_heads=2, num_layers=1)
  model = nnx.eval_shape(lambda: CLIPVisionEncoder(config, rngs=nnx.Rngs(0)))  # the check precedes any compute
  with pytest.raises(ValueError, match=r"must be \[B, 12, 12, 3\]; resize them with preprocess"):
    model(jnp.zeros((1, 12, 18, 3)))
  with pytest.raises(ValueError, match="clip.dim=8 is not divisible by clip.num_heads=3"):
    CLIPVisionEncoder(CLIPVisionConfig.from_mapping({**config.to_dict(), "num_heads": 3}), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="clip.image_size=14 is not divisible by clip.patch_size=6"):
    CLIPVisionEncoder(CLIPVisionConfig.from_mapping({**config.to_dict(), "image_size": 14}), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"unknown CLIPVisionConfig keys \['depth'\]"):
    CLIPVisionConfig.from_mapping({"depth": 3})
