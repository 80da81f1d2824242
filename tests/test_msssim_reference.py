"""SSIM and MS-SSIM against independent implementations, through stored expected values.

References (computed in float64 by tests/data/msssim/make_fixtures.py in a scratch environment
with torch and pytorch_msssim; this test needs neither):
  * `ssim`: scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=True, data_range=1, channel_axis=-1)`.
  * `ms_ssim`: pytorch_msssim's own building blocks (`_ssim`, its 'valid' Gaussian filter, the
    11-tap sigma 1.5 window) put together under djpeg's documented conventions where they differ
    from pytorch_msssim's `ms_ssim`: sample covariance (121 / 120, as scikit-image; obtained
    exactly through `_ssim`'s K2, see the script), odd sizes pooled by dropping the last row or
    column rather than zero padding, cs and SSIM averaged over channels before the weighted
    product rather than a product per channel, and fewer scales with the weights truncated and
    renormalized when the image is too small for five. The plain pytorch_msssim values (and its
    algorithm on djpeg's scales) are in the JSON too, for reference; they are not asserted.

Fixtures: the bundled samples (`djpeg.samples`: limes, houses, castle 192x128 RGB; bear_gray
97x75 gray, and it upscaled 3x by pixel repetition to 291x225 for all five scales), distorted by
Pillow JPEG at several qualities and subsamplings (stored as the .jpg bytes, decoded here with
Pillow and checked against the decoded pixels' sha256), a numpy Gaussian blur and seeded Gaussian
noise (stored as PNG), and one identical pair; tests/data/msssim/expected.json lists how each
pair was made. Images are `uint8 / 255`.

The tolerance, 1e-5 absolute, is about 10x djpeg's float32 error here (up to 1e-6) and over 10x
below the largest change a plausible bug makes over the fixtures (tried on a perturbed copy of
djpeg/metrics.py: products per channel instead of channel means 1.3e-4; population covariance
2.9e-4; cs instead of SSIM at the coarsest scale 7e-4; luminance at every scale 4.7e-3; pooling
that drops the first row / column of odd sizes 1.4e-2; K2 = 0.04 2e-2; weights reversed 4e-2;
one scale fewer 8e-2; weights not renormalized 0.1).
"""

import hashlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from djpeg import metrics, samples

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "msssim")
TOL = 1e-5

with open(os.path.join(DATA, "expected.json")) as _f:
  PAIRS = json.load(_f)["pairs"]


def _reference(recipe: dict) -> np.ndarray:
  pixels = samples.load(recipe["sample"], uint8=True)
  if recipe["crop"] is not None:
    y0, y1, x0, x1 = recipe["crop"]
    pixels = pixels[y0:y1, x0:x1]
  up = recipe["upscale"]
  return np.repeat(np.repeat(pixels, up, axis=0), up, axis=1)


def _distorted(pair: dict, reference: np.ndarray) -> np.ndarray:
  if pair["file"] is None:
    return reference
  with open(os.path.join(DATA, pair["file"]), "rb") as f:
    pixels = np.asarray(Image.open(io.BytesIO(f.read())))
  return pixels[..., None] if pixels.ndim == 2 else pixels


@pytest.fixture(scope="module")
def images():
  """id -> (reference, distorted) uint8 pixels."""
  out = {}
  for pair in PAIRS:
    reference = _reference(pair["reference"])
    out[pair["id"]] = reference, _distorted(pair, reference)
  return out


@pytest.fixture(scope="module")
def scores(images):
  """id -> (djpeg ms_ssim, djpeg ssim), each pair on its own (as the metrics are used)."""
  out = {}
  for pair in PAIRS:
    a, b = (x.astype(np.float32) / 255 for x in images[pair["id"]])
    out[pair["id"]] = (float(metrics.ms_ssim(a, b, scales=pair["scales"])),
                       float(metrics.ssim(a, b)))
  return out


def test_fixtures_cover_the_cases():
  assert len(PAIRS) >= 20
  shapes = {tuple(p["shape"]) for p in PAIRS}
  assert any(c == 1 for _, _, c in shapes) and any(c == 3 for _, _, c in shapes)
  assert any(h % 2 or w % 2 for h, w, _ in shapes)
  assert {p["effective_scales"] for p in PAIRS} >= {1, 2, 3, 4, 5}
  assert {p["distortion"]["kind"] for p in PAIRS} == {"jpeg", "blur", "noise", "identical"}


@pytest.mark.parametrize("pair", PAIRS, ids=[p["id"] for p in PAIRS])
def test_decoded_pixels_are_the_scored_ones(pair, images):
  digest = hashlib.sha256(np.ascontiguousarray(images[pair["id"]][1]).tobytes()).hexdigest()
  assert digest == pair["sha256"], (
      f"{pair['file']} decodes to other pixels than the reference scored (another JPEG decoder "
      f"in Pillow?); rebuild the fixtures with tests/data/msssim/make_fixtures.py")


@pytest.mark.parametrize("pair", PAIRS, ids=[p["id"] for p in PAIRS])
def test_ms_ssim_matches_pytorch_msssim_blocks(pair, scores):
  value = scores[pair["id"]][0]
  assert abs(value - pair["ms_ssim"]) < TOL, (value, pair["ms_ssim"])


@pytest.mark.parametrize("pair", PAIRS, ids=[p["id"] for p in PAIRS])
def test_ssim_matches_scikit_image(pair, scores):
  value = scores[pair["id"]][1]
  assert abs(value - pair["ssim"]) < TOL, (value, pair["ssim"])


def test_one_scale_is_ssim(scores):
  for pair in PAIRS:
    if pair["effective_scales"] == 1:
      assert scores[pair["id"]][0] == pytest.approx(scores[pair["id"]][1], abs=1e-6)
