"""The sequential (baseline) scan coded by a compiled loop over blocks: the writer's fast path.

`sequential` codes a scan with array passes over the nonzero coefficients; it is the reference,
and it names the offending block of an invalid input. This module codes the same scan, bit for
bit, with two numba loops in coding order, libjpeg's own shape (`jchuff.c`): one counts the
symbols (the optimal tables need them), the other emits the fields through a bit buffer, with
0xFF stuffing, 1-padding and RST markers at the ends of restart intervals. One pass reads each
coefficient once and keeps nothing per coefficient: less time than the array passes, and none
of their memory (`bench/read_speed.py --write`).

`scan(components, layout, restart, dc_local, ac_local)` returns an object with `counts`,
`raw_bits` and `segment`, like every scan coder (`djpeg.exact.scans`), or None when an input
breaks baseline's limits (a DC difference over 11 bits, an AC value over 10): the caller then
uses `sequential`, whose error names the block.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from djpeg.exact import layout as layout_lib
from djpeg.tables import ZIGZAG

_ZIGZAG = np.asarray(ZIGZAG, np.int64)
_OK, _BAD_DC, _BAD_AC = 0, 1, 2


@numba.njit(cache=True, nogil=True, inline="always")
def _size(x):
  """Bit length of |x| (JPEG's magnitude category)."""
  x = abs(x)
  s = 0
  while x:
    s += 1
    x >>= 1
  return s


@numba.njit(cache=True, nogil=True)
def _count(blocks, component, row, dummy, frame, dc_table, ac_table, zigzag, interval_first,
           num_tables):
  """`(num_tables * 256,)` symbol counts of the scan, and a status (`_OK`, `_BAD_DC`, `_BAD_AC`).

  Args:
    blocks: per frame component, `(n_c, 64)` coefficients in natural order.
    component: `(N,)` scan-local component of each coded block; `frame`: its frame component.
    row: `(N,)` the block's row in its component (for a dummy block: the row whose DC it copies).
    dummy: `(N,)` 1 for libjpeg's dummy blocks (their DC copied, AC all zero).
    dc_table, ac_table: per scan-local component, its table index.
    interval_first: increasing coded positions where restart intervals begin (after the first).
  """
  counts = np.zeros(num_tables * 256, np.int64)
  predictor = np.zeros(4, np.int64)
  next_restart = 0
  for i in range(component.shape[0]):
    if next_restart < interval_first.shape[0] and i == interval_first[next_restart]:
      predictor[:] = 0
      next_restart += 1
    c = component[i]
    b = blocks[frame[c]]
    r = row[i]
    dc = np.int64(b[r, 0])
    s = _size(dc - predictor[c])
    predictor[c] = dc
    if s > 11:
      return counts, _BAD_DC
    counts[dc_table[c] * 256 + s] += 1
    t = ac_table[c] * 256
    if dummy[i]:
      counts[t] += 1
      continue
    run = 0
    for k in range(1, 64):
      v = b[r, zigzag[k]]
      if v == 0:
        run += 1
        continue
      while run > 15:
        counts[t + 0xF0] += 1
        run -= 16
      s = _size(v)
      if s > 10:
        return counts, _BAD_AC
      counts[t + run * 16 + s] += 1
      run = 0
    if run:
      counts[t] += 1
  return counts, _OK


@numba.njit(cache=True, nogil=True, inline="always")
def put_bits(out, pos, acc, nbits, field, length):
  """Appends a `length`-bit field to the bit buffer (`acc`, holding `nbits` < 8 bits) and moves
  whole bytes to `out` from `pos`, each 0xFF followed by a stuffed 0x00: (pos, acc, nbits)."""
  acc = (acc << np.uint64(length)) | field
  nbits += length
  while nbits >= 8:
    nbits -= 8
    byte = np.uint8((acc >> np.uint64(nbits)) & np.uint64(0xFF))
    out[pos] = byte
    pos += 1
    if byte == 0xFF:
      out[pos] = 0
      pos += 1
  return pos, acc & ((np.uint64(1) << np.uint64(nbits)) - np.uint64(1)), nbits


@numba.njit(cache=True, nogil=True, inline="always")
def code_field(shifted, symbol, value, size):
  """A symbol's code followed by `size` extra bits of `value` (negative: value - 1's low bits)."""
  if value < 0:
    value -= 1
  return np.uint64(shifted[symbol]) | np.uint64(value & ((1 << size) - 1))


@numba.njit(cache=True, nogil=True)
def _emit(blocks, component, row, dummy, frame, dc_table, ac_table, zigzag, interval_first,
          shifted, total, out):
  """Writes the scan's segment into `out` (large enough) and returns its length in bytes.

  `shifted`, `total`: per `table * 256 + symbol`, its code shifted left over its extra bits and
  the field's length (`writer._code_luts`).
  """
  acc = np.uint64(0)
  nbits = 0
  pos = 0
  predictor = np.zeros(4, np.int64)
  next_restart = 0
  for i in range(component.shape[0]):
    if next_restart < interval_first.shape[0] and i == interval_first[next_restart]:
      if nbits:                                   # the interval's last byte, padded with 1s
        pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64((1 << (8 - nbits)) - 1),
                               8 - nbits)
      out[pos] = 0xFF
      out[pos + 1] = 0xD0 + (next_restart & 7)
      pos += 2
      predictor[:] = 0
      next_restart += 1
    c = component[i]
    b = blocks[frame[c]]
    r = row[i]
    dc = np.int64(b[r, 0])
    diff = dc - predictor[c]
    predictor[c] = dc
    s = _size(diff)
    symbol = dc_table[c] * 256 + s
    pos, acc, nbits = put_bits(out, pos, acc, nbits, code_field(shifted, symbol, diff, s),
                               total[symbol])
    t = ac_table[c] * 256
    if dummy[i]:
      pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64(shifted[t]), total[t])
      continue
    run = 0
    for k in range(1, 64):
      v = np.int64(b[r, zigzag[k]])
      if v == 0:
        run += 1
        continue
      while run > 15:
        pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64(shifted[t + 0xF0]),
                               total[t + 0xF0])
        run -= 16
      s = _size(v)
      symbol = t + run * 16 + s
      pos, acc, nbits = put_bits(out, pos, acc, nbits, code_field(shifted, symbol, v, s),
                                 total[symbol])
      run = 0
    if run:
      pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64(shifted[t]), total[t])
  if nbits:
    pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64((1 << (8 - nbits)) - 1), 8 - nbits)
  return pos


@functools.lru_cache(maxsize=16)
def coding_order(layout: layout_lib.ScanLayout, restart: int):
  """Per coded block: scan-local component, row in its component, dummy flag; and where the
  restart intervals after the first begin."""
  offsets = np.cumsum([0] + [r * c for r, c in zip(layout.block_rows, layout.block_cols)])
  component = np.asarray(layout.component, np.int64)
  source = np.array(layout.source, np.int64)
  dummy = np.zeros(len(source), np.uint8)
  dummy[layout.dummy] = 1
  source[layout.dummy] = layout.dummy_dc        # a dummy reads only its DC, from this block
  row = source - offsets[component]
  first = np.asarray(layout_lib.interval_starts(layout, restart), np.int64)
  return component, row, dummy, first


class Scan:
  """A sequential scan counted and ready to code (from `scan`)."""

  def __init__(self, args: tuple, counts: np.ndarray):
    self._args = args                 # the coding loop's arguments, up to the code tables
    self._counts = counts

  def counts(self, num_tables: int) -> np.ndarray:
    return self._counts[:num_tables * 256].reshape(num_tables, 256)

  def raw_bits(self) -> int:
    return 0

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`(bytes,)` uint8: the segment as it goes after SOS (as `sequential.segment`)."""
    total = np.asarray(total, np.int64)
    restarts = len(self._args[-1])
    bits = int(np.dot(self._counts[:len(total)], total))
    # Every byte may be stuffed; each interval adds a padding byte and a marker.
    out = np.empty(2 * (bits // 8 + 1) + 3 * restarts + 2, np.uint8)
    length = _emit(*self._args, np.asarray(shifted, np.uint64), total, out)
    return out[:length]


def scan(components, layout: layout_lib.ScanLayout, restart: int, dc_local, ac_local,
         num_tables: int) -> Scan | None:
  """The scan of `components` (per frame component, `(rows, cols, 8, 8)` integer coefficients,
  natural order) in `layout` with `restart` MCUs per interval (0: none) and the scan-local
  table indices `dc_local`, `ac_local`; None when baseline cannot code it (module docstring)."""
  blocks = [np.ascontiguousarray(np.asarray(c).reshape(-1, 64)) for c in components]
  dtype = np.int16 if all(b.dtype == np.int16 for b in blocks) else np.int64
  blocks = tuple(b.astype(dtype, copy=False) for b in blocks)
  component, row, dummy, first = coding_order(layout, restart)
  args = (blocks, component, row, dummy, np.asarray(layout.components, np.int64),
          np.asarray(dc_local, np.int64), np.asarray(ac_local, np.int64), _ZIGZAG, first)
  counts, status = _count(*args, num_tables)
  return Scan(args, counts) if status == _OK else None
