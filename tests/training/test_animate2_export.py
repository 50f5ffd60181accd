"""What fine-tuning Wan-Animate-2 hands on: LoRA adapters (FFN and self-attention q/k/v/o) merged
into the kernels compute the same animate2 forward, and the merged model exported through the
existing exporter loads in diffusers' `WanAnimate2Transformer3DModel`, whose two passes match ours
(fp32, relative 1e-5)."""

import jax
import jax.numpy as jnp
from flax import nnx

from conftest import assert_close
from dreamactor_jax.checkpoints.dit_torch import export_torch_dit
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models.lora import lora_params, merge_lora, with_lora
from tests.models.test_animate2 import (TIMESTEPS, diffusers_animate2, load_ours, make_inputs, ours, reference_model,
                                        run_reference)


def animate2_forward(model, x):
  """Our two passes: the driving cache, then the conditional and unconditional generation steps."""
  cache = model.encode_motion(x["driving"], x["text_d"], image_context=x["clip_d"])
  branches = (("cond", "text"), ("uncond", "text_neg"))
  return {branch: model(x["latents"], jnp.asarray(TIMESTEPS), x[text], image_context=x["clip_r"], motion=cache,
                        unconditional=branch == "uncond") for branch, text in branches}


def test_merged_lora_exports_to_diffusers(tmp_path):
  base, _ = load_ours(reference_model(), tmp_path / "base")
  model = with_lora(base, rank=4, alpha=2.0, targets=("ffn", "self_attn"))
  # trained-looking adapters: B away from its zero start, so merging changes the kernels
  graphdef, state = nnx.split(model)
  lora = {path: variable for path, variable in nnx.to_flat_state(state) if isinstance(variable, nnx.LoRAParam)}
  assert {path[-2] for path in lora} == {"up", "down", "q", "k", "v", "out"}
  for i, variable in enumerate(lora.values()):
    variable[...] = 0.3 * jax.random.normal(jax.random.key(i), variable.shape, variable.dtype)
  model = nnx.merge(graphdef, state)
  assert len(lora_params(model)) == 2 * 6

  x = {name: ours(value) for name, value in make_inputs().items()}
  unmerged = animate2_forward(model, x)
  merged_model = merge_lora(model)
  merged = animate2_forward(merged_model, x)
  plain = animate2_forward(base, x)
  for branch in ("cond", "uncond"):
    assert_close(merged[branch], unmerged[branch], rel=1e-5)
    assert float(jnp.abs(unmerged[branch] - plain[branch]).max()) > 1e-2  # the adapters do change the output

  out = tmp_path / "export"
  export_torch_dit(model_params(merged_model), merged_model.config, out)
  loaded = diffusers_animate2.WanAnimate2Transformer3DModel.from_pretrained(out).eval()
  expected = run_reference(loaded, make_inputs())
  for branch in ("cond", "uncond"):
    assert_close(unmerged[branch], expected[branch], rel=1e-5)
