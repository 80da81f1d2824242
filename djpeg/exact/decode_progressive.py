"""Decoding progressive scans: DC first and refinement, AC first and refinement (spectral
selection and successive approximation).

The reader's side of `scans` and `progressive` (libjpeg-turbo's `jdphuff.c`): a DC first scan
codes the DC differences shifted right by Al; a DC refinement one bit per block; an AC first
scan a spectral band with end-of-band runs over blocks (EOBn); an AC refinement scan one new
coefficient (+-1 << Al) per symbol plus a correction bit for each already nonzero coefficient
it passes (its 'history'), in this block and in every block an end-of-band run covers.

Each decoder is a Python wrapper around a loop compiled by numba: the loop reads the scan's bits
(`bitreader.Bits`) with one table lookup per symbol (`bitreader.decode_symbol`) and writes each
value straight into the coefficient store at its natural position (`bitreader.ScanTarget`).
AC scans also keep `ScanTarget.nonzero` up to date: per block, a 64-bit mask with bit k set when
its zigzag coefficient k is nonzero. An AC refinement reads a block's history from that mask in
one load; the position of a new value (the (r+1)-th zero from k) is then a few bit operations,
and the correction bits are read only for the history coefficients passed, lowest set bit first
(a trailing-zero count, `_lowest_bit`). So a block an end-of-band run covers costs one load
when it has no history, whatever the band. New values and corrections never make a nonzero
value zero, so the masks stay exact. A loop stops at the first error with a status code that
its wrapper raises as a `JPEGError` naming the block.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from djpeg.exact.bitreader import (OK, OVERFLOW, Bits, CoefficientOverflow, ScanTarget, corrupt,
                                   decode_symbol, extend, peek_bits, stack_luts)
from djpeg.exact.errors import JPEGError
from djpeg.tables import ZIGZAG

# Status codes of the loops (`bitreader.OK` and `OVERFLOW` are 0 and 1).
(_DC_CODE, _DC_SIZE, _DC_TRUNCATED, _DC_REFINE_TRUNCATED, _AC_CODE, _AC_RANGE, _BAND_RUN,
 _AC_TRUNCATED, _EOB_RUN, _REFINE_SIZE, _REFINE_RUN, _REFINE_TRUNCATED) = range(2, 14)

_ZIGZAG = ZIGZAG.astype(np.int64)


def decode_dc_first(bits: Bits, target: ScanTarget, layout, tables, al: int) -> None:
  """Decodes a DC first scan (Ah = 0) into `target`, values shifted left by `al`."""
  bpm = layout.blocks_per_mcu
  comp_of = np.ascontiguousarray(layout.component[:bpm], np.int64)
  luts, rows = stack_luts([dc for dc, _ in tables])
  lut_of = np.asarray([rows[c] for c in comp_of], np.int64)
  lo, hi = target.bounds
  _check(_dc_first(bits.words, bits.interval_bytes, target.per_interval, target.dest, comp_of,
                   lut_of, luts, al, target.store, lo, hi))


def decode_dc_refine(bits: Bits, target: ScanTarget, layout, al: int) -> None:
  """Decodes a DC refinement scan: one bit per block, ORed in at bit `al`."""
  del layout  # every block of the scan reads one bit; `target.dest` lists them
  _check(_dc_refine(bits.words, bits.interval_bytes, target.per_interval, target.dest, al,
                    target.store))


def decode_ac_first(bits: Bits, target: ScanTarget, layout, aclut, ss: int, se: int,
                    al: int) -> None:
  """Decodes an AC first scan of band `ss..se` with end-of-band runs, shifted left by `al`."""
  del layout  # one component, one block per MCU: `target.dest` lists the blocks
  lo, hi = target.bounds
  _check(_ac_first(bits.words, bits.interval_bytes, target.per_interval, target.dest, aclut,
                   _ZIGZAG, ss, se, al, target.store, target.nonzero, lo, hi))


def decode_ac_refine(bits: Bits, target: ScanTarget, layout, aclut, ss: int, se: int,
                     al: int) -> None:
  """Decodes an AC refinement scan of band `ss..se` at bit `al` (new +-1 << al values and
  correction bits for coefficients already nonzero)."""
  del layout  # one component, one block per MCU: `target.dest` lists the blocks
  lo, hi = target.bounds
  _check(_ac_refine(bits.words, bits.interval_bytes, target.per_interval, target.dest, aclut,
                    _ZIGZAG, ss, se, al, target.store, target.nonzero, lo, hi))


def _check(status: tuple[int, int, int, int, int, int]) -> None:
  """Raises the error a loop's status `(code, block, bit, interval end, a, b)` stands for."""
  code, b, p, limit, k, s = status
  if code == OK:
    return
  if code == OVERFLOW:
    raise CoefficientOverflow()
  if code == _DC_CODE:
    raise corrupt("invalid DC Huffman code", b, p, limit)
  if code == _DC_SIZE:
    raise corrupt(f"DC difference of {s} bits", b, p, limit)
  if code == _DC_TRUNCATED:
    raise JPEGError("entropy-coded data is truncated (a DC scan ends past its data).")
  if code == _DC_REFINE_TRUNCATED:
    raise JPEGError("entropy-coded data is truncated (a DC refinement scan).")
  if code == _AC_CODE:
    raise corrupt("invalid AC Huffman code", b, p, limit)
  if code == _AC_RANGE:
    raise corrupt(f"AC coefficient beyond the band (k={k}) or of {s} bits", b, p, limit)
  if code == _BAND_RUN:
    raise corrupt("zero run beyond the band", b, p, limit)
  if code == _AC_TRUNCATED:
    raise JPEGError("entropy-coded data is truncated (an AC scan ends past its data).")
  if code == _EOB_RUN:
    raise corrupt(f"end-of-band run of {k} blocks passes the end of its restart interval or "
                  "scan", b, p, limit)
  if code == _REFINE_SIZE:
    raise corrupt(f"refinement symbol of size {s}", b, p, limit)
  if code == _REFINE_RUN:
    raise corrupt("refinement run beyond the band", b, p, limit)
  raise JPEGError("entropy-coded data is truncated (an AC refinement scan ends past its data).")


@numba.njit(cache=True, nogil=True)
def _dc_first(words, interval_bytes, per_interval, dest, comp_of, lut_of, luts, al, store, lo,
              hi):
  """DC differences added to each scan component's predictor, written shifted left by `al`."""
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
      x = peek_bits(words, p)
      e = decode_symbol(luts[lut_of[j]], x)
      if e < 0:
        return _DC_CODE, b, p, limit, 0, 0
      ln = e & 31
      s = e >> 5
      if s:
        if s > 11:
          return _DC_SIZE, b, p, limit, 0, s
        pred[comp_of[j]] += extend((x >> (32 - ln - s)) & ((1 << s) - 1), s)
      p += ln + s
      if p > limit:
        return _DC_TRUNCATED, b, p, limit, 0, 0
      v = pred[comp_of[j]] << al
      if v < lo or v > hi:
        return OVERFLOW, b, p, limit, 0, 0
      store[dest[b]] = v
    b0 = b1
    interval += 1
  return OK, 0, 0, 0, 0, 0


@numba.njit(cache=True, nogil=True)
def _dc_refine(words, interval_bytes, per_interval, dest, al, store):
  """One bit per block ORed into its DC at bit `al` (never out of range: al <= 13)."""
  n = dest.shape[0]
  interval = 0
  b0 = 0
  while b0 < n:
    p = 8 * interval_bytes[interval]
    b1 = min(b0 + per_interval, n)
    if p + (b1 - b0) > 8 * interval_bytes[interval + 1]:
      return _DC_REFINE_TRUNCATED, b0, p, 8 * interval_bytes[interval + 1], 0, 0
    for b in range(b0, b1):
      bit = (np.int64(words[p >> 5]) >> (31 - (p & 31))) & 1
      store[dest[b]] |= bit << al
      p += 1
    b0 = b1
    interval += 1
  return OK, 0, 0, 0, 0, 0


@numba.njit(cache=True, nogil=True)
def _ac_first(words, interval_bytes, per_interval, dest, lut, zigzag, ss, se, al, store, nonzero,
              lo, hi):
  """Band `ss..se` of each block, shifted left by `al`, marked in `nonzero`; an end-of-band run
  skips blocks."""
  n = dest.shape[0]
  interval = 0
  b0 = 0
  while b0 < n:
    p = 8 * interval_bytes[interval]
    limit = 8 * interval_bytes[interval + 1]
    b1 = min(b0 + per_interval, n)
    b = b0
    while b < b1:
      base = dest[b]
      k = ss
      run = 0
      written = 0
      while k <= se:
        x = peek_bits(words, p)
        e = decode_symbol(lut, x)
        if e < 0:
          return _AC_CODE, b, p, limit, 0, 0
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        r = rs >> 4
        if s:
          k += r
          if k > se or s > 10:
            return _AC_RANGE, b, p, limit, k, s
          v = extend((x >> (32 - ln - s)) & ((1 << s) - 1), s) << al
          if v < lo or v > hi:
            return OVERFLOW, b, p, limit, 0, 0
          store[base + zigzag[k]] = v
          written |= np.int64(1) << k
          p += ln + s
          k += 1
        elif r == 15:
          p += ln
          k += 16
          if k > se + 1:
            return _BAND_RUN, b, p, limit, 0, 0
        else:
          run = 1
          if r:
            run = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1))
          p += ln + r
          break
      nonzero[base >> 6] |= written
      if p > limit:
        return _AC_TRUNCATED, b, p, limit, 0, 0
      if run:
        if b + run > b1:
          return _EOB_RUN, b, p, limit, run, 0
        b += run
      else:
        b += 1
    b0 = b1
    interval += 1
  return OK, 0, 0, 0, 0, 0


@intrinsic
def _lowest_bit(typingctx, x):
  """The index of the lowest set bit of a nonzero int64 (LLVM's cttz: one instruction)."""
  del typingctx, x

  def codegen(context, builder, signature, args):
    return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

  return types.int64(types.int64), codegen


@numba.njit
def _corrections(words, p, store, base, zigzag, passed, p1, lo, hi):
  """Reads one correction bit from bit `p` for each history coefficient in the mask `passed`, in
  zigzag order: a 1 adds `p1` to the magnitude unless that bit is already set. Returns the
  position after the bits, or -1 when a corrected value does not fit the store."""
  while passed:  # branch-free: the bits are as good as random
    at = base + zigzag[_lowest_bit(passed)]
    c = np.int64(store[at])
    bit = (np.int64(words[p >> 5]) >> (31 - (p & 31))) & 1
    c += bit * np.int64((c & p1) == 0) * (p1 if c >= 0 else -p1)
    if c < lo or c > hi:
      return -1
    store[at] = c
    p += 1
    passed &= passed - 1
  return p


@numba.njit(cache=True, nogil=True)
def _ac_refine(words, interval_bytes, per_interval, dest, lut, zigzag, ss, se, al, store,
               nonzero, lo, hi):
  """Band `ss..se` refined at bit `al`: new +-1 << al values (marked in `nonzero`), and a
  correction bit for each nonzero coefficient passed, in this block and in every block an
  end-of-band run covers.

  Positions are bit masks over the zigzag order (bit k: position k; `-(1 << k)` keeps bits k
  and up): the block's history (its `nonzero` mask within the band, as earlier scans left it),
  and the zeros a run counts.
  """
  n = dest.shape[0]
  p1 = np.int64(1) << al
  band = ((np.int64(1) << se) << 1) - (np.int64(1) << ss)
  interval = 0
  b0 = 0
  while b0 < n:
    p = 8 * interval_bytes[interval]
    limit = 8 * interval_bytes[interval + 1]
    b1 = min(b0 + per_interval, n)
    b = b0
    while b < b1:
      base = dest[b]
      hist = nonzero[base >> 6] & band
      written = 0
      eobrun = 0
      k = ss
      while k <= se:
        x = peek_bits(words, p)
        e = decode_symbol(lut, x)
        if e < 0:
          return _AC_CODE, b, p, limit, 0, 0
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        r = rs >> 4
        value = 0
        if s:
          if s != 1:
            return _REFINE_SIZE, b, p, limit, 0, s
          value = p1 if (x >> (31 - ln)) & 1 else -p1
          p += ln + 1
        elif r != 15:
          eobrun = 1
          if r:
            eobrun = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1))
          p += ln + r
          break
        else:
          p += ln
        # The new value goes at the (r+1)-th zero coefficient from k (a ZRL passes 16 zeros);
        # history coefficients on the way get correction bits.
        zeros = ~hist & band & -(np.int64(1) << k)
        for _ in range(r):
          zeros &= zeros - 1
        if zeros == 0:
          return _REFINE_RUN, b, p, limit, 0, 0
        position = _lowest_bit(zeros)
        p = _corrections(words, p, store, base, zigzag,
                         hist & ((zeros & -zeros) - 1) & -(np.int64(1) << k), p1, lo, hi)
        if p < 0:
          return OVERFLOW, b, p, limit, 0, 0
        if s:
          store[base + zigzag[position]] = value  # +-1 << al, al <= 12: it fits
          written |= np.int64(1) << position
        k = position + 1
      nonzero[base >> 6] |= written
      if eobrun:
        # The rest of this block (k <= se here) and the next eobrun - 1 blocks: one correction
        # bit per history coefficient.
        if b + eobrun > b1:
          return _EOB_RUN, b, p, limit, eobrun, 0
        last = b + eobrun
        passed = hist & -(np.int64(1) << k)
        while True:
          p = _corrections(words, p, store, base, zigzag, passed, p1, lo, hi)
          if p < 0:
            return OVERFLOW, b, p, limit, 0, 0
          b += 1
          if b >= last or p > limit:
            break
          base = dest[b]
          passed = nonzero[base >> 6] & band
      else:
        b += 1
      if p > limit:
        return _REFINE_TRUNCATED, b, p, limit, 0, 0
    b0 = b1
    interval += 1
  return OK, 0, 0, 0, 0, 0
