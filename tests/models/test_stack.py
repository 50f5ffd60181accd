"""The one layer-stack helper (models/stack.py) that the DiT, UMT5 and CLIP share: layers built with
their own weights, run in order with per-layer inputs and outputs, the same under every remat policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax.models.layers import Dense
from dreamactor_jax.models.stack import build_stack, scan_stack

LAYERS, WIDTH = 3, 5


class Block(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.dense = Dense(WIDTH, WIDTH, names=("embed", "mlp"), dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)

  def __call__(self, x: jax.Array, shift: jax.Array) -> jax.Array:
    return jnp.tanh(self.dense(x)) + shift


@pytest.fixture(scope="module")
def stack():
  return build_stack(lambda rngs: Block(rngs=rngs), LAYERS, rngs=nnx.Rngs(0))


def run(blocks, x, shifts, remat="none"):
  def apply_block(block, x, shift):
    y = block(x, shift)
    return y, y.sum(-1)

  return scan_stack(blocks, apply_block, x, shifts, remat=remat)


def loop(blocks, x, shifts):
  """The same layers one by one in Python: what the scan must equal."""
  graphdef, state = nnx.split(blocks)
  outs = []
  for i in range(LAYERS):
    x = nnx.merge(graphdef, jax.tree.map(lambda p: p[i], state))(x, shifts[i])
    outs.append(x.sum(-1))
  return x, jnp.stack(outs)


def test_layers_have_their_own_weights_on_a_leading_layers_axis(stack):
  kernel = stack.dense.kernel
  assert kernel.shape == (LAYERS, WIDTH, WIDTH)
  assert kernel.out_sharding == ("layers", "embed", "mlp")
  assert not np.allclose(kernel[0], kernel[1])


@pytest.mark.parametrize("remat", ["none", "full", "dots_saveable"])
def test_scan_equals_the_layers_in_order_with_per_layer_inputs_and_outputs(stack, remat):
  x = jax.random.normal(jax.random.key(1), (2, WIDTH))
  shifts = jnp.arange(LAYERS, dtype=jnp.float32)[:, None, None] * 0.1
  out, per_layer = run(stack, x, shifts, remat)
  expected_out, expected_per_layer = loop(stack, x, shifts)
  np.testing.assert_allclose(out, expected_out, rtol=1e-6)
  np.testing.assert_allclose(per_layer, expected_per_layer, rtol=1e-6)
  assert per_layer.shape == (LAYERS, 2)
  grads = nnx.grad(lambda m: run(m, x, shifts, remat)[0].sum())(stack)
  expected = nnx.grad(lambda m: loop(m, x, shifts)[0].sum())(stack)
  np.testing.assert_allclose(grads.dense.kernel[...], expected.dense.kernel[...], rtol=1e-5, atol=1e-7)
