"""3D RoPE tables against diffusers' WanRotaryPosEmbed."""

import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from dreamactor_jax.models.rope import axis_dims, rope_tables


@pytest.mark.parametrize("head_dim, grid", [(128, (3, 5, 7)), (16, (2, 4, 3)), (24, (1, 6, 2))])
def test_tables_match_diffusers(head_dim, grid):
  frames, height, width = grid
  rope = WanRotaryPosEmbed(head_dim, (1, 2, 2), max_seq_len=64)
  cos, sin = rope(torch.zeros(1, 1, frames, height * 2, width * 2))
  ours = rope_tables(grid, head_dim)
  # diffusers repeats each angle for the pair: take every other column.
  np.testing.assert_allclose(ours.cos, cos[0, :, 0, 0::2].numpy(), atol=1e-6)
  np.testing.assert_allclose(ours.sin, sin[0, :, 0, 1::2].numpy(), atol=1e-6)


def test_head_dim_split_follows_wan():
  assert axis_dims(128) == (44, 42, 42)
  with pytest.raises(ValueError, match="head_dim=9"):
    rope_tables((1, 1, 1), 9)
