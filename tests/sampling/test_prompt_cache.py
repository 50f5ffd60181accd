"""The prompt-embedding cache: build, reopen, encode only what is missing, pad, name missing prompts."""

import ml_dtypes
import numpy as np
import pytest

from dreamactor_jax.sampling.prompt_cache import MissingPromptError, PromptCache


class FakeEncoder:
  """Stands in for `encode_prompts`: `[len(prompt) + 1, 6]` embeddings that depend on the text; counts calls."""

  def __init__(self):
    self.calls = []

  def __call__(self, prompts):
    self.calls.append(list(prompts))
    return [np.full((len(p) + 1, 6), sum(map(ord, p)) % 97, np.float32) + np.arange(6, dtype=np.float32)
            for p in prompts]


def test_build_reopen_and_add_only_missing(tmp_path):
  path = tmp_path / "cache" / "prompts.safetensors"
  encode = FakeEncoder()
  prompts = ["a dancer spins", "", "a cat sits", "a dancer spins"]  # "" is the CFG unconditional prompt
  cache = PromptCache.build(path, prompts, encode, batch_size=2, progress=False)
  assert encode.calls == [["a dancer spins", ""], ["a cat sits"]]  # each distinct prompt once, in batches
  assert len(cache) == 3 and "" in cache and "a dog" not in cache
  assert sorted(cache.prompts) == ["", "a cat sits", "a dancer spins"]
  np.testing.assert_array_equal(cache["a cat sits"], encode(["a cat sits"])[0])
  assert cache[""].shape == (1, 6)

  encode.calls.clear()
  again = PromptCache.build(path, ["a cat sits", "a dog runs"], encode, progress=False)
  assert encode.calls == [["a dog runs"]]
  reopened = PromptCache(path)
  assert len(reopened) == 4 and sorted(reopened.prompts) == sorted(again.prompts)
  for prompt in ["a dancer spins", "", "a cat sits", "a dog runs"]:
    np.testing.assert_array_equal(reopened[prompt], encode([prompt])[0])
  encode.calls.clear()
  PromptCache.build(path, ["", "a dog runs"], encode, progress=False)
  assert encode.calls == [] and not list(path.parent.glob(".staging-*"))


def test_padded_and_missing_prompts(tmp_path):
  path = tmp_path / "prompts.safetensors"
  cache = PromptCache.build(path, ["a cat sits", ""], FakeEncoder(), progress=False)
  padded = cache.padded(["", "a cat sits", ""])
  assert padded.shape == (3, 512, 6) and padded.dtype == np.float32
  np.testing.assert_array_equal(padded[1, :11], cache["a cat sits"])
  assert not padded[1, 11:].any() and not padded[0, 1:].any()
  assert cache.padded(["a cat sits"], length=16).shape == (1, 16, 6)
  long_prompt = "a very long prompt about a dancer who spins and spins on a wooden stage at night"
  with pytest.raises(MissingPromptError, match=r"prompt 'a very long prompt about a dancer who spins and spins on "
                     r"\.\.\.' is not in the prompt cache .*prompts.safetensors; add it with PromptCache.build"):
    cache.padded(["a cat sits", long_prompt])
  with pytest.raises(KeyError):
    cache["a dog"]
  with pytest.raises(FileNotFoundError, match="prompt cache .*nothing.safetensors does not exist"):
    PromptCache(tmp_path / "nothing.safetensors")


def test_bf16_embeddings_round_trip(tmp_path):
  embedding = (np.arange(12).reshape(2, 6) / 7).astype(ml_dtypes.bfloat16)
  cache = PromptCache.build(tmp_path / "bf16.safetensors", ["a"], lambda prompts: [embedding], progress=False)
  assert cache["a"].dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(cache["a"], embedding)
  assert cache.padded(["a"]).dtype == ml_dtypes.bfloat16


def test_rejects_mismatched_embeddings(tmp_path):
  path = tmp_path / "prompts.safetensors"
  PromptCache.build(path, ["a"], FakeEncoder(), progress=False)
  with pytest.raises(ValueError, match=r"must share one width D; got \[6, 7\]"):
    PromptCache.build(path, ["b"], lambda prompts: [np.zeros((2, 7), np.float32)], progress=False)
  with pytest.raises(ValueError, match=r"encode_fn gave shape \(0, 6\) for prompt 'b'; expected \[L >= 1, D\]"):
    PromptCache.build(path, ["b"], lambda prompts: [np.zeros((0, 6), np.float32)], progress=False)
  with pytest.raises(ValueError, match="encode_fn returned 0 embeddings for 1 prompts"):
    PromptCache.build(path, ["b"], lambda prompts: [], progress=False)
  assert PromptCache(path).prompts == ["a"] and not list(tmp_path.glob(".staging-*"))
