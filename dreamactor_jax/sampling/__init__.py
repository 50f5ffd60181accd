"""Sampling (the inference path of shared/DESIGN.md): `animate.py` turns a reference image, a driving
video and a prompt into a video; `bundle.py` is the one folder a sampler loads (and its CLI,
`python -m dreamactor_jax.sampling.bundle`); `prompt_cache.py` holds prompt embeddings encoded once.

Nothing is imported here, so `python -m dreamactor_jax.sampling.bundle` runs its module once.
"""
