"""Symbol counts of progressive AC scans as compiled loops, for pricing scan scripts.

`djpeg.exact.scripts` prices about a hundred candidate scans per image. The writer's coders
(`djpeg.exact.progressive`) build each scan's whole symbol stream with array passes, which is
what writing needs and several times more than pricing needs. Here numba walks the blocks as
libjpeg's `encode_mcu_AC_first` and `encode_mcu_AC_refine` (jcphuff.c) do, with no restart
intervals, and only counts: the result equals the writer's `counts` and `raw_bits` for the
same scan (`tests/test_scripts.py`).

Coefficients come as `scans.Sparse` lists (one component's nonzero AC coefficients, blocks in
coding order, which is raster order in a one-component scan): the loops visit only nonzero
coefficients, the runs of zeros being the gaps between their positions.
"""

from __future__ import annotations

import numba
import numpy as np

from djpeg.exact.sequential_compiled import coding_order, put_bits
from djpeg.exact.trellis_compiled import magnitude_size
from djpeg.tables import ZIGZAG

#: libjpeg's MAX_CORR_BITS - DCTSIZE2 + 1: an EOBRUN is flushed once its buffered correction
#: bits exceed this (`progressive.MAX_BUFFERED_BITS`).
_MAX_BUFFERED = 1000 - 64 + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _flush(counts, eobrun):
  """Counts the pending end-of-band run's EOBn symbol (n = floor(log2(run)), in the high
  nibble), if there is a run; returns the run's new length, 0."""
  if eobrun:
    counts[(magnitude_size(eobrun) - 1) << 4] += 1
  return 0


def block_starts(sparse) -> np.ndarray:
  """`(N + 1,)` where each block's coefficients begin in a `scans.Sparse` list (and its end)."""
  return np.concatenate([[0], np.cumsum(np.bincount(sparse.block, minlength=sparse.num_blocks))])


@numba.njit(cache=True, nogil=True)
def ac_first_counts(starts, k, magnitude, ss, se, al, cap):
  """`(256,)` symbol counts of an AC first scan of band `ss..se` at point transform `al`, EOB
  runs capped at `cap` blocks. Its raw bits are 0: every extra bit follows a symbol.

  Args:
    starts: `(N + 1,)` `block_starts`; k, magnitude: `(M,)` zigzag index and |value| of the
      nonzero AC coefficients, block by block in increasing k (`scans.Sparse`).
  """
  counts = np.zeros(256, np.int64)
  eobrun = 0
  for b in range(len(starts) - 1):
    last = ss - 1                   # the band position of the last coded coefficient
    for i in range(starts[b], starts[b + 1]):
      kk = k[i]
      if kk < ss or kk > se:
        continue
      t = np.int64(magnitude[i]) >> al
      if t == 0:
        continue
      eobrun = _flush(counts, eobrun)
      r = kk - last - 1
      while r > 15:
        counts[0xF0] += 1
        r -= 16
      counts[(r << 4) + magnitude_size(t)] += 1
      last = kk
    if last < se:
      eobrun += 1
      if eobrun == cap:
        eobrun = _flush(counts, eobrun)
  _flush(counts, eobrun)
  return counts


@numba.njit(cache=True, nogil=True)
def ac_refine_counts(starts, k, magnitude, ss, se, al, cap):
  """(`(256,)` symbol counts, correction bits) of an AC refinement scan (Ah = `al` + 1) of band
  `ss..se`: newly nonzero coefficients (|c| >> al == 1) as (run, 1) symbols, one correction bit
  per previously nonzero one, ZRLs only before the block's last newly nonzero coefficient, EOB
  runs flushed at `cap` blocks or when their buffered correction bits grow too many. Arguments
  as for `ac_first_counts`."""
  counts = np.zeros(256, np.int64)
  eobrun = 0
  buffered = 0                    # the run's correction bits (0 whenever the run is)
  corrections = 0
  for b in range(len(starts) - 1):
    eob = 0                         # the last newly nonzero coefficient's position
    for i in range(starts[b], starts[b + 1]):
      if ss <= k[i] <= se and (np.int64(magnitude[i]) >> al) == 1:
        eob = k[i]
    r = 0                           # zeros since the last symbol
    last = ss - 1                   # the last coefficient with |c| >> al > 0
    pending = 0
    for i in range(starts[b], starts[b + 1]):
      kk = k[i]
      if kk < ss or kk > se:
        continue
      t = np.int64(magnitude[i]) >> al
      if t == 0:
        continue
      r += kk - last - 1
      last = kk
      while r > 15 and kk <= eob:
        eobrun = buffered = _flush(counts, eobrun)
        counts[0xF0] += 1
        r -= 16
        pending = 0
      if t > 1:
        pending += 1
        corrections += 1
        continue
      eobrun = buffered = _flush(counts, eobrun)
      counts[(r << 4) + 1] += 1
      pending = 0
      r = 0
    r += se - last
    if r > 0 or pending > 0:
      eobrun += 1
      buffered += pending
      if eobrun == cap or buffered > _MAX_BUFFERED:
        eobrun = buffered = _flush(counts, eobrun)
  _flush(counts, eobrun)
  return counts, corrections


# The writer's progressive scans, coded by compiled loops over the dense coefficients.
#
# The coders above count the symbols of sparse lists, for pricing scripts on a sample. The ones
# below code whole scans as libjpeg's `encode_mcu_DC_first`, `encode_mcu_DC_refine`,
# `encode_mcu_AC_first` and `encode_mcu_AC_refine` do (jcphuff.c), block by block from the
# `(n, 64)` coefficient arrays, keeping nothing per coefficient: each runs once counting (the
# optimal tables need the counts) and once writing through `sequential_compiled`'s bit buffer.
# `djpeg.exact.progressive` and `scans` (array passes over sparse lists) stay the reference and
# code what these do not: scans with restart intervals, and inputs beyond JPEG's limits, whose
# errors they name.

_OK, _TOO_LARGE = 0, 1
_DC_FIRST, _DC_REFINE, _AC_FIRST, _AC_REFINE = 0, 1, 2, 3
#: libjpeg's MAX_CORR_BITS: the correction bits an end-of-band run may hold.
_MAX_CORRECTIONS = 1000


@numba.njit(cache=True, nogil=True, inline="always")
def _code(counting, counts, shifted, total, out, pos, acc, nbits, symbol, extra):
  """Counts `symbol`, or writes its code and then its extra bits `extra` (masked to their
  length). Returns (pos, acc, nbits)."""
  if counting:
    counts[symbol] += 1
    return pos, acc, nbits
  return put_bits(out, pos, acc, nbits, np.uint64(shifted[symbol]) | np.uint64(extra),
                  total[symbol])


@numba.njit(cache=True, nogil=True, inline="always")
def _end_run(counting, counts, shifted, total, out, pos, acc, nbits, table, run, corrections,
             pending):
  """Codes a pending end-of-band run of `run` blocks, if any: EOBn (n = its bit length - 1),
  the low n bits of the run, then its `pending` buffered correction bits. Returns (pos, acc,
  nbits); the caller's run and buffer are empty after it."""
  if run:
    n = magnitude_size(run) - 1
    pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                            table * 256 + (n << 4), run & ((1 << n) - 1))
    pos, acc, nbits = _bits(counting, out, pos, acc, nbits, corrections, 0, pending)
  return pos, acc, nbits


@numba.njit(cache=True, nogil=True, inline="always")
def _bits(counting, out, pos, acc, nbits, corrections, first, count):
  """Writes `count` buffered correction bits from `corrections[first:]`."""
  if not counting:
    for j in range(first, first + count):
      pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64(corrections[j]), 1)
  return pos, acc, nbits


@numba.njit(cache=True, nogil=True)
def code_scan(kind, blocks, component, row, frame, dc_table, ss, se, ah, al, ac_table, cap,
              zigzag, counting, counts, shifted, total, out):
  """One progressive scan of `kind` (`_DC_FIRST`, `_DC_REFINE`, `_AC_FIRST`, `_AC_REFINE`),
  counted into `counts` (`(tables * 256,)`, `counting`) or written into `out` (large enough).
  Returns (bytes written, raw bits, status): raw bits are those no symbol accounts for (DC
  refinement and correction bits); status `_TOO_LARGE` when a value is beyond JPEG's limits
  (DC difference over 11 bits, AC over 10).

  Args:
    blocks: per frame component, `(n_c, 64)` coefficients in natural order.
    component, row: per coded block, its scan-local component and its row in that component's
      blocks (a dummy block of an interleaved DC scan: the block whose DC it copies).
    frame: per scan-local component, its frame component; `dc_table`: its DC table.
    ac_table: an AC scan's table; cap: the longest end-of-band run (blocks).
  """
  acc = np.uint64(0)
  nbits = 0
  pos = 0
  raw = 0
  predictor = np.zeros(4, np.int64)
  eobrun = 0
  corrections = np.zeros(_MAX_CORRECTIONS + 64, np.uint8)
  pending = 0                       # correction bits waiting for the end-of-band run
  magnitude = np.zeros(64, np.int64)
  t = ac_table * 256
  for i in range(component.shape[0]):
    c = component[i]
    b = blocks[frame[c]]
    r = row[i]
    if kind == _DC_FIRST:
      dc = np.int64(b[r, 0]) >> al
      diff = dc - predictor[c]
      predictor[c] = dc
      s = magnitude_size(abs(diff))
      if s > 11:
        return pos, raw, _TOO_LARGE
      pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                              dc_table[c] * 256 + s, (diff - (diff < 0)) & ((1 << s) - 1))
      continue
    if kind == _DC_REFINE:
      raw += 1
      if not counting:
        pos, acc, nbits = put_bits(out, pos, acc, nbits,
                                   np.uint64((np.int64(b[r, 0]) >> al) & 1), 1)
      continue
    if kind == _AC_FIRST:
      run = 0
      for k in range(ss, se + 1):
        v = np.int64(b[r, zigzag[k]])
        m = (-v if v < 0 else v) >> al
        if m == 0:
          run += 1
          continue
        if eobrun:
          pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits,
                                     ac_table, eobrun, corrections, 0)
          eobrun = 0
        while run > 15:
          pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                                  t + 0xF0, 0)
          run -= 16
        s = magnitude_size(m)
        if s > 10:
          return pos, raw, _TOO_LARGE
        # A negative value's extra bits are those of the complement of its magnitude.
        pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                                t + (run << 4) + s, (~m if v < 0 else m) & ((1 << s) - 1))
        run = 0
      if run > 0:
        eobrun += 1
        if eobrun == cap:
          pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits,
                                     ac_table, eobrun, corrections, 0)
          eobrun = 0
      continue
    # _AC_REFINE: libjpeg's pre-pass (magnitudes after the point transform, EOB position),
    # then the symbols, correction bits buffered behind the run's (`pending`) as libjpeg's BR.
    eob = 0
    for k in range(ss, se + 1):
      v = np.int64(b[r, zigzag[k]])
      m = (-v if v < 0 else v) >> al
      magnitude[k] = m
      if m == 1:
        eob = k
    run = 0
    mine = pending                  # where this block's correction bits begin
    count = 0
    for k in range(ss, se + 1):
      m = magnitude[k]
      if m == 0:
        run += 1
        continue
      while run > 15 and k <= eob:
        pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits,
                                   ac_table, eobrun, corrections, mine)
        eobrun = 0
        pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                                t + 0xF0, 0)
        run -= 16
        pos, acc, nbits = _bits(counting, out, pos, acc, nbits, corrections, mine, count)
        pending = mine = count = 0
      if m > 1:
        corrections[mine + count] = m & 1
        count += 1
        raw += 1
        continue
      if eobrun:
        pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits,
                                   ac_table, eobrun, corrections, mine)
        eobrun = 0
      positive = 0 if np.int64(b[r, zigzag[k]]) < 0 else 1
      pos, acc, nbits = _code(counting, counts, shifted, total, out, pos, acc, nbits,
                              t + (run << 4) + 1, positive)
      pos, acc, nbits = _bits(counting, out, pos, acc, nbits, corrections, mine, count)
      pending = mine = count = 0
      run = 0
    if run > 0 or count > 0:
      eobrun += 1
      pending = mine + count
      if eobrun == cap or pending > _MAX_CORRECTIONS - 64 + 1:
        pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits,
                                   ac_table, eobrun, corrections, pending)
        eobrun = pending = 0
  pos, acc, nbits = _end_run(counting, counts, shifted, total, out, pos, acc, nbits, ac_table,
                             eobrun, corrections, pending)
  if nbits and not counting:
    pos, acc, nbits = put_bits(out, pos, acc, nbits, np.uint64((1 << (8 - nbits)) - 1),
                               8 - nbits)
  return pos, raw, _OK


_ZIGZAG = np.asarray(ZIGZAG, np.int64)


class Scan:
  """A progressive scan counted and ready to code (from `scan`): `counts`, `raw_bits` and
  `segment` as every scan coder (`djpeg.exact.scans`)."""

  def __init__(self, args: tuple, counts: np.ndarray, raw: int):
    self._args = args                 # `code_scan`'s arguments before `counting`
    self._counts = counts
    self._raw = raw

  def counts(self, num_tables: int) -> np.ndarray:
    return self._counts[:num_tables * 256].reshape(num_tables, 256)

  def raw_bits(self) -> int:
    return self._raw

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """`(bytes,)` uint8: the segment as it goes after SOS."""
    total = np.asarray(total, np.int64)
    bits = int(np.dot(self._counts[:len(total)], total)) + self._raw
    out = np.empty(2 * (bits // 8 + 1) + 2, np.uint8)       # every byte may be stuffed
    length, _, _ = code_scan(*self._args, False, self._counts,
                             np.asarray(shifted, np.uint64), total, out)
    return out[:length]


def scan(components, layout, scan_, dc_local, ac_local, num_tables: int, cap: int):
  """The progressive scan `scan_` (`scans.Scan`) of `components` (per frame component, `(rows,
  cols, 8, 8)` integer coefficients, natural order) in `layout`, without restart intervals,
  with scan-local tables `dc_local`, `ac_local` and end-of-band runs of at most `cap` blocks;
  None when a value is beyond JPEG's limits (the array coders then name it)."""
  blocks = [np.ascontiguousarray(np.asarray(c).reshape(-1, 64)) for c in components]
  dtype = np.int16 if all(b.dtype == np.int16 for b in blocks) else np.int64
  blocks = tuple(b.astype(dtype, copy=False) for b in blocks)
  component, row, _, _ = coding_order(layout, 0)
  if scan_.is_dc:
    kind = _DC_FIRST if scan_.ah == 0 else _DC_REFINE
  else:
    kind = _AC_FIRST if scan_.ah == 0 else _AC_REFINE
  args = (kind, blocks, component, row, np.asarray(layout.components, np.int64),
          np.asarray(dc_local, np.int64), scan_.ss, scan_.se, scan_.ah, scan_.al,
          int(ac_local[0]), int(cap), _ZIGZAG)
  counts = np.zeros(num_tables * 256, np.int64)
  _, raw, status = code_scan(*args, True, counts, np.zeros(1, np.uint64), np.zeros(1, np.int64),
                             np.zeros(1, np.uint8))
  return Scan(args, counts, raw) if status == _OK else None
