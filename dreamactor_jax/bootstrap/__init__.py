from dreamactor_jax.bootstrap.run import BootstrapConfig, BootstrapError, Summary, apply_review, run_bootstrap

__all__ = ["BootstrapConfig", "BootstrapError", "Summary", "apply_review", "run_bootstrap"]
