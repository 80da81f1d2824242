"""JPEG markers and segments, read: the reader's side of `writer` (libjpeg-turbo's `jdmarker.c`).

Each function parses one kind of segment and checks it, raising `JPEGError` with what is wrong:
`next_marker` and `segment` walk the file, `parse_dqt` (quantization tables), `parse_dht`
(Huffman tables, as decoder lookups), `parse_sof` (the frame: size, components, sampling
factors), `parse_sos` (a scan header) and `check_progression` (whether a scan may follow the
ones before it). `UNSUPPORTED_SOF` names the frame types the reader refuses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg import sampling as sampling_lib
from djpeg.exact.bitreader import decoder_lut, entropy_segment
from djpeg.exact.errors import JPEGError, UnsupportedJPEGError
from djpeg.tables import ZIGZAG

#: Frame markers the reader refuses, with their names.
UNSUPPORTED_SOF = {
    0xC3: "lossless (SOF3)", 0xC5: "hierarchical (SOF5)", 0xC6: "hierarchical progressive (SOF6)",
    0xC7: "hierarchical lossless (SOF7)", 0xC9: "arithmetic-coded (SOF9)",
    0xCA: "arithmetic-coded progressive (SOF10)", 0xCB: "arithmetic-coded lossless (SOF11)",
    0xCD: "arithmetic-coded hierarchical (SOF13)", 0xCE: "arithmetic-coded hierarchical (SOF14)",
    0xCF: "arithmetic-coded hierarchical lossless (SOF15)",
}


@dataclasses.dataclass
class Component:
  """One frame component: its id, sampling factors, table slot and place in the store."""
  ident: int
  h: int
  v: int
  tq: int
  rows: int = 0
  cols: int = 0
  offset: int = 0  # first row in the coefficient store
  table: np.ndarray | None = None


@dataclasses.dataclass
class Frame:
  """The SOF segment: progressive or not, size, components."""
  progressive: bool
  height: int
  width: int
  components: list[Component]

  @property
  def factors(self):
    return tuple((c.h, c.v) for c in self.components)

  @property
  def num_blocks(self) -> int:
    return sum(c.rows * c.cols for c in self.components)


@dataclasses.dataclass(frozen=True)
class ScanHeader:
  """An SOS segment: frame component indices, (DC, AC) table selectors, band and bit position."""
  components: tuple[int, ...]
  selectors: tuple[tuple[int, int], ...]
  ss: int
  se: int
  ah: int
  al: int


def u16(data: bytes, i: int) -> int:
  return (data[i] << 8) | data[i + 1]


def next_marker(data: bytes, pos: int) -> tuple[int, int]:
  """(position after the marker, marker code) of the marker at `pos`, skipping fill bytes."""
  if pos >= len(data):
    raise JPEGError("truncated file: it ends before the EOI marker.")
  if data[pos] != 0xFF:
    raise JPEGError(f"corrupt marker: byte {pos} is {data[pos]:#04x}, expected FF.")
  while pos < len(data) and data[pos] == 0xFF:  # fill bytes
    pos += 1
  if pos >= len(data):
    raise JPEGError("truncated file: it ends inside a marker.")
  return pos + 1, data[pos]


def segment(data: bytes, pos: int, marker: int) -> tuple[bytes, int]:
  """(payload, position after it) of the segment whose length field is at `pos`."""
  if pos + 2 > len(data):
    raise JPEGError(f"truncated file: the FF {marker:02X} segment has no length.")
  length = u16(data, pos)
  if length < 2:
    raise JPEGError(f"FF {marker:02X} segment has an invalid length {length}.")
  if pos + length > len(data):
    raise JPEGError(f"truncated file: the FF {marker:02X} segment needs {length} bytes, "
                    f"{len(data) - pos} remain.")
  return data[pos + 2:pos + length], pos + length


#: Markers without a length field that libjpeg skips between segments (TEM, RST0..RST7).
PARAMETERLESS = frozenset([0x01] + list(range(0xD0, 0xD8)))


def header_segments(data: bytes) -> list[tuple[int, int, bytes]]:
  """The (marker, position of the marker's FF, payload) of every segment before the first scan,
  in file order; parameterless markers (TEM, RSTn), which libjpeg skips there, are skipped.

  Raises:
    JPEGError: not a JPEG file, an unknown marker, or markers that end before a scan.
  """
  if data[:2] != b"\xff\xd8":
    raise JPEGError("not a JPEG file: it does not start with an SOI marker (FF D8).")
  out, pos = [], 2
  while True:
    pos, marker = next_marker(data, pos)
    if marker in (0xDA, 0xD9):
      return out
    if marker in PARAMETERLESS:
      continue
    if marker == 0x00 or 0x02 <= marker <= 0xBF:
      raise JPEGError(f"unknown marker FF {marker:02X}.")
    if marker == 0xD8:        # as the reader says it (it has no length to read)
      raise JPEGError("a second SOI marker inside the file.")
    payload, pos = segment(data, pos, marker)
    out.append((marker, pos - len(payload) - 4, payload))


def image_end(data: bytes) -> int:
  """The offset just after the file's EOI marker, found by walking its segments and scans
  (no decoding); bytes after it (another picture of a multi-picture file, a video) are not
  this image's.

  Raises:
    JPEGError: not a JPEG file, or one that ends before its EOI.
  """
  if data[:2] != b"\xff\xd8":
    raise JPEGError("not a JPEG file: it does not start with an SOI marker (FF D8).")
  array, pos = np.frombuffer(data, np.uint8), 2
  while True:
    pos, marker = next_marker(data, pos)
    if marker == 0xD9:
      return pos
    if marker in PARAMETERLESS:
      continue
    if marker == 0xD8:
      raise JPEGError("a second SOI marker inside the file.")
    _, pos = segment(data, pos, marker)
    if marker == 0xDA:
      pos = entropy_segment(array, pos)[0]


def metadata_segments(data: bytes) -> list[tuple[int, bytes]]:
  """The (marker, payload) of every APPn and COM segment before the first scan, in file order.

  Raises:
    JPEGError: not a JPEG file, or one whose markers end before a scan.
  """
  return [(marker, payload) for marker, _, payload in header_segments(data)
          if 0xE0 <= marker <= 0xEF or marker == 0xFE]


def frame_component_ids(data: bytes) -> tuple[int, ...]:
  """The component ids of the file's frame header (SOF), in frame order (() when none)."""
  for marker, _, payload in header_segments(data):
    if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(payload) >= 6:
      return tuple(payload[6 + 3 * c] for c in range(payload[5]) if 8 + 3 * c < len(payload))
  return ()


def is_rgb_coded(segments: list[tuple[int, bytes]], component_ids: tuple[int, ...] = ()) -> bool:
  """Whether a 3-component file's components are RGB, not YCbCr, by libjpeg's rule
  (`jdapimin.c`, `default_decompress_parms`): a JFIF APP0 means YCbCr; else an Adobe APP14
  segment decides (transform 0: RGB); else component ids 'R', 'G', 'B' (82, 71, 66) mean RGB."""
  if any(marker == 0xE0 and payload[:5] == b"JFIF\x00" and len(payload) >= 14
         for marker, payload in segments):
    return False
  for marker, payload in segments:
    if marker == 0xEE and payload[:5] == b"Adobe" and len(payload) >= 12:
      return payload[11] == 0
  return tuple(component_ids) == (82, 71, 66)


def parse_dqt(p: bytes) -> dict[int, np.ndarray]:
  """{slot: `(8, 8)` float32 table in natural order} of one DQT segment."""
  tables = {}
  i = 0
  while i < len(p):
    pq, tq = p[i] >> 4, p[i] & 15
    if pq > 1 or tq > 3:
      raise JPEGError(f"DQT: bad precision/slot byte {p[i]:#04x}.")
    size = 64 * (pq + 1)
    if i + 1 + size > len(p):
      raise JPEGError(f"DQT: table {tq} is cut short by the segment length.")
    raw = np.frombuffer(p[i + 1:i + 1 + size], ">u2" if pq else np.uint8).astype(np.float32)
    if (raw == 0).any():
      raise JPEGError(f"DQT: quantization table {tq} has a zero entry.")
    table = np.zeros(64, np.float32)
    table[ZIGZAG] = raw
    tables[tq] = table.reshape(8, 8)
    i += 1 + size
  return tables


def parse_dht(p: bytes) -> dict[tuple[int, int], list[int]]:
  """{(class, slot): decoder lookup (`decoder_lut`)} of one DHT segment."""
  tables = {}
  i = 0
  while i < len(p):
    if i + 17 > len(p):
      raise JPEGError("DHT: a table header is cut short by the segment length.")
    tc, th = p[i] >> 4, p[i] & 15
    if tc > 1 or th > 3:
      raise JPEGError(f"DHT: bad class/slot byte {p[i]:#04x}.")
    bits = tuple(p[i + 1:i + 17])
    count = sum(bits)
    if count > 256:
      raise JPEGError(f"DHT: table {'DC' if tc == 0 else 'AC'} {th} lists {count} codes "
                      "(at most 256).")
    if i + 17 + count > len(p):
      raise JPEGError("DHT: the symbol list is cut short by the segment length.")
    values = bytes(p[i + 17:i + 17 + count])
    if tc == 0 and any(v > 15 for v in values):
      raise JPEGError(f"DHT: DC table {th} has a symbol above 15.")
    try:
      tables[(tc, th)] = decoder_lut(bits, values)
    except JPEGError as e:
      raise JPEGError(f"DHT: {'DC' if tc == 0 else 'AC'} table {th}: {e}") from None
    i += 17 + count
  return tables


def parse_sof(marker: int, p: bytes, file_size: int) -> Frame:
  """The frame of an SOF0/1/2 segment, with each component's block grid and store offset.

  `file_size` bounds the frame: every block costs at least one bit, so a frame with more blocks
  than the file has bits is corrupt (and must not make the reader allocate gigabytes).
  """
  if len(p) < 6:
    raise JPEGError("SOF segment is too short.")
  precision, height, width, n = p[0], u16(p, 1), u16(p, 3), p[5]
  if precision != 8:
    raise UnsupportedJPEGError(
        f"{precision}-bit sample precision is not supported (8-bit only).")
  if height == 0:
    raise UnsupportedJPEGError("frame height 0 (defined by a DNL marker) is not supported.")
  if width == 0:
    raise JPEGError("frame width 0 is invalid.")
  if n not in (1, 3):
    what = {2: "2 components", 4: "4 components (CMYK/YCCK)"}.get(n, f"{n} components")
    raise UnsupportedJPEGError(f"{what}: only gray (1) and YCbCr (3) images are supported.")
  if len(p) != 6 + 3 * n:
    raise JPEGError(f"SOF segment has length {len(p) + 2}; {n} components need {8 + 3 * n}.")
  comps = []
  for c in range(n):
    ident, hv, tq = p[6 + 3 * c:9 + 3 * c]
    h, v = hv >> 4, hv & 15
    if not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3:
      raise JPEGError(f"SOF: component {c} has bad sampling factors {h}x{v} or table {tq}.")
    if any(ident == o.ident for o in comps):
      raise JPEGError(f"SOF: component id {ident} appears twice.")
    comps.append(Component(ident, h, v, tq))
  frame = Frame(marker == 0xC2, height, width, comps)
  try:
    for c in range(n):
      sampling_lib.ratios(frame.factors, c)
  except ValueError:
    raise UnsupportedJPEGError(f"sampling factors {frame.factors} are not integer ratios of the "
                               "largest; not supported.") from None
  total = 0
  for c, comp in enumerate(comps):
    comp.rows, comp.cols = sampling_lib.component_blocks(height, width, frame.factors, c)
    comp.offset = total
    total += comp.rows * comp.cols
  if total > 8 * file_size + 4096:
    raise JPEGError(f"frame of {width}x{height} has {total} blocks but the file has only "
                    f"{file_size} bytes: truncated or corrupt.")
  return frame


def parse_sos(p: bytes, frame: Frame) -> ScanHeader:
  """The header of an SOS segment, its component ids resolved against the frame."""
  if len(p) < 1:
    raise JPEGError("SOS segment is too short.")
  ns = p[0]
  if not 1 <= ns <= 4 or len(p) != 4 + 2 * ns:
    raise JPEGError(f"SOS segment has length {len(p) + 2} for {ns} components.")
  idents = [c.ident for c in frame.components]
  indices, selectors = [], []
  for j in range(ns):
    ident, sel = p[1 + 2 * j], p[2 + 2 * j]
    if ident not in idents:
      raise JPEGError(f"SOS: component id {ident} is not in the frame.")
    c = idents.index(ident)
    if c in indices:
      raise JPEGError(f"SOS: component id {ident} appears twice.")
    indices.append(c)
    selectors.append((sel >> 4, sel & 15))
  return ScanHeader(tuple(indices), tuple(selectors), p[1 + 2 * ns], p[2 + 2 * ns],
                    p[3 + 2 * ns] >> 4, p[3 + 2 * ns] & 15)


def check_progression(frame: Frame, scan: ScanHeader, coded: np.ndarray) -> None:
  """Checks that `scan` may follow the scans before it, and records it in `coded`.

  `coded` is `(C, 64)`: per component and zigzag position the Al its coefficients were last
  coded down to, -1 before any scan.
  """
  ss, se, ah, al = scan.ss, scan.se, scan.ah, scan.al
  if not frame.progressive:
    if (ss, se, ah, al) != (0, 63, 0, 0):
      raise JPEGError(f"sequential scan with Ss={ss}, Se={se}, Ah={ah}, Al={al}; must be "
                      "0, 63, 0, 0.")
    for c in scan.components:
      if coded[c, 0] >= 0:
        raise JPEGError(f"component {c} is coded by two sequential scans.")
      coded[c, :] = 0
    return
  if se > 63 or ss > se or (ss == 0 and se != 0):
    raise JPEGError(f"progressive scan with bad spectral band Ss={ss}, Se={se}.")
  if ss > 0 and len(scan.components) != 1:
    raise JPEGError("progressive AC scan with more than one component.")
  if al > 13 or (ah != 0 and al != ah - 1):
    raise JPEGError(f"progressive scan with bad successive approximation Ah={ah}, Al={al}.")
  for c in scan.components:
    if ss > 0 and coded[c, 0] < 0:
      raise JPEGError(f"AC scan of component {c} before its DC scan.")
    # A first scan (Ah = 0) needs coefficients not coded yet; a refinement needs them coded
    # down to bit Ah by the previous scan.
    if (coded[c, ss:se + 1] != (-1 if ah == 0 else ah)).any():
      raise JPEGError(f"bad progression: component {c} coefficients {ss}..{se} coded with "
                      f"Ah={ah} out of order.")
    coded[c, ss:se + 1] = al
