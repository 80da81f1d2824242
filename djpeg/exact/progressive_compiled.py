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

from djpeg.exact.trellis_compiled import magnitude_size

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
