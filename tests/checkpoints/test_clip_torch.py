"""PyTorch import of the CLIP vision tower: transformers and original Wan layouts, bad checkpoints."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from conftest import assert_close
from dreamactor_jax import convert, models
from dreamactor_jax.checkpoints import CheckpointError, load_model
from dreamactor_jax.checkpoints.clip_torch import infer_config, read_torch_clip
from dreamactor_jax.convert import load_torch_clip

VISION = dict(image_size=30, patch_size=6, hidden_size=40, num_attention_heads=5, intermediate_size=56,
              num_hidden_layers=3, hidden_act="gelu")


def perturbed(model):
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.1)  # norms and biases start at 1/0: move them so a mix-up shows
  return model.eval()


def make(cls, seed=0):
  """A tiny random transformers CLIP of class `cls` (image 30, patch 6, width 40, 5 heads, 3 layers)."""
  torch.manual_seed(seed)
  if cls is CLIPModel:
    text = dict(hidden_size=16, num_attention_heads=2, intermediate_size=20, num_hidden_layers=1, vocab_size=50,
                bos_token_id=0, eos_token_id=1)
    return perturbed(CLIPModel(CLIPConfig(vision_config=VISION, text_config=text, projection_dim=12)))
  return perturbed(cls(CLIPVisionConfig(**VISION, projection_dim=24)))


def penultimate(torch_model, batch=2):
  """(channels-last pixels, hidden_states[-2] of the vision tower) for random pixels."""
  vision = getattr(torch_model, "vision_model", torch_model)  # WithProjection and CLIPModel wrap a CLIPVisionModel
  pixels = torch.randn(batch, 3, 30, 30, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    ref = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2].numpy()
  return pixels.numpy().transpose(0, 2, 3, 1), ref


def to_original(state_dict, seed=0):
  """A transformers vision state dict renamed into Wan's XLMRobertaCLIP names (wan/modules/clip.py),
  q/k/v fused into to_qkv, plus the head, post-norm and a stand-in text tower Wan's file carries."""
  state = {k.removeprefix("vision_model."): v for k, v in state_dict.items()}
  dim = state["embeddings.class_embedding"].shape[0]
  out = {
      "visual.patch_embedding.weight": state.pop("embeddings.patch_embedding.weight"),
      "visual.cls_embedding": state.pop("embeddings.class_embedding").reshape(1, 1, dim),
      "visual.pos_embedding": state.pop("embeddings.position_embedding.weight")[None],
      "visual.post_norm.weight": state.pop("post_layernorm.weight"),
      "visual.post_norm.bias": state.pop("post_layernorm.bias"),
  }
  for leaf in ("weight", "bias"):
    out[f"visual.pre_norm.{leaf}"] = state.pop(f"pre_layrnorm.{leaf}")
  for i in range(VISION["num_hidden_layers"]):
    layer = lambda name: state.pop(f"encoder.layers.{i}.{name}")
    for leaf in ("weight", "bias"):
      out[f"visual.transformer.{i}.attn.to_qkv.{leaf}"] = torch.cat(
          [layer(f"self_attn.{p}_proj.{leaf}") for p in "qkv"])
      for wan, hf in (("norm1", "layer_norm1"), ("attn.proj", "self_attn.out_proj"), ("norm2", "layer_norm2"),
                      ("mlp.0", "mlp.fc1"), ("mlp.2", "mlp.fc2")):
        out[f"visual.transformer.{i}.{wan}.{leaf}"] = layer(f"{hf}.{leaf}")
  assert not state, sorted(state)
  generator = torch.Generator().manual_seed(seed)
  out["visual.head"] = torch.randn(dim, 24, generator=generator)
  out["textual.token_embedding.weight"] = torch.randn(50, 16, generator=generator)
  out["textual.head.0.weight"] = torch.randn(20, 16, generator=generator)
  out["log_scale"] = torch.tensor(2.6)
  return {k: v.contiguous() for k, v in out.items()}


@pytest.fixture(scope="module")
def vision():
  return make(CLIPVisionModel, seed=3)


@pytest.mark.parametrize("cls", [CLIPVisionModel, CLIPVisionModelWithProjection, CLIPModel])
def test_transformers_classes_load(tmp_path, cls):
  # transformers 5.x writes CLIPVisionModel without the vision_model. prefix, the others with it
  # (plus a projection, and CLIPModel a text tower), as older versions and diffusers' image_encoder/ do.
  torch_model = make(cls)
  torch_model.save_pretrained(tmp_path)
  model, config = load_torch_clip(tmp_path)
  assert (config.num_layers, config.num_heads, config.image_size) == (2, 5, 30)
  pixels, ref = penultimate(torch_model)
  assert_close(model(pixels), ref)


def test_original_wan_layout(tmp_path, vision):
  path = tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
  torch.save(to_original(vision.state_dict()), path)
  # Wan's folders keep the DiT's config.json beside the CLIP file: it must not set CLIP's heads.
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "i2v", "dim": 5120, "num_heads": 40}))
  tensors, layout, config = read_torch_clip(path, num_heads=5)
  assert layout == "original" and "visual.transformer.0.attn.to_qkv.weight[k]" in tensors
  model, loaded_config = load_torch_clip(path, num_heads=5)
  assert loaded_config == config and config.num_heads == 5 and config.activation == "gelu"
  vision.save_pretrained(tmp_path / "hf")
  assert config == load_torch_clip(tmp_path / "hf")[1]
  pixels, ref = penultimate(vision)
  assert_close(model(pixels), ref)
  with pytest.raises(CheckpointError, match="cannot infer the head count of dim=40; pass num_heads"):
    load_torch_clip(path)


def test_heads_default_to_width_over_80():
  shapes = {"visual.patch_embedding.weight": (160, 3, 14, 14), "visual.pos_embedding": (1, 257, 160),
            "visual.transformer.0.mlp.0.weight": (640, 160), "visual.transformer.1.norm1.weight": (160,)}
  config = infer_config({k: np.empty(s, np.float32) for k, s in shapes.items()}, "original", hints={}, source="x")
  assert (config.num_heads, config.image_size, config.patch_size, config.num_layers, config.ffn_dim) == (2, 224, 14,
                                                                                                          1, 640)


@pytest.fixture
def hf_state(vision):
  """The tiny model's transformers tensors as one editable dict."""
  return {k: v.contiguous() for k, v in vision.state_dict().items()}


def save_hf(state, folder):
  folder.mkdir(exist_ok=True)
  save_file(state, folder / "model.safetensors")
  (folder / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", **VISION}))
  return folder


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("encoder.layers.1.mlp.fc2.bias"), r"missing \(1\): encoder.layers.1.mlp.fc2.bias"),
    (lambda t: t.update({"encoder.layers.0.extra.weight": torch.zeros(2)}),
     r"unexpected \(1\): encoder.layers.0.extra.weight"),
    (lambda t: t.update({"encoder.layers.0.self_attn.q_proj.weight": torch.zeros(40, 36)}),
     r"wrong shape \(1\): encoder.layers.0.self_attn.q_proj.weight: \(40, 36\) vs expected \(40, 40\)"),
    (lambda t: t.update({"embeddings.class_embedding": torch.zeros(1, 40)}),
     r"wrong shape \(1\): embeddings.class_embedding: \(1, 40\) vs expected \(40,\)"),
])
def test_bad_transformers_checkpoints_name_the_keys(hf_state, tmp_path, edit, message):
  edit(hf_state)
  with pytest.raises(CheckpointError, match=r"does not match the CLIP vision encoder: " + message):
    load_torch_clip(save_hf(hf_state, tmp_path))


def test_unread_tensors_are_skipped(hf_state, tmp_path, vision):
  # The last block and post-norm are never computed: partial or absent, they do not matter.
  for name in ["post_layernorm.weight", "post_layernorm.bias", "encoder.layers.2.mlp.fc1.weight"]:
    hf_state.pop(name)
  hf_state["embeddings.position_ids"] = torch.arange(26)[None]  # a buffer transformers < 4.31 saved
  model, config = load_torch_clip(save_hf(hf_state, tmp_path))
  pixels, ref = penultimate(vision)
  assert_close(model(pixels), ref)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("visual.transformer.1.attn.to_qkv.bias"),
     r"missing \(3\): visual.transformer.1.attn.to_qkv.bias\[k\], visual.transformer.1.attn.to_qkv.bias\[q\], "
     r"visual.transformer.1.attn.to_qkv.bias\[v\]"),
    (lambda t: t.update({"visual.transformer.0.attn.to_qkv.weight": torch.zeros(121, 40)}),
     r"wrong shape \(1\): visual.transformer.0.attn.to_qkv.weight\[q\]: \(41, 40\) vs expected \(40, 40\)"),
    (lambda t: t.update({"visual.cls_embedding": torch.zeros(1, 2, 40)}),
     r"wrong shape \(1\): visual.cls_embedding: \(1, 2, 40\) vs expected \(40,\)"),
    (lambda t: t.update({"textual_extra": torch.zeros(2)}), r"unexpected \(1\): textual_extra"),
])
def test_bad_original_checkpoints_name_the_keys(vision, tmp_path, edit, message):
  state = to_original(vision.state_dict())
  edit(state)
  torch.save(state, tmp_path / "clip.pth")
  with pytest.raises(CheckpointError, match=r"clip.pth does not match the CLIP vision encoder: " + message):
    load_torch_clip(tmp_path / "clip.pth", num_heads=5)


def test_foreign_and_malformed_files(hf_state, tmp_path):
  path = tmp_path / "w.safetensors"
  save_file({"blocks.0.attn1.to_q.weight": torch.zeros(2, 2)}, path)
  with pytest.raises(CheckpointError, match="w.safetensors: not a CLIP vision checkpoint"):
    load_torch_clip(path)
  with pytest.raises(CheckpointError, match=r"position embedding has shape \(27, 40\), expected 1 \+ a square"):
    load_torch_clip(save_hf({**hf_state, "embeddings.position_embedding.weight": torch.zeros(27, 40)},
                            tmp_path / "pos"))
  one_block = {k: v for k, v in hf_state.items() if not k.startswith(("encoder.layers.1.", "encoder.layers.2."))}
  with pytest.raises(CheckpointError, match="1 transformer blocks; Wan reads the penultimate block's output"):
    load_torch_clip(save_hf(one_block, tmp_path / "one"))
  with pytest.raises(CheckpointError, match=r"hidden_act='relu' is not supported"):
    folder = save_hf(hf_state, tmp_path / "relu")
    (folder / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", **VISION, "hidden_act": "relu"}))
    load_torch_clip(folder)


def test_cli_converts_to_orbax(tmp_path, vision):
  vision.save_pretrained(tmp_path / "image_encoder")
  assert convert.main(["clip", "--src", str(tmp_path / "image_encoder"), "--out", str(tmp_path / "ours")]) == 0
  restored, config = load_model(tmp_path / "ours", models.CLIPVisionEncoder, models.CLIPVisionConfig)
  assert config.num_layers == 2
  pixels, ref = penultimate(vision)
  assert_close(restored(pixels), ref)
