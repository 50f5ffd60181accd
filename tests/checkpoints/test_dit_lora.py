"""LoRA-aware Orbax checkpoints of the DiT and the merged PyTorch export."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers import WanTransformer3DModel
from flax import nnx
from safetensors.numpy import load_file

from conftest import assert_close, make_torch_dit, run_jax_dit, run_torch_dit, save_torch_dit, torch_dit_inputs
from dreamactor_jax import convert
from dreamactor_jax.checkpoints import CheckpointError, export_torch_dit, load_dit, save_lora, save_model
from dreamactor_jax.checkpoints.model_state import model_params
from dreamactor_jax.models import WanDiT, lora_params
from dreamactor_jax.models.lora import init_lora_params

TARGETS = ("ffn", "self_attn", "cross_attn_q", "cross_attn_out")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """A tiny I2V diffusers model converted to a base folder, and a LoRA model on it with random adapters,
  saved whole and adapters-only."""
  root = tmp_path_factory.mktemp("lora")
  torch_model = make_torch_dit(in_channels=36, image_dim=24, seed=11)
  assert convert.main(["dit", "--src", str(save_torch_dit(torch_model, root / "torch")), "--out",
                       str(root / "base")]) == 0
  model, config = load_dit(root / "base", lora_rank=4, lora_alpha=6.0, lora_targets=TARGETS)
  rng = np.random.default_rng(0)
  nnx.update(model, jax.tree.map(lambda x: jnp.asarray(0.1 * rng.standard_normal(x.shape), x.dtype),
                                 nnx.state(model, nnx.LoRAParam)))
  save_model(root / "full", model_params(model), config)
  save_lora(root / "adapters", model)
  return torch_model, model, root


def assert_same_params(first, second):
  first, second = model_params(first), model_params(second)
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_base_folder_gets_fresh_adapters_and_lora_folders_restore(folders):
  _, adapted, root = folders
  fresh, config = load_dit(root / "base", lora_rank=4, lora_alpha=6.0, lora_targets=TARGETS)
  assert (config.lora_rank, config.lora_alpha, config.lora_targets) == (4, 6.0, TARGETS)
  plain, _ = load_dit(root / "base")
  base_params, fresh_params = model_params(plain), model_params(fresh)
  for key, value in base_params.items():
    np.testing.assert_array_equal(fresh_params[key], value, err_msg=key)
  adapters = lora_params(fresh)
  assert set(fresh_params) == set(base_params) | set(adapters) and len(adapters) == 8 * 2  # 8 layers, a and b
  expected = init_lora_params(WanDiT, config, seed=0)
  for key, value in adapters.items():
    np.testing.assert_array_equal(value, expected[key], err_msg=key)
    assert key.endswith("lora_a") or not np.asarray(value).any()
  other_seed, _ = load_dit(root / "base", lora_rank=4, lora_targets=TARGETS, lora_seed=1)
  assert np.abs(lora_params(other_seed)["blocks.ffn.up.lora_a"] - adapters["blocks.ffn.up.lora_a"]).max() > 0

  whole, whole_config = load_dit(root / "full")
  assert whole_config == adapted.config
  assert_same_params(whole, adapted)
  on_base, on_base_config = load_dit(root / "base", lora=root / "adapters")
  assert on_base_config == adapted.config
  assert_same_params(on_base, adapted)


def test_lora_folders_refuse_the_wrong_use(folders):
  _, adapted, root = folders
  with pytest.raises(CheckpointError, match=r"adapters holds only LoRA adapters \(save_lora\); load it as "
                     r"load_dit\(base_folder, lora=...\)"):
    load_dit(root / "adapters")
  with pytest.raises(CheckpointError, match=r"full holds LoRA adapters \(lora_rank=4 in its config.json\); load it "
                     "without lora_rank, then merge_lora"):
    load_dit(root / "full", lora_rank=8)
  with pytest.raises(CheckpointError, match="load it without lora="):
    load_dit(root / "full", lora=root / "adapters")
  with pytest.raises(CheckpointError, match="adapters holds only LoRA adapters"):
    load_dit(root / "adapters", lora=root / "adapters")
  ffn_only = {k: v for k, v in lora_params(adapted).items() if ".ffn." in k}
  save_model(root / "partial", ffn_only, adapted.config)
  with pytest.raises(CheckpointError, match=r"partial: params do not match the adapters of DiTConfig: missing "
                     r"\['blocks.cross_attn.out.lora_a', .*'blocks.self_attn.v.lora_b'\], unexpected \[\]"):
    load_dit(root / "base", lora=root / "partial")
  with pytest.raises(ValueError, match="export_torch_dit takes a plain model; this config has lora_rank=4"):
    export_torch_dit(model_params(adapted), adapted.config, root / "never")


def test_export_merges_and_diffusers_matches_our_lora_forward(folders):
  torch_model, adapted, root = folders
  assert convert.main(["export-dit", "--src", str(root / "full"), "--out", str(root / "exported")]) == 0
  exported = WanTransformer3DModel.from_pretrained(root / "exported").eval()
  inputs = torch_dit_inputs(torch_model, frames=2, height=6, width=8)  # I2V: text padded to 512 (WAN.md)
  ours = run_jax_dit(adapted, inputs)
  assert np.abs(ours - run_torch_dit(torch_model, inputs)).max() > 1e-2 * np.abs(ours).max()  # adapters matter
  assert_close(run_torch_dit(exported, inputs), ours, rel=1e-5)
  # Adapters kept apart from the base export to the very same tensors.
  assert convert.main(["export-dit", "--src", str(root / "base"), "--lora", str(root / "adapters"), "--out",
                       str(root / "exported2")]) == 0
  first = load_file(root / "exported" / "diffusion_pytorch_model.safetensors")
  second = load_file(root / "exported2" / "diffusion_pytorch_model.safetensors")
  assert first.keys() == second.keys() == set(torch_model.state_dict())
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)
