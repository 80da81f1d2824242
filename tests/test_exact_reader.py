"""The reader against jpeglib and Pillow, and round trips through files."""

from __future__ import annotations

import io

import numpy as np
import pytest

import djpeg
from djpeg import samples
from exact_util import (PIL_SUBSAMPLING, assert_same_coefficients, jpeglib_coefficients,
                        pillow_file, pillow_pixels, random_coefficients)

OPTIONS = {
    "baseline": dict(optimize=False),
    "optimized": dict(optimize=True),
    "progressive": dict(progressive=True),
    "restart_blocks": dict(optimize=True, restart_marker_blocks=3),
    "restart_rows": dict(progressive=True, restart_marker_rows=1),
}


@pytest.mark.parametrize("mode", sorted(OPTIONS))
@pytest.mark.parametrize("sub", [*PIL_SUBSAMPLING, "gray"])
def test_reads_pillow_files_like_jpeglib(sub, mode):
  """Coefficients and tables equal jpeglib's; decoding them equals Pillow's decode."""
  pixels = samples.load("bear_gray" if sub == "gray" else "houses", uint8=True)
  options = dict(OPTIONS[mode], quality=80)
  if sub != "gray":
    options["subsampling"] = PIL_SUBSAMPLING[sub]
  for crop in (pixels, pixels[:37, :53]):
    data = pillow_file(crop, **options)
    got = djpeg.load_coefficients(data)
    assert_same_coefficients(got, jpeglib_coefficients(data))
    assert got.components[0].dtype == np.int16 and got.tables.dtype == np.float32
  decoded = np.round(np.asarray(djpeg.decode(got)) * 255).astype(np.uint8)
  np.testing.assert_array_equal(decoded, pillow_pixels(data))


def test_sources_path_bytes_and_file_objects(tmp_path):
  data = pillow_file(samples.load("limes", uint8=True), quality=70)
  path = tmp_path / "x.jpg"
  path.write_bytes(data)
  want = djpeg.load_coefficients(data)
  for source in (path, str(path), io.BytesIO(data), bytearray(data), memoryview(data)):
    assert_same_coefficients(djpeg.load_coefficients(source), want)


@pytest.mark.parametrize("progressive", [False, True])
def test_round_trip_of_written_coefficients(progressive):
  """load_coefficients(dumps(c)) == c, for encode output and for random coefficients."""
  rng = np.random.default_rng(7)
  for factors in (((2, 2), (1, 1), (1, 1)), ((1, 2), (1, 1), (1, 1)), ((1, 1),)):
    c = random_coefficients(rng, 61, 83, factors)
    for restart in (None, 1, 4):
      data = djpeg.dumps(c, progressive=progressive, restart_interval=restart)
      assert_same_coefficients(djpeg.load_coefficients(data), c)


def test_decode_of_encode_equals_pillows_decode_of_the_file():
  """djpeg.decode(encode(x)) and Pillow's decode of dumps(encode(x)) agree (>= 50 dB; in fact
  identically), and so does djpeg.decode of the file's coefficients."""
  for name in ("castle", "bear_gray"):
    x = samples.load(name)
    c = djpeg.encode(x, quality=60, subsampling="4:2:2")
    ours = np.asarray(djpeg.decode(c))
    for progressive in (False, True):
      data = djpeg.dumps(c, progressive=progressive)
      theirs = pillow_pixels(data).astype(np.float32) / 255.0
      mse = float(np.mean((ours - theirs) ** 2))
      assert mse == 0.0 or 10 * np.log10(1.0 / mse) >= 50.0
      np.testing.assert_array_equal(np.round(ours * 255), np.round(theirs * 255))
      np.testing.assert_array_equal(np.asarray(djpeg.decode(djpeg.load_coefficients(data))), ours)
