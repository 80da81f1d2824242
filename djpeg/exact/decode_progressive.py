"""Decoding progressive scans: DC first and refinement, AC first and refinement (spectral
selection and successive approximation).

The reader's side of `scans` and `progressive` (libjpeg-turbo's `jdphuff.c`): a DC first scan
codes the DC differences shifted right by Al; a DC refinement one bit per block; an AC first
scan a spectral band with end-of-band runs over blocks (EOBn); an AC refinement scan one new
coefficient (+-1 << Al) per symbol plus a correction bit for each already nonzero coefficient
it passes. Each decoder is a function of the scan's bits, its layout and tables, writing into
the coefficient store (`bitreader.ScanTarget`).
"""

from __future__ import annotations

import bisect

import numpy as np

from djpeg.exact.bitreader import Bits, ScanTarget, corrupt
from djpeg.exact.errors import JPEGError


def decode_dc_first(bits: Bits, target: ScanTarget, layout, tables, al: int) -> None:
  """Decodes a DC first scan (Ah = 0) into `target`, values shifted left by `al`."""
  dest = target.dest
  bpm = layout.blocks_per_mcu
  comp_of = layout.component[:bpm].tolist()
  dcs = [tables[i][0] for i in comp_of]
  W = bits.windows
  per_interval = target.per_interval
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
        raise corrupt("invalid DC Huffman code", b, p, limit)
      ln = e & 31
      s = e >> 5
      if s:
        if s > 11:
          raise corrupt(f"DC difference of {s} bits", b, p, limit)
        v = (x >> (32 - ln - s)) & ((1 << s) - 1)
        if v < (1 << (s - 1)):
          v -= (1 << s) - 1
        pred[comp_of[j]] += v
      p += ln + s
      if p > limit:
        raise JPEGError("entropy-coded data is truncated (a DC scan ends past its data).")
      idx.append(dest[b])
      vals.append(pred[comp_of[j]])
  target.scatter(idx, vals, al)


def decode_dc_refine(bits: Bits, target: ScanTarget, layout, al: int) -> None:
  """Decodes a DC refinement scan: one bit per block, ORed in at bit `al`."""
  dest = np.asarray(target.dest, np.int64)
  per_interval = target.per_interval
  n = layout.num_blocks
  for interval, b0 in enumerate(range(0, n, per_interval)):
    count = min(per_interval, n - b0)
    start = 8 * bits.interval_bytes[interval]
    if start + count > 8 * bits.interval_bytes[interval + 1]:
      raise JPEGError("entropy-coded data is truncated (a DC refinement scan).")
    got = bits.bits(start, count).astype(np.int32)
    target.store[dest[b0:b0 + count]] |= got << al


def decode_ac_first(bits: Bits, target: ScanTarget, layout, aclut, ss: int, se: int,
                    al: int) -> None:
  """Decodes an AC first scan of band `ss..se` with end-of-band runs, shifted left by `al`."""
  dest = target.dest
  W = bits.windows
  per_interval = target.per_interval
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
          raise corrupt("invalid AC Huffman code", b, p, limit)
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        r = rs >> 4
        if s:
          k += r
          if k > se or s > 10:
            raise corrupt(f"AC coefficient beyond the band (k={k}) or of {s} bits",
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
            raise corrupt("zero run beyond the band", b, p, limit)
        else:
          run = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1)) if r else 1
          p += ln + r
          break
      if p > limit:
        raise JPEGError("entropy-coded data is truncated (an AC scan ends past its data).")
      if run:
        if b + run > b1:
          raise corrupt(f"end-of-band run of {run} blocks passes the end of its restart "
                         "interval or scan", b, p, limit)
        b += run
      else:
        b += 1
  target.scatter(idx, vals, al)


def decode_ac_refine(bits: Bits, target: ScanTarget, layout, aclut, ss: int, se: int,
                     al: int) -> None:
  """Decodes an AC refinement scan of band `ss..se` at bit `al` (new +-1 << al values and
  correction bits for coefficients already nonzero)."""
  dest = target.dest
  rows = np.asarray(dest, np.int64) // 64
  band = np.zeros(64, bool)
  band[ss:se + 1] = True
  history = (target.store.reshape(-1, 64)[rows] != 0) & band
  packed = np.packbits(history, axis=1, bitorder="little").view("<u8").ravel()
  masks = packed.tolist()
  hist_blocks = np.flatnonzero(packed).tolist()
  band_mask = ((1 << (se + 1)) - 1) ^ ((1 << ss) - 1)
  W = bits.windows
  per_interval = target.per_interval
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
          raise corrupt("invalid AC Huffman code", b, p, limit)
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        r = rs >> 4
        if s:
          if s != 1:
            raise corrupt(f"refinement symbol of size {s}", b, p, limit)
          positive = (x >> (31 - ln)) & 1
          p += ln + 1
        elif r != 15:
          eobrun = (1 << r) + ((x >> (32 - ln - r)) & ((1 << r) - 1)) if r else 1
          p += ln + r
          break
        else:
          p += ln
        # The position is the (r+1)-th still-zero coefficient from k; history coefficients on
        # the way get correction bits.
        z = zeros >> k << k
        for _ in range(r):
          z &= z - 1
        if z == 0:
          raise corrupt("refinement run beyond the band", b, p, limit)
        position = (z & -z).bit_length() - 1
        passed = hist & ((1 << position) - 1) >> k << k
        p = correction_bits(p, base, passed)
        if s:
          new_i.append(base + position)
          new_v.append(p1 if positive else -p1)
        k = position + 1
      if eobrun:
        # The rest of this block and the next eobrun - 1 blocks: only blocks with nonzero
        # history have bits to read, so a long run over empty blocks costs nothing.
        if b + eobrun > b1:
          raise corrupt(f"end-of-band run of {eobrun} blocks passes the end of its restart "
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
  store = target.store
  if fixes:
    at = np.asarray(fixes, np.int64)
    coef = store[at]
    todo = (coef & p1) == 0
    store[at[todo]] += np.where(coef[todo] >= 0, p1, -p1).astype(np.int32)
  if new_i:
    store[np.asarray(new_i, np.int64)] = np.asarray(new_v, np.int32)
