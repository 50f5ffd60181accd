"""Self-bootstrapped pair synthesis (PAPER.md section 4): a stage-1 (pose) checkpoint renders other
identities B performing the motion of each stage-1 clip of identity A; the pairs are scored, reviewed
and written as the stage-2 dataset (section 5: target = A's clip, reference = A's first frame,
driving = the rendered video of B). A Wan-Animate-2 bundle (`convert dit` of its weights, or one
fine-tuned on your characters: layout animate2, stage rgb) renders B with A's clip itself as the
driving video: no keypoints, so clips of non-humanoid characters pair too.

  python -m dreamactor_jax.bootstrap --checkpoint runs/stage1/bundle --data data/ --out pairs/ \\
      --pairs-per-clip 2 --batch-size 4 [--references refs/] [--pose-model dw-ll_ucoco_384.onnx]
  # look at pairs/sheets/*.png, set accept to 1/0 in pairs/review.csv, then
  python -m dreamactor_jax.bootstrap --out pairs/ --apply-review pairs/review.csv
  python train.py --config=dreamactor_jax/configs/stage2.py:1.3b --config.data.stage2_dir=pairs/ ...

For each clip with keypoints (one per record of `--data`, `pairs.py` says which frames; every clip
under Wan-Animate-2), K identities other than A's are drawn (`--references DIR`, else the dataset's
own identities), and `sampling.animate.animate_batch` renders each reference with A's skeleton video
(Wan-Animate-2: A's RGB clip), in batches of clips that share size and fps. Each result is scored (`scores.py`: temporal consistency, CLIP or
colour appearance similarity to B's reference, pose agreement with `--pose-model`) and accepted
when it clears the thresholds. `--self-pairs` adds each clip as its own colour-augmented driving
video (for characters without keypoints, which the stage-1 model cannot render).

OUT holds:
  bootstrap.json            the options candidates depend on (a rerun must repeat them) and the score definitions
  clips/<name>.npz          A's clip as rendered against: video, reference, skeleton (uint8), body keypoints
  candidates/<name>.npz     one pair: driving (uint8 [T, H, W, 3], B's video), B's fitted reference, scores, ids
  sheets/<name>.png         its contact sheet: B's reference | A's skeleton (or clip) | result (self pairs: A's
                            reference | A's clip | the augmented clip), a few frames top to bottom
  review.csv                one row per pair: ids, scores, mean, auto (the thresholds' verdict), accept, reviewed
  stage2_pairs/1.0.0/       the stage-2 ArrayRecord dataset of accepted pairs (data/stage2.py)

Resuming: a pair whose candidate file exists is never rendered again, so a stopped run continues
and a rerun with new thresholds only rewrites review.csv and the dataset. `--apply-review` rebuilds
the dataset from an edited review file without rendering. Multi-host: every process renders clips
`process_index::process_count` into the shared OUT, then process 0 writes review.csv and the dataset.

The modules: `run.py` plans, renders and scores the pairs (`run_bootstrap`); `pairs.py` plans clips
and picks references; `scores.py` scores a pair; `review.py` reads and writes review.csv and draws the
sheets; `sync.py` turns the candidates and the review into review.csv and the stage-2 dataset;
`__main__.py` is the command line.
"""

from dreamactor_jax.bootstrap.run import BootstrapConfig, BootstrapError, Summary, run_bootstrap
from dreamactor_jax.bootstrap.sync import apply_review, finalize_review

__all__ = ["BootstrapConfig", "BootstrapError", "Summary", "apply_review", "finalize_review", "run_bootstrap"]
