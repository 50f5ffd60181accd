"""Training: optimizer, train step, loop, metrics, checkpoints with exact resume, bootstrap synthesis."""
