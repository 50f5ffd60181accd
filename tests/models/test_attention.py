"""The shared attention function: every implementation agrees with a float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax.models import attention
from dreamactor_jax.models.attention import _pick_implementation


def reference(q, k, v):
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  scores = np.einsum("bqnk,bsnk->bnqs", q, k) / np.sqrt(q.shape[-1])
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum("bnqs,bsnk->bqnk", probs, v)


@pytest.mark.parametrize("q_len, kv_len, block_q, block_kv", [
    (37, 53, 8, 16),  # neither length divides its block: padded queries and masked keys
    (64, 64, 16, 32),
    (5, 512, 512, 1024),  # blocks larger than the sequence
])
def test_blockwise_matches_reference(q_len, kv_len, block_q, block_kv):
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (2, q_len, 3, 8)) * 3  # large logits stress the online max
  k = jax.random.normal(keys[1], (2, kv_len, 3, 8))
  v = jax.random.normal(keys[2], (2, kv_len, 3, 8))
  ref = reference(q, k, v)
  for implementation in ("blockwise", "xla"):
    out = attention(q, k, v, implementation=implementation, block_q=block_q, block_kv=block_kv)
    assert out.shape == (2, q_len, 3, 8) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)


def test_auto_is_memory_bounded_on_cpu():
  small = jax.ShapeDtypeStruct((1, 256, 2, 8), jnp.float32)
  big = jax.ShapeDtypeStruct((1, 32760, 12, 128), jnp.float32)
  assert _pick_implementation(small, small) == "xla"
  assert _pick_implementation(big, big) == "blockwise"
  # XLA's log-sum-exp is in the input dtype and has no gradient: return_lse takes the blockwise kernel.
  assert _pick_implementation(small, small, return_lse=True) == "blockwise"


def test_bf16_inputs_give_bf16_outputs():
  x = jax.random.normal(jax.random.key(1), (1, 40, 2, 8), jnp.bfloat16)
  out = attention(x, x, x, implementation="blockwise", block_q=16, block_kv=16)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), reference(x, x, x), atol=3e-2)


def test_bias_and_scale_match_reference():
  keys = jax.random.split(jax.random.key(2), 4)
  q = jax.random.normal(keys[0], (2, 6, 3, 5))
  k = jax.random.normal(keys[1], (2, 9, 3, 5))
  v = jax.random.normal(keys[2], (2, 9, 3, 5))
  position_bias = jax.random.normal(keys[3], (1, 3, 6, 9))
  key_valid = np.arange(9)[None] < np.array([[9], [4]])  # B Lk: the second sequence has 4 tokens
  bias = jnp.where(key_valid[:, None, None, :], position_bias, jnp.finfo(jnp.float32).min)  # B N Lq Lk
  scores = np.einsum("bqnk,bsnk->bnqs", np.asarray(q, np.float64), np.asarray(k, np.float64)) * 0.7
  scores = scores + np.asarray(bias, np.float64)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ref = np.einsum("bnqs,bsnk->bqnk", probs, np.asarray(v, np.float64))
  for implementation in ("auto", "xla"):
    out = attention(q, k, v, bias=bias, scale=0.7, implementation=implementation)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)
  # Masked keys get exactly zero weight: changing them changes nothing.
  moved = attention(q, k.at[1, 4:].set(9.0), v.at[1, 4:].set(-9.0), bias=bias, scale=0.7)
  np.testing.assert_array_equal(moved[1], out[1])
  # The blockwise kernel honours a custom scale, and refuses a bias by name.
  np.testing.assert_allclose(attention(q, k, v, scale=0.7, implementation="blockwise", block_q=4, block_kv=4),
                             attention(q, k, v, scale=0.7, implementation="xla"), atol=2e-5, rtol=2e-5)
  with pytest.raises(ValueError, match="implementation='blockwise'.* takes no bias"):
    attention(q, k, v, bias=bias, implementation="blockwise")


def _masked_reference(q, k, v, kv_len):
  """Attention to the first kv_len keys, differentiable (jnp)."""
  scores = jnp.einsum("bqnk,bsnk->bnqs", q, k) / np.sqrt(q.shape[-1])
  scores = jnp.where(jnp.arange(k.shape[1]) < kv_len, scores, -jnp.inf)
  return jnp.einsum("bnqs,bsnk->bqnk", jax.nn.softmax(scores, -1), v), jax.nn.logsumexp(scores, -1).transpose(0, 2, 1)


@pytest.mark.parametrize("kv_len, one_head", [(53, True), (40, True), (40, False), (0, True), (0, False)])
def test_blockwise_gradients_and_lse(kv_len, one_head):
  # The blockwise kernel's own backward (tiles recomputed from the saved log-sum-exp) equals
  # autodiff of plain attention, for the output and the lse it returns (ring attention merges by
  # it), with keys masked beyond kv_len; kv_len 0 (a ring block of padding only) stays finite.
  # Tiles of one head in turn (CPU) or of all heads (accelerators).
  from dreamactor_jax.models.attention import _core_with_lse

  keys = jax.random.split(jax.random.key(3), 5)
  q = jax.random.normal(keys[0], (2, 37, 3, 8)) * 2
  k, v = jax.random.normal(keys[1], (2, 53, 3, 8)), jax.random.normal(keys[2], (2, 53, 3, 8))
  out_weights, lse_weights = jax.random.normal(keys[3], (2, 37, 3, 8)), jax.random.normal(keys[4], (2, 37, 3))
  ours = lambda q, k, v: _core_with_lse(q, k, v, None if kv_len == 53 else jnp.int32(kv_len), block_q=8, block_kv=16,
                                        scale=None, one_head=one_head)
  loss = lambda fn: lambda q, k, v: (fn(q, k, v)[0] * out_weights).sum() + (fn(q, k, v)[1] * lse_weights).sum()
  if kv_len == 0:
    out, lse = ours(q, k, v)
    assert np.isfinite(out).all() and np.isfinite(lse).all() and float(lse.max()) < -1e29
    assert all(np.isfinite(g).all() for g in jax.grad(loss(ours), argnums=(0, 1, 2))(q, k, v))
    return
  for got, want in zip(ours(q, k, v), _masked_reference(q, k, v, kv_len)):
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
  grads = jax.grad(loss(ours), argnums=(0, 1, 2))(q, k, v)
  ref_grads = jax.grad(loss(lambda q, k, v: _masked_reference(q, k, v, kv_len)), argnums=(0, 1, 2))(q, k, v)
  for got, want in zip(grads, ref_grads):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=5e-5)


def test_splash_kernel_in_interpret_mode():
  # The TPU core, run by the Pallas interpreter: token counts padded to its 128-token tiles, padded
  # keys masked by segment ids, q pre-scaled.
  from dreamactor_jax.models.attention import _core

  keys = jax.random.split(jax.random.key(4), 3)
  q = jax.random.normal(keys[0], (1, 200, 2, 128))
  k, v = jax.random.normal(keys[1], (1, 150, 2, 128)), jax.random.normal(keys[2], (1, 150, 2, 128))
  out = _core(q, k, v, jnp.int32(120), implementation="splash", platform="cpu", block_q=0, block_kv=0, scale=None)
  np.testing.assert_allclose(out, _masked_reference(q, k, v, 120)[0], atol=2e-5, rtol=2e-5)


def test_auto_picks_the_platform_kernel():
  bf16 = jax.ShapeDtypeStruct((1, 4096, 12, 128), jnp.bfloat16)
  assert _pick_implementation(bf16, bf16, "gpu") == "cudnn"
  assert _pick_implementation(bf16, bf16, "tpu") == "splash"
  assert _pick_implementation(bf16, bf16, "cpu") == "blockwise"
  # With the log-sum-exp (frame_aligned_attention): the same kernels, never XLA's bf16 one.
  for platform, kernel in (("gpu", "cudnn"), ("tpu", "splash"), ("cpu", "blockwise")):
    assert _pick_implementation(bf16, bf16, platform, return_lse=True) == kernel
  assert _pick_implementation(*[jax.ShapeDtypeStruct((1, 64, 2, 8), jnp.float32)] * 2, "gpu", return_lse=True) == "blockwise"


def test_attention_returns_the_log_sum_exp():
  keys = jax.random.split(jax.random.key(4), 3)
  q, k, v = (jax.random.normal(key, (2, 9, 2, 8)) * 2 for key in keys)
  scores = np.einsum("bqnk,bsnk->bqns", np.asarray(q, np.float64), np.asarray(k, np.float64)) / np.sqrt(8)
  expected = np.log(np.exp(scores).sum(-1))
  # Attentions over disjoint key sets then merge exactly (frame_aligned_attention, ring attention).
  for implementation in ("blockwise", "xla", "splash"):
    out, lse = attention(q, k, v, implementation=implementation, return_lse=True)
    assert lse.shape == (2, 9, 2) and lse.dtype == jnp.float32
    np.testing.assert_allclose(lse, expected, atol=2e-5)
    np.testing.assert_allclose(out, attention(q, k, v, implementation=implementation), atol=1e-6)


def test_log_sum_exp_gradient_only_through_the_blockwise_kernel():
  x = jax.random.normal(jax.random.key(5), (1, 6, 2, 8))
  lse_sum = lambda implementation: lambda q: attention(q, x, x, implementation=implementation, return_lse=True)[1].sum()
  scores = lambda q: jnp.einsum("bqnk,bsnk->bqns", q, x) / np.sqrt(8)
  np.testing.assert_allclose(jax.grad(lse_sum("blockwise"))(x),
                             jax.grad(lambda q: jax.nn.logsumexp(scores(q), -1).sum())(x), atol=1e-5)
  with pytest.raises(NotImplementedError, match=r"log-sum-exp of cuDNN, splash and XLA attention has no gradient.*"
                                                r"implementation='blockwise'"):
    jax.grad(lse_sum("xla"))(x)
