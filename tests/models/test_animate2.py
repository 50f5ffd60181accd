"""The `animate2` layout equals diffusers' `WanAnimate2Transformer3DModel` (fp32, 1e-5 relative).

One tiny random reference model (10 blocks, so the unconditional branch has a block 9 to skip)
and one input shape per module: diffusers compiles a flex block mask per shape, which takes about
a minute on CPU. Latents 4 x 6 (a 2 x 3 token grid), 3 driving frames (4 generated: the reference
frame first), batch 2 at two timesteps, text shorter than 512 tokens. A second reference with
other RoPE offsets and a frame stride shares the weights and the block mask.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import assert_close
from dreamactor_jax import convert
from dreamactor_jax.models.attention import frame_aligned_attention

diffusers_animate2 = pytest.importorskip("diffusers.models.transformers.transformer_wan_animate_2")

HEADS, LAYERS = 3, 10
SIZES = dict(in_dim=36, dim=HEADS * 12, ffn_dim=40, freq_dim=32, text_dim=24, out_dim=16, num_heads=HEADS,
             num_layers=LAYERS)
BATCH, DRIVING, HEIGHT, WIDTH = 2, 3, 4, 6
GRID = (DRIVING, HEIGHT // 2, WIDTH // 2)
TIMESTEPS = (300.0, 870.0)
# Offsets and stride unlike the defaults (1, 0, -1), 1: -1 on two axes, frames 2 apart.
OTHER_ROPE = dict(refer_offset_t=3, refer_offset_h=-1, refer_offset_w=-1, refer_stride=2)


def reference_model(**rope) -> torch.nn.Module:
  torch.manual_seed(0)
  model = diffusers_animate2.WanAnimate2Transformer3DModel(**SIZES, **rope).eval()
  with torch.no_grad():
    for p in model.parameters():  # norms and biases away from 1 and 0
      p.add_(torch.randn_like(p) * 0.1)
  return model


def load_ours(reference: torch.nn.Module, folder):
  """Through the importer: diffusers' folder (hybrid names, config.json) -> our DiT and config."""
  reference.save_pretrained(folder)
  return convert.load_torch_dit(folder)


def make_inputs() -> dict[str, torch.Tensor]:
  generator = torch.Generator().manual_seed(1)
  normal = lambda *shape: torch.randn(*shape, generator=generator)
  return dict(driving=normal(BATCH, 36, DRIVING, HEIGHT, WIDTH), latents=normal(BATCH, 36, 1 + DRIVING, HEIGHT, WIDTH),
              text_d=normal(BATCH, 7, 24), text=normal(BATCH, 9, 24), text_neg=normal(BATCH, 4, 24),
              clip_d=normal(BATCH, 5, 1280), clip_r=normal(BATCH, 5, 1280))


def run_reference(model, inputs) -> dict[str, np.ndarray]:
  """diffusers' two passes: extract the driving cache, then the cond and uncond generation steps."""
  cache = diffusers_animate2.WanAnimate2KVCache(LAYERS)
  grids = torch.tensor([GRID] * BATCH)
  timestep = torch.tensor(TIMESTEPS)
  split = lambda x: (list(x[:, :16]), list(x[:, 16:]))  # noisy latents, condition channels
  with torch.no_grad():
    hidden, condition = split(inputs["driving"])
    model(hidden_states=hidden, condition_latents=condition, timestep=timestep, kv_cache=cache,
          encoder_hidden_states=list(inputs["text_d"]), encoder_hidden_states_image=inputs["clip_d"],
          kv_cache_mode="extract", seq_len=int(np.prod(GRID)), offset_grid_sizes=grids)
    hidden, condition = split(inputs["latents"])
    out = {}
    for branch, text in (("cond", "text"), ("uncond", "text_neg")):
      sample = model(hidden_states=hidden, condition_latents=condition, timestep=timestep, kv_cache=cache,
                     encoder_hidden_states=list(inputs[text]), encoder_hidden_states_image=inputs["clip_r"],
                     kv_cache_mode="cached", seq_len=(1 + DRIVING) * GRID[1] * GRID[2], reference_grid_sizes=grids,
                     origin_len=4 * (DRIVING - 1), origin_area=[8 * HEIGHT, 8 * WIDTH],
                     is_uncondtion=branch == "uncond").sample
      out[branch] = torch.stack(sample).permute(0, 2, 3, 4, 1).numpy()  # B C F H W -> B F H W C
  return out


def ours(x: torch.Tensor) -> jax.Array:
  return jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy() if x.ndim == 5 else x.numpy())  # channels last


@pytest.fixture(scope="module")
def case(tmp_path_factory):
  inputs = make_inputs()
  reference = reference_model()
  expected = run_reference(reference, inputs)
  other = reference_model(**OTHER_ROPE)
  other.block_masks = reference.block_masks  # same shapes: reuse the compiled mask
  expected_other = run_reference(other, inputs)
  model, config = load_ours(reference, tmp_path_factory.mktemp("animate2"))
  return dict(inputs={name: ours(x) for name, x in inputs.items()}, expected=expected, model=model, config=config,
              expected_other=expected_other)


def pad(text, length):
  return jnp.pad(text, ((0, 0), (0, length - text.shape[1]), (0, 0)))


@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_both_passes_match_diffusers(case, branch):
  x, model = case["inputs"], case["model"]
  config = case["config"]
  assert (config.layout, config.unconditional_skip_layers, config.motion_timestep, config.text_len) == (
      "animate2", (9,), 1.0, 512)
  cache = model.encode_motion(x["driving"], x["text_d"], image_context=x["clip_d"])
  assert cache.grid == GRID and cache.k.shape == (LAYERS, BATCH, np.prod(GRID), HEADS, 12)
  text = x["text"] if branch == "cond" else x["text_neg"]
  velocity = model(x["latents"], jnp.asarray(TIMESTEPS), text, image_context=x["clip_r"], motion=cache,
                   unconditional=branch == "uncond")
  assert velocity.shape == (BATCH, 1 + DRIVING, HEIGHT, WIDTH, 16) and velocity.dtype == jnp.float32
  assert_close(velocity, case["expected"][branch], rel=1e-5)


def test_guidance_branches_batch_into_one_call(case):
  # [cond; uncond] in one batch, a per-sample skip of block 9, one cache of the driving batch for
  # both halves: the rows equal the separate branches.
  x, model = case["inputs"], case["model"]
  cache = model.encode_motion(x["driving"], x["text_d"], image_context=x["clip_d"])
  both = lambda a: jnp.concatenate([a, a])
  text = jnp.concatenate([x["text"], pad(x["text_neg"], 9)])  # zero-padding is what the model does anyway
  unconditional = jnp.array([False] * BATCH + [True] * BATCH)
  step = jax.jit(lambda latents, timestep, text, clip, cache: model(latents, timestep, text, image_context=clip,
                                                                    motion=cache, unconditional=unconditional))
  velocity = step(both(x["latents"]), jnp.asarray(TIMESTEPS * 2), text, both(x["clip_r"]), cache)
  assert_close(velocity[:BATCH], case["expected"]["cond"], rel=1e-5)
  assert_close(velocity[BATCH:], case["expected"]["uncond"], rel=1e-5)
  assert float(np.abs(case["expected"]["cond"] - case["expected"]["uncond"]).max()) > 1e-2  # the branches differ


def test_refer_offsets_and_stride_match_diffusers(case, tmp_path):
  x = case["inputs"]
  model, config = load_ours(reference_model(**OTHER_ROPE), tmp_path)
  assert (config.refer_offset_t, config.refer_offset_h, config.refer_offset_w, config.refer_stride) == (3, -1, -1, 2)
  cache = model.encode_motion(x["driving"], x["text_d"], image_context=x["clip_d"])
  velocity = model(x["latents"], jnp.asarray(TIMESTEPS), x["text"], image_context=x["clip_r"], motion=cache)
  assert_close(velocity, case["expected_other"]["cond"], rel=1e-5)
  # The offsets matter: the default RoPE gives another answer.
  assert float(np.abs(case["expected_other"]["cond"] - case["expected"]["cond"]).max()) > 1e-3


def reference_frame_aligned(q, k, v, frame_k, frame_v, key_log_scale):
  """Dense float64 attention with the Wan-Animate-2 mask and DiffSynth's score bias on frame 1."""
  q, k, v, frame_k, frame_v = (np.asarray(a, np.float64) for a in (q, k, v, frame_k, frame_v))
  tokens = q.shape[1] - frame_k.shape[1]
  keys, values = np.concatenate([k, frame_k], 1), np.concatenate([v, frame_v], 1)
  scores = np.einsum("bqnk,bsnk->bnqs", q, keys) / np.sqrt(q.shape[-1])
  query_frame = np.arange(q.shape[1]) // tokens
  key_frame = np.concatenate([np.full(k.shape[1], -1), np.arange(frame_k.shape[1]) // tokens + 1])
  allowed = (key_frame[None] == -1) | (key_frame[None] == query_frame[:, None])
  bias = np.zeros(keys.shape[1])
  bias[tokens:2 * tokens] = key_log_scale  # generation frame 1's keys
  scores = np.where(allowed, scores + bias, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  return np.einsum("bnqs,bsnk->bqnk", probs / probs.sum(-1, keepdims=True), values)


@pytest.mark.parametrize("implementation", ["blockwise", "xla", "splash"])
@pytest.mark.parametrize("key_log_scale", [0.0, -1.3])
def test_frame_aligned_attention_matches_the_masked_reference(implementation, key_log_scale):
  # 4 frames of 5 tokens, 3 driving frames: 5 divides no kernel tile.
  keys = iter(jax.random.split(jax.random.key(3), 5))
  q, k, v = (jax.random.normal(next(keys), (2, 20, 2, 8)) * 2 for _ in range(3))
  frame_k, frame_v = (jax.random.normal(next(keys), (2, 15, 2, 8)) * 2 for _ in range(2))
  out = frame_aligned_attention(q, k, v, frame_k, frame_v, key_log_scale=key_log_scale, implementation=implementation)
  np.testing.assert_allclose(out, reference_frame_aligned(q, k, v, frame_k, frame_v, key_log_scale), atol=3e-5)


def test_memory_is_linear_in_frames():
  # No [Lq, Lk] score matrix over all frames: the compiled forward's temporaries grow linearly.
  def temp_bytes(frames):
    q = jax.ShapeDtypeStruct((1, frames * 256, 2, 16), jnp.float32)
    frame_kv = jax.ShapeDtypeStruct((1, (frames - 1) * 256, 2, 16), jnp.float32)
    attend = jax.jit(lambda *a: frame_aligned_attention(*a, implementation="blockwise"))
    return attend.lower(q, q, q, frame_kv, frame_kv).compile().memory_analysis().temp_size_in_bytes

  small, large = temp_bytes(8), temp_bytes(32)
  assert large < 6 * small, (small, large)


def test_errors(case):
  x, model = case["inputs"], case["model"]
  cache = model.encode_motion(x["driving"], x["text_d"], image_context=x["clip_d"])
  with pytest.raises(ValueError, match=r"do not fit the motion cache of grid \(3, 2, 3\).*must have token grid "
                                       r"\(2, 2, 3\) \(layout 'animate2'\)"):
    model(x["latents"][:, 1:], jnp.asarray(TIMESTEPS), x["text"], image_context=x["clip_r"], motion=cache)
  with pytest.raises(ValueError, match=r"unconditional has shape \(3,\): expected a bool or \[B=2\] bools"):
    model(x["latents"], jnp.asarray(TIMESTEPS), x["text"], image_context=x["clip_r"], motion=cache,
          unconditional=jnp.array([True, False, True]))
  with pytest.raises(ValueError, match=r"model.layout='animate2' needs motion=model.encode_motion"):
    model(x["latents"], jnp.asarray(TIMESTEPS), x["text"], image_context=x["clip_r"])
  with pytest.raises(ValueError, match=r"text \(2, 513, 24\) has more than model.text_len=512 tokens"):
    model.encode_motion(x["driving"], pad(x["text_d"], 513), image_context=x["clip_d"])
  with pytest.raises(ValueError, match=r"model.unconditional_skip_layers=\(10,\) must be block indices in 0..9"):
    type(case["config"]).from_mapping({**case["config"].to_dict(), "unconditional_skip_layers": [10]})
  with pytest.raises(ValueError, match=r"model.refer_offset_t/h/w=\(1, -2, -1\) must be >= 0 or -1"):
    type(case["config"]).from_mapping({**case["config"].to_dict(), "refer_offset_h": -2})
  q = jnp.ones((1, 12, 2, 8))
  with pytest.raises(ValueError, match=r"frame_aligned_attention: q \(1, 12, 2, 8\) and k \(1, 12, 2, 8\) must hold "
                                       r"one frame more than frame_k \(1, 7, 2, 8\)"):
    frame_aligned_attention(q, q, q, q[:, :7], q[:, :7])

