"""JPEG parser and Huffman decoder: a file's quantized coefficients, tables and geometry.

Reads baseline and extended sequential (SOF0, SOF1) and progressive (SOF2) Huffman-coded 8-bit
files with 1 or 3 components, any sampling factors, restart markers; APPn and COM segments are
skipped. Everything else is refused with a `JPEGError` naming it.

Huffman decoding is sequential by nature, so it is a Python loop per symbol, kept lean: the
entropy-coded data is destuffed once, every byte offset gets a 64-bit big-endian window (a
Python list of ints), and each symbol costs one 16-bit table lookup. Values are collected in
lists and scattered into numpy arrays per scan. Malformed input of any kind raises
`JPEGError`: every loop is bounded by the data (each block consumes bits, or is skipped in
O(1) by an end-of-band run) and every read stays inside a zero-padded buffer.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import struct

import numpy as np

from djpeg import sampling as sampling_lib
from djpeg.coefficients import Coefficients
from djpeg.exact import huffman
from djpeg.exact import layout as layout_lib
from djpeg.exact.errors import JPEGError
from djpeg.tables import NATURAL_TO_ZIGZAG, ZIGZAG

_SOF_NAMES = {
    0xC3: "lossless (SOF3)", 0xC5: "hierarchical (SOF5)", 0xC6: "hierarchical progressive (SOF6)",
    0xC7: "hierarchical lossless (SOF7)", 0xC9: "arithmetic-coded (SOF9)",
    0xCA: "arithmetic-coded progressive (SOF10)", 0xCB: "arithmetic-coded lossless (SOF11)",
    0xCD: "arithmetic-coded hierarchical (SOF13)", 0xCE: "arithmetic-coded hierarchical (SOF14)",
    0xCF: "arithmetic-coded hierarchical lossless (SOF15)",
}
# Bytes of zero padding after the entropy-coded data: a block reads at most 64 symbols of at
# most 31 bits before its end is checked, so reads never leave the buffer.
_PAD = 320


@dataclasses.dataclass
class _Component:
  ident: int
  h: int
  v: int
  tq: int
  rows: int = 0
  cols: int = 0
  offset: int = 0  # first row in the coefficient store
  table: np.ndarray | None = None
  coded_dc: bool = False


@dataclasses.dataclass
class _Frame:
  progressive: bool
  height: int
  width: int
  components: list[_Component]

  @property
  def factors(self):
    return tuple((c.h, c.v) for c in self.components)


@functools.lru_cache(maxsize=64)
def _decoder_lut(bits: tuple[int, ...], values: bytes) -> list[int]:
  """65536-entry lookup over the next 16 bits: (symbol << 5) | code length, or -1 (no code)."""
  codes, lengths = huffman.canonical_codes(bits)
  lut = np.full(65536, -1, np.int64)
  if len(codes):
    entries = np.repeat((np.frombuffer(values, np.uint8).astype(np.int64) << 5) | lengths,
                        1 << (16 - lengths))
    lut[:len(entries)] = entries
  return lut.tolist()


class _Bits:
  """Destuffed entropy-coded data of one scan, with restart intervals and 64-bit windows."""

  def __init__(self, data: np.ndarray, interval_bytes: list[int]):
    self.nbytes = len(data)
    padded = np.concatenate([data, np.zeros(_PAD + 8, np.uint8)])
    n = len(padded) - 7
    windows = np.ndarray((n,), ">u8", padded, 0, (1,))
    self.windows = windows.astype(np.uint64).tolist()
    self.padded = padded
    self.interval_bytes = interval_bytes  # start byte of each interval, then the end

  def bits(self, p: int, count: int) -> np.ndarray:
    """`count` bits from bit p, as a uint8 array (vectorized reads)."""
    if p + count > 8 * (len(self.padded) - 8):
      raise JPEGError("entropy-coded data is truncated.")
    byte = self.padded[p >> 3:((p + count + 7) >> 3) + 1]
    return np.unpackbits(byte)[(p & 7):(p & 7) + count]


def _corrupt(what: str, block: int, p: int, limit: int) -> JPEGError:
  """The error for undecodable data: truncation if the decoder has run past the data."""
  if p >= limit:
    return JPEGError(f"entropy-coded data is truncated: block {block} of a scan runs past the "
                     "end of its data.")
  return JPEGError(f"corrupt entropy-coded data in block {block}: {what}.")


def _u16(data: bytes, i: int) -> int:
  return (data[i] << 8) | data[i + 1]


def read(data: bytes) -> Coefficients:
  """Parses a JPEG file; see `djpeg.load_coefficients`."""
  try:
    return _Reader(data).run()
  except JPEGError:
    raise
  except (IndexError, ValueError, OverflowError, struct.error, KeyError) as e:
    # Bounds are checked explicitly; this is a last line of defence so that malformed input
    # never escapes as anything but JPEGError.
    raise JPEGError(f"malformed JPEG data ({type(e).__name__}: {e}).") from e


class _Reader:
  """State of one parse: tables, frame, coefficient store."""

  def __init__(self, data: bytes):
    self.data = data
    self.array = np.frombuffer(data, np.uint8)
    self.qtables: dict[int, np.ndarray] = {}
    self.htables: dict[tuple[int, int], list[int]] = {}
    self.restart = 0
    self.frame: _Frame | None = None
    self.store: np.ndarray | None = None
    self.al_state: np.ndarray | None = None  # (C, 64) last Al per coefficient, -1: not yet coded
    self.dest_cache: dict[tuple[int, ...], list[int]] = {}
    # Blocks visited by all scans so far. Scans that skip blocks cheaply (end-of-band runs) could
    # otherwise make a small corrupt file cost time quadratic in its size.
    self.visits = 0

  # ------------------------------------------------------------------------------ markers

  def run(self) -> Coefficients:
    data = self.data
    if len(data) == 0:
      raise JPEGError("empty file: no JPEG data.")
    if data[:2] != b"\xff\xd8":
      raise JPEGError("not a JPEG file: it does not start with an SOI marker (FF D8).")
    pos = 2
    while True:
      pos, marker = self._next_marker(pos)
      if marker == 0xD9:
        break
      if marker == 0xDA:
        pos = self._scan(pos)
        continue
      if marker == 0xD8:
        raise JPEGError("a second SOI marker inside the file.")
      if 0xD0 <= marker <= 0xD7:
        raise JPEGError(f"restart marker RST{marker - 0xD0} outside entropy-coded data.")
      if marker in (0x01,) or 0x02 <= marker <= 0xBF:
        raise JPEGError(f"unknown marker FF {marker:02X}.")
      payload, pos = self._segment(pos, marker)
      if marker in (0xC0, 0xC1, 0xC2):
        self._sof(marker, payload)
      elif marker in _SOF_NAMES:
        raise JPEGError(f"{_SOF_NAMES[marker]} JPEG is not supported; djpeg reads baseline, "
                        "extended sequential and progressive Huffman-coded files.")
      elif marker == 0xC4:
        self._dht(payload)
      elif marker == 0xDB:
        self._dqt(payload)
      elif marker == 0xDD:
        if len(payload) != 2:
          raise JPEGError(f"DRI segment has length {len(payload) + 2}; it must be 4.")
        self.restart = _u16(payload, 0)
      elif marker == 0xCC:
        raise JPEGError("arithmetic coding conditioning (DAC) is not supported.")
      elif marker == 0xDC:
        raise JPEGError("DNL markers (height defined after the first scan) are not supported.")
      elif marker in (0xDE, 0xDF):
        raise JPEGError("hierarchical JPEG (DHP/EXP markers) is not supported.")
      elif 0xE0 <= marker <= 0xEF or marker == 0xFE or 0xF0 <= marker <= 0xFD:
        pass  # APPn, COM, JPGn extensions: skipped
      else:
        raise JPEGError(f"unknown marker FF {marker:02X}.")
    return self._result()

  def _next_marker(self, pos: int) -> tuple[int, int]:
    data = self.data
    if pos >= len(data):
      raise JPEGError("truncated file: it ends before the EOI marker.")
    if data[pos] != 0xFF:
      raise JPEGError(f"corrupt marker: byte {pos} is {data[pos]:#04x}, expected FF.")
    while pos < len(data) and data[pos] == 0xFF:  # fill bytes
      pos += 1
    if pos >= len(data):
      raise JPEGError("truncated file: it ends inside a marker.")
    return pos + 1, data[pos]

  def _segment(self, pos: int, marker: int) -> tuple[bytes, int]:
    if pos + 2 > len(self.data):
      raise JPEGError(f"truncated file: the FF {marker:02X} segment has no length.")
    length = _u16(self.data, pos)
    if length < 2:
      raise JPEGError(f"FF {marker:02X} segment has an invalid length {length}.")
    if pos + length > len(self.data):
      raise JPEGError(f"truncated file: the FF {marker:02X} segment needs {length} bytes, "
                      f"{len(self.data) - pos} remain.")
    return self.data[pos + 2:pos + length], pos + length

  def _dqt(self, p: bytes) -> None:
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
      self.qtables[tq] = table.reshape(8, 8)
      i += 1 + size

  def _dht(self, p: bytes) -> None:
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
        self.htables[(tc, th)] = _decoder_lut(bits, values)
      except JPEGError as e:
        raise JPEGError(f"DHT: {'DC' if tc == 0 else 'AC'} table {th}: {e}") from None
      i += 17 + count

  def _sof(self, marker: int, p: bytes) -> None:
    if self.frame is not None:
      raise JPEGError("more than one frame header (SOF).")
    if len(p) < 6:
      raise JPEGError("SOF segment is too short.")
    precision, height, width, n = p[0], _u16(p, 1), _u16(p, 3), p[5]
    if precision != 8:
      raise JPEGError(f"{precision}-bit sample precision is not supported (8-bit only).")
    if height == 0:
      raise JPEGError("frame height 0 (defined by a DNL marker) is not supported.")
    if width == 0:
      raise JPEGError("frame width 0 is invalid.")
    if n not in (1, 3):
      what = {2: "2 components", 4: "4 components (CMYK/YCCK)"}.get(n, f"{n} components")
      raise JPEGError(f"{what}: only gray (1) and YCbCr (3) images are supported.")
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
      comps.append(_Component(ident, h, v, tq))
    frame = _Frame(marker == 0xC2, height, width, comps)
    try:
      for c in range(n):
        sampling_lib.ratios(frame.factors, c)
    except ValueError:
      raise JPEGError(f"sampling factors {frame.factors} are not integer ratios of the largest; "
                      "not supported.") from None
    total = 0
    for c, comp in enumerate(comps):
      comp.rows, comp.cols = sampling_lib.component_blocks(height, width, frame.factors, c)
      comp.offset = total
      total += comp.rows * comp.cols
    # Every block costs at least one bit in some scan: a frame larger than the data is corrupt
    # (and must not make us allocate gigabytes).
    if total > 8 * len(self.data) + 4096:
      raise JPEGError(f"frame of {width}x{height} has {total} blocks but the file has only "
                      f"{len(self.data)} bytes: truncated or corrupt.")
    self.frame = frame
    self.store = np.zeros((total + 1) * 64, np.int32)  # last row: sink for dummy blocks
    self.al_state = np.full((n, 64), -1, np.int64)

  # -------------------------------------------------------------------------------- scans

  def _scan(self, pos: int) -> int:
    frame = self.frame
    if frame is None:
      raise JPEGError("scan (SOS) before the frame header (SOF).")
    p, pos = self._segment(pos, 0xDA)
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
    ss, se, ah, al = p[1 + 2 * ns], p[2 + 2 * ns], p[3 + 2 * ns] >> 4, p[3 + 2 * ns] & 15
    self._check_scan(indices, ss, se, ah, al)
    end, intervals = self._entropy_segment(pos)
    layout = layout_lib.scan_layout(frame.height, frame.width, frame.factors, tuple(indices))
    self.visits += layout.num_blocks
    if self.visits > 256 * len(self.data) + 4_000_000:
      raise JPEGError("too many scans of too many blocks for the size of the file: corrupt.")
    if ns > 1 and layout.blocks_per_mcu > 10:
      raise JPEGError(f"SOS: an MCU of {layout.blocks_per_mcu} blocks (at most 10).")
    for c in indices:
      comp = frame.components[c]
      if comp.table is None:
        if comp.tq not in self.qtables:
          raise JPEGError(f"component {c} uses quantization table {comp.tq}, never defined.")
        comp.table = self.qtables[comp.tq]
    bits = self._destuff(pos, end, intervals, layout)
    tables = self._tables(selectors, ss, ah)
    if not frame.progressive:
      self._decode_sequential(bits, layout, tables)
    elif ss == 0:
      if ah == 0:
        self._decode_dc_first(bits, layout, tables, al)
      else:
        self._decode_dc_refine(bits, layout, al)
    elif ah == 0:
      self._decode_ac_first(bits, layout, tables[0][1], ss, se, al)
    else:
      self._decode_ac_refine(bits, layout, tables[0][1], ss, se, al)
    return end

  def _check_scan(self, indices, ss, se, ah, al) -> None:
    frame, state = self.frame, self.al_state
    if not frame.progressive:
      if (ss, se, ah, al) != (0, 63, 0, 0):
        raise JPEGError(f"sequential scan with Ss={ss}, Se={se}, Ah={ah}, Al={al}; must be "
                        "0, 63, 0, 0.")
      for c in indices:
        if state[c, 0] >= 0:
          raise JPEGError(f"component {c} is coded by two sequential scans.")
        state[c, :] = 0
      return
    if se > 63 or ss > se or (ss == 0 and se != 0):
      raise JPEGError(f"progressive scan with bad spectral band Ss={ss}, Se={se}.")
    if ss > 0 and len(indices) != 1:
      raise JPEGError("progressive AC scan with more than one component.")
    if al > 13 or (ah != 0 and al != ah - 1):
      raise JPEGError(f"progressive scan with bad successive approximation Ah={ah}, Al={al}.")
    for c in indices:
      if ss > 0 and state[c, 0] < 0:
        raise JPEGError(f"AC scan of component {c} before its DC scan.")
      # A first scan (Ah = 0) needs coefficients not coded yet; a refinement needs them coded
      # down to bit Ah by the previous scan.
      if (state[c, ss:se + 1] != (-1 if ah == 0 else ah)).any():
        raise JPEGError(f"bad progression: component {c} coefficients {ss}..{se} coded with "
                        f"Ah={ah} out of order.")
      state[c, ss:se + 1] = al

  def _tables(self, selectors, ss: int, ah: int) -> list[tuple[list[int] | None, list[int] | None]]:
    """Decoder LUTs (DC, AC) of each scan component; None where the scan needs none."""
    progressive = self.frame.progressive
    out = []
    for td, ta in selectors:
      if not progressive:
        need_dc = need_ac = True
      else:  # DC first scans use a DC table, AC scans an AC table, DC refinement none
        need_dc, need_ac = ss == 0 and ah == 0, ss > 0
      dc = ac = None
      if need_dc:
        if (0, td) not in self.htables:
          raise JPEGError(f"scan uses DC Huffman table {td}, never defined.")
        dc = self.htables[(0, td)]
      if need_ac:
        if (1, ta) not in self.htables:
          raise JPEGError(f"scan uses AC Huffman table {ta}, never defined.")
        ac = self.htables[(1, ta)]
      out.append((dc, ac))
    return out

  def _entropy_segment(self, pos: int) -> tuple[int, list[int]]:
    """End of the scan's entropy-coded data, and the byte positions of its RST markers."""
    a = self.array
    ff = np.flatnonzero(a[pos:len(a) - 1] == 0xFF) + pos
    nxt = a[ff + 1]
    rst = (nxt >= 0xD0) & (nxt <= 0xD7)
    marker = (nxt != 0) & ~rst
    if not marker.any():
      raise JPEGError("truncated file: the entropy-coded data runs to the end of the file.")
    end = int(ff[np.argmax(marker)])
    rst_pos = ff[rst & (ff < end)]
    expected = 0xD0 + np.arange(len(rst_pos)) % 8
    bad = np.flatnonzero(a[rst_pos + 1] != expected)
    if bad.size:
      i = int(bad[0])
      raise JPEGError(f"restart marker out of sequence: RST{a[rst_pos[i] + 1] - 0xD0} where "
                      f"RST{i % 8} was expected.")
    return end, rst_pos.tolist()

  def _destuff(self, pos: int, end: int, rst: list[int], layout) -> _Bits:
    restart = self.restart
    intervals = math.ceil(layout.num_mcus / restart) if restart else 1
    if len(rst) != intervals - 1:
      raise JPEGError(f"scan has {len(rst) + 1} restart intervals; "
                      f"{layout.num_mcus} MCUs with DRI {restart} need {intervals}.")
    seg = self.array[pos:end]
    keep = np.ones(len(seg), bool)
    ff = np.flatnonzero(seg[:-1] == 0xFF)
    keep[ff[seg[ff + 1] == 0] + 1] = False  # stuffed zero bytes
    marks = np.asarray(rst, np.int64) - pos
    keep[marks] = False
    keep[marks + 1] = False
    data = seg[keep]
    # Interval starts in the destuffed data: bytes kept before each marker.
    kept_before = np.cumsum(keep) - keep
    starts = [0] + (kept_before[marks].tolist() if len(marks) else []) + [len(data)]
    return _Bits(data, starts)

  # ----------------------------------------------------------------------------- decoding

  def _dest(self, layout) -> list[int]:
    """Store row (times 64) of each coded block; dummies go to the sink row."""
    if layout.components in self.dest_cache:
      return self.dest_cache[layout.components]
    frame = self.frame
    offsets = np.array([frame.components[c].offset for c in layout.components])
    sizes = np.array([frame.components[c].rows * frame.components[c].cols for c in layout.components])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    src = layout.source
    comp = layout.component
    row = np.where(src < bounds[-1], offsets[comp] + src - bounds[comp], len(self.store) // 64 - 1)
    self.dest_cache[layout.components] = (row * 64).tolist()
    return self.dest_cache[layout.components]

  def _interval_blocks(self, layout) -> int:
    return self.restart * layout.blocks_per_mcu if self.restart else layout.num_blocks

  def _decode_sequential(self, bits: _Bits, layout, tables) -> None:
    dest = self._dest(layout)
    bpm = layout.blocks_per_mcu
    comp_of = layout.component[:bpm].tolist()
    dcs = [tables[i][0] for i in comp_of]
    acs = [tables[i][1] for i in comp_of]
    W = bits.windows
    per_interval = self._interval_blocks(layout)
    idx, vals = [], []
    put_i, put_v = idx.append, vals.append
    n = layout.num_blocks
    for interval, b0 in enumerate(range(0, n, per_interval)):
      p = 8 * bits.interval_bytes[interval]
      limit = 8 * bits.interval_bytes[interval + 1]
      pred = [0] * len(layout.components)
      for b in range(b0, min(b0 + per_interval, n)):
        j = b % bpm
        base = dest[b]
        dclut, aclut = dcs[j], acs[j]
        x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
        e = dclut[x >> 16]
        if e < 0:
          raise _corrupt("invalid DC Huffman code", b, p, limit)
        ln = e & 31
        s = e >> 5
        if s:
          if s > 11:
            raise _corrupt(f"DC difference of {s} bits", b, p, limit)
          v = (x >> (32 - ln - s)) & ((1 << s) - 1)
          if v < (1 << (s - 1)):
            v -= (1 << s) - 1
          c = comp_of[j]
          pred[c] += v
        p += ln + s
        put_i(base)
        put_v(pred[comp_of[j]])
        k = 1
        while k < 64:
          x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
          e = aclut[x >> 16]
          if e < 0:
            raise _corrupt("invalid AC Huffman code", b, p, limit)
          ln = e & 31
          rs = e >> 5
          s = rs & 15
          if s:
            k += rs >> 4
            if k > 63 or s > 10:
              raise _corrupt(f"AC coefficient beyond the block (k={k}) or of {s} bits",
                             b, p, limit)
            v = (x >> (32 - ln - s)) & ((1 << s) - 1)
            if v < (1 << (s - 1)):
              v -= (1 << s) - 1
            put_i(base + k)
            put_v(v)
            p += ln + s
            k += 1
          else:
            p += ln
            if rs != 0xF0:
              break
            k += 16
            if k > 64:
              raise _corrupt("zero run beyond the block end", b, p, limit)
        if p > limit:
          raise JPEGError(f"entropy-coded data is truncated (block {b} of a scan ends past "
                          "its data).")
    self._scatter(idx, vals, 0)

  def _scatter(self, idx, vals, al: int) -> None:
    if idx:
      self.store[np.asarray(idx, np.int64)] = np.asarray(vals, np.int64) << al

  def _decode_dc_first(self, bits: _Bits, layout, tables, al: int) -> None:
    dest = self._dest(layout)
    bpm = layout.blocks_per_mcu
    comp_of = layout.component[:bpm].tolist()
    dcs = [tables[i][0] for i in comp_of]
    W = bits.windows
    per_interval = self._interval_blocks(layout)
    idx, vals = [], []
    n = layout.num_blocks
    for interval, b0 in enumerate(range(0, n, per_interval)):
      p = 8 * bits.interval_bytes[interval]
      limit = 8 * bits.interval_bytes[interval + 1]
      pred = [0] * len(layout.components)
      for b in range(b0, min(b0 + per_interval, n)):
        j = b % bpm
        x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
        e = dcs[j][x >> 16]
        if e < 0:
          raise _corrupt("invalid DC Huffman code", b, p, limit)
        ln = e & 31
        s = e >> 5
        if s:
          if s > 11:
            raise _corrupt(f"DC difference of {s} bits", b, p, limit)
          v = (x >> (32 - ln - s)) & ((1 << s) - 1)
          if v < (1 << (s - 1)):
            v -= (1 << s) - 1
          pred[comp_of[j]] += v
        p += ln + s
        if p > limit:
          raise JPEGError("entropy-coded data is truncated (a DC scan ends past its data).")
        idx.append(dest[b])
        vals.append(pred[comp_of[j]])
    self._scatter(idx, vals, al)

  def _decode_dc_refine(self, bits: _Bits, layout, al: int) -> None:
    dest = np.asarray(self._dest(layout), np.int64)
    per_interval = self._interval_blocks(layout)
    n = layout.num_blocks
    for interval, b0 in enumerate(range(0, n, per_interval)):
      count = min(per_interval, n - b0)
      start = 8 * bits.interval_bytes[interval]
      if start + count > 8 * bits.interval_bytes[interval + 1]:
        raise JPEGError("entropy-coded data is truncated (a DC refinement scan).")
      got = bits.bits(start, count).astype(np.int32)
      self.store[dest[b0:b0 + count]] |= got << al

  def _decode_ac_first(self, bits: _Bits, layout, aclut, ss: int, se: int, al: int) -> None:
    dest = self._dest(layout)
    W = bits.windows
    per_interval = self._interval_blocks(layout)
    idx, vals = [], []
    put_i, put_v = idx.append, vals.append
    n = layout.num_blocks
    for interval, b0 in enumerate(range(0, n, per_interval)):
      p = 8 * bits.interval_bytes[interval]
      limit = 8 * bits.interval_bytes[interval + 1]
      b, b1 = b0, min(b0 + per_interval, n)
      while b < b1:
        base = dest[b]
        k = ss
        run = 0
        while k <= se:
          x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
          e = aclut[x >> 16]
          if e < 0:
            raise _corrupt("invalid AC Huffman code", b, p, limit)
          ln = e & 31
          rs = e >> 5
          s = rs & 15
          r = rs >> 4
          if s:
            k += r
            if k > se or s > 10:
              raise _corrupt(f"AC coefficient beyond the band (k={k}) or of {s} bits",
                             b, p, limit)
            v = (x >> (32 - ln - s)) & ((1 << s) - 1)
            if v < (1 << (s - 1)):
              v -= (1 << s) - 1
            put_i(base + k)
            put_v(v)
            p += ln + s
            k += 1
          elif r == 15:
            p += ln
            k += 16
            if k > se + 1:
              raise _corrupt("zero run beyond the band", b, p, limit)
          else:
            run = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1)) if r else 1
            p += ln + r
            break
        if p > limit:
          raise JPEGError("entropy-coded data is truncated (an AC scan ends past its data).")
        if run:
          if b + run > b1:
            raise _corrupt(f"end-of-band run of {run} blocks passes the end of its restart "
                           "interval or scan", b, p, limit)
          b += run
        else:
          b += 1
    self._scatter(idx, vals, al)

  def _decode_ac_refine(self, bits: _Bits, layout, aclut, ss: int, se: int, al: int) -> None:
    dest = self._dest(layout)
    rows = np.asarray(dest, np.int64) // 64
    band = np.zeros(64, bool)
    band[ss:se + 1] = True
    history = (self.store.reshape(-1, 64)[rows] != 0) & band
    packed = np.packbits(history, axis=1, bitorder="little").view("<u8").ravel()
    masks = packed.tolist()
    hist_blocks = np.flatnonzero(packed).tolist()
    band_mask = ((1 << (se + 1)) - 1) ^ ((1 << ss) - 1)
    W = bits.windows
    per_interval = self._interval_blocks(layout)
    new_i, new_v, fixes = [], [], []
    p1 = 1 << al
    n = layout.num_blocks

    def correction_bits(p, base, hist):
      """Reads one bit per history coefficient in `hist`; records those to increase."""
      c = hist.bit_count()
      got = 0
      q = p
      while q < p + c:  # read in chunks of at most 32 bits
        m = min(32, p + c - q)
        got = (got << m) | ((W[q >> 3] >> (64 - (q & 7) - m)) & ((1 << m) - 1))
        q += m
      if got:
        i = c - 1
        while hist:
          low = hist & -hist
          if (got >> i) & 1:
            fixes.append(base + low.bit_length() - 1)
          hist ^= low
          i -= 1
      return p + c

    for interval, b0 in enumerate(range(0, n, per_interval)):
      p = 8 * bits.interval_bytes[interval]
      limit = 8 * bits.interval_bytes[interval + 1]
      b, b1 = b0, min(b0 + per_interval, n)
      while b < b1:
        base = dest[b]
        hist = masks[b]
        zeros = ~hist & band_mask
        eobrun = 0
        k = ss
        while k <= se:
          x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
          e = aclut[x >> 16]
          if e < 0:
            raise _corrupt("invalid AC Huffman code", b, p, limit)
          ln = e & 31
          rs = e >> 5
          s = rs & 15
          r = rs >> 4
          if s:
            if s != 1:
              raise _corrupt(f"refinement symbol of size {s}", b, p, limit)
            positive = (x >> (31 - ln)) & 1
            p += ln + 1
          elif r != 15:
            eobrun = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1)) if r else 1
            p += ln + r
            break
          else:
            p += ln
          # The target is the (r+1)-th still-zero coefficient from k; history coefficients on
          # the way get correction bits.
          z = zeros >> k << k
          for _ in range(r):
            z &= z - 1
          if z == 0:
            raise _corrupt("refinement run beyond the band", b, p, limit)
          target = (z & -z).bit_length() - 1
          passed = hist & ((1 << target) - 1) >> k << k
          p = correction_bits(p, base, passed)
          if s:
            new_i.append(base + target)
            new_v.append(p1 if positive else -p1)
          k = target + 1
        if eobrun:
          # The rest of this block and the next eobrun - 1 blocks: only blocks with nonzero
          # history have bits to read, so a long run over empty blocks costs nothing.
          if b + eobrun > b1:
            raise _corrupt(f"end-of-band run of {eobrun} blocks passes the end of its restart "
                           "interval or scan", b, p, limit)
          p = correction_bits(p, base, hist >> k << k)
          lo = bisect.bisect_right(hist_blocks, b)
          hi = bisect.bisect_left(hist_blocks, b + eobrun)
          for other in hist_blocks[lo:hi]:
            p = correction_bits(p, dest[other], masks[other])
            if p > limit:
              break
          b += eobrun
        else:
          b += 1
        if p > limit:
          raise JPEGError("entropy-coded data is truncated (an AC refinement scan ends past "
                          "its data).")
    store = self.store
    if fixes:
      at = np.asarray(fixes, np.int64)
      coef = store[at]
      todo = (coef & p1) == 0
      store[at[todo]] += np.where(coef[todo] >= 0, p1, -p1).astype(np.int32)
    if new_i:
      store[np.asarray(new_i, np.int64)] = np.asarray(new_v, np.int32)

  # ------------------------------------------------------------------------------- result

  def _result(self) -> Coefficients:
    frame = self.frame
    if frame is None:
      raise JPEGError("no frame header (SOF) before EOI.")
    comps, tables = [], []
    for c, comp in enumerate(frame.components):
      if self.al_state[c, 0] < 0 or comp.table is None:
        raise JPEGError(f"component {c} (id {comp.ident}) is never coded by a scan.")
      n = comp.rows * comp.cols
      zigzag = self.store[comp.offset * 64:(comp.offset + n) * 64].reshape(n, 64)
      natural = zigzag[:, NATURAL_TO_ZIGZAG].reshape(comp.rows, comp.cols, 8, 8)
      if natural.size and (natural.max() > 32767 or natural.min() < -32768):
        comps.append(natural)
      else:
        comps.append(natural.astype(np.int16))
      tables.append(comp.table)
    return Coefficients(tuple(comps), np.stack(tables).astype(np.float32), frame.height,
                        frame.width, frame.factors)
