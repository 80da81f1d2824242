"""Reading a JPEG file's quantized coefficients: the driver (libjpeg-turbo's `jdinput.c` and
`jdapimin.c`'s marker loop), mirroring `writer`.

Reads baseline and extended sequential (SOF0, SOF1) and progressive (SOF2) Huffman-coded 8-bit
files with 1 or 3 components, any sampling factors, restart markers; APPn and COM segments are
skipped. Everything else is refused with a `JPEGError` naming it.

The stages: `markers` parses and checks each segment; for each scan `bitreader` finds and
destuffs its entropy-coded data; `decode_sequential` or `decode_progressive` decodes it into the
coefficient store (one int16 row of 64 values per block, in natural order); at EOI the store's
rows become the components of `Coefficients` (views, not copies). A value beyond int16, which
only a corrupt file can code, makes the reader start again with an int32 store. Every loop is
bounded by the data (each block consumes bits, or is skipped by an end-of-band run, and the
blocks all scans visit are capped by the file's size), and malformed input of any kind raises
`JPEGError`.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from djpeg.coefficients import Coefficients
from djpeg.exact import layout as layout_lib, markers
from djpeg.exact.bitreader import CoefficientOverflow, ScanTarget, destuff, entropy_segment
from djpeg.exact.decode_progressive import (decode_ac_first, decode_ac_refine, decode_dc_first,
                                            decode_dc_refine)
from djpeg.exact.decode_sequential import decode_sequential
from djpeg.exact.errors import JPEGError, UnsupportedJPEGError


def read(data: bytes) -> Coefficients:
  """Parses a JPEG file; see `djpeg.exact.read_coefficients`."""
  return read_file(data)[0]


@dataclasses.dataclass(frozen=True)
class FileInfo:
  """What a file says beside its coefficients, for rewriting it faithfully.

  Attributes:
    component_ids: the frame's component ids, in frame order (libjpeg guesses RGB from
      'R', 'G', 'B' when no JFIF or Adobe segment says otherwise: `markers.is_rgb_coded`).
    progressive: an SOF2 frame.
    coverage: `(C, 64)` per component and zigzag position, the bit position its coefficients
      were last coded down to (0: fully; -1: never coded, i.e. zero).
    end: the offset just after the EOI marker; bytes after it (another image of a
      multi-picture file, a video, padding) are not part of this image.
    table_slots: the quantization table slot of each component.
  """
  component_ids: tuple[int, ...]
  progressive: bool
  coverage: np.ndarray
  end: int
  table_slots: tuple[int, ...] = ()

  @property
  def shares_table_slots(self) -> bool:
    """Whether components other than Cb and Cr share a slot (libjpeg's layout shares only
    theirs), as files written with one table for all do."""
    return len(set(self.table_slots[:2])) < len(self.table_slots[:2])

  @property
  def smoothed_by_libjpeg(self) -> bool:
    """Whether libjpeg-turbo's decoder smooths this file's blocks (`jdcoefct.c`,
    `smoothing_ok`): a progressive file whose scans code every component's DC but leave one
    of the AC coefficients 1..9 (zigzag) not fully coded. Its decode is then not the
    coefficients' plain inverse DCT."""
    return (self.progressive and bool((self.coverage[:, 0] >= 0).all())
            and bool((self.coverage[:, 1:10] != 0).any()))


def read_file(data: bytes) -> tuple[Coefficients, FileInfo]:
  """`read`, and what the file says beside its coefficients (`FileInfo`)."""
  _compile_decoders()
  try:
    try:
      reader = _Reader(data, np.int16)
      coefficients = reader.run()
    except CoefficientOverflow:
      reader = _Reader(data, np.int32)
      coefficients = reader.run()
  except JPEGError:
    raise
  except (IndexError, ValueError, OverflowError, struct.error, KeyError) as e:
    # Bounds are checked explicitly; this is a last line of defence so that malformed input
    # never escapes as anything but JPEGError.
    raise JPEGError(f"malformed JPEG data ({type(e).__name__}: {e}).") from e
  frame = reader.frame
  return coefficients, FileInfo(tuple(c.ident for c in frame.components), frame.progressive,
                                reader.coded.copy(), reader.end,
                                tuple(c.tq for c in frame.components))


_decoders_compiled = False


def _compile_decoders() -> None:
  """Makes numba compile every decoding loop (or load it from its disk cache) at a program's
  first read, all at once, by reading two tiny colour files the writer makes (baseline and
  progressive, 4:2:0, with restart markers) into the int16 store: so that no later read of a
  valid file stops to compile. The int32 store's loops compile when a file first needs them
  (only a corrupt file does; about 2 s, once per installation). Writing the files compiles the
  writer's loops for int16 colour coefficients, the types every encoder passes them. The cost,
  once per process: about 6 s of compiling on a cold cache (once per installation), else about
  0.3 s of numba's own start-up."""
  global _decoders_compiled
  if _decoders_compiled:
    return
  _decoders_compiled = True
  from djpeg.exact import writer  # only here: the reader does not otherwise need the writer
  blocks = [np.zeros((2, 2, 8, 8), np.int16), np.zeros((1, 1, 8, 8), np.int16),
            np.zeros((1, 1, 8, 8), np.int16)]
  tables = np.ones((3, 8, 8), np.int64)
  for progressive in (False, True):
    data = writer.encode_image(blocks, tables, 16, 16, ((2, 2), (1, 1), (1, 1)),
                               progressive_mode=progressive, restart_interval=1)
    _Reader(data, np.int16).run()


class _Reader:
  """State of one parse: tables, frame, coefficient store (of dtype `store_dtype`)."""

  def __init__(self, data: bytes, store_dtype):
    self.data = data
    self.store_dtype = store_dtype
    self.array = np.frombuffer(data, np.uint8)
    self.qtables: dict[int, np.ndarray] = {}
    self.htables: dict[tuple[int, int], np.ndarray] = {}
    self.restart = 0
    self.frame: markers.Frame | None = None
    self.store: np.ndarray | None = None
    self.nonzero: np.ndarray | None = None  # per store row, a mask of nonzero AC (progressive)
    self.coded: np.ndarray | None = None  # (C, 64) last Al per coefficient, -1: not yet coded
    self.dest_cache: dict[tuple[int, ...], np.ndarray] = {}
    # Blocks visited by all scans so far. Scans that skip blocks cheaply (end-of-band runs) could
    # otherwise make a small corrupt file cost time quadratic in its size.
    self.visits = 0
    self.end = len(data)    # after EOI, once read

  def run(self) -> Coefficients:
    data = self.data
    if len(data) == 0:
      raise JPEGError("empty file: no JPEG data.")
    if data[:2] != b"\xff\xd8":
      raise JPEGError("not a JPEG file: it does not start with an SOI marker (FF D8).")
    pos = 2
    while True:
      pos, marker = markers.next_marker(data, pos)
      if marker == 0xD9:
        self.end = pos
        break
      if marker == 0xDA:
        pos = self._scan(pos)
        continue
      if marker == 0xD8:
        raise JPEGError("a second SOI marker inside the file.")
      if marker in markers.PARAMETERLESS:
        continue  # TEM and RSTn outside entropy-coded data: libjpeg skips them too
      if marker == 0x00 or 0x02 <= marker <= 0xBF:
        raise JPEGError(f"unknown marker FF {marker:02X}.")
      payload, pos = markers.segment(data, pos, marker)
      if marker in (0xC0, 0xC1, 0xC2):
        if self.frame is not None:
          raise JPEGError("more than one frame header (SOF).")
        self.frame = markers.parse_sof(marker, payload, len(data))
        rows = self.frame.num_blocks + 1  # the last row: a sink for dummy blocks
        self.store = np.zeros(rows * 64, self.store_dtype)
        self.nonzero = np.zeros(rows if self.frame.progressive else 0, np.int64)
        self.coded = np.full((len(self.frame.components), 64), -1, np.int64)
      elif marker in markers.UNSUPPORTED_SOF:
        raise UnsupportedJPEGError(
            f"{markers.UNSUPPORTED_SOF[marker]} JPEG is not supported; djpeg reads "
            "baseline, extended sequential and progressive Huffman-coded files.")
      elif marker == 0xC4:
        self.htables.update(markers.parse_dht(payload))
      elif marker == 0xDB:
        self.qtables.update(markers.parse_dqt(payload))
      elif marker == 0xDD:
        if len(payload) != 2:
          raise JPEGError(f"DRI segment has length {len(payload) + 2}; it must be 4.")
        self.restart = markers.u16(payload, 0)
      elif marker == 0xCC:
        raise UnsupportedJPEGError("arithmetic coding conditioning (DAC) is not supported.")
      elif marker == 0xDC:
        raise UnsupportedJPEGError(
            "DNL markers (height defined after the first scan) are not supported.")
      elif marker in (0xDE, 0xDF):
        raise UnsupportedJPEGError("hierarchical JPEG (DHP/EXP markers) is not supported.")
      elif 0xE0 <= marker <= 0xEF or marker == 0xFE or 0xF0 <= marker <= 0xFD:
        pass  # APPn, COM, JPGn extensions: skipped
      else:
        raise JPEGError(f"unknown marker FF {marker:02X}.")
    return self._result()

  def _scan(self, pos: int) -> int:
    frame = self.frame
    if frame is None:
      raise JPEGError("scan (SOS) before the frame header (SOF).")
    p, pos = markers.segment(self.data, pos, 0xDA)
    scan = markers.parse_sos(p, frame)
    markers.check_progression(frame, scan, self.coded)
    end, rst = entropy_segment(self.array, pos)
    layout = layout_lib.scan_layout(frame.height, frame.width, frame.factors, scan.components)
    self.visits += layout.num_blocks
    if self.visits > 256 * len(self.data) + 4_000_000:
      raise JPEGError("too many scans of too many blocks for the size of the file: corrupt.")
    if len(scan.components) > 1 and layout.blocks_per_mcu > 10:
      raise JPEGError(f"SOS: an MCU of {layout.blocks_per_mcu} blocks (at most 10).")
    for c in scan.components:
      comp = frame.components[c]
      if comp.table is None:
        if comp.tq not in self.qtables:
          raise JPEGError(f"component {c} uses quantization table {comp.tq}, never defined.")
        comp.table = self.qtables[comp.tq]
    bits = destuff(self.array, pos, end, rst, layout.num_mcus, self.restart)
    tables = self._tables(scan)
    per_interval = self.restart * layout.blocks_per_mcu if self.restart else layout.num_blocks
    target = ScanTarget(self.store, self._dest(layout), per_interval, self.nonzero)
    ss, se, ah, al = scan.ss, scan.se, scan.ah, scan.al
    if not frame.progressive:
      decode_sequential(bits, target, layout, tables)
    elif ss == 0:
      if ah == 0:
        decode_dc_first(bits, target, layout, tables, al)
      else:
        decode_dc_refine(bits, target, layout, al)
    elif ah == 0:
      decode_ac_first(bits, target, layout, tables[0][1], ss, se, al)
    else:
      decode_ac_refine(bits, target, layout, tables[0][1], ss, se, al)
    return end

  def _tables(self, scan: markers.ScanHeader) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """Decoder LUTs (DC, AC) of each scan component; None where the scan needs none."""
    progressive = self.frame.progressive
    out = []
    for td, ta in scan.selectors:
      if not progressive:
        need_dc = need_ac = True
      else:  # DC first scans use a DC table, AC scans an AC table, DC refinement none
        need_dc, need_ac = scan.ss == 0 and scan.ah == 0, scan.ss > 0
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

  def _dest(self, layout) -> np.ndarray:
    """Store row (times 64) of each coded block; dummies go to the sink row."""
    if layout.components in self.dest_cache:
      return self.dest_cache[layout.components]
    frame = self.frame
    offsets = np.array([frame.components[c].offset for c in layout.components])
    counts = np.array([frame.components[c].rows * frame.components[c].cols
                       for c in layout.components])
    bounds = np.concatenate([[0], np.cumsum(counts)])
    src = layout.source
    comp = layout.component
    row = np.where(src < bounds[-1], offsets[comp] + src - bounds[comp], len(self.store) // 64 - 1)
    self.dest_cache[layout.components] = np.ascontiguousarray(row * 64, np.int64)
    return self.dest_cache[layout.components]

  def _result(self) -> Coefficients:
    frame = self.frame
    if frame is None:
      raise JPEGError("no frame header (SOF) before EOI.")
    comps, tables = [], []
    for c, comp in enumerate(frame.components):
      if self.coded[c, 0] < 0 or comp.table is None:
        raise JPEGError(f"component {c} (id {comp.ident}) is never coded by a scan.")
      n = comp.rows * comp.cols
      natural = self.store[comp.offset * 64:(comp.offset + n) * 64].reshape(comp.rows, comp.cols,
                                                                             8, 8)
      if natural.dtype != np.int16:  # an int32 store: int16 where the values fit
        if not natural.size or (natural.min() >= -32768 and natural.max() <= 32767):
          natural = natural.astype(np.int16)
      comps.append(natural)
      tables.append(comp.table)
    return Coefficients(tuple(comps), np.stack(tables).astype(np.float32), frame.height,
                        frame.width, frame.factors)
