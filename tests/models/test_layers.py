"""models/layers.py's `param`: it draws flax's own keys (the same init as `rngs.params()`), concretely
and under `nnx.eval_shape`, and checks its axis names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dreamactor_jax.models.layers import param


def test_param_draws_the_keys_rngs_params_would():
  ours, flax_own = nnx.Rngs(5), nnx.Rngs(5)
  for shape in [(3, 2), (4,), (2, 3)]:
    value = param(ours, jax.random.normal, shape, ("embed", "mlp")[:len(shape)], jnp.float32)
    np.testing.assert_array_equal(value[...], jax.random.normal(flax_own.params(), shape, jnp.float32))
  assert int(ours.params.count[...]) == int(flax_own.params.count[...]) == 3

  abstract = nnx.eval_shape(lambda: param(nnx.Rngs(0), jax.random.normal, (3, 2), ("embed", "mlp"), jnp.bfloat16))
  assert (abstract.shape, abstract.dtype, abstract.get_metadata()["out_sharding"]) == ((3, 2), jnp.bfloat16,
                                                                                       ("embed", "mlp"))


def test_param_rejects_names_that_do_not_match_the_shape():
  with pytest.raises(ValueError, match=r"axis names \('embed',\) do not match shape \(3, 2\)"):
    param(nnx.Rngs(0), jax.random.normal, (3, 2), ("embed",), jnp.float32)
