"""The compiled coefficient reader against libjpeg: files written by libjpeg-turbo (Pillow) and
by libjpeg through jpeglib read exactly as `jpeglib.read_dct` reads them; values beyond int16
come back as int32; errors in progressive entropy-coded data are named; a large file costs
little memory beyond its coefficients.

(`test_exact_properties` covers files djpeg writes itself; these are libjpeg's own files, with
its scan scripts, end-of-band runs and sampling factors, from images with texture.)
"""

from __future__ import annotations

import os
import struct
import tempfile
import tracemalloc

import jpeglib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import djpeg
from djpeg.exact import JPEGError
from djpeg.tables import ZIGZAG
from exact_util import PIL_SUBSAMPLING, assert_same_coefficients, jpeglib_coefficients, pillow_file

#: Sampling factors libjpeg writes through jpeglib, beyond Pillow's three: `(h, v)` per component.
UNUSUAL_FACTORS = [
    ((1, 2), (1, 1), (1, 1)),  # 4:4:0
    ((4, 1), (1, 1), (1, 1)),  # 4:1:1
    ((4, 2), (1, 1), (1, 1)),  # 4:1:0
    ((1, 4), (1, 1), (1, 1)),
    ((3, 1), (1, 1), (1, 1)),
    ((2, 2), (2, 1), (1, 1)),  # a chroma component sampled finer than the other
    ((2, 2), (1, 2), (2, 1)),
]


def _image(rng: np.random.Generator, height: int, width: int, channels: int,
           texture: float) -> np.ndarray:
  """uint8 `(H, W, C)`: smooth gradients plus noise of standard deviation `texture`."""
  y, x = np.mgrid[:height, :width].astype(np.float64)
  phase = rng.uniform(0, 2 * np.pi, (channels, 1, 1))
  scale = rng.uniform(0.01, 0.3, (channels, 1, 1))
  smooth = 128 + 90 * np.sin(scale * x + phase) * np.cos(0.7 * scale * y - phase)
  pixels = smooth + rng.normal(0, texture, smooth.shape)
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _libjpeg_file(pixels: np.ndarray, factors, quality: int, progressive: bool,
                  optimize: bool) -> bytes:
  """libjpeg's file (through jpeglib) with sampling factors `factors` (`(h, v)` per component)."""
  image = jpeglib.from_spatial(pixels)
  if pixels.shape[-1] == 3:
    image.samp_factor = tuple((v, h) for h, v in factors)  # jpeglib's order is (v, h)
  flags = ["+PROGRESSIVE_MODE" if progressive else "-PROGRESSIVE_MODE",
           "+OPTIMIZE_CODING" if optimize else "-OPTIMIZE_CODING"]
  fd, path = tempfile.mkstemp(suffix=".jpg")
  os.close(fd)
  try:
    image.write_spatial(path, qt=quality, flags=flags)
    with open(path, "rb") as f:
      return f.read()
  finally:
    os.unlink(path)


_EDGES = st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 31, 33])


@st.composite
def cases(draw):
  writer = draw(st.sampled_from(["pillow", "libjpeg"]))
  gray = draw(st.booleans())
  case = dict(
      seed=draw(st.integers(0, 2**32 - 1)),
      writer=writer,
      height=draw(st.one_of(_EDGES, st.integers(1, 160))),
      width=draw(st.one_of(_EDGES, st.integers(1, 160))),
      gray=gray,
      texture=draw(st.sampled_from([0.0, 3.0, 20.0, 90.0])),
      quality=draw(st.sampled_from([1, 20, 50, 75, 90, 95, 100])),
      progressive=draw(st.booleans()),
      optimize=draw(st.booleans()),
  )
  if writer == "pillow":
    case["subsampling"] = None if gray else draw(st.sampled_from(sorted(PIL_SUBSAMPLING)))
    case["restart"] = draw(st.sampled_from([None, None, ("blocks", 1), ("blocks", 3),
                                            ("blocks", 50), ("rows", 1)]))
  else:
    case["factors"] = None if gray else draw(st.sampled_from(UNUSUAL_FACTORS))
  return case


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_reads_libjpeg_files_exactly_as_jpeglib(case):
  rng = np.random.default_rng(case["seed"])
  pixels = _image(rng, case["height"], case["width"], 1 if case["gray"] else 3, case["texture"])
  if case["writer"] == "pillow":
    options = dict(quality=case["quality"], progressive=case["progressive"],
                   optimize=case["optimize"])
    if case["subsampling"]:
      options["subsampling"] = PIL_SUBSAMPLING[case["subsampling"]]
    if case["restart"]:
      kind, count = case["restart"]
      options[f"restart_marker_{kind}"] = count
    data = pillow_file(pixels, **options)
  else:
    data = _libjpeg_file(pixels, case["factors"], case["quality"], case["progressive"],
                         case["optimize"])
  got = djpeg.load_coefficients(data)
  assert_same_coefficients(got, jpeglib_coefficients(data))
  assert all(np.asarray(c).dtype == np.int16 for c in got.components)


def test_real_file_objects(tmp_path):
  """An open file (not only BytesIO, which test_exact_reader covers) and a pathlib path."""
  data = pillow_file(_image(np.random.default_rng(0), 40, 56, 3, 10.0), quality=80,
                     progressive=True)
  path = tmp_path / "x.jpg"
  path.write_bytes(data)
  want = jpeglib_coefficients(data)
  with open(path, "rb") as f:
    assert_same_coefficients(djpeg.load_coefficients(f), want)
  assert_same_coefficients(djpeg.load_coefficients(path), want)


# ---------------------------------------------------------------- hand-made entropy-coded data


def _segment(marker: int, payload: bytes) -> bytes:
  return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(tc_th: int, lengths: dict[int, list[int]]) -> bytes:
  """A DHT segment from {code length: [symbols]}."""
  bits = bytes(len(lengths.get(n, [])) for n in range(1, 17))
  values = bytes(v for n in range(1, 17) for v in lengths.get(n, []))
  return _segment(0xC4, bytes([tc_th]) + bits + values)


def _data(bits: str) -> bytes:
  """Entropy-coded bytes of a bit string: padded with ones, FF bytes stuffed."""
  bits += "1" * (-len(bits) % 8)
  raw = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
  return raw.replace(b"\xff", b"\xff\x00")


# DC: '0' -> size 0. AC: '00' EOB, '01' (0, 1), '100' ZRL, '101' EOB run of 4-7 blocks (2 bits),
# '110' (15, 1), '1110' (0, 2), '11110' (0, 10).
_DC_TABLE = _dht(0x00, {1: [0x00]})
_AC_TABLE = _dht(0x10, {2: [0x00, 0x01], 3: [0xF0, 0x20, 0xF1], 4: [0x02], 5: [0x0A]})


def _gray_file(sof: int, height: int, width: int, scans: list[tuple[tuple[int, ...], str]],
               tables: bytes = _DC_TABLE + _AC_TABLE) -> bytes:
  """A gray file with hand-made scans: ((Ss, Se, Ah, Al), bit string) each."""
  dqt = _segment(0xDB, bytes([0]) + bytes([1] * 64))
  frame = _segment(sof, struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0]))
  body = b""
  for (ss, se, ah, al), bits in scans:
    body += _segment(0xDA, bytes([1, 1, 0x00, ss, se, (ah << 4) | al])) + _data(bits)
  return b"\xff\xd8" + dqt + frame + tables + body + b"\xff\xd9"


_DC = ((0, 0, 0, 0), "00")  # two blocks (16x8 pixels), DC 0
_AC_EMPTY = ((1, 63, 0, 1), "0000")  # two EOBs


@pytest.mark.parametrize("scans,message", [
    ([_DC, ((1, 63, 0, 0), "101" + "00")], "end-of-band run of 4 blocks passes the end"),
    ([_DC, ((1, 5, 0, 0), "100")], "zero run beyond the band"),
    ([_DC, ((1, 5, 0, 0), "110" + "1")], r"AC coefficient beyond the band \(k=16\)"),
    ([_DC, ((1, 63, 0, 0), "1111")], "invalid AC Huffman code"),
    ([_DC, ((1, 63, 0, 0), "")], r"truncated \(an AC scan"),
    ([_DC, _AC_EMPTY, ((1, 63, 1, 0), "1110" + "11")], "refinement symbol of size 2"),
    ([_DC, ((1, 5, 0, 1), "0000"), ((1, 5, 1, 0), "110" + "1")],
     "refinement run beyond the band"),
    ([_DC, _AC_EMPTY, ((1, 63, 1, 0), "101" + "00")], "end-of-band run of 4 blocks passes"),
    ([_DC, _AC_EMPTY, ((1, 63, 1, 0), "")], r"truncated \(an AC refinement scan"),
    ([((0, 0, 0, 1), "00"), ((0, 0, 1, 0), "")], r"truncated \(a DC refinement scan\)"),
    ([((0, 0, 0, 0), "")], r"truncated \(a DC scan"),
])
def test_progressive_data_errors_are_named(scans, message):
  with pytest.raises(JPEGError, match=message):
    djpeg.load_coefficients(_gray_file(0xC2, 8, 16, scans))


def test_progressive_refinement_of_hand_made_data():
  """A first scan at Al=1 and a refinement: new +-1 values, correction bits, an EOB run."""
  first = "01" + "1" + "01" + "0" + "00" + "00"  # block 0: +2 at k=1, -2 at k=2; block 1: EOB
  # Block 0: correction bits 1 (k=1: 2 -> 3) and 0 (k=2), then a new -1 at the first zero
  # (k=3); EOB. Block 1: a new +1 at k=1, EOB.
  refine = "01" + "0" + "1" + "0" + "00" + "01" + "1" + "00"
  data = _gray_file(0xC2, 8, 16, [_DC, ((1, 63, 0, 1), first), ((1, 63, 1, 0), refine)])
  c = djpeg.load_coefficients(data)
  assert_same_coefficients(c, jpeglib_coefficients(data))
  block0 = np.asarray(c.components[0][0, 0]).reshape(64)[ZIGZAG]
  block1 = np.asarray(c.components[0][0, 1]).reshape(64)[ZIGZAG]
  assert block0[:5].tolist() == [0, 3, -2, -1, 0] and block1[:3].tolist() == [0, 1, 0]


def test_values_beyond_int16_come_back_as_int32():
  """Only corrupt files code them (DC predictors that drift, Al shifts of large values); the
  reader keeps the values (libjpeg would wrap them to 16 bits)."""
  tables = _dht(0x00, {1: [11]}) + _dht(0x10, {1: [0x00]})  # DC: '0' size 11; AC: '0' EOB
  blocks = 20
  data = _gray_file(0xC0, 8, 8 * blocks, [((0, 63, 0, 0), ("0" + "1" * 11 + "0") * blocks)],
                    tables)
  c = djpeg.load_coefficients(data)
  y = np.asarray(c.components[0])
  assert y.dtype == np.int32
  np.testing.assert_array_equal(y[0, :, 0, 0], 2047 * np.arange(1, blocks + 1))
  assert not y.reshape(blocks, 64)[:, 1:].any()

  shifted = "11110" + "1" * 10 + "00" + "00"  # block 0: 1023 at k=1, then EOB; block 1: EOB
  c = djpeg.load_coefficients(_gray_file(0xC2, 8, 16, [_DC, ((1, 63, 0, 13), shifted)]))
  y = np.asarray(c.components[0])
  assert y.dtype == np.int32 and y[0, 0, 0, 1] == 1023 << 13
  assert np.count_nonzero(y) == 1


def test_large_progressive_file_costs_little_memory_beyond_its_coefficients():
  """A 12-megapixel 4:2:0 progressive file: read exactly, with a peak allocation below twice
  the int16 coefficient arrays the reader returns."""
  tile = _image(np.random.default_rng(3), 500, 500, 3, 12.0)
  data = pillow_file(np.tile(tile, (6, 8, 1)), quality=90, progressive=True, subsampling=2)
  # A first read loads the compiled decoders (numba allocates Python objects doing so).
  djpeg.load_coefficients(pillow_file(tile[:16, :16], progressive=True, subsampling=2))
  tracemalloc.start()
  try:
    got = djpeg.load_coefficients(data)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  coefficient_bytes = sum(np.asarray(c).nbytes for c in got.components)
  assert peak < 2 * coefficient_bytes, (peak, coefficient_bytes)
  assert_same_coefficients(got, jpeglib_coefficients(data))
