"""configs/stage1.py and stage2.py: every size builds its DiT config; the TI2V-5B sizes read the
Wan2.2 VAE's latents alone on canvases of whole 2x2 patches of 16-pixel latents."""

import jax
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax.configs import stage1, stage2
from dreamactor_jax.models import DiTConfig, WanDiT


@pytest.mark.parametrize("stage", [stage1, stage2])
@pytest.mark.parametrize("size", sorted(stage1.SIZES))
def test_every_size_builds_its_dit_config(stage, size):
  config = stage.get_config(size)
  model = DiTConfig.from_mapping(config.model)
  assert config.stage == (1 if stage is stage1 else 2)
  if size.startswith("5b"):
    latents = 12 if size == "5b-tiny" else 48
    assert (model.condition, model.in_channels, model.out_channels) == ("timestep", latents, latents)
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in config.data.buckets)
  else:
    assert (model.condition, model.in_channels) == ("channels", 36)


def test_5b_trains_lora_on_the_ffn_of_five_billion_parameters():
  config = DiTConfig.from_mapping(stage1.get_config("5b").model)
  abstract = nnx.eval_shape(lambda: WanDiT(config, rngs=nnx.Rngs(0)))
  count = lambda kind: sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, kind)))
  assert (config.lora_rank, config.lora_targets, config.param_dtype) == (256, ("ffn",), "bfloat16")
  # rank 256 on each block's two FFN matrices: 30 x 256 x (3072 + 14336) x 2
  assert count(nnx.LoRAParam) == 30 * 256 * (3072 + 14336) * 2
  assert 4.99e9 < count(nnx.Param) - count(nnx.LoRAParam) < 5.01e9
