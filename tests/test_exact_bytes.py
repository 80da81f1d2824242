"""The writer against libjpeg-turbo: same coefficients in, the same bytes out."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import djpeg
from djpeg import samples
from djpeg.exact import markers
from exact_util import (PIL_SUBSAMPLING, assert_same_coefficients, entropy_data,
                        jpeglib_coefficients, pillow_file, pillow_pixels, random_coefficients)

CASES = [(name, sub) for name in ("limes", "houses", "castle") for sub in PIL_SUBSAMPLING]
CASES.append(("bear_gray", "4:2:0"))


def _pixels(name: str, crop: bool) -> np.ndarray:
  pixels = samples.load(name, uint8=True)
  return pixels[:37, :53] if crop else pixels


@pytest.mark.parametrize("crop", [False, True], ids=["full", "37x53"])
@pytest.mark.parametrize("name,sub", CASES)
def test_standard_tables_scan_data_is_pillows(name, sub, crop):
  """Annex K tables: the entropy-coded data after SOS is byte-identical to Pillow's.

  The 37x53 crop leaves partial MCUs, so this checks libjpeg's dummy blocks too."""
  data = pillow_file(_pixels(name, crop), quality=75, subsampling=PIL_SUBSAMPLING[sub],
                     optimize=False)
  ours = djpeg.dumps(jpeglib_coefficients(data), optimize=False)
  assert entropy_data(ours) == entropy_data(data)
  assert ours == data  # headers too: JFIF, DQT, SOF0, DHT in libjpeg's order


@pytest.mark.parametrize("restart", [None, 1, 5])
@pytest.mark.parametrize("mode", ["optimize", "progressive"])
@pytest.mark.parametrize("name,sub", [("houses", "4:2:0"), ("limes", "4:2:2"), ("castle", "4:4:4"),
                                      ("bear_gray", "4:2:0")])
def test_optimized_and_progressive_files_are_pillows(name, sub, mode, restart):
  """libjpeg's optimal tables, progressive script, EOB runs, correction-bit order and restart
  handling are reproduced exactly: whole files are byte-identical to Pillow's."""
  options = dict(quality=85, subsampling=PIL_SUBSAMPLING[sub], **{mode: True})
  if restart:
    options["restart_marker_blocks"] = restart
  for crop in (False, True):
    data = pillow_file(_pixels(name, crop), **options)
    ours = djpeg.dumps(jpeglib_coefficients(data), progressive=mode == "progressive",
                       restart_interval=restart)
    assert ours == data


@pytest.mark.parametrize("quality", [5, 50, 95, 100])
def test_dumps_of_an_image_is_pillows_file(quality):
  """Image -> file: djpeg's faithful transform plus this writer gives Pillow's exact bytes."""
  pixels = samples.load("castle", uint8=True)
  for sub in PIL_SUBSAMPLING:
    want = pillow_file(pixels, quality=quality, subsampling=PIL_SUBSAMPLING[sub], optimize=True)
    # At 100 every step is 1: libjpeg still writes luma and chroma tables, and so do we.
    assert djpeg.dumps(pixels, quality=quality, subsampling=sub) == want
  gray = samples.load("bear_gray", uint8=True)
  assert djpeg.dumps(gray, quality=quality, progressive=True) == pillow_file(
      gray, quality=quality, progressive=True)


@pytest.mark.parametrize("height,width", [(10, 10), (24, 24), (37, 53), (302, 17),
                                          (520, 24)])
def test_dumps_of_an_image_of_any_height_is_pillows_file(height, width):
  """Where the image ends inside a chroma block (height not a multiple of 16 in 4:2:0),
  libjpeg repeats the last downsampled row, not the last image row, and so must we."""
  from PIL import Image

  castle = Image.fromarray(samples.load("castle", uint8=True))
  pixels = np.asarray(castle.resize((width, height), Image.BICUBIC)).astype(np.int16)
  # Texture down to the last rows, so that a wrongly padded chroma row changes a coefficient.
  noise = np.random.default_rng(height).integers(-40, 41, pixels.shape)
  pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
  for sub in PIL_SUBSAMPLING:
    want = pillow_file(pixels, quality=75, subsampling=PIL_SUBSAMPLING[sub], optimize=True)
    assert djpeg.dumps(pixels, quality=75, subsampling=sub) == want, sub


@pytest.mark.parametrize("restart", [None, 40000])
def test_long_end_of_band_runs_are_pillows(restart):
  """A flat 1500x1500 gray image: end-of-band runs past 4095 and libjpeg's forced flush at
  0x7FFF blocks, byte for byte."""
  pixels = np.full((1500, 1500, 1), 128, np.uint8)
  pixels[700:710, 900:930] = 40  # a few blocks with AC, to break the runs
  options = dict(quality=90, progressive=True)
  if restart:
    options["restart_marker_blocks"] = restart
  data = pillow_file(pixels, **options)
  c = jpeglib_coefficients(data)
  assert djpeg.dumps(c, progressive=True, restart_interval=restart) == data
  np.testing.assert_array_equal(djpeg.load_coefficients(data).components[0], c.components[0])


@pytest.mark.skipif(shutil.which("jpegtran") is None, reason="needs libjpeg-turbo's jpegtran")
@pytest.mark.parametrize("restart", [None, 3])
def test_files_match_jpegtran_for_any_coefficients(restart):
  """libjpeg-turbo's own transcoder (jpegtran -optimize / -progressive) on our baseline file
  writes our optimized and progressive files, for random dense coefficients with unusual
  sampling, and for all-even coefficients whose last refinement scan is nothing but correction
  bits (libjpeg's forced flush of more than 937 buffered bits)."""
  rng = np.random.default_rng(11)
  cases = [random_coefficients(rng, 203, 157, f, density=0.6)
           for f in (((1, 1),), ((1, 2), (1, 1), (1, 1)), ((4, 1), (1, 1), (1, 1)))]
  c = cases[0]
  even = np.where(c.components[0] != 0, np.clip(2 * c.components[0].astype(np.int32), -1022, 1022), 0)
  even[..., 0, 0] = c.components[0][..., 0, 0]
  cases.append(djpeg.Coefficients((even,), c.tables, c.height, c.width, c.sampling))
  for c in cases:
    baseline = djpeg.dumps(c, optimize=False)
    for mode, ours in (("-optimize", djpeg.dumps(c, restart_interval=restart)),
                       ("-progressive", djpeg.dumps(c, progressive=True, restart_interval=restart))):
      args = ["jpegtran", "-copy", "none", "-optimize", mode]
      if restart:
        args += ["-restart", f"{restart}B"]
      theirs = subprocess.run(args, input=baseline, capture_output=True, check=True).stdout
      assert ours[ours.index(b"\xff\xc0" if mode == "-optimize" else b"\xff\xc2"):] == \
          theirs[theirs.index(b"\xff\xc0" if mode == "-optimize" else b"\xff\xc2"):]


@pytest.mark.parametrize("height,width", [(8, 8), (37, 53), (302, 17), (121, 250)])
def test_transform_pixels_is_libjpegs_dct(height, width):
  """The exporter's transform (compiled loops, `djpeg.encode_compiled`) in orthonormal units:
  at quality 100 (every step 1) libjpeg-turbo's stored coefficients are exactly its values
  rounded half away from zero, for every sampling and at edges that need padding."""
  rng = np.random.default_rng(height * width)
  pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
  photo = samples.load("castle", uint8=True)[: height // 2, :width]    # smooth and noisy parts
  pixels[: photo.shape[0], : photo.shape[1]] = photo
  for sub in PIL_SUBSAMPLING:
    want = jpeglib_coefficients(pillow_file(pixels, quality=100,
                                            subsampling=PIL_SUBSAMPLING[sub]))
    assert np.all(want.tables == 1)
    ours = djpeg.codec.transform_pixels(pixels, subsampling=sub)
    for c, (dct, stored) in enumerate(zip(ours, want.components)):
      rows, cols = dct.shape[:2]
      rounded = np.sign(dct) * np.floor(np.abs(dct) + 0.5)
      np.testing.assert_array_equal(rounded, np.asarray(stored)[:rows, :cols], err_msg=f"{sub} {c}")


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_the_8_bit_paths_refuse_other_sample_types(dtype):
  """A cast to uint8 would wrap 16-bit samples (60000 -> 96) or truncate floats in [0, 1]."""
  pixels = np.full((16, 16, 3), 200, dtype)
  with pytest.raises(ValueError, match="must be uint8"):
    djpeg.codec.transform_pixels(pixels)
  with pytest.raises(ValueError, match="must be uint8"):
    djpeg.codec.encode_pixels(pixels, quality=75)
  with pytest.raises(ValueError, match="must be uint8"):
    djpeg.codec.encode_pixels(pixels[None], quality=75)


@pytest.mark.parametrize("fit", [-0.1, 1.5, float("nan")])
def test_chroma_fit_outside_0_to_1_is_refused(fit):
  with pytest.raises(ValueError, match="chroma_fit"):
    djpeg.codec.transform_pixels(np.zeros((16, 16, 3), np.uint8), chroma_fit=fit)


def _upsampling_matrix(n_out: int, n_in: int) -> np.ndarray:
  """libjpeg's fancy upsampling by 2 along one axis (jdsample.c: 3/4 of the nearest sample,
  1/4 of the next nearest, the edge sample repeated), its first `n_out` outputs."""
  a = np.zeros((2 * n_in, n_in))
  for i in range(n_in):
    a[2 * i, i] += 0.75
    a[2 * i, max(i - 1, 0)] += 0.25
    a[2 * i + 1, i] += 0.75
    a[2 * i + 1, min(i + 1, n_in - 1)] += 0.25
  return a[:n_out]


@pytest.mark.parametrize("height,width", [(64, 96), (37, 53)])
def test_fitted_chroma_is_what_libjpeg_turbo_upsamples_best(height, width):
  """Chroma fitted to the decoder (`transform_pixels(chroma_fit=1)`), written at quality 100
  and decoded by libjpeg-turbo (Pillow, upsampled chroma without colour conversion): its Cb
  and Cr are as near the image's own as the least-squares optimum any 4:2:0 plane can reach,
  give or take the file's rounding, and nearer than libjpeg-turbo's box-averaged file by a
  quarter at least."""
  photo = samples.load("limes", uint8=True)
  pixels = np.ascontiguousarray(photo[20:20 + height, 40:40 + width])
  full = djpeg.encode_compiled.ycc_planes(pixels)[1:]

  def decoded_chroma(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("YCbCr", image.size)
    return np.asarray(image, np.float64)[..., 1:].transpose(2, 0, 1)

  dct = djpeg.codec.transform_pixels(pixels, chroma_fit=1.0)
  components = tuple(np.sign(d) * np.floor(np.abs(d) + 0.5) for d in dct)
  ones = np.ones((3, 8, 8), np.float32)
  fitted = djpeg.dumps(djpeg.Coefficients(components, ones, height, width, ((2, 2), (1, 1),
                                                                           (1, 1))))
  box = pillow_file(pixels, quality=100, subsampling=PIL_SUBSAMPLING["4:2:0"])
  av = _upsampling_matrix(height, (height + 1) // 2)
  ah = _upsampling_matrix(width, (width + 1) // 2)
  optimum = [np.linalg.pinv(av) @ p.astype(np.float64) @ np.linalg.pinv(ah).T for p in full]
  best = np.mean([(av @ c @ ah.T - p) ** 2 for c, p in zip(optimum, full)])
  ours = np.mean((decoded_chroma(fitted) - np.stack(full)) ** 2)
  theirs = np.mean((decoded_chroma(box) - np.stack(full)) ** 2)
  # The file rounds three times (fitted samples, coefficients, upsampled output), each adding
  # at most 1/12 to the mean square; box averages land at about twice the optimum.
  assert ours <= best + 0.25, (ours, best)
  assert ours < 0.75 * theirs, (ours, theirs)


def _xyb_luma(pixels: np.ndarray) -> np.ndarray:
  """SSIMULACRA 2's XYB luma (before its scaling) of 8-bit sRGB pixels: sRGB decoded to linear
  light, libjxl's opsin mix for the L and M cones with its bias, cube roots summed."""
  v = pixels.astype(np.float64) / 255
  lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
  bias = 0.0037930732552754493
  cone_l = lin @ np.array([0.30, 0.622, 0.078]) + bias
  cone_m = lin @ np.array([0.23, 0.692, 0.078]) + bias
  return np.cbrt(cone_l) + np.cbrt(cone_m)


def _saturated_edges() -> np.ndarray:
  """Stripes of saturated red, green, blue and yellow, 1 to 5 pixels wide, on odd offsets, so
  that 2x2 chroma averages straddle colour edges, beside a crop of a photo."""
  rng = np.random.default_rng(3)
  colours = np.array([[230, 20, 30], [20, 200, 40], [30, 40, 220], [240, 220, 20]], np.uint8)
  columns, stripes = [], 0
  while len(columns) < 61:
    columns += [colours[stripes % 4]] * int(rng.integers(1, 6))
    stripes += 1
  left = np.broadcast_to(np.stack(columns[:61]), (45, 61, 3))
  photo = samples.load("limes", uint8=True)[10:55, 30:91]
  return np.ascontiguousarray(np.concatenate([left, photo], axis=1))


def _decoded_brightness_error(pixels, luma, chroma, steps, subsampling="4:2:0") -> float:
  """Mean squared error in XYB luma of libjpeg-turbo's decode (Pillow) of the file with these
  components against the image."""
  height, width = pixels.shape[:2]
  factors = djpeg.sampling.factors_for(subsampling, 3)
  data = djpeg.dumps(djpeg.Coefficients((luma,) + tuple(chroma), np.asarray(steps, np.float32),
                                        height, width, factors))
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  return float(np.mean((_xyb_luma(decoded) - _xyb_luma(pixels)) ** 2))


def _rounded(dct, steps):
  return [np.sign(d) * np.floor(np.abs(d) / s + 0.5) for d, s in zip(dct, steps)]


def test_luma_for_coded_chroma_keeps_the_brightness_that_chroma_moves():
  """Y coded for the chroma the decoder will show (`codec.luma_for_coded_chroma`), decoded by
  libjpeg-turbo (Pillow): the pixels' XYB luma (what SSIMULACRA 2 and butteraugli see as
  brightness) is far nearer the image's than with libjpeg's own Y, both for chroma only
  subsampled (quality 100: a twentieth of the error at most, measured a hundredth) and for
  chroma also coarsely quantized, where fitting Y to the unquantized chroma is not enough
  (under a third of either's error)."""
  pixels = _saturated_edges()
  plain = djpeg.codec.transform_pixels(pixels)
  ones, coarse = np.ones((3, 8, 8)), np.stack([np.ones((8, 8))] + [np.full((8, 8), 24.0)] * 2)
  exact_chroma = _rounded(plain[1:], ones[1:])
  fitted = djpeg.codec.luma_for_coded_chroma(pixels, exact_chroma, ones[1:])
  error = {name: _decoded_brightness_error(pixels, _rounded([y], ones[:1])[0], exact_chroma, ones)
           for name, y in (("plain", plain[0]), ("fitted", fitted))}
  assert error["fitted"] < 0.05 * error["plain"], error
  coarse_chroma = _rounded(plain[1:], coarse[1:])
  coded = djpeg.codec.luma_for_coded_chroma(pixels, coarse_chroma, coarse[1:])
  error = {name: _decoded_brightness_error(pixels, _rounded([y], ones[:1])[0], coarse_chroma,
                                           coarse)
           for name, y in (("plain", plain[0]), ("unquantized", fitted), ("coded", coded))}
  assert error["coded"] < 0.3 * min(error["plain"], error["unquantized"]), error


def test_luma_for_coded_chroma_refuses_what_it_cannot_use():
  """Gray images, batches, chroma of another image's shape (the compiled loops would read past
  the planes) and tables of another shape: a ValueError naming the problem."""
  pixels = np.zeros((16, 24, 3), np.uint8)
  chroma = [np.zeros((1, 2, 8, 8), np.int32)] * 2          # 4:2:0 of 16x24: one row of two blocks
  with pytest.raises(ValueError, match="one RGB image"):
    djpeg.codec.luma_for_coded_chroma(pixels[..., :1], chroma, np.ones((2, 8, 8)))
  with pytest.raises(ValueError, match="one RGB image"):
    djpeg.codec.luma_for_coded_chroma(pixels[None], chroma, np.ones((2, 8, 8)))
  for wrong in ([np.zeros((2, 3, 8, 8))] * 2, chroma[:1], [np.zeros((1, 2, 8, 8))] * 3):
    with pytest.raises(ValueError, match="chroma must be"):
      djpeg.codec.luma_for_coded_chroma(pixels, wrong, np.ones((2, 8, 8)))
  with pytest.raises(ValueError, match="chroma_tables"):
    djpeg.codec.luma_for_coded_chroma(pixels, chroma, np.ones((8, 8)))
  assert djpeg.codec.luma_for_coded_chroma(pixels, chroma, np.ones((2, 8, 8))).shape == (2, 3, 8, 8)



def _segments(data: bytes) -> list[tuple[int, bytes]]:
  """(marker, payload) of every segment before the first SOS."""
  return [(marker, payload) for marker, _, payload in markers.header_segments(data)]


def _markers(data: bytes) -> list[int]:
  return [m for m, _ in _segments(data)]


def _sos_selectors(data: bytes) -> list[int]:
  """The first scan's (Td << 4 | Ta) per component."""
  i = data.index(b"\xff\xda")
  return list(data[i + 6:i + 6 + 2 * data[i + 4]:2])


@pytest.mark.parametrize("restart", [None, 3])
@pytest.mark.parametrize("progressive", [False, True, "optimize"])
@pytest.mark.parametrize("name,sub", [("limes", "4:2:0"), ("houses", "4:2:2"),
                                      ("castle", "4:4:4"), ("bear_gray", "4:2:0")])
def test_compact_files_hold_the_same_image_in_fewer_bytes(name, sub, progressive, restart):
  """`compact=True`: jpeglib reads the same coefficients and Pillow the same pixels as from
  libjpeg's layout; the tables are in one DQT segment and one DHT segment per scan, and the
  file is never larger than libjpeg's layout less the merged segments' headers; `jfif=False`
  drops the JFIF APP0 (18 bytes); libjpeg-turbo's strict decoder reads both."""
  for crop in (False, True):
    data = pillow_file(_pixels(name, crop), quality=60, subsampling=PIL_SUBSAMPLING[sub])
    coefficients = jpeglib_coefficients(data)
    options = dict(progressive=progressive, restart_interval=restart)
    plain = djpeg.dumps(coefficients, **options)
    small = djpeg.dumps(coefficients, compact=True, **options)
    bare = djpeg.dumps(coefficients, compact=True, jfif=False, **options)
    for out in (small, bare):
      assert_same_coefficients(jpeglib_coefficients(out), coefficients)
      np.testing.assert_array_equal(pillow_pixels(out), pillow_pixels(plain))
      assert _markers(out).count(0xDB) == 1 and _markers(out).count(0xC4) <= 1
    merged = (_markers(plain).count(0xDB) - 1) + max(_markers(plain).count(0xC4) - 1, 0)
    assert len(small) <= len(plain) - 4 * merged
    assert len(bare) == len(small) - 18 and 0xE0 not in _markers(bare)
    assert "jfif" not in Image.open(io.BytesIO(bare)).info
    if shutil.which("djpeg"):
      for out in (small, bare):
        subprocess.run(["djpeg", "-strict"], input=out, check=True, capture_output=True)


def test_compact_files_share_huffman_tables_where_that_is_smaller():
  """Luma and chroma share a Huffman table where one costs fewer bytes than two: on a 32x32
  image (about half of its file is headers) both classes are shared and the file is smaller
  than with the segments merged alone; on a larger 4:4:4 image the tables stay apart and the
  file is libjpeg's less the merged segments' headers."""
  small = pillow_file(samples.load("limes", uint8=True)[:32, :32], quality=75, subsampling=2)
  c = jpeglib_coefficients(small)
  plain, compact = djpeg.dumps(c), djpeg.dumps(c, compact=True)
  assert _sos_selectors(plain) == [0x00, 0x11, 0x11]
  assert _sos_selectors(compact) == [0x00, 0x00, 0x00]
  assert list(markers.parse_dht(dict(_segments(compact))[0xC4])) == [(0, 0), (1, 0)]
  assert len(compact) < len(plain) - 4 - 12 - 2 * 17    # two tables fewer, each 17 bytes or more
  large = pillow_file(samples.load("castle", uint8=True), quality=75, subsampling=0)
  c = jpeglib_coefficients(large)
  plain, compact = djpeg.dumps(c), djpeg.dumps(c, compact=True)
  assert _sos_selectors(compact) == _sos_selectors(plain) == [0x00, 0x11, 0x11]
  assert len(compact) == len(plain) - 4 - 12    # one DQT and three DHT segment headers fewer


def test_jfif_false_refuses_a_print_density():
  image = samples.load("limes", uint8=True)
  with pytest.raises(ValueError, match="JFIF"):
    djpeg.dumps(image, dpi=(300, 300), jfif=False)
  assert Image.open(io.BytesIO(djpeg.dumps(image, dpi=(300, 300), compact=True))).info[
      "dpi"] == (300, 300)
