"""JPEG file assembly: markers, tables, and the entropy-coded scans of one image.

Layout follows libjpeg (`jcmarker.c`): SOI, JFIF APP0, one DQT per table, SOF0 (baseline) or
SOF2 (progressive), then for each scan the Huffman tables it needs (DHT: optimized tables with
every scan, standard tables once), DRI before the first scan if restart markers are on, SOS and
the data; EOI. Quantization tables take libjpeg's slots (`quant_slots`: luma 0, chroma 1, each
written even when equal to another, as at quality 100), or share them on request.
Tables are assigned as libjpeg assigns them: Huffman slot 0 for Y (or gray), slot 1 shared by
Cb and Cr; with `optimize` each table is built from the symbol counts of the components that
share it, per scan (`huffman.optimal_table`, libjpeg's algorithm), so the output is the file
libjpeg-turbo writes for the same coefficients.

`compact` departs from libjpeg's layout for fewer header bytes, within baseline T.81 that every
decoder reads: one DQT segment, one DHT segment per scan, and a class's luma and chroma tables
merged into one where that makes the file smaller.
"""

from __future__ import annotations

import struct

import numpy as np

from djpeg.exact import (huffman, layout as layout_lib, progressive, progressive_compiled, scans,
                         sequential, sequential_compiled)
from djpeg.tables import ZIGZAG



def _segment(marker: int, payload: bytes) -> bytes:
  return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def quant_slots(tables: np.ndarray, share_equal: bool = False) -> tuple[list[np.ndarray], list[int]]:
  """(tables to write, slot of each component) for per-component tables `(C, 8, 8)`.

  libjpeg's layout (default): luma (or gray) in slot 0, Cb in slot 1, Cr in slot 1 as well when
  its table is Cb's (else slot 2), each slot written even when its table equals another's (at
  quality 100 every step is 1). `share_equal`: every distinct table once, shared by the
  components that use it (69 bytes fewer per repeated table; what a file that shared one slot
  had, kept by a lossless rewrite).
  """
  distinct, slots = [], []
  for c, table in enumerate(tables):
    candidates = range(len(distinct)) if share_equal else ([1] if c == 2 else [])
    for i in candidates:
      if np.array_equal(distinct[i], table):
        slots.append(i)
        break
    else:
      slots.append(len(distinct))
      distinct.append(table)
  return distinct, slots


def jfif_segment(units: int = 0, x_density: int = 1, y_density: int = 1) -> bytes:
  """The JFIF 1.01 APP0 segment (no thumbnail) with this pixel density: `units` 0 (none: an
  aspect ratio), 1 (dots per inch) or 2 (dots per cm); densities in 1..65535."""
  return _segment(0xE0, b"JFIF\x00\x01\x01" + struct.pack(">BHH", units, x_density, y_density)
                  + b"\x00\x00")


_JFIF = jfif_segment()


def _dqt(slot: int, table: np.ndarray) -> bytes:
  """One table's DQT segment: 8-bit entries, or 16-bit when a step exceeds 255 (as libjpeg)."""
  zigzag = np.asarray(table).reshape(64)[ZIGZAG]
  if zigzag.max() > 255:
    return _segment(0xDB, bytes([0x10 | slot]) + zigzag.astype(">u2").tobytes())
  return _segment(0xDB, bytes([slot]) + zigzag.astype(np.uint8).tobytes())


def _sof(progressive_mode: bool, height: int, width: int, factors, qslots,
         sixteen_bit: bool = False) -> bytes:
  """SOF2 (progressive), SOF0 (baseline) or, with 16-bit tables, SOF1 (extended sequential):
  libjpeg's choice in `write_frame_header`."""
  payload = struct.pack(">BHHB", 8, height, width, len(factors))
  for c, ((h, v), q) in enumerate(zip(factors, qslots)):
    payload += bytes([c + 1, (h << 4) | v, q])
  return _segment(0xC2 if progressive_mode else 0xC1 if sixteen_bit else 0xC0, payload)


def _sos(scan: scans.Scan, selectors) -> bytes:
  payload = bytes([len(scan.components)])
  for c, (td, ta) in zip(scan.components, selectors):
    payload += bytes([c + 1, (td << 4) | ta])
  return _segment(0xDA, payload + bytes([scan.ss, scan.se, (scan.ah << 4) | scan.al]))


def _huffman_slot(component: int) -> int:
  """libjpeg's Huffman table slot: 0 for Y (or gray), 1 shared by Cb and Cr."""
  return 0 if component == 0 else 1


def scan_tables(scan: scans.Scan, progressive_mode: bool):
  """The (class, slot) tables a scan uses, and each component's local table indices.

  Tables are listed in libjpeg's DHT order: per component its DC table, then its AC table.
  """
  slots = [_huffman_slot(c) for c in scan.components]
  used, dc_local, ac_local = [], [], []

  def local(key):
    if key not in used:
      used.append(key)
    return used.index(key)

  for s in slots:
    if not progressive_mode:
      dc_local.append(local((0, s)))
      ac_local.append(local((1, s)))
    elif scan.is_dc:
      dc_local.append(local((0, s)) if scan.ah == 0 else 0)
    else:
      ac_local.append(local((1, s)))
  return used, np.array(dc_local or [0]), np.array(ac_local or [0])


def _selectors(scan: scans.Scan, progressive_mode: bool):
  """(Td, Ta) for each component in SOS, as libjpeg writes them."""
  out = []
  for c in scan.components:
    s = _huffman_slot(c)
    if not progressive_mode:
      out.append((s, s))
    elif scan.is_dc:
      out.append((s if scan.ah == 0 else 0, 0))
    else:
      out.append((0, s))
  return out


def code_scan(scan, sparse, layout, restart, dc_local, ac_local, cap):
  """Dispatches a scan to its coder: sequential, DC first/refine, AC first/refine.

  Every coder returns an object with `counts(num_tables)`, `raw_bits()` and
  `segment(shifted, total)` (see `scans`).
  """
  if scan.ss == 0 and scan.se == 63:
    return sequential.symbols(sparse, layout, restart, dc_local, ac_local)
  if scan.is_dc:
    if scan.ah == 0:
      return scans.dc_first(sparse, layout, restart, scan.al, dc_local)
    return scans.dc_refine(sparse, layout, restart, scan.al)
  coder = progressive.ac_first if scan.ah == 0 else progressive.ac_refine
  return coder(sparse[scan.components[0]], layout, restart, scan.ss, scan.se, scan.al,
               int(ac_local[0]), cap)


def _code_luts(tables: list[huffman.HuffmanTable], classes: list[int]):
  """Per symbol `table * 256 + byte`: its code shifted left over its extra bits (uint32) and the
  field's total length (uint8; 0 where the symbol has no code).

  A symbol fixes how many extra bits follow it, so one lookup gives both for a whole field.
  """
  n = len(tables)
  shifted = np.zeros(n * 256, np.uint32)
  total = np.zeros(n * 256, np.uint8)
  for t, (table, table_class) in enumerate(zip(tables, classes)):
    code, length = table.codes
    extra = huffman.extra_bits(table_class)
    shifted[t * 256:(t + 1) * 256] = code << extra.astype(np.uint32)
    total[t * 256:(t + 1) * 256] = np.where(length > 0, length + extra, 0)
  return shifted, total


def _check_codes(counts: np.ndarray, tables: list[huffman.HuffmanTable]) -> None:
  for t, table in enumerate(tables):
    missing = np.flatnonzero((counts[t] > 0) & (table.codes[1] == 0))
    if missing.size:
      raise ValueError(f"Huffman table {t} has no code for symbol {int(missing[0]):#04x}.")


def _table_bits(counts: np.ndarray, table: huffman.HuffmanTable) -> int:
  """Bits of a table's codes for these symbol counts, plus its DHT entry (without extra bits,
  which no table changes)."""
  return int(counts @ table.codes[1].astype(np.int64)) + 8 * (17 + len(table.values))


def _shared_huffman(used, counts, tables, selectors):
  """Luma's and chroma's tables of a class in one scan replaced by one table built from their
  summed counts, where that costs fewer bits (table bytes included: on small images the tables
  are a large part of the file), serving both from luma's slot.

  Returns `(tables per local index, (key, table) pairs to send, SOS selectors)`, or None where
  no class gains.
  """
  tables, shared = list(tables), set()
  for cls in (0, 1):
    pair = [i for i, key in enumerate(used) if key[0] == cls]
    if len(pair) == 2:
      merged = huffman.optimal_table(counts[pair[0]] + counts[pair[1]])
      apart = sum(_table_bits(counts[i], tables[i]) for i in pair)
      if _table_bits(counts[pair[0]] + counts[pair[1]], merged) < apart:
        tables[pair[0]] = tables[pair[1]] = merged
        shared.add(cls)
  if not shared:
    return None
  sent = [(key, tables[i]) for i, key in enumerate(used) if key[0] not in shared or key[1] == 0]
  selectors = [(0 if 0 in shared else td, 0 if 1 in shared else ta) for td, ta in selectors]
  return tables, sent, selectors


def _dht_payloads(sent) -> list[bytes]:
  return [bytes([(key[0] << 4) | key[1]]) + table.payload() for key, table in sent]


def encode_image(components, tables, height: int, width: int, factors, *, optimize: bool = True,
                 progressive_mode: bool = False, restart_interval: int = 0,
                 script=None, segments: list[bytes] = (), jfif: bytes | None = None,
                 share_equal_tables: bool = False, compact: bool = False) -> bytes:
  """One image's JPEG file.

  Args:
    components: per component, `(rows_c, cols_c, 8, 8)` integer coefficients (natural order).
    tables: `(C, 8, 8)` integer quantization steps, natural order: 1..255 (baseline), or up to
      65535 (written as 16-bit DQT entries in an extended sequential or progressive frame).
    height, width, factors: frame geometry and sampling factors.
    optimize: per-scan optimal Huffman tables; otherwise the Annex K tables (in progressive
      scans then without end-of-band runs longer than one block, which those tables cannot code).
    progressive_mode: SOF2 with libjpeg's default scan script.
    restart_interval: MCUs per restart interval, 0 for none.
    script: progressive mode only: the scans to write instead of libjpeg's (e.g. from
      `djpeg.exact.scripts.choose`).
    segments: marker segments written after the JFIF APP0 (metadata: `metadata.Metadata`).
    jfif: the JFIF APP0 segment (`jfif_segment`; None: no density, aspect 1:1).
    share_equal_tables: equal tables share one DQT slot (`quant_slots`; default libjpeg's
      layout).
    compact: the fewest header bytes for the same coefficients (`_shared_huffman`): all
      quantization tables in one DQT segment, each scan's Huffman tables in one DHT segment,
      and luma and chroma sharing a Huffman table wherever that makes the file smaller. All of
      it is baseline T.81 that every decoder reads; only the bytes differ from libjpeg's.
  Returns:
    The file's bytes.
  """
  sparse = None              # the coefficients as nonzero lists, for the array-pass coders
  distinct, qslots = quant_slots(tables, share_equal_tables)
  out = [b"\xff\xd8", _JFIF if jfif is None else jfif, *segments]
  dqt = [_dqt(i, t) for i, t in enumerate(distinct)]
  out += [_segment(0xDB, b"".join(d[4:] for d in dqt))] if compact else dqt
  out.append(_sof(progressive_mode, height, width, factors, qslots,
                  sixteen_bit=max(int(np.max(t)) for t in distinct) > 255))
  if script is None or not progressive_mode:
    script = (scans.progressive_script if progressive_mode else scans.sequential_script)(len(components))
  loaded = {}
  cap = progressive.MAX_EOBRUN if optimize else 1
  for n, scan in enumerate(script):
    layout = layout_lib.scan_layout(height, width, factors, scan.components)
    used, dc_local, ac_local = scan_tables(scan, progressive_mode)
    coded = None
    if scan.ss == 0 and scan.se == 63:       # sequential: the compiled coder when it can
      coded = sequential_compiled.scan(components, layout, restart_interval, dc_local, ac_local,
                                       len(used))
    elif not restart_interval:               # progressive: the same, without restarts
      coded = progressive_compiled.scan(components, layout, scan, dc_local, ac_local, len(used),
                                        cap)
    if coded is None:
      if sparse is None:
        sparse = [scans.sparse_component(np.asarray(c)) for c in components]
      coded = code_scan(scan, sparse, layout, restart_interval, dc_local, ac_local, cap)
    counts = coded.counts(len(used))
    classes = [key[0] for key in used]
    selectors = _selectors(scan, progressive_mode)
    data = None
    if optimize:
      tables_now = [huffman.optimal_table(c) for c in counts]
      sent = list(zip(used, tables_now))
      shared = _shared_huffman(used, counts, tables_now, selectors) if compact else None
      if shared is not None:
        # Counted in bits; the bytes also hold stuffing and padding, so both are written and
        # the smaller kept (no compact file is larger than its unshared layout).
        data = coded.segment(*_code_luts(tables_now, classes)).tobytes()
        shared_data = coded.segment(*_code_luts(shared[0], classes)).tobytes()
        if (len(shared_data) + sum(map(len, _dht_payloads(shared[1])))
            < len(data) + sum(map(len, _dht_payloads(sent)))):
          tables_now, sent, selectors = shared
          data = shared_data
    else:
      tables_now = [huffman.STANDARD[key] for key in used]
      _check_codes(counts, tables_now)
      sent = [(key, t) for key, t in zip(used, tables_now) if loaded.get(key) != t]
    # libjpeg re-sends every table it optimizes (one set per scan) and the standard tables once.
    dht = _dht_payloads(sent)
    loaded.update(sent)
    if compact and dht:
      out.append(_segment(0xC4, b"".join(dht)))
    else:
      out += [_segment(0xC4, d) for d in dht]
    if n == 0 and restart_interval:
      out.append(_segment(0xDD, struct.pack(">H", restart_interval)))
    out.append(_sos(scan, selectors))
    if data is None:
      data = coded.segment(*_code_luts(tables_now, classes)).tobytes()
    out.append(data)
  out.append(b"\xff\xd9")
  return b"".join(out)
