"""The trellis's per-block dynamic program and its symbol counts as compiled loops over blocks.

`djpeg.exact.trellis` states the program: per block, over the candidates (the non-zero rounded
AC values in zigzag order), `cost[j]` is the cheapest coding up to candidate j as the last
non-zero, a min over the previous non-zero (or the DC) of its cost plus the (run, size) symbol
with its ZRLs, plus the candidate's own magnitude bits and distortion change; the block ends
where cost plus EOB is least. Its array form (`trellis._Candidates`) visits all blocks at each
candidate step and keeps `(candidates, blocks)` tables; here numba runs the same program block
by block, libjpeg-style, with per-block scratch of 64 entries: less time and no memory per
coefficient (`bench/trellis_speed.py`).

The result is the array form's, value for value: costs are the same packed fixed-point integers
(`trellis._fixed`: 1/2**16 bit, shifted left 6 with the predecessor's index in the low bits), so
a min breaks ties toward the earliest predecessor and `argmin` toward the earliest end, in both;
the own costs are the same float64 expressions in the same order (no fast-math, so no fused
multiply-adds). `tests/test_trellis.py` checks the two forms equal on random blocks.
"""

from __future__ import annotations

import numba
import numpy as np

# The packing of `djpeg.exact.trellis` (its _ONE / 64, _SHIFT and the clip of _fixed).
_SCALE = float(1 << 16)
_SHIFT = 6
_CLIP = 2.0 ** 30
_EOB, _ZRL = 0x00, 0xF0


@numba.njit(cache=True, nogil=True, inline="always")
def magnitude_size(v):
  """JPEG's magnitude category of v >= 0: its bit length (0 for 0)."""
  s = 0
  while v:
    s += 1
    v >>= 1
  return s


@numba.njit(cache=True, nogil=True, inline="always")
def _fixed(bits):
  """`trellis._fixed` of one float64 (inf clipped to 2**30 bits)."""
  if bits != bits:
    bits = np.inf
  bits = min(max(bits, -_CLIP), _CLIP)
  return np.int64(np.rint(bits * _SCALE)) << _SHIFT


@numba.njit(cache=True, nogil=True, inline="always")
def _cheapest_predecessor(cost, transition, pos16, key, j):
  """min over i < j of cost[i] + the symbol from candidate i to one keyed `key`, packed with i
  in the low bits (ties to the earliest i)."""
  m = np.int64(1) << 62
  for i in range(j):
    t = cost[i] + transition[key - pos16[i]] + i
    if t < m:
      m = t
  return m


@numba.njit(cache=True, nogil=True)
def solve(signed, rounded, importance, weights, group, lmbda, table, transition, eob):
  """`(N, 63)` int16 chosen magnitudes.

  Args:
    signed: `(N, 63)` F / Q, zigzag order (its magnitude is what is coded);
      rounded: `(N, 63)` int16 round(|F| / Q).
    importance: `(N,)` per-block multiplier; weights: `(G, 63)` weighted error per squared
      step of each group (component); group: `(N,)` each block's row of `weights`. A squared
      step of error costs lmbda * (importance * weight) bits, the product formed in the arrays'
      type as numpy forms it.
    table: `(N,)` AC table of each block; transition: `(2048,)` packed costs
      (`trellis._transition_table`); eob: `(2,)` packed EOB cost per table.
  """
  n = signed.shape[0]
  out = np.zeros((n, 63), np.int16)
  pos16 = np.zeros(64, np.int64)
  v1s = np.zeros(64, np.int64)
  own_a = np.zeros(64, np.int64)
  own_b = np.zeros(64, np.int64)
  key_a = np.zeros(64, np.int64)
  key_b = np.zeros(64, np.int64)
  split = np.zeros(64, np.bool_)
  lower = np.zeros(64, np.bool_)
  cost = np.zeros(64, np.int64)
  pred = np.zeros(64, np.int64)
  for b in range(n):
    tab = np.int64(table[b])
    imp = importance[b]
    g = group[b]
    count = 0
    for k in range(63):
      v1 = np.int64(rounded[b, k])
      if v1 == 0:
        continue
      count += 1
      v2 = v1 - 1
      xs = np.float64(abs(signed[b, k]))
      dm = np.float64(imp * weights[g, k]) * lmbda
      size1, size2 = magnitude_size(v1), magnitude_size(v2)
      own1 = size1 + dm * np.float64(v1) * (np.float64(v1) - 2 * xs)
      own2 = size2 + dm * np.float64(v2) * (np.float64(v2) - 2 * xs) if v2 > 0 else np.inf
      same = size2 == size1
      lower[count] = same and own2 < own1
      own_a[count] = _fixed(min(own1, own2 if same else np.inf))
      split[count] = (not same) and v2 > 0
      own_b[count] = _fixed(own2)
      v1s[count] = v1
      pos16[count] = 16 * (k + 1)
      key_a[count] = tab * 1024 + 16 * (k + 1) + size1
      key_b[count] = tab * 1024 + 16 * (k + 1) + size2
    if count == 0:
      continue
    cost[0] = 0
    for j in range(1, count + 1):
      m = _cheapest_predecessor(cost, transition, pos16, key_a[j], j)
      p = m & 63
      best = (m - p) + own_a[j]
      if split[j]:
        m2 = _cheapest_predecessor(cost, transition, pos16, key_b[j], j)
        p2 = m2 & 63
        best2 = (m2 - p2) + own_b[j]
        if best2 < best:
          best = best2
          p = p2
          lower[j] = True
      cost[j] = best
      pred[j] = p
    # Where the block ends: right after the DC (everything zeroed) or after candidate j.
    cur = 0
    least = eob[tab]
    for j in range(1, count + 1):
      e = cost[j] + (0 if pos16[j] == 16 * 63 else eob[tab])
      if e < least:
        least = e
        cur = j
    while cur > 0:
      out[b, pos16[cur] // 16 - 1] = v1s[cur] - (1 if lower[cur] else 0)
      cur = pred[cur]
  return out


@numba.njit(cache=True, nogil=True)
def ac_histograms(magnitudes, table):
  """`(2, 256)` AC symbol counts per table of blocks `(N, 63)` (zigzag magnitudes >= 0)."""
  ac = np.zeros((2, 256), np.int64)
  for b in range(magnitudes.shape[0]):
    t = table[b]
    prev = -1
    for k in range(63):
      v = magnitudes[b, k]
      if v == 0:
        continue
      run = k - prev - 1
      ac[t, ((run & 15) << 4) + magnitude_size(v)] += 1
      ac[t, _ZRL] += run >> 4
      prev = k
    if prev != 62:
      ac[t, _EOB] += 1
  return ac


@numba.njit(cache=True, nogil=True)
def prepare_ac(flat, zigzag, steps, start, signed, rounded):
  """Fills rows `start:start + n` of the trellis's AC arrays from one component's blocks.

  Args:
    flat: `(n, 64)` float32 DCT coefficients, natural order; zigzag: `(64,)` natural index of
      each zigzag position; steps: `(64,)` float32 step per zigzag position.
    signed: `(N, 63)` float32 F / Q; rounded: `(N, 63)` int16 round(|F| / Q) (exact in
      float32: F is a multiple of 1/8).
  """
  half = np.float32(0.5)
  for b in range(flat.shape[0]):
    row = start + b
    for k in range(1, 64):
      r = flat[b, zigzag[k]] / steps[k]
      signed[row, k - 1] = r
      rounded[row, k - 1] = np.int16(np.floor(abs(r) + half))


@numba.njit(cache=True, nogil=True)
def natural_blocks(magnitudes, signed, dc, zigzag, start, out):
  """Fills `out` `(n, 64)` int16 (natural order) with one component's quantized blocks: its
  rounded DC `(n,)` and rows `start:start + n` of the chosen AC magnitudes, with the signs of
  `signed`."""
  for b in range(out.shape[0]):
    row = start + b
    out[b, 0] = dc[b]
    for k in range(1, 64):
      m = magnitudes[row, k - 1]
      out[b, zigzag[k]] = -m if signed[row, k - 1] < 0 else m


@numba.njit(cache=True, nogil=True)
def weighted_error(signed, magnitudes, importance, weights, group):
  """sum of importance * weight * (|signed| - magnitudes)^2 over `(N, 63)` arrays (arguments as
  for `solve`): each term in float32 as numpy forms it, the sum in float64 (sequential, so it
  may differ from numpy's pairwise sum in the last digits)."""
  total = 0.0
  for b in range(signed.shape[0]):
    imp = importance[b]
    g = group[b]
    for k in range(63):
      e = abs(signed[b, k]) - np.float32(magnitudes[b, k])
      total += (imp * weights[g, k]) * (e * e)
  return total
