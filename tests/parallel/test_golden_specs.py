"""Golden list of every parameter's logical axes and mesh spec for the tiny in-context DiT on 8
simulated devices (fsdp 2 x context 2 x tensor 2), so a changed layout shows up as a reviewed diff.

To accept a deliberate change: DREAMACTOR_UPDATE_GOLDEN=1 pytest tests/parallel/test_golden_specs.py
"""

import os
from pathlib import Path

from flax import nnx

from dreamactor_jax.configs import base
from dreamactor_jax.models import DiTConfig, WanDiT
from dreamactor_jax.parallel import make_plan

GOLDEN = Path(__file__).with_name("golden") / "tiny_dit_param_specs.txt"
MESH = {"fsdp": 2, "context": 2, "tensor": 2}


def _check_spec_listing():
  config = base.get_config("tiny")
  model_config = DiTConfig.from_mapping({**config.model, "in_channels": 36, "image_dim": 24})
  plan = make_plan(MESH, config.parallel)
  abstract = nnx.state(nnx.eval_shape(lambda: WanDiT(model_config, rngs=nnx.Rngs(0))))
  shardings = dict(nnx.to_flat_state(plan.param_shardings(abstract)))
  lines = [f"# tiny DiT (dreamactor_jax/configs/base.py:tiny, in_channels 36, image_dim 24) on mesh {MESH}",
           "# path | shape | logical axes | mesh spec"]
  for path, variable in nnx.to_flat_state(abstract):
    names = variable.get_metadata().get("out_sharding")
    lines.append(f"{'/'.join(map(str, path))} | {tuple(variable.shape)} | {names} | {shardings[path].get_value().spec}")
  return "\n".join(lines) + "\n"


def test_param_specs_match_golden(on_8_devices):
  listing = on_8_devices(_check_spec_listing)
  if os.environ.get("DREAMACTOR_UPDATE_GOLDEN"):
    GOLDEN.write_text(listing)
  assert listing == GOLDEN.read_text(), (
      f"parameter sharding changed; review the diff against {GOLDEN} and rerun with DREAMACTOR_UPDATE_GOLDEN=1")
