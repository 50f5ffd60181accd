"""One check for every choice a config field makes (models/config.py:check_choice): the layout is one
Literal type, refused with the same line by the DiT config, the sampling options and a bundle."""

import pytest

from dreamactor_jax.models.dit import LAYOUTS, DiTConfig
from dreamactor_jax.sampling.animate import AnimateOptions
from dreamactor_jax.sampling.bundle import BundleInfo


@pytest.mark.parametrize("build, key", [
    (lambda: DiTConfig(layout="canvas"), "model.layout"),
    (lambda: AnimateOptions(layout="canvas"), "layout"),
    (lambda: BundleInfo(stage="rgb", size=(32, 48), fps=4.0, layout="canvas"), "layout"),
])
def test_a_layout_is_checked_against_the_one_literal_everywhere(build, key):
  assert LAYOUTS == ("full", "motion_cache", "animate2")
  with pytest.raises(ValueError, match=rf"^{key}='canvas' is not one of 'full', 'motion_cache', 'animate2'$"):
    build()


@pytest.mark.parametrize("field, value, expected", [
    ("remat", "everything", "'none', 'full', 'dots_saveable', 'dots_with_no_batch_dims_saveable'"),
    ("condition", "mask", "'channels', 'timestep'"),
])
def test_other_choices_of_the_dit_name_their_options(field, value, expected):
  with pytest.raises(ValueError, match=rf"^model.{field}='{value}' is not one of {expected}$"):
    DiTConfig(**{field: value})
