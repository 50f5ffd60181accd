"""Scores methods over a triplet folder; writes the per-kind table (markdown + JSON) and a picture.

  report = evaluate("data/synth-test", {"copy-reference": copy_reference, "stage2": animate_stage2,
                                        "mine": "results/mine"}, out="eval")

A method is an `AnimateFn` (run here on each triplet; one that declares a `triplet` keyword
receives the `Triplet` too, e.g. to read the driving keypoints) or a folder of results.
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
                                               score_video)
from dreamactor_jax.evaluation.triplets import (AnimateFn, Triplet, find_triplets, load_result,
                                                load_triplet, run_animate)

Method = AnimateFn | str | os.PathLike
COLUMNS = tuple((key, f"{label} {'↑' if HIGHER_IS_BETTER[key] else '↓'}", digits) for key, label, digits in (
    ("psnr", "PSNR", 2), ("psnr_fg", "PSNR-fg", 2), ("ssim", "SSIM", 3), ("gmsd", "GMSD", 3),
    ("temporal", "temporal", 4), ("iou", "IoU", 3), ("pck", "PCK", 3)))  # metric, column header, decimals
GROUPS = ("kind", "driving_kind", "pair", "motion_type", "none")
ALL = "all"


@dataclasses.dataclass
class Report:
  """Scores: `summary[group][method]` = metric means (+ "n"); `triplets[name]` = {"group",
  "scores": {method: {metric: value}}}; `markdown` the table; `files` what was written."""
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


def run_method(method: Method, triplet: Triplet) -> tuple[np.ndarray, np.ndarray | None]:
  """The result video of `method` for `triplet` (and result keypoints when a folder has them)."""
  if callable(method):
    return run_animate(method, triplet), None
  return load_result(method, triplet)


def evaluate(triplets: str | os.PathLike, methods: Mapping[str, Method], out: str | os.PathLike | None = None, *,
             skip_first: bool = False, mask_threshold: float = MASK_THRESHOLD, group_by: str = "kind",
             extra_metrics: Mapping[str, FrameMetric] | None = None, grid_examples: int = 6, grid_frames: int = 6,
             save_videos: bool = True, progress: bool = True, strict: bool = False) -> Report:
  """Scores every method on every triplet; with `out`, writes results.md, results.json,
  grid.png and (for callable methods, `save_videos`) videos/<method>/<name>.npz, a results
  folder that a later run can score without running the method again. An incomplete triplet
  folder is skipped with a warning, or with `strict` refused (`find_triplets`)."""
  if not methods:
    raise ValueError("evaluate needs at least one method (a results folder or an animate function)")
  if group_by not in GROUPS:
    raise ValueError(f"group_by={group_by!r}; expected one of {GROUPS}")
  out = None if out is None else Path(out)
  per_triplet: dict[str, dict] = {}
  examples: dict[str, tuple[Triplet, dict[str, np.ndarray]]] = {}
  with media.frozen_gc():
    for path in tqdm(find_triplets(triplets, strict=strict), desc="evaluate", unit="triplet", disable=not progress):
      triplet = load_triplet(path)
      group = group_of(triplet, group_by)
      scores, videos = {}, {}
      for name, method in methods.items():
        video, body = run_method(method, triplet)
        scores[name] = score_video(video, triplet.truth, background=triplet.background,
                                   truth_body=triplet.truth_body, result_body=body, skip_first=skip_first,
                                   mask_threshold=mask_threshold, extra=extra_metrics)
        videos[name] = video
        if out is not None and save_videos and callable(method):
          folder = out / "videos" / name
          folder.mkdir(parents=True, exist_ok=True)
          np.savez_compressed(folder / f"{triplet.name}.npz", video=video)
      per_triplet[triplet.name] = {"group": group, "scores": scores}
      if group not in examples and len(examples) < grid_examples:
        examples[group] = (triplet, videos)
  summary = summarize(per_triplet, list(methods))
  markdown = markdown_table(summary, group_by)
  files = []
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown)
    settings = dict(triplets=str(triplets), methods=[str(m) if not callable(m) else getattr(m, "__name__", "callable")
                                                     for m in methods.values()],
                    skip_first=skip_first, mask_threshold=mask_threshold, group_by=group_by)
    document = dict(settings=settings, definitions=DEFINITIONS, summary=summary, triplets=per_triplet)
    (out / "results.json").write_text(json.dumps(_finite(document), indent=1))
    grid = grid_picture([(t, v) for t, v in examples.values()], list(methods), frames=grid_frames)
    media.write_image(out / "grid.png", grid)
    files = [out / "results.md", out / "results.json", out / "grid.png"]
  return Report(summary, per_triplet, markdown, files)


def summarize(per_triplet: Mapping[str, dict], methods: list[str]) -> dict:
  """{group: {method: metric means and n}}, groups sorted, plus "all"."""
  groups = sorted({entry["group"] for entry in per_triplet.values()})
  summary = {}
  for group in groups + ([ALL] if groups != [ALL] else []):
    entries = [e for e in per_triplet.values() if group == ALL or e["group"] == group]
    summary[group] = {method: aggregate([e["scores"][method] for e in entries]) for method in methods}
  return summary


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
  legend = ("\n↑ higher is better, ↓ lower is better; definitions in dreamactor_jax/evaluation/metrics.py "
            f"(PSNR capped at {100:.0f} dB).\n")
  return "\n".join(lines) + "\n" + legend


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
