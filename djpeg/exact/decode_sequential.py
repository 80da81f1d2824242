"""Decoding a sequential (baseline) scan: Huffman-coded DC differences and AC run/size symbols.

The reader's side of `sequential` (libjpeg-turbo's `jdhuff.c`, `decode_mcu`): per block, one DC
size category and its magnitude bits (added to the component's predictor, reset at each restart
interval), then (run, size) AC symbols with ZRL and EOB. Each symbol is a lookup of the next
bits in the table's `decoder_lut`; its magnitude bits come from the same 32-bit peek. The
loop is compiled by numba and writes each value straight into the coefficient store at its
natural position (`bitreader.ScanTarget`); it stops at the first error with a status code that
`decode_sequential` raises as a `JPEGError` naming the block.
"""

from __future__ import annotations

import numba
import numpy as np

from djpeg.exact.bitreader import (OK, OVERFLOW, Bits, CoefficientOverflow, ScanTarget, corrupt,
                                   decode_symbol, extend, peek_bits, stack_luts)
from djpeg.exact.errors import JPEGError
from djpeg.tables import ZIGZAG

# Status codes of `_decode` (`bitreader.OK` and `OVERFLOW` are 0 and 1).
_DC_CODE, _DC_SIZE, _AC_CODE, _AC_RANGE, _ZERO_RUN, _TRUNCATED = range(2, 8)

_ZIGZAG = ZIGZAG.astype(np.int64)


def decode_sequential(bits: Bits, target: ScanTarget, layout, tables) -> None:
  """Decodes one sequential scan into `target`; `tables` are the (DC, AC) decoder lookups of
  each scan component (`bitreader.decoder_lut`)."""
  bpm = layout.blocks_per_mcu
  comp_of = np.ascontiguousarray(layout.component[:bpm], np.int64)
  luts, rows = stack_luts([t for pair in tables for t in pair])
  dc_of = np.asarray([rows[2 * c] for c in comp_of], np.int64)
  ac_of = np.asarray([rows[2 * c + 1] for c in comp_of], np.int64)
  lo, hi = target.bounds
  _check(_decode(bits.words, bits.interval_bytes, target.per_interval, target.dest, comp_of,
                 dc_of, ac_of, luts, _ZIGZAG, target.store, lo, hi))


def _check(status: tuple[int, int, int, int, int, int]) -> None:
  """Raises the error `_decode`'s status `(code, block, bit, interval end, k, s)` stands for."""
  code, b, p, limit, k, s = status
  if code == OK:
    return
  if code == OVERFLOW:
    raise CoefficientOverflow()
  if code == _DC_CODE:
    raise corrupt("invalid DC Huffman code", b, p, limit)
  if code == _DC_SIZE:
    raise corrupt(f"DC difference of {s} bits", b, p, limit)
  if code == _AC_CODE:
    raise corrupt("invalid AC Huffman code", b, p, limit)
  if code == _AC_RANGE:
    raise corrupt(f"AC coefficient beyond the block (k={k}) or of {s} bits", b, p, limit)
  if code == _ZERO_RUN:
    raise corrupt("zero run beyond the block end", b, p, limit)
  raise JPEGError(f"entropy-coded data is truncated (block {b} of a scan ends past its data).")


@numba.njit(cache=True, nogil=True)
def _decode(words, interval_bytes, per_interval, dest, comp_of, dc_of, ac_of, luts, zigzag,
            store, lo, hi):
  """The scan's blocks, interval by interval; returns (code, block, bit, interval end, k, s)."""
  n = dest.shape[0]
  bpm = comp_of.shape[0]
  pred = np.zeros(bpm, np.int64)  # per scan component (at most one per block of an MCU)
  interval = 0
  b0 = 0
  while b0 < n:
    p = 8 * interval_bytes[interval]
    limit = 8 * interval_bytes[interval + 1]
    pred[:] = 0
    b1 = min(b0 + per_interval, n)
    for b in range(b0, b1):
      j = b % bpm
      base = dest[b]
      x = peek_bits(words, p)
      e = decode_symbol(luts[dc_of[j]], x)
      if e < 0:
        return _DC_CODE, b, p, limit, 0, 0
      ln = e & 31
      s = e >> 5
      if s:
        if s > 11:
          return _DC_SIZE, b, p, limit, 0, s
        pred[comp_of[j]] += extend((x >> (32 - ln - s)) & ((1 << s) - 1), s)
      p += ln + s
      v = pred[comp_of[j]]
      if v < lo or v > hi:
        return OVERFLOW, b, p, limit, 0, 0
      store[base] = v
      aclut = luts[ac_of[j]]
      k = 1
      while k < 64:
        x = peek_bits(words, p)
        e = decode_symbol(aclut, x)
        if e < 0:
          return _AC_CODE, b, p, limit, 0, 0
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        if s:
          k += rs >> 4
          if k > 63 or s > 10:
            return _AC_RANGE, b, p, limit, k, s
          store[base + zigzag[k]] = extend((x >> (32 - ln - s)) & ((1 << s) - 1), s)  # < 1024
          p += ln + s
          k += 1
        else:
          p += ln
          if rs != 0xF0:
            break
          k += 16
          if k > 64:
            return _ZERO_RUN, b, p, limit, 0, 0
      if p > limit:
        return _TRUNCATED, b, p, limit, 0, 0
    b0 = b1
    interval += 1
  return OK, 0, 0, 0, 0, 0
