"""PyTorch import of the UMT5 encoder: both layouts, the name tables, config inference, bad files."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

from conftest import assert_close
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, load_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.checkpoints.importers import tensor_specs
from dreamactor_jax.checkpoints.umt5_torch import is_ignored, read_torch_umt5
from dreamactor_jax.convert import load_torch_umt5
from dreamactor_jax.models import UMT5Config, UMT5Encoder

# Wan's T5Encoder(shared_pos=False) state_dict for 2 layers, read off wan/modules/t5.py (Wan-Video/Wan2.1
# at 9737cba): T5SelfAttention holds norm1, attn (T5Attention q/k/v/o), norm2, ffn (T5FeedForward:
# gate = Sequential(Linear, GELU), fc1, fc2) and its own pos_embedding (T5RelativeEmbedding.embedding).
WAN_KEYS = ["token_embedding.weight", "norm.weight"] + [
    f"blocks.{i}.{name}.weight" for i in range(2)
    for name in ("norm1", "attn.q", "attn.k", "attn.v", "attn.o", "norm2", "ffn.gate.0", "ffn.fc1", "ffn.fc2",
                 "pos_embedding.embedding")]
# transformers UMT5EncoderModel -> Wan T5Encoder, written independently of the importer's table.
TO_WAN = [
    (r"^shared\.", "token_embedding."),
    (r"^encoder\.final_layer_norm\.", "norm."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"blocks.\1.norm1."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.",
     r"blocks.\1.pos_embedding.embedding."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"blocks.\1.attn."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"blocks.\1.norm2."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", r"blocks.\1.ffn.gate.0."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", r"blocks.\1.ffn.fc1."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", r"blocks.\1.ffn.fc2."),
]


def wan_name(name):
  for pattern, replacement in TO_WAN:
    name = re.sub(pattern, replacement, name)
  return name


def to_wan(state):
  return {wan_name(name): tensor for name, tensor in state.items()}


@pytest.fixture(scope="module")
def torch_model():
  """A tiny transformers UMT5 encoder (unequal sizes), weights moved off init so swaps show."""
  torch.manual_seed(0)
  config = transformers.UMT5Config(vocab_size=97, d_model=40, d_kv=12, num_heads=5, d_ff=56, num_layers=2,
                                   relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                   feed_forward_proj="gated-gelu", attn_implementation="eager")
  model = transformers.UMT5EncoderModel(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(torch.randn_like(p) * 0.2)
  return model


def encoder_state(model):
  """The encoder's state dict without the tied copy of the embedding, as save_pretrained writes it."""
  return {k: v.contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}


def specs(layout):
  config = UMT5Config(vocab_size=97, dim=40, ffn_dim=56, num_heads=5, head_dim=12, num_layers=2, num_buckets=8,
                      max_distance=20)
  return tensor_specs("t5", config, layout)[0]


def test_name_tables_match_both_codebases(torch_model):
  ours = {name for spec in specs("transformers") for name in spec.torch_names}
  stored = set(torch_model.state_dict())
  assert ours == {name for name in stored if not is_ignored(name)}
  assert stored - ours == {"encoder.embed_tokens.weight"}
  original = [name for spec in specs("original") for name in spec.torch_names]
  assert sorted(original) == sorted(WAN_KEYS)
  assert sorted(to_wan(encoder_state(torch_model))) == sorted(WAN_KEYS)
  # Both tables pair each transformers tensor with the same Wan tensor.
  pairs = {t: o for ts, os_ in zip(specs("transformers"), specs("original"))
           for t, o in zip(ts.torch_names, os_.torch_names)}
  assert pairs == {name: wan_name(name) for name in pairs}
  # Wan's T5FeedForward: fc2(fc1(x) * GELU_tanh(gate.0(x))); the renamed weights must compute
  # what transformers' gated FFN computes.
  wan = to_wan(torch_model.state_dict())
  x = torch.randn(3, 40)
  with torch.no_grad():
    gate = torch.nn.functional.gelu(x @ wan["blocks.1.ffn.gate.0.weight"].T, approximate="tanh")
    wan_out = (x @ wan["blocks.1.ffn.fc1.weight"].T * gate) @ wan["blocks.1.ffn.fc2.weight"].T
    torch.testing.assert_close(wan_out, torch_model.encoder.block[1].layer[1].DenseReluDense(x))


def run_both(model, torch_model, lengths=(23, 9)):
  rng = np.random.default_rng(0)
  mask = (np.arange(max(lengths))[None] < np.array(lengths)[:, None]).astype(np.int64)
  ids = np.where(mask, rng.integers(2, 97, mask.shape), 0)
  with torch.no_grad():
    ref = torch_model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).last_hidden_state.numpy()
  return np.asarray(model(jnp.asarray(ids), jnp.asarray(mask))), ref


def test_imports_wan_pth(torch_model, tmp_path):
  path = tmp_path / "models_t5_umt5-xxl-enc.pth"
  torch.save(to_wan(encoder_state(torch_model)), path)
  # Wan's file has no config.json: heads come from the bias table; max distance (Wan: 128) is given.
  model, config = load_torch_umt5(path, max_distance=20)
  assert (config.num_layers, config.num_heads, config.head_dim, config.ffn_dim) == (2, 5, 12, 56)
  assert_close(*run_both(model, torch_model))
  # The released file is bf16: it loads into fp32 parameters exactly.
  torch.save({k: v.to(torch.bfloat16) for k, v in to_wan(encoder_state(torch_model)).items()}, path)
  model, _ = load_torch_umt5(path, max_distance=20)
  bf16 = load_torch_umt5(path, max_distance=20, dtype="bf16")[0]
  for key, value in model_params(model).items():
    assert value.dtype == jnp.float32
    np.testing.assert_array_equal(value, model_params(bf16)[key].astype(jnp.float32), err_msg=key)


def test_config_from_shapes_and_config_json(torch_model, tmp_path, write_json):
  folder = tmp_path / "text_encoder"
  torch_model.save_pretrained(folder)
  _, layout, config = read_torch_umt5(folder)
  assert layout == "transformers"
  assert config.to_dict() == {"vocab_size": 97, "dim": 40, "ffn_dim": 56, "num_heads": 5, "head_dim": 12,
                              "num_layers": 2, "num_buckets": 8, "max_distance": 20, "eps": 1e-6,
                              "param_dtype": "float32", "dtype": "float32", "remat": "none"}
  # Without config.json: UMT5's max distance 128 and eps 1e-6.
  alone = tmp_path / "alone.safetensors"
  save_file(encoder_state(torch_model), alone)
  assert read_torch_umt5(alone)[2].max_distance == 128
  write_json(tmp_path / "config.json", {"feed_forward_proj": "relu"})
  with pytest.raises(CheckpointError, match="feed_forward_proj='relu', expected 'gated-gelu'"):
    read_torch_umt5(alone)


def test_tied_embedding_and_full_t5_checkpoints(torch_model, tmp_path):
  state = encoder_state(torch_model)
  ref = load_torch_umt5(_save(state, tmp_path / "a"), max_distance=20)[0]
  # Only the tied name, and a full encoder-decoder file with decoder and LM head: both load the same.
  tied = {("encoder.embed_tokens.weight" if k == "shared.weight" else k): v for k, v in state.items()}
  full = {**state, "encoder.embed_tokens.weight": state["shared.weight"].clone(),
          "lm_head.weight": torch.zeros(97, 40), "decoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(60, 40)}
  for name, variant in (("tied", tied), ("full", full)):
    model = load_torch_umt5(_save(variant, tmp_path / name), max_distance=20)[0]
    for key, value in model_params(model).items():
      np.testing.assert_array_equal(value, model_params(ref)[key], err_msg=f"{name}: {key}")


def _save(state, folder):
  folder.mkdir()
  save_file(state, folder / "model.safetensors")
  return folder


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("encoder.block.1.layer.1.DenseReluDense.wi_1.weight"),
     r"UMT5 encoder: missing \(1\): encoder.block.1.layer.1.DenseReluDense.wi_1.weight$"),
    (lambda t: t.update({"encoder.block.0.layer.0.SelfAttention.extra.weight": torch.zeros(2)}),
     r"unexpected \(1\): encoder.block.0.layer.0.SelfAttention.extra.weight$"),
    (lambda t: t.update({"encoder.block.1.layer.0.SelfAttention.o.weight": torch.zeros(40, 48)}),
     r"wrong shape \(1\): encoder.block.1.layer.0.SelfAttention.o.weight: \(40, 48\) vs expected \(40, 60\)$"),
])
def test_bad_checkpoints_name_the_keys(torch_model, tmp_path, edit, message):
  state = encoder_state(torch_model)
  edit(state)
  path = tmp_path / "bad.safetensors"
  save_file(state, path)
  with pytest.raises(CheckpointError, match=message):
    load_torch_umt5(path)


def test_foreign_and_inconsistent_files(torch_model, tmp_path):
  path = tmp_path / "w.safetensors"
  save_file({"blocks.0.attn1.to_q.weight": torch.zeros(2, 2)}, path)
  with pytest.raises(CheckpointError, match="not a UMT5 encoder checkpoint"):
    load_torch_umt5(path)
  state = encoder_state(torch_model)
  state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = torch.zeros(8, 7)
  save_file(state, path)
  with pytest.raises(CheckpointError, match="q projection width 60 is not a multiple of the 7 heads"):
    load_torch_umt5(path)
  with pytest.raises(CheckpointError, match="no such file or folder"):
    load_torch_umt5(tmp_path / "nothing")


def test_cli_converts_to_orbax(torch_model, tmp_path):
  torch_model.save_pretrained(tmp_path / "text_encoder")
  assert convert.main(["t5", "--src", str(tmp_path / "text_encoder"), "--out", str(tmp_path / "ours")]) == 0
  restored, config = load_model(tmp_path / "ours", UMT5Encoder, UMT5Config)
  assert config.max_distance == 20
  assert_close(*run_both(restored, torch_model))
