"""Tests of djpeg's butteraugli against the distances Debian's program prints.

The fixtures (data/butteraugli/butteraugli_fixtures.json, made by make_butteraugli_fixtures.py
with /usr/bin/butteraugli) score the SSIMULACRA 2 fixtures' pairs (data/ssimulacra2/: Kodak
crops from 8x8 to 128x128, JPEG at q5..q95 in 4:4:4 and 4:2:0, blur, noise, gray) and three
JPEG decodes of a 256x160 crop. Only data/ is read: the program is not needed.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import make_butteraugli_fixtures as mk
import ssimulacra2_recipes as fr
from djpeg import perceptual, sampling
from djpeg.butteraugli import ButteraugliReference, butteraugli, butteraugli_diffmap

with open(os.path.join(mk.DATA, "butteraugli_fixtures.json")) as _f:
  FIXTURES = json.load(_f)["pairs"]
S2_PAIRS = {}
with open(os.path.join(mk.S2_DATA, "ssimulacra2_fixtures.json")) as _f:
  S2_PAIRS = {p["id"]: p for p in json.load(_f)["pairs"]}


def _images(entry: dict) -> tuple[np.ndarray, np.ndarray]:
  if entry["source"] == "ssimulacra2":
    ref, dist = mk.s2_pair_images(S2_PAIRS[entry["id"]])
  else:
    with open(os.path.join(mk.DATA, entry["reference"]), "rb") as f:
      ref = fr.decode(f.read())
    with open(os.path.join(mk.DATA, entry["distorted"]), "rb") as f:
      dist = fr.decode(f.read())
  assert fr.pixels_sha256(dist) == entry["distorted_sha256"], entry["id"]
  return ref, dist


def test_fixture_coverage():
  assert len(FIXTURES) >= 60
  sizes = {_images(e)[0].shape for e in FIXTURES}
  assert (160, 256, 3) in sizes and (13, 9, 3) in sizes and any(len(s) == 2 for s in sizes)
  assert sum(e["distance"] > 1 for e in FIXTURES) >= 40


@pytest.mark.parametrize("entry", FIXTURES, ids=[e["id"] for e in FIXTURES])
def test_distance_equals_the_program(entry):
  ref, dist = _images(entry)
  # The program prints 6 decimals: agreement to its last digit.
  assert butteraugli(ref, dist) == pytest.approx(entry["distance"], abs=6e-7, rel=1e-6)


def test_diffmap_and_reference_reuse():
  entry = next(e for e in FIXTURES if e["id"] == "k19_256x160_jpeg_q20_s2")
  ref, dist = _images(entry)
  reference = ButteraugliReference(ref)
  distances = butteraugli_diffmap(reference, dist)
  assert distances.shape == ref.shape[:2] and distances.dtype == np.float64
  assert float(distances.max()) == butteraugli(ref, dist)
  assert np.array_equal(distances, butteraugli_diffmap(ref, dist))
  # Two other decodes against the same prepared reference: as from scratch.
  for other in ("k19_256x160_jpeg_q60_s0", "k19_256x160_jpeg_q90_s2"):
    _, d = _images(next(e for e in FIXTURES if e["id"] == other))
    assert butteraugli(reference, d) == butteraugli(ref, d)
  assert butteraugli(ref, ref) == 0.0
  # Errors are where the image was changed: a patch changed in one corner only.
  changed = ref.copy()
  changed[:32, :32] = 255 - changed[:32, :32]
  d = butteraugli_diffmap(ref, changed)
  assert d[:32, :32].max() > 10 * d[80:, 128:].max()


def test_gray_inputs_are_three_equal_channels():
  ref, dist = _images(next(e for e in FIXTURES if e["id"] == "k23g_33x50_jpeg_q30_s2"))
  assert ref.ndim == 2
  expected = butteraugli(np.repeat(ref[..., None], 3, -1), np.repeat(dist[..., None], 3, -1))
  assert butteraugli(ref, dist) == expected
  assert butteraugli(ref[..., None], dist[..., None]) == expected


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 17, 3), np.uint8), "same size"),
    (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.uint8), "uint8"),
    (np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16, 4), np.uint8), "channels"),
    (np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8), "one image"),
])
def test_bad_inputs_are_named(a, b, match):
  with pytest.raises(ValueError, match=match):
    butteraugli(a, b)


def test_block_weights_follow_the_distance_map():
  factors = sampling.factors_for("4:2:0", 3)
  blocks = [np.ones((4, 6)), np.ones((2, 3)), np.full((2, 3), 2.0)]
  distances = np.ones((32, 48))
  distances[8:16, 40:48] = 3.0            # luma block (1, 5), chroma block (0, 2)
  distances[24:32, 0:8] = 0.25            # luma block (3, 0), chroma block (1, 0)
  out = perceptual.butteraugli_weights(blocks, distances, factors, gamma=2.0, limit=4.0)
  expected_y = np.ones((4, 6))
  expected_y[1, 5] = 4.0                  # 3^2 = 9, clipped to the limit
  expected_y[3, 0] = 1 / 4                # (1/4)^2, clipped
  np.testing.assert_allclose(out[0], expected_y)
  # A chroma block takes the largest distance over its 16x16 pixels.
  expected_c = np.ones((2, 3))
  expected_c[0, 2] = 4.0
  np.testing.assert_allclose(out[1], expected_c)
  np.testing.assert_allclose(out[2], 2.0 * expected_c)
  # NaNs (the program's map of an image 8 pixels across has them) count as no error.
  with_nan = distances.copy()
  with_nan[0:8, 0:8] = np.nan
  out = perceptual.butteraugli_weights(blocks, with_nan, factors, gamma=2.0, limit=4.0)
  assert all(np.isfinite(w).all() for w in out) and out[0][0, 0] == 1 / 4
  # No error anywhere: the weights stay as they were.
  same = perceptual.butteraugli_weights(blocks, np.zeros((32, 48)), factors)
  assert all(np.array_equal(a, b) for a, b in zip(same, blocks))
