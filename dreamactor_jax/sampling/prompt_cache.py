"""Prompts -> the text the DiT reads. A file of UMT5 prompt embeddings (`PromptCache`), so training
never runs the 5.7B text encoder per step and sampling can free the encoder before the DiT runs; and
`TextEmbedder`, the cache with the encoder loaded only for the prompts it lacks.

One safetensors file holds, for each distinct prompt keyed by the sha256 of its text, the trimmed
embedding `[L, D]` (`<key>.embedding`) and the prompt's UTF-8 bytes (`<key>.text`, uint8), so the
file alone says what it holds. Adding prompts rewrites it atomically (tmp + rename).

  encode = functools.partial(encode_prompts, load_torch_umt5(weights)[0], load_tokenizer(folder))
  cache = PromptCache.build("prompts.safetensors", captions + [""], encode)
  text = cache.padded(batch_captions)  # [B, 512, D] zero-padded, what the DiT reads
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax.checkpoints.tensor_files import open_safetensors, write_safetensors
from dreamactor_jax.models.text_encoder import TEXT_LEN, pad_prompt_embeddings

# prompts -> one trimmed `[L_i, D]` embedding per prompt, e.g. partial(encode_prompts, encoder, tokenizer).
EncodeFn = Callable[[list[str]], Sequence[np.ndarray]]


def prompt_key(prompt: str) -> str:
  return hashlib.sha256(prompt.encode()).hexdigest()


def _short(prompt: str) -> str:
  return prompt if len(prompt) <= 60 else prompt[:57] + "..."


class MissingPromptError(KeyError):
  """A prompt the cache does not hold; the message names it."""

  def __str__(self) -> str:
    return self.args[0]


class PromptCache:
  """Read access to a prompt cache file: `cache[prompt] -> [L, D]`, `cache.padded(prompts)`."""

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    if not self.path.is_file():
      raise FileNotFoundError(f"prompt cache {self.path} does not exist; create it with PromptCache.build")
    self._tensors = open_safetensors(self.path)

  @classmethod
  def build(cls, path: str | os.PathLike, prompts: Sequence[str], encode_fn: EncodeFn, *, batch_size: int = 8,
            progress: bool = True) -> PromptCache:
    """Opens the cache at `path`, first encoding the prompts it lacks (each distinct one once)."""
    path = Path(path)
    stored = open_safetensors(path) if path.exists() else {}
    missing = list(dict.fromkeys(p for p in prompts if f"{prompt_key(p)}.embedding" not in stored))
    if path.exists() and not missing:
      return cls(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # New embeddings wait on disk (raw bytes: .npy cannot hold bf16), not in RAM, until the file is
    # rewritten with all of them.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=path.parent))
    try:
      tensors = dict(stored)
      with tqdm(total=len(missing), desc="encode prompts", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(missing), batch_size):
          batch = missing[start:start + batch_size]
          embeddings = encode_fn(batch)
          if len(embeddings) != len(batch):
            raise ValueError(f"encode_fn returned {len(embeddings)} embeddings for {len(batch)} prompts")
          for prompt, embedding in zip(batch, embeddings):
            key, embedding = prompt_key(prompt), np.ascontiguousarray(embedding)
            if embedding.ndim != 2 or not embedding.shape[0]:
              raise ValueError(f"encode_fn gave shape {embedding.shape} for prompt {_short(prompt)!r}; "
                               "expected [L >= 1, D]")
            embedding.tofile(staging / key)
            tensors[f"{key}.embedding"] = np.memmap(staging / key, embedding.dtype, "r", shape=embedding.shape)
            tensors[f"{key}.text"] = np.frombuffer(prompt.encode(), np.uint8)
          bar.update(len(batch))
      dims = sorted({t.shape[1] for name, t in tensors.items() if name.endswith(".embedding")})
      if len(dims) > 1:
        raise ValueError(f"prompt embeddings must share one width D; got {dims}")
      write_safetensors(path, {name: (t.shape, t.dtype) for name, t in tensors.items()}, iter(tensors.items()))
    finally:
      shutil.rmtree(staging, ignore_errors=True)
    return cls(path)

  def __contains__(self, prompt: str) -> bool:
    return f"{prompt_key(prompt)}.embedding" in self._tensors

  def __len__(self) -> int:
    return sum(name.endswith(".embedding") for name in self._tensors)

  def __getitem__(self, prompt: str) -> np.ndarray:
    """The trimmed embedding `[L, D]` of one prompt."""
    name = f"{prompt_key(prompt)}.embedding"
    if name not in self._tensors:
      raise MissingPromptError(f"prompt {_short(prompt)!r} is not in the prompt cache {self.path}; add it with "
                               "PromptCache.build")
    return np.array(self._tensors[name])

  @property
  def prompts(self) -> list[str]:
    """The prompts held, in file order."""
    return [bytes(t).decode() for name, t in self._tensors.items() if name.endswith(".text")]

  def padded(self, prompts: Sequence[str], length: int = TEXT_LEN) -> np.ndarray:
    """`[B, length, D]`: the prompts' embeddings zero-padded, as the DiT reads text."""
    return pad_prompt_embeddings([self[prompt] for prompt in prompts], length)


class TextEmbedder:
  """Prompts -> text `[B, text_len, text_dim]` float32, zero-padded, as the DiT reads it.

  Prompts come from a prompt cache; those it lacks are encoded by `load_encoder()` (UMT5 and its
  tokenizer), which is called once for all of them and then dropped, so the encoder's memory is freed
  before the DiT runs (`prepare` the prompts first). Without cache and encoder (a model trained
  without text) the text is zeros and only the empty prompt is accepted. `source` names the
  checkpoint in messages.
  """

  def __init__(self, text_dim: int, text_len: int = TEXT_LEN, *, cache: PromptCache | None = None,
               load_encoder: Callable[[], EncodeFn] | None = None, source: str = "the model"):
    self.text_dim, self.text_len, self.cache, self.source = text_dim, text_len, cache, source
    self._load_encoder = load_encoder
    self._encoded: dict[str, np.ndarray] = {}

  @property
  def has_text(self) -> bool:
    return self.cache is not None or self._load_encoder is not None

  def prepare(self, prompts: Sequence[str]) -> None:
    """Encodes the prompts neither the cache nor earlier calls hold (one encoder load for all)."""
    if not self.has_text:
      for prompt in prompts:
        if prompt:
          raise ValueError(f"{self.source} has no text encoder (text: none; its DiT reads zero text), so prompt "
                           f"{prompt!r} cannot be used; leave the prompt and sampling.negative_prompt empty")
      return
    missing = list(dict.fromkeys(p for p in prompts if p not in self._encoded
                                 and (self.cache is None or p not in self.cache)))
    if not missing:
      return
    if self._load_encoder is None:
      raise ValueError(f"prompt {missing[0]!r} is not in {self.cache.path} and {self.source} has no text encoder "
                       "(umt5/ + tokenizer/) to encode it")
    encode = self._load_encoder()
    for prompt, embedding in zip(missing, encode(missing), strict=True):
      self._encoded[prompt] = np.asarray(embedding, np.float32)
    del encode  # frees the encoder (the closure held its only reference)

  def __call__(self, prompts: Sequence[str]) -> np.ndarray:
    self.prepare(prompts)
    if not self.has_text:
      return np.zeros((len(prompts), self.text_len, self.text_dim), np.float32)
    embeddings = [self._encoded[p] if p in self._encoded else self.cache[p] for p in prompts]
    dims = {e.shape[-1] for e in embeddings}
    if dims != {self.text_dim}:
      raise ValueError(f"{self.source}: prompt embeddings have width {sorted(dims)}; its DiT reads "
                       f"text_dim={self.text_dim}")
    return pad_prompt_embeddings(embeddings, self.text_len).astype(np.float32)
