"""`python -m dreamactor_jax.bootstrap`: the command line of the bootstrap (the package docstring is
its --help).
"""

import logging
import sys
from pathlib import Path

from absl import flags

from dreamactor_jax import bootstrap, cli
from dreamactor_jax.bootstrap.run import BootstrapConfig, run_bootstrap
from dreamactor_jax.bootstrap.sync import REVIEW_FILE, apply_review

log = logging.getLogger(__name__)

FLAGS = flags.FlagValues()
cli.define_options(BootstrapConfig, FLAGS)
_APPLY_REVIEW = flags.DEFINE_string("apply-review", None, "Rewrite OUT's stage-2 dataset from this edited review "
                                    "file (accept 1/0) without rendering; other flags but --out are ignored.",
                                    flag_values=FLAGS)


def run() -> None:
  out = FLAGS["out"].value
  if out is None:
    raise cli.UsageError("--out: required")
  if _APPLY_REVIEW.value:
    candidates, accepted, dataset = apply_review(out, _APPLY_REVIEW.value, progress=FLAGS["progress"].value)
  else:
    config = cli.options_from_flags(BootstrapConfig, FLAGS)
    from dreamactor_jax.parallel import initialize_distributed

    initialize_distributed()
    summary = run_bootstrap(config)
    log.info("%d pairs planned on this process: %d rendered, %d self pairs, %d done before", summary.planned,
             summary.rendered, summary.self_pairs, summary.done_before)
    candidates, accepted, dataset = summary.candidates, summary.accepted, summary.dataset
  if candidates is not None:
    log.info("%d of %d pairs accepted; review %s; stage-2 dataset: %s", accepted, candidates, Path(out) / REVIEW_FILE,
             dataset or "none")


def main(argv: list[str] | None = None) -> int:
  return cli.run(run, FLAGS, argv, doc=bootstrap.__doc__)


if __name__ == "__main__":
  sys.exit(main())
