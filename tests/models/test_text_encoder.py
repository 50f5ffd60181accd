"""Parity of the NNX UMT5 encoder with transformers' UMT5EncoderModel, and Wan's prompt encoding."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import assert_close
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.convert import load_torch_umt5
from dreamactor_jax.models.text_encoder import (UMT5_XXL, UMT5Config, UMT5Encoder, clean_prompt, encode_prompts,
                                                load_tokenizer, pad_prompt_embeddings, relative_buckets)

SENTENCES = [
    "a dancer spins on a wooden stage under warm light", "the cat sits by the window in the afternoon sun",
    "two people walk along a quiet beach at dusk", "a man in a red coat waves at the camera and smiles",
    "slow motion of a girl jumping into a blue pool", "an old woman knits a green scarf by the fire",
    "children play football in a dusty village square", "a chef tosses vegetables in a hot pan",
]


def make_torch_umt5(*, attention="eager", seed=0):
  """A tiny random transformers UMT5EncoderModel (unequal sizes), every weight moved off its init."""
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.UMT5Config(vocab_size=97, d_model=40, d_kv=12, num_heads=5, d_ff=56, num_layers=3,
                                   relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                   feed_forward_proj="gated-gelu", attn_implementation=attention)
  model = transformers.UMT5EncoderModel(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      # Norm scales start at 1 and the position tables near 0: move both so a mix-up shows.
      p.add_(torch.randn_like(p) * (1.0 if "relative_attention_bias" in name else 0.2))
  return model


def token_batch(lengths, total, vocab=97, seed=1):
  """Random ids `[B, total]` with padding (id 0, mask 0) after each true length."""
  rng = np.random.default_rng(seed)
  mask = (np.arange(total)[None] < np.array(lengths)[:, None]).astype(np.int64)
  return np.where(mask, rng.integers(2, vocab, (len(lengths), total)), 0), mask


def run_torch(model, ids, mask):
  import torch

  with torch.no_grad():
    return model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).last_hidden_state.numpy()


@pytest.fixture(scope="module")
def torch_folder(tmp_path_factory):
  model = make_torch_umt5()
  folder = tmp_path_factory.mktemp("umt5")
  model.save_pretrained(folder)
  return model, folder


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_matches_transformers_with_padding(torch_folder, attention):
  torch_model, folder = torch_folder
  torch_model.set_attn_implementation(attention)
  model, config = load_torch_umt5(folder)
  assert (config.num_heads, config.head_dim, config.num_buckets, config.max_distance) == (5, 12, 8, 20)
  # 29 tokens reach past max_distance 20 (log buckets and the clamp); 1 token is EOS-only.
  ids, mask = token_batch([29, 13, 1], total=29)
  ref = run_torch(torch_model, ids, mask)
  ours = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))
  assert ours.shape == ref.shape == (3, 29, 40) and ours.dtype == np.float32
  for i, length in enumerate(mask.sum(1)):
    assert_close(ours[i, :length], ref[i, :length])
  assert_close(ours, ref)  # padded positions too: both give masked keys exactly zero weight


def test_remat_and_bf16(torch_folder):
  torch_model, folder = torch_folder
  ids, mask = token_batch([11, 7], total=11, seed=3)
  ref = run_torch(torch_model, ids, mask)
  model, _ = load_torch_umt5(folder, remat="full")
  assert_close(model(jnp.asarray(ids), jnp.asarray(mask)), ref)
  model, config = load_torch_umt5(folder, dtype="bf16")
  assert config.param_dtype == config.dtype == "bfloat16"
  assert all(v.dtype == jnp.bfloat16 for v in model_params(model).values())
  ours = model(jnp.asarray(ids), jnp.asarray(mask))
  assert ours.dtype == jnp.float32
  # Unscaled scores make this random model sharp: transformers' own bf16 run is 6% off its fp32 one.
  assert_close(ours, ref, rel=0.1)


def test_relative_buckets_match_transformers():
  import torch
  import transformers
  from transformers.models.umt5.modeling_umt5 import UMT5Attention

  for num_buckets, max_distance in [(32, 128), (8, 20), (12, 40)]:
    config = transformers.UMT5Config(d_model=8, d_kv=2, num_heads=4, relative_attention_num_buckets=num_buckets,
                                     relative_attention_max_distance=max_distance)
    layer = UMT5Attention(config, has_relative_attention_bias=True)
    relative = torch.arange(600)[None, :] - torch.arange(512)[:, None]
    np.testing.assert_array_equal(relative_buckets(512, 600, num_buckets=num_buckets, max_distance=max_distance),
                                  layer._relative_position_bucket(relative).numpy())


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
  """A tiny sentencepiece UMT5-style tokenizer (pad 0, EOS 1, unk 2) saved as a tokenizer folder."""
  import sentencepiece

  folder = tmp_path_factory.mktemp("tokenizer")
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(SENTENCES * 3), model_prefix=str(folder / "spiece"), vocab_size=72,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
  (folder / "spiece.vocab").unlink()
  (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
  return folder


def test_encode_prompts_trims_to_true_lengths(torch_folder, tokenizer_folder):
  tokenizer = load_tokenizer(tokenizer_folder)
  encoder, _ = load_torch_umt5(torch_folder[1])
  assert len(tokenizer) <= encoder.config.vocab_size
  prompts = ["a cat sits by the window", "", " ".join(SENTENCES)]  # the last one is truncated
  max_length = 32
  tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
  lengths = tokens["attention_mask"].sum(1)
  assert lengths[1] == 1 and lengths[2] == max_length  # "" is EOS alone; truncation keeps the EOS
  assert tokens["input_ids"][2, -1] == tokenizer.eos_token_id

  embeddings = encode_prompts(encoder, tokenizer, prompts, max_length=max_length)
  assert [e.shape for e in embeddings] == [(n, 40) for n in lengths]
  # Padding is masked: the same prompt padded to another length encodes the same.
  alone = encode_prompts(encoder, tokenizer, prompts[:1], max_length=20)[0]
  np.testing.assert_allclose(alone, embeddings[0], rtol=1e-5, atol=1e-5)
  padded = pad_prompt_embeddings(embeddings)
  assert padded.shape == (3, 512, 40)
  for i, n in enumerate(lengths):
    np.testing.assert_array_equal(padded[i, :n], embeddings[i])
    assert not padded[i, n:].any()
  with pytest.raises(ValueError, match=r"embedding 0 has shape \(40, 24\), expected \[L <= 32, 24\]"):
    pad_prompt_embeddings([np.zeros((40, 24))], length=32)


def test_prompt_cleaning_and_tokenizer_errors(tmp_path):
  assert clean_prompt("  a   dancer\n\tspins &amp;amp; bows ") == "a dancer spins & bows"
  with pytest.raises(FileNotFoundError, match="tokenizer folder .*nothing does not exist"):
    load_tokenizer(tmp_path / "nothing")


def test_umt5_xxl_builds_abstractly():
  abstract = nnx.eval_shape(lambda: UMT5Encoder(UMT5_XXL, rngs=nnx.Rngs(0)))
  state = nnx.state(abstract, nnx.Param)
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(state))
  # 256384 x 4096 embedding + 24 x (4 x 4096^2 attention + 3 x 4096 x 10240 FFN + 2 norms + 32 x 64 bias) + norm
  assert count == 256384 * 4096 + 24 * (4 * 4096**2 + 3 * 4096 * 10240 + 2 * 4096 + 32 * 64) + 4096
  assert 5.67e9 < count < 5.69e9
  names = {".".join(map(str, path)): v.get_metadata()["out_sharding"] for path, v in nnx.to_flat_state(state)}
  assert names["token_embedding"] == ("vocab", "embed")
  assert names["blocks.attn.q.kernel"] == ("layers", "embed", "heads")
  assert names["blocks.attn.position_bias"] == ("layers", None, "heads")
  assert names["blocks.ffn.down.kernel"] == ("layers", "mlp", "embed")
  assert all(axes[0] == "layers" for path, axes in names.items() if path.startswith("blocks."))
  with pytest.raises(ValueError, match=r"unknown UMT5Config keys \['d_model'\]"):
    UMT5Config.from_mapping({**UMT5_XXL.to_dict(), "d_model": 4096})
