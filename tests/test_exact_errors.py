"""Bad input: malformed files raise JPEGError (never hang, never anything else); bad arguments
to save/dumps raise ValueError naming the problem and leave no file behind."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

import djpeg
from djpeg import samples
from djpeg.exact import JPEGError
from conftest import read_dct
from exact_util import pillow_file, random_coefficients


def _segment(marker: int, payload: bytes) -> bytes:
  return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(tc_th: int, lengths: dict[int, list[int]]) -> bytes:
  """A DHT segment from {code length: [symbols]}."""
  bits = bytes(len(lengths.get(n, [])) for n in range(1, 17))
  values = bytes(v for n in range(1, 17) for v in lengths.get(n, []))
  return _segment(0xC4, bytes([tc_th]) + bits + values)


def _tiny(scan_data: bytes, *, sof=0xC0, precision=8, components=1, sos=None, dqt=None,
          dc=None, ac=None) -> bytes:
  """An 8x8 gray JPEG with hand-made tables: DC '0' -> 0; AC '0' -> ZRL, '10' -> EOB,
  '110' -> (0, 1), '1110' -> (15, 1)."""
  dqt = dqt if dqt is not None else _segment(0xDB, bytes([0]) + bytes([1] * 64))
  comps = b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
  sof_seg = _segment(sof, struct.pack(">BHHB", precision, 8, 8, components) + comps)
  dc = dc if dc is not None else _dht(0x00, {1: [0]})
  ac = ac if ac is not None else _dht(0x10, {1: [0xF0], 2: [0x00], 3: [0x01], 4: [0xF1]})
  sos = sos if sos is not None else _segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
  return b"\xff\xd8" + dqt + sof_seg + dc + ac + sos + scan_data + b"\xff\xd9"


def _bits(s: str) -> bytes:
  s += "1" * (-len(s) % 8)
  return int(s, 2).to_bytes(len(s) // 8, "big")


def test_tiny_file_is_valid():
  c = djpeg.load_coefficients(_tiny(_bits("0" + "110" + "1" + "10")))  # DC 0, AC[1] = 1, EOB
  assert c.components[0].shape == (1, 1, 8, 8) and c.components[0][0, 0, 0, 1] == 1


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"GIF89a" + bytes(100), "SOI"),
    (b"\xff\xd8", "truncated"),
    (b"\xff\xd8\xff\xdb\x00", "truncated"),
    (b"\xff\xd8\xff\xdb\x00\x01", "length"),
    (b"\xff\xd8\x00\x00", "corrupt marker"),
    (b"\xff\xd8\xff\xd9", "no frame"),
])
def test_broken_structure(data, message):
  with pytest.raises(JPEGError, match=message):
    djpeg.load_coefficients(data)


@pytest.mark.parametrize("make,message", [
    (lambda: _tiny(_bits("0" + "0000")), "zero run beyond"),              # 4 ZRLs: k = 65
    (lambda: _tiny(_bits("0" + "000" + "1110")), "beyond the block"),     # k = 49 + 15 = 64
    (lambda: _tiny(_bits("0" + "1111")), "invalid AC Huffman code"),      # unassigned code
    (lambda: _tiny(_bits("0")[:0]), "truncated"),                          # no scan data at all
    (lambda: _tiny(_bits("0" + "10"), dqt=_segment(0xDB, bytes([0]) + bytes(64))), "zero entry"),
    (lambda: _tiny(b"", dc=_dht(0x00, {1: [0, 1, 2]})), "over-subscribe"),
    (lambda: _tiny(b"", dc=_segment(0xC4, bytes([0]) + bytes([0, 255, 2]) + bytes(13) + bytes(257))),
     "at most 256"),
    (lambda: _tiny(b"", dc=_dht(0x00, {1: [16]})), "above 15"),
    (lambda: _tiny(b"", dqt=_segment(0xDB, bytes([0]) + bytes([1] * 60))), "cut short"),
    (lambda: _tiny(b"", sos=_segment(0xDA, bytes([1, 1, 0x00, 1, 63, 0]))), "Ss=1"),
    (lambda: _tiny(b"", sos=_segment(0xDA, bytes([1, 9, 0x00, 0, 63, 0]))), "not in the frame"),
    (lambda: _tiny(b"", sos=_segment(0xDA, bytes([1, 1, 0x00, 0, 63]))), "length"),
    (lambda: _tiny(b"", sof=0xC2, sos=_segment(0xDA, bytes([1, 1, 0x00, 1, 64, 0]))), "band"),
    (lambda: _tiny(b"", sof=0xC2, sos=_segment(0xDA, bytes([1, 1, 0x00, 0, 0, 0x23]))),
     "successive approximation"),
    (lambda: _tiny(b"", sof=0xC2, sos=_segment(0xDA, bytes([1, 1, 0x00, 1, 5, 0]))),
     "before its DC scan"),
    (lambda: _tiny(b"", sof=0xC9), "arithmetic"),
    (lambda: _tiny(b"", sof=0xC3), "lossless"),
    (lambda: _tiny(b"", sof=0xC5), "hierarchical"),
    (lambda: _tiny(b"", sof=0xC1, precision=12), "12-bit"),
    (lambda: _tiny(b"", components=4), "4 components"),
    (lambda: _tiny(b"", components=2), "2 components"),
])
def test_malformed_or_unsupported(make, message):
  with pytest.raises(JPEGError, match=message):
    djpeg.load_coefficients(make())


def test_restart_marker_problems():
  data = pillow_file(samples.load("limes", uint8=True), quality=70, restart_marker_blocks=2)
  at = data.index(b"\xff\xd1")
  with pytest.raises(JPEGError, match="out of sequence"):
    djpeg.load_coefficients(data[:at] + b"\xff\xd3" + data[at + 2:])
  dri = data.index(b"\xff\xdd")
  with pytest.raises(JPEGError, match="restart intervals"):
    djpeg.load_coefficients(data[:dri + 4] + b"\x00\x05" + data[dri + 6:])


def _base_files() -> list[bytes]:
  rng = np.random.default_rng(0)
  pixels = samples.load("castle", uint8=True)[:40, :48]
  gray = samples.load("bear_gray", uint8=True)[:24, :40]
  return [
      pillow_file(pixels, quality=75),
      pillow_file(pixels, quality=90, progressive=True),
      pillow_file(pixels, quality=60, subsampling=1, restart_marker_blocks=1),
      pillow_file(gray, quality=75, progressive=True, restart_marker_blocks=2),
      djpeg.dumps(random_coefficients(rng, 30, 20, ((1, 1),)), progressive=True, optimize=False),
  ]


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
  b = bytearray(data)
  kind = rng.integers(6)
  if kind == 0:  # flip bytes
    for _ in range(rng.integers(1, 4)):
      b[rng.integers(len(b))] = rng.integers(256)
  elif kind == 1:  # truncate
    b = b[:rng.integers(len(b))]
  elif kind == 2:  # insert random bytes
    at = rng.integers(len(b))
    b[at:at] = rng.integers(0, 256, rng.integers(1, 8)).astype(np.uint8).tobytes()
  elif kind == 3:  # corrupt a marker or a segment length
    markers = [i for i in range(len(b) - 3) if b[i] == 0xFF and b[i + 1] not in (0, 0xFF)]
    i = markers[rng.integers(len(markers))]
    b[i + 1 + rng.integers(3)] = rng.integers(256)
  elif kind == 4:  # delete a span
    at = rng.integers(len(b))
    del b[at:at + rng.integers(1, 16)]
  else:  # random bits flipped in the header region
    for _ in range(rng.integers(1, 3)):
      i = rng.integers(min(len(b), 700))
      b[i] ^= 1 << rng.integers(8)
  return bytes(b)


def test_fuzzed_files_raise_only_jpeg_error():
  """2,400 seeded mutations of valid files (flips, truncations, insertions, marker and length
  corruptions): each either reads or raises JPEGError, and none hangs."""
  rng = np.random.default_rng(1234)
  files = _base_files()
  outcomes = {"ok": 0, "error": 0}
  slowest = 0.0
  for i in range(2400):
    data = _mutate(rng, files[i % len(files)])
    start = time.perf_counter()
    try:
      djpeg.load_coefficients(data)
      outcomes["ok"] += 1
    except JPEGError:
      outcomes["error"] += 1
    slowest = max(slowest, time.perf_counter() - start)
  assert outcomes["error"] > 1000
  # A guard against hangs, not a speed figure: the first file that needs the reader's int32
  # store compiles it then (about 2 s on 2 cores, which once failed a 2 s bound on a fresh
  # install); a pathological loop would run far longer.
  assert slowest < 30.0


def test_random_bytes_raise_jpeg_error():
  rng = np.random.default_rng(5)
  for n in (1, 2, 10, 1000):
    for prefix in (b"", b"\xff\xd8"):
      with pytest.raises(JPEGError):
        djpeg.load_coefficients(prefix + rng.integers(0, 256, n).astype(np.uint8).tobytes())


# ------------------------------------------------------------------------- writing errors


def _coefficients():
  return random_coefficients(np.random.default_rng(3), 20, 30, ((2, 2), (1, 1), (1, 1)))


def test_tables_outside_their_range_are_refused_naming_table_and_entry(tmp_path):
  c = _coefficients()
  tables = np.array(c.tables)
  tables[1, 2, 3] = 65536
  bad = djpeg.Coefficients(c.components, tables, c.height, c.width, c.sampling)
  with pytest.raises(ValueError, match=r"table 1 entry \[2, 3\] is 65536"):
    djpeg.save(tmp_path / "x.jpg", bad)
  # Coefficients may carry libjpeg's 16-bit steps (files written below quality 25): written
  # as libjpeg writes them (16-bit DQT, SOF1), read back by libjpeg (jpeglib) as they were.
  tables[1, 2, 3] = 256
  data = djpeg.dumps(djpeg.Coefficients(c.components, tables, c.height, c.width, c.sampling))
  assert b"\xff\xc1" in data
  values, steps = read_dct(data)
  assert steps[1][2, 3] == 256 and all(np.array_equal(a, b) for a, b in zip(values, c.components))
  with pytest.raises(ValueError, match=r"table 0 entry \[0, 0\] is 0"):
    djpeg.dumps(samples.load("limes", uint8=True), qtables=[[0] + [1] * 63])
  with pytest.raises(ValueError, match=r"entry \[7, 7\] is 300"):
    djpeg.dumps(samples.load("limes", uint8=True), qtables=[[1] * 63 + [300]])
  assert list(tmp_path.iterdir()) == []


def test_bad_coefficients_are_refused_and_leave_no_file(tmp_path):
  c = _coefficients()
  y = np.array(c.components[0], np.float32)
  y[1, 2, 3, 4] = 0.5
  with pytest.raises(ValueError, match="non-integer"):
    djpeg.save(tmp_path / "a.jpg", djpeg.Coefficients((y,) + c.components[1:], c.tables,
                                                      c.height, c.width, c.sampling))
  cr = np.array(c.components[2])
  cr[0, 1, 0, 5] = 1024
  with pytest.raises(ValueError, match=r"component 2 block \(row 0, col 1\): AC"):
    djpeg.save(tmp_path / "b.jpg", djpeg.Coefficients(c.components[:2] + (cr,), c.tables,
                                                      c.height, c.width, c.sampling))
  gray = random_coefficients(np.random.default_rng(4), 20, 30, ((1, 1),))
  y = np.array(gray.components[0])
  y[1, 1, 0, 0], y[1, 2, 0, 0] = 2000, -2000  # each fits, but the step of -4000 needs 12 bits
  with pytest.raises(ValueError, match=r"component 0 block \(row 1, col 2\): DC difference"):
    djpeg.save(tmp_path / "c.jpg", djpeg.Coefficients((y,), gray.tables, 20, 30, ((1, 1),)))
  with pytest.raises(ValueError, match="quality"):
    djpeg.save(tmp_path / "d.jpg", c, quality=80)
  assert list(tmp_path.iterdir()) == []


def test_noise_rounding_is_refused():
  import jax
  c = djpeg.encode(samples.load("bear_gray"), rounding="noise", key=jax.random.key(0))
  with pytest.raises(ValueError, match="non-integer"):
    djpeg.dumps(c)


def test_adversarial_runs_and_scans_stay_fast():
  """A large flat progressive frame (long end-of-band runs in every scan) reads quickly, and a
  file whose scans claim far more blocks than its data could hold is refused quickly."""
  c = djpeg.load_coefficients(djpeg.dumps(np.full((1200, 1600, 1), 0.5, np.float32), progressive=True))
  assert c.components[0].shape == (150, 200, 8, 8)
  flat = djpeg.dumps(np.full((1200, 1600, 1), 0.5, np.float32), progressive=True)
  sos = flat.index(b"\xff\xda")
  start = time.perf_counter()
  with pytest.raises(JPEGError):
    # the frame header claims 65535 x 65535 pixels
    djpeg.load_coefficients(flat[:sos].replace(b"\x08\x04\xb0\x06\x40", b"\x08\xff\xff\xff\xff")
                            + flat[sos:])
  assert time.perf_counter() - start < 2.0
