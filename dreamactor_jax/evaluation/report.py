"""Scores methods over a triplet folder; writes the per-kind table (markdown + JSON) and a picture.

  report = evaluate("data/synth-test", {"copy-reference": copy_reference, "stage2": animate_stage2,
                                        "mine": "results/mine"}, out="eval")

A method is an `AnimateFn` (run here on each triplet; one that declares a `triplet` keyword
receives the `Triplet` too, e.g. to read the driving keypoints; one that declares `samples` gives
`samples` of them) or a folder of results. Frame 0 (the given reference) is left out of every score
by default. The table comes twice: the "moving" split first (triplets whose reference and truth
silhouettes overlap little, `Triplet.moving`), then all triplets. A method with N > 1 samples gets
two rows: its first sample alone (with `spread_ratio`) and "<method> (mean of N)".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dreamactor_jax import media
from dreamactor_jax.evaluation.metrics import (DEFINITIONS, HIGHER_IS_BETTER, MASK_THRESHOLD, FrameMetric, aggregate,
                                               sample_scores)
from dreamactor_jax.evaluation.triplets import (MOVING_IOU, AnimateFn, Triplet, find_triplets, load_result,
                                                load_triplet, run_animate)

Method = AnimateFn | str | os.PathLike
ARROWS = {True: "↑", False: "↓", None: "→1"}
COLUMNS = tuple((key, f"{label} {ARROWS[HIGHER_IS_BETTER[key]]}", digits) for key, label, digits in (
    ("psnr", "PSNR", 2), ("psnr_fg", "PSNR-fg", 2), ("ssim", "SSIM", 3), ("iou", "IoU", 3), ("centroid", "centroid", 3),
    ("pck_sil", "PCK-sil", 3), ("pck", "PCK", 3), ("gmsd", "GMSD", 3), ("temporal", "temporal", 4),
    ("spread_ratio", "spread/err", 2)))  # metric, column header, decimals
GROUPS = ("kind", "driving_kind", "pair", "motion_type", "none")
ALL = "all"
SPLITS = ("moving", ALL)  # the moving split leads: there copying the reference cannot score


@dataclasses.dataclass
class Report:
  """Scores: `summary[split][group][method]` = metric means (+ "n"), split "moving" or "all" (not
  with `moving_only`);
  `triplets[name]` = {"group", "moving", "reference_iou", "scores": {method: {metric: value}}};
  `markdown` the tables; `files` what was written."""
  summary: dict
  triplets: dict
  markdown: str
  files: list[Path]


def group_of(triplet: Triplet, group_by: str) -> str:
  """The table row a triplet falls in: its (reference) kind, its driver's kind, the pair, its
  motion type, or one row for all."""
  meta = triplet.meta
  if group_by == "kind":
    return triplet.kind
  if group_by == "driving_kind":
    return str(meta.get("driving_kind", ALL))
  if group_by == "pair":
    return f"{meta.get('driving_kind', '?')}->{triplet.kind}"
  if group_by == "motion_type":
    return str(meta.get("motion_type", ALL))
  if group_by == "none":
    return ALL
  raise ValueError(f"group_by={group_by!r}; expected one of {GROUPS}")


def run_method(method: Method, triplet: Triplet, samples: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
  """`method`'s samples uint8 [N, T, H, W, 3] for `triplet` (and result keypoints when a folder has them)."""
  if callable(method):
    return run_animate(method, triplet, samples), None
  return load_result(method, triplet)


def mean_name(method: str, samples: int) -> str:
  """The table's name for the pixel mean of a method's samples."""
  return f"{method} (mean of {samples})"


def evaluate(triplets: str | os.PathLike, methods: Mapping[str, Method], out: str | os.PathLike | None = None, *,
             skip_first: bool = True, mask_threshold: float = MASK_THRESHOLD, group_by: str = "kind",
             samples: int = 1, moving_only: bool = False, extra_metrics: Mapping[str, FrameMetric] | None = None,
             grid_examples: int = 6, grid_frames: int = 6, save_videos: bool = True, progress: bool = True,
             strict: bool = False) -> Report:
  """Scores every method on every triplet (`moving_only`: on the moving split only, the cheap way
  to score a slow model); with `out`, writes results.md, results.json, grid.png and (for callable
  methods, `save_videos`) videos/<method>/<name>.npz (`video`, the first sample, and `samples`), a
  results folder that a later run can score without running the method again. `samples` = N
  samples of every callable method that declares `samples`. An incomplete triplet folder is
  skipped with a warning, or with `strict` refused (`find_triplets`)."""
  if not methods:
    raise ValueError("evaluate needs at least one method (a results folder or an animate function)")
  if group_by not in GROUPS:
    raise ValueError(f"group_by={group_by!r}; expected one of {GROUPS}")
  if samples < 1:
    raise ValueError(f"samples={samples}; expected at least 1")
  out = None if out is None else Path(out)
  per_triplet: dict[str, dict] = {}
  examples: dict[str, tuple[Triplet, dict[str, np.ndarray]]] = {}
  names: list[str] = []  # table rows per group: methods, and "(mean of N)" after those with samples
  with media.frozen_gc():
    for path in tqdm(find_triplets(triplets, strict=strict), desc="evaluate", unit="triplet", disable=not progress):
      triplet = load_triplet(path)
      if moving_only and not triplet.moving:
        continue
      group = group_of(triplet, group_by)
      scores, videos = {}, {}
      for name, method in methods.items():
        videos_n, body = run_method(method, triplet, samples)
        single, mean = sample_scores(videos_n, triplet.truth, background=triplet.background,
                                     truth_mask=triplet.truth_mask, truth_body=triplet.truth_body, result_body=body,
                                     skip_first=skip_first, mask_threshold=mask_threshold, extra=extra_metrics)
        scores[name] = single
        if mean is not None:
          scores[mean_name(name, videos_n.shape[0])] = mean
        videos[name] = videos_n[0]
        if out is not None and save_videos and callable(method):
          folder = out / "videos" / name
          folder.mkdir(parents=True, exist_ok=True)
          np.savez_compressed(folder / f"{triplet.name}.npz", video=videos_n[0], samples=videos_n)
      names += [name for name in scores if name not in names]
      per_triplet[triplet.name] = {"group": group, "moving": triplet.moving, "reference_iou": triplet.reference_iou,
                                   "scores": scores}
      if group not in examples and len(examples) < grid_examples:
        examples[group] = (triplet, videos)
  if not per_triplet:
    raise ValueError(f"{triplets}: no moving triplet (reference-vs-truth silhouette IoU < {MOVING_IOU}) to score")
  summary = {split: summarize({k: e for k, e in per_triplet.items() if split == ALL or e["moving"]}, names)
             for split in (SPLITS[:1] if moving_only else SPLITS)}
  markdown = markdown_tables(summary, group_by)
  files = []
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown)
    settings = dict(triplets=str(triplets), methods=[str(m) if not callable(m) else getattr(m, "__name__", "callable")
                                                     for m in methods.values()],
                    skip_first=skip_first, mask_threshold=mask_threshold, group_by=group_by, samples=samples,
                    moving_iou=MOVING_IOU, moving_only=moving_only)
    document = dict(settings=settings, definitions=DEFINITIONS, summary=summary, triplets=per_triplet)
    (out / "results.json").write_text(json.dumps(_finite(document), indent=1))
    grid = grid_picture([(t, v) for t, v in examples.values()], list(methods), frames=grid_frames)
    media.write_image(out / "grid.png", grid)
    files = [out / "results.md", out / "results.json", out / "grid.png"]
  return Report(summary, per_triplet, markdown, files)


def summarize(per_triplet: Mapping[str, dict], methods: list[str]) -> dict:
  """{group: {method: metric means and n}}, groups sorted, plus "all"; {} for no triplets."""
  groups = sorted({entry["group"] for entry in per_triplet.values()})
  summary = {}
  for group in groups + ([ALL] if groups and groups != [ALL] else []):
    entries = [e for e in per_triplet.values() if group == ALL or e["group"] == group]
    summary[group] = {method: aggregate([e["scores"][method] for e in entries]) for method in methods}
  return summary


def markdown_tables(summary: Mapping[str, Mapping], group_by: str = "kind") -> str:
  """The moving split's table, then (unless only it was scored) all triplets' (`summary` of
  `evaluate`), with the legend."""
  titles = {"moving": f"Moving: reference-vs-truth silhouette IoU < {MOVING_IOU} (frames 1..)",
            ALL: "All triplets"}
  parts = []
  for split in summary:
    title = titles[split]
    table = markdown_table(summary[split], group_by) if summary[split] else "No triplet.\n"
    parts.append(f"### {title}\n\n{table}")
  legend = ("\n↑ higher is better, ↓ lower is better, →1 best at 1; definitions in "
            f"dreamactor_jax/evaluation/metrics.py (PSNR capped at {100:.0f} dB).\n")
  return "\n".join(parts) + legend


def markdown_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], group_by: str = "kind") -> str:
  """One row per (group, method), one column per metric present."""
  present = [c for c in COLUMNS if any(c[0] in s for rows in summary.values() for s in rows.values())]
  extra = sorted({k for rows in summary.values() for s in rows.values() for k in s}
                 - {c[0] for c in COLUMNS} - {"n"})
  header = [group_by.replace("_", " "), "method", "n"] + [c[1] for c in present] + extra
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for group, rows in summary.items():
    for method, scores in rows.items():
      cells = [group, method, str(int(scores["n"]))]
      cells += [f"{scores[key]:.{digits}f}" if key in scores else "-" for key, _, digits in present]
      cells += [f"{scores[key]:.4g}" if key in scores else "-" for key in extra]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _finite(value):
  """JSON cannot hold NaN: None instead."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_finite(v) for v in value]
  return value


def grid_picture(examples: list[tuple[Triplet, Mapping[str, np.ndarray]]], methods: list[str], *,
                 frames: int = 6, min_tile: int = 96) -> np.ndarray:
  """uint8 picture: per example, a title line, then rows driving | each method | truth, columns
  the reference (first row) and `frames` evenly spaced frames; tiny frames scaled up (nearest)."""
  from PIL import Image, ImageDraw

  if not examples:
    raise ValueError("grid_picture needs at least one example")
  height, width = examples[0][0].truth.shape[1:3]
  scale = max(1, math.ceil(min_tile / height))
  tile_h, tile_w = height * scale, width * scale
  label_w, title_h, gap = 110, 16, 4
  columns = 1 + min(frames, examples[0][0].truth.shape[0])
  rows_per = 2 + len(methods)
  canvas_h = len(examples) * (title_h + rows_per * (tile_h + gap))
  canvas = Image.new("RGB", (label_w + columns * (tile_w + gap), canvas_h), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  top = 0
  for triplet, videos in examples:
    count = triplet.truth.shape[0]
    picks = np.unique(np.linspace(0, count - 1, min(frames, count)).round().astype(int))
    draw.text((4, top + 2), f"{triplet.name} ({triplet.kind})", fill=(0, 0, 0))
    top += title_h
    rows = [("driving", _fit(triplet.driving, height, width))] + [(m, videos[m]) for m in methods]
    rows.append(("truth", triplet.truth))
    for r, (label, video) in enumerate(rows):
      y = top + r * (tile_h + gap)
      draw.text((4, y + tile_h // 2 - 6), label[:16], fill=(0, 0, 0))
      if r == 0:
        canvas.paste(Image.fromarray(_upscale(triplet.reference, scale)), (label_w, y))
      for c, index in enumerate(picks):
        canvas.paste(Image.fromarray(_upscale(video[index], scale)), (label_w + (c + 1) * (tile_w + gap), y))
    top += rows_per * (tile_h + gap)
  return np.asarray(canvas)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
  return np.ascontiguousarray(image.repeat(scale, 0).repeat(scale, 1))


def _fit(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """A driving video of another size, resized (nearest) to the truth's for the picture."""
  if video.shape[1:3] == (height, width):
    return video
  rows = (np.arange(height) * video.shape[1] / height).astype(int)
  cols = (np.arange(width) * video.shape[2] / width).astype(int)
  return video[:, rows][:, :, cols]
