"""Low-rank adapters (LoRA) for the DiT: target groups, adding adapters to a base model, merging.

PAPER.md section 3: the backbone stays frozen and LoRA (rank 256) adapts only the feed-forward
layers; the text branch is never adapted. Here the adapted layers are named groups
(`model.lora_targets`); the adapters are `nnx.LoRAParam`s (a subclass of `nnx.Param`) inside the
stacked blocks, so the trainer differentiates them alone with the filter `nnx.LoRAParam`:

    graphdef, lora, base = nnx.split(model, nnx.LoRAParam, nnx.Param)
    grads = jax.grad(lambda lora: loss(nnx.merge(graphdef, lora, base)))(lora)

A layer `y = x @ W + b` with an adapter computes `y + (x @ A) @ B * alpha / rank`; B starts at zero.
`merge_lora` folds `W + A @ B * alpha / rank` into the kernels and returns a plain model (what the
PyTorch exporter writes); `unmerge_lora` takes the adapter back out of merged kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

# Adaptable groups -> the layers they adapt, as paths inside a DiT block.
LORA_GROUPS: dict[str, tuple[str, ...]] = {
    "ffn": ("ffn.up", "ffn.down"),
    "self_attn": ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.out"),
    "cross_attn_q": ("cross_attn.q",),
    "cross_attn_out": ("cross_attn.out",),
}
# Groups that would adapt the text (or CLIP image) conditioning branch: refused (PAPER.md section 3).
CONDITIONING_BRANCH = ("cross_attn", "cross_attn_k", "cross_attn_v", "cross_attn_kv", "cross_attn_image_kv",
                       "text_embed", "image_embed")


def lora_layers(targets: Iterable[str]) -> frozenset[str]:
  """The block layers (`"ffn.up"`, `"self_attn.q"`, ...) adapted by the groups `targets`.

  Raises ValueError for a group of the text branch (never adapted) or an unknown group.
  """
  layers = set()
  for group in targets:
    if group in CONDITIONING_BRANCH:
      raise ValueError(f"model.lora_targets: {group!r} would adapt the text branch (cross-attention keys/values "
                       f"or the text/image embedders), which stays frozen; choose from {sorted(LORA_GROUPS)}")
    if group not in LORA_GROUPS:
      raise ValueError(f"model.lora_targets: unknown group {group!r}; choose from {sorted(LORA_GROUPS)}")
    layers.update(LORA_GROUPS[group])
  return frozenset(layers)


def _dotted(path: tuple) -> str:
  return ".".join(map(str, path))


def lora_params(model: nnx.Module) -> dict[str, jax.Array]:
  """The adapter arrays of a model, flat `{dotted.path: array}` (stacked blocks keep their `layers` axis).

  What a training checkpoint needs beside the frozen base; empty for a model without LoRA.
  """
  return {_dotted(path): variable[...] for path, variable in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))}


def rebuild(model_class: type, config, params: Mapping[str, jax.Array]) -> nnx.Module:
  """`model_class(config)` holding `params` (flat, all of them), built without allocating anything else."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: model_class(config, rngs=nnx.Rngs(0))))
  flat = nnx.to_flat_state(state)
  expected = {_dotted(path) for path, _ in flat}
  if expected != set(params):
    raise ValueError(f"parameters do not match the {model_class.__name__}: missing "
                     f"{sorted(expected - set(params))}, unexpected {sorted(set(params) - expected)}")
  wrong = sorted(_dotted(path) for path, variable in flat if tuple(params[_dotted(path)].shape) != variable.shape)
  if wrong:
    raise ValueError(f"parameters do not match the {model_class.__name__}: wrong shape {wrong}")
  for path, variable in flat:
    variable.set_value(jnp.asarray(params[_dotted(path)], variable.dtype))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def init_lora_params(model_class: type, config, *, seed: int = 0) -> dict[str, jax.Array]:
  """Fresh adapter arrays for `model_class(config)` (B zero), flat; nothing else is allocated.

  The model is built inside `jax.jit` returning only the adapters, so XLA drops the base
  parameters' initialisation.
  """
  return jax.jit(lambda: lora_params(model_class(config, rngs=nnx.Rngs(seed))))()


def _plain_params(model: nnx.Module) -> dict[str, jax.Array]:
  return {_dotted(path): variable[...] for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def with_lora(model: nnx.Module, *, rank: int, alpha: float | None = None, targets: Iterable[str] = ("ffn",),
              dtype: str = "float32", seed: int = 0) -> nnx.Module:
  """A copy of a model without LoRA plus fresh adapters (B zero: the output is unchanged).

  The base arrays are shared, not copied. `alpha` defaults to `rank` (scale 1); `dtype` is the
  adapters' parameter dtype (fp32 by default, also under a bf16 base, for the optimizer's sake).
  """
  if model.config.lora_rank:
    raise ValueError(f"the model already has LoRA (rank {model.config.lora_rank}); merge_lora it first")
  config = dataclasses.replace(model.config, lora_rank=rank, lora_alpha=alpha, lora_targets=tuple(targets),
                               lora_dtype=dtype)
  return rebuild(type(model), config, {**_plain_params(model), **init_lora_params(type(model), config, seed=seed)})


def _fold(params: Mapping[str, jax.Array], lora: Mapping[str, jax.Array], scale: float) -> dict[str, jax.Array]:
  """`kernel + scale * a @ b` for every adapted layer (fp32 sum, cast back to the kernel's dtype)."""
  folded = dict(params)
  for path in lora:
    if not path.endswith(".lora_a"):
      continue
    layer = path.removesuffix(".lora_a")
    kernel = params[f"{layer}.kernel"]
    delta = jnp.einsum("...ir,...ro->...io", lora[path].astype(jnp.float32),
                       lora[f"{layer}.lora_b"].astype(jnp.float32))
    folded[f"{layer}.kernel"] = (kernel.astype(jnp.float32) + scale * delta).astype(kernel.dtype)
  return folded


def lora_scale(config) -> float:
  """`alpha / rank` of a config with LoRA (alpha None means rank: scale 1)."""
  return 1.0 if config.lora_alpha is None else config.lora_alpha / config.lora_rank


def merge_lora(model: nnx.Module) -> nnx.Module:
  """The plain model computing the same function: adapters folded into the kernels, config without LoRA."""
  config = model.config
  if not config.lora_rank:
    return model
  lora = lora_params(model)
  base = {path: value for path, value in _plain_params(model).items() if path not in lora}
  plain_config = dataclasses.replace(config, lora_rank=0, lora_alpha=None)
  return rebuild(type(model), plain_config, _fold(base, lora, lora_scale(config)))


def unmerge_lora(merged: nnx.Module, lora: Mapping[str, jax.Array], config) -> nnx.Module:
  """Inverse of `merge_lora`: the LoRA model of `config` whose adapters are `lora` (from `lora_params`)
  and whose base kernels are the merged ones minus the adapters."""
  if merged.config.lora_rank:
    raise ValueError("unmerge_lora takes a merged model without LoRA")
  base = _fold(_plain_params(merged), lora, -lora_scale(config))
  return rebuild(type(merged), config, {**base, **lora})
