"""The numpy rasteriser: coverage, anti-aliasing, per-frame depth order, textures, silhouettes."""

import numpy as np
import pytest

from dreamactor_jax.data.raster import Blob, Box, Capsule, Paint, Polygon, Shape, rasterize

RED, BLUE = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])


def _shape(geometry, paint, z, frames=2, owner=0):
  return Shape(geometry, paint, z=np.asarray(z, np.float32), unit=np.full(frames, 40.0, np.float32), owner=owner)


def test_capsule_area_and_soft_edge():
  frames, height, width = 1, 40, 56  # unequal sizes: a swapped axis moves the shape off-canvas
  capsule = Capsule(a=np.array([[12.0, 20.0]]), b=np.array([[40.0, 20.0]]), ra=np.array([6.0]), rb=np.array([6.0]))
  image, silhouettes = rasterize([_shape(capsule, Paint(RED), [0.0], frames)], np.zeros((frames, height, width, 3)))
  area = silhouettes[0, 0].sum()
  assert area == pytest.approx(np.pi * 36 + 2 * 6 * 28, rel=0.01)
  assert 0 < np.sum((silhouettes > 0.05) & (silhouettes < 0.95)) < 0.3 * area  # a one-pixel soft rim
  np.testing.assert_allclose(image[0, 20, 26], RED)
  assert silhouettes[0, 0, 20, 26] == 1.0 and silhouettes[0, 0, 20, 50] == 0.0 and silhouettes[0, 0, 35, 26] == 0.0


def test_box_polygon_blob_cover_their_area():
  frames, size = 1, (48, 64)
  background = np.zeros((frames, *size, 3), np.float32)
  box = Box(center=np.array([[32.0, 24.0]]), half=np.array([[10.0, 5.0]]), angle=np.array([0.0]))
  triangle = Polygon(points=np.array([[[10.0, 10.0], [30.0, 10.0], [10.0, 40.0]]]))  # clockwise on screen
  blob = Blob(centers=np.array([[[20.0, 20.0], [28.0, 20.0]]]), radii=np.array([[6.0, 6.0]]), smooth=np.array([2.0]))
  for geometry, expected in ((box, 200.0), (triangle, 300.0)):
    _, silhouettes = rasterize([_shape(geometry, Paint(RED), [0.0], frames)], background)
    assert silhouettes.sum() == pytest.approx(expected, rel=0.03)
  _, silhouettes = rasterize([_shape(blob, Paint(RED), [0.0], frames)], background)
  union = 2 * np.pi * 36 - 2 * (36 * np.arccos(4 / 6) - 4 * np.sqrt(20))  # two overlapping discs
  assert union < silhouettes.sum() < 1.2 * union  # the smooth union fills the waist between them


def test_degenerate_polygon_vanishes():
  line = Polygon(points=np.array([[[5.0, 5.0], [20.0, 20.0], [35.0, 35.0]]]))
  _, silhouettes = rasterize([_shape(line, Paint(RED), [0.0], 1)], np.zeros((1, 40, 40, 3)))
  assert silhouettes.max() < 0.05  # an edge-on card draws nothing, not an infinite line


def test_depth_order_per_frame():
  frames = 2
  disc = lambda x: Capsule(a=np.array([[x, 16.0]] * frames), b=np.array([[x, 16.0]] * frames),  # noqa: E731
                           ra=np.full(frames, 8.0), rb=np.full(frames, 8.0))
  red = _shape(disc(14.0), Paint(RED), [0.0, 1.0])
  blue = _shape(disc(18.0), Paint(BLUE), [1.0, 0.0])  # in front in frame 0, behind in frame 1
  image, _ = rasterize([red, blue], np.zeros((frames, 32, 36, 3)), budget=1)  # budget=1: one frame per chunk
  np.testing.assert_allclose(image[0, 16, 16], BLUE)
  np.testing.assert_allclose(image[1, 16, 16], RED)


def test_stripes_follow_the_shape():
  frames = 2
  stripes = Paint(RED, BLUE, "stripes", period=0.2, angle=0.0)  # 8 px at 40 px per unit
  shift = np.array([[0.0, 0.0], [3.0, 0.0]])
  capsule = Capsule(a=np.array([[8.0, 16.0]]) + shift, b=np.array([[40.0, 16.0]]) + shift, ra=np.full(frames, 6.0),
                    rb=np.full(frames, 6.0))
  image, _ = rasterize([_shape(capsule, stripes, [0.0, 0.0])], np.zeros((frames, 32, 52, 3)))
  row0, row1 = image[0, 16, 8:40], image[1, 16, 11:43]
  np.testing.assert_allclose(row0, row1, atol=1e-5)  # the pattern moved with the capsule
  assert row0[:, 0].max() > 0.9 and row0[:, 2].max() > 0.9  # both colours present


def test_owners_get_separate_silhouettes():
  disc = Capsule(a=np.array([[10.0, 10.0]]), b=np.array([[10.0, 10.0]]), ra=np.array([4.0]), rb=np.array([4.0]))
  scenery = Capsule(a=np.array([[30.0, 10.0]]), b=np.array([[30.0, 10.0]]), ra=np.array([4.0]), rb=np.array([4.0]))
  _, silhouettes = rasterize([_shape(disc, Paint(RED), [0.0], 1, owner=1), _shape(scenery, Paint(BLUE), [0.0], 1, -1)],
                             np.zeros((1, 20, 40, 3)), owners=2)
  assert silhouettes[0].sum() == 0 and silhouettes[1, 0, 10, 10] == 1 and silhouettes[1, 0, 10, 30] == 0


def test_unknown_pattern():
  capsule = Capsule(a=np.array([[8.0, 8.0]]), b=np.array([[8.0, 8.0]]), ra=np.array([4.0]), rb=np.array([4.0]))
  with pytest.raises(ValueError, match="Paint.pattern='plaid'"):
    rasterize([_shape(capsule, Paint(RED, BLUE, "plaid"), [0.0], 1)], np.zeros((1, 16, 16, 3)))
