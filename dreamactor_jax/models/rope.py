"""3D rotary position embedding of the Wan2.1 DiT (WAN.md, "DiT forward").

The head dim K splits into a frame part (K - 4*(K//6)), a row part and a column part (2*(K//6)
each). Each part rotates interleaved pairs (x[2i], x[2i+1]) by angle `position * theta^(-2i/n)`.
Tables are computed in float64 with numpy (shapes are static) and applied in fp32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RopeTables:
  """Per-token rotation angles as cos/sin, each `[L, K/2]` fp32, tokens ordered F, H, W."""

  cos: jax.Array
  sin: jax.Array


def axis_dims(head_dim: int) -> tuple[int, int, int]:
  """Head-dim split (frames, rows, cols) used by Wan."""
  spatial = 2 * (head_dim // 6)
  return head_dim - 2 * spatial, spatial, spatial


def rope_tables(grid: tuple[int, int, int], head_dim: int, *, theta: float = 10000.0,
                offset: tuple[int, int, int] = (0, 0, 0), stride: tuple[int, int, int] = (1, 1, 1)) -> RopeTables:
  """Rotation tables for a token grid `(F, H, W)`: token i of an axis sits at `offset + stride * i`.

  Returns cos/sin of shape `[F*H*W, head_dim // 2]`.
  """
  if head_dim % 2 or any(d % 2 for d in axis_dims(head_dim)):
    raise ValueError(f"head_dim={head_dim} does not split into even rope parts {axis_dims(head_dim)}")
  angles = []
  for axis, (size, dim, start, step) in enumerate(zip(grid, axis_dims(head_dim), offset, stride)):
    inv_freq = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    axis_angles = np.outer(start + step * np.arange(size, dtype=np.float64), inv_freq)  # size, dim/2
    shape = [1, 1, 1, dim // 2]
    shape[axis] = size
    angles.append(np.broadcast_to(axis_angles.reshape(shape), (*grid, dim // 2)))
  angles = np.concatenate(angles, axis=-1).reshape(-1, head_dim // 2)
  return RopeTables(cos=jnp.asarray(np.cos(angles), jnp.float32), sin=jnp.asarray(np.sin(angles), jnp.float32))


def apply_rope(x: jax.Array, tables: RopeTables) -> jax.Array:
  """Rotates interleaved pairs of `x` `[B, L, N, K]` by the tables; returns x's dtype."""
  x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
  even, odd = x32[..., 0], x32[..., 1]
  cos = tables.cos[None, :, None, :]
  sin = tables.sin[None, :, None, :]
  rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
  return rotated.reshape(x.shape).astype(x.dtype)
