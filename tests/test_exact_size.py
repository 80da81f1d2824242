"""File sizes against libjpeg-turbo for the same coefficients."""

from __future__ import annotations

import pytest

import djpeg
from djpeg import samples
from exact_util import PIL_SUBSAMPLING, jpeglib_coefficients, pillow_file


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 98])
@pytest.mark.parametrize("sub", [*PIL_SUBSAMPLING, "gray"])
def test_sizes_match_pillow(sub, quality):
  """Baseline optimized within 0.5% of Pillow's optimize=True (in fact equal); progressive no
  larger than Pillow's progressive=True (in fact equal)."""
  names = ("bear_gray",) if sub == "gray" else ("limes", "houses", "castle")
  for name in names:
    pixels = samples.load(name, uint8=True)
    options = dict(quality=quality)
    if sub != "gray":
      options["subsampling"] = PIL_SUBSAMPLING[sub]
    optimized = pillow_file(pixels, optimize=True, **options)
    progressive = pillow_file(pixels, progressive=True, **options)
    c = jpeglib_coefficients(optimized)
    ours = len(djpeg.dumps(c))
    assert abs(ours - len(optimized)) <= 0.005 * len(optimized), (ours, len(optimized))
    assert len(djpeg.dumps(c, progressive=True)) <= len(progressive)
    # Standard tables cost more than optimized ones (sanity of the optimizer).
    assert len(djpeg.dumps(c, optimize=False)) >= ours
