"""libjpeg-turbo's decode of quantized coefficients to 8-bit pixels, as compiled loops.

`djpeg.codec.decode` states the decoder in XLA (differentiable, batched, any device). An
encoder scoring candidates on a CPU needs only the 8-bit pixels, many times per image; there
XLA's array passes (each 1-D IDCT output its own loop, the upsampling filters as shifted copies)
took about 7 ms for a 768x512 image. Here numba runs the same integer arithmetic block by block
and sample by sample (`djpeg.codec.decode_pixels` uses it for concrete arrays on a CPU):

* `idct_plane`: dequantize and `jpeg_idct_islow` (jidctint.c, as `djpeg.dct` states it), in
  int32 as libjpeg and the XLA version compute (sums are formed in int64 and wrapped to 32
  bits before each descale, which is the same ring arithmetic), then the range limit of
  jdmaster.c (`x + 128` clamped, wrapping for corrupt data).
* `upsample_plane`: libjpeg-turbo's `h2v1`, `h1v2` and `h2v2_fancy_upsample` with their
  rounding biases, edges replicated at the component's real size, or sample replication where
  libjpeg-turbo replicates (`sampling.uses_fancy`).
* `ycc_to_rgb`: jdcolor.c's `ycc_rgb_convert` in 16-bit fixed point, clamped.

Planes: uint8 `(rows, cols)`; coefficients `(block_rows, block_cols, 8, 8)` integers in natural
order; steps `(8, 8)`.
"""

from __future__ import annotations

import numba
import numpy as np

from djpeg.islow_compiled import (CONST_BITS as _CONST_BITS, F0541 as _F0541,
                                  F0765 as _F0765, F1847 as _F1847, PASS1_BITS as _PASS1_BITS,
                                  odd_part)


@numba.njit(cache=True, nogil=True, inline="always")
def _descale(x, n):
  """DESCALE in int32: (x + 2**(n-1)) >> n of x's 32-bit wrap (x is formed in int64)."""
  v = (x + (1 << (n - 1)) + (1 << 31)) & 0xFFFFFFFF
  return (v - (1 << 31)) >> n


@numba.njit(cache=True, nogil=True, inline="always")
def _idct_1d(z0, z1, z2, z3, z4, z5, z6, z7, out, shift):
  """One jpeg_idct_islow pass over 8 values into `out` (8,), descaled by `shift` bits."""
  a = (z2 + z6) * _F0541
  tmp2 = a - z6 * _F1847
  tmp3 = a + z2 * _F0765
  tmp0 = (z0 + z4) << _CONST_BITS
  tmp1 = (z0 - z4) << _CONST_BITS
  tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
  tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
  t0, t1, t2, t3 = odd_part(z7, z5, z3, z1)
  out[0] = _descale(tmp10 + t3, shift)
  out[7] = _descale(tmp10 - t3, shift)
  out[1] = _descale(tmp11 + t2, shift)
  out[6] = _descale(tmp11 - t2, shift)
  out[2] = _descale(tmp12 + t1, shift)
  out[5] = _descale(tmp12 - t1, shift)
  out[3] = _descale(tmp13 + t0, shift)
  out[4] = _descale(tmp13 - t0, shift)


@numba.njit(cache=True, nogil=True)
def idct_plane(quantized, steps):
  """`(R, C, 8, 8)` quantized coefficients and `(8, 8)` steps -> the `(8R, 8C)` uint8 samples of
  libjpeg's islow IDCT with level shift and range limit."""
  rows, cols = quantized.shape[:2]
  out = np.empty((8 * rows, 8 * cols), np.uint8)
  ws = np.empty((8, 8), np.int64)
  line = np.empty(8, np.int64)
  step = steps.astype(np.int64)
  s1 = _CONST_BITS - _PASS1_BITS
  s2 = _CONST_BITS + _PASS1_BITS + 3
  for br in range(rows):
    for bc in range(cols):
      q = quantized[br, bc]
      for c in range(8):              # pass 1: down each column
        dc = np.int64(q[0, c]) * step[0, c]
        if (q[1, c] == 0 and q[2, c] == 0 and q[3, c] == 0 and q[4, c] == 0 and q[5, c] == 0
                and q[6, c] == 0 and q[7, c] == 0 and abs(dc) < (1 << 17)):
          # libjpeg's short cut for a column with no AC terms: the same values (while the
          # full pass's int32 products cannot wrap).
          for r in range(8):
            ws[r, c] = dc << _PASS1_BITS
          continue
        _idct_1d(np.int64(q[0, c]) * step[0, c], np.int64(q[1, c]) * step[1, c],
                 np.int64(q[2, c]) * step[2, c], np.int64(q[3, c]) * step[3, c],
                 np.int64(q[4, c]) * step[4, c], np.int64(q[5, c]) * step[5, c],
                 np.int64(q[6, c]) * step[6, c], np.int64(q[7, c]) * step[7, c], line, s1)
        for r in range(8):
          ws[r, c] = line[r]
      for r in range(8):              # pass 2: along each row
        if (ws[r, 1] == 0 and ws[r, 2] == 0 and ws[r, 3] == 0 and ws[r, 4] == 0
                and ws[r, 5] == 0 and ws[r, 6] == 0 and ws[r, 7] == 0
                and abs(ws[r, 0]) < (1 << 17)):
          flat = _descale(ws[r, 0] << _CONST_BITS, s2)   # the row's short cut
          for c in range(8):
            line[c] = flat
        else:
          _idct_1d(ws[r, 0], ws[r, 1], ws[r, 2], ws[r, 3], ws[r, 4], ws[r, 5], ws[r, 6],
                   ws[r, 7], line, s2)
        for c in range(8):
          i = line[c] & 1023
          if i < 128:
            v = i + 128
          elif i < 512:
            v = 255
          elif i < 896:
            v = 0
          else:
            v = i - 896
          out[8 * br + r, 8 * bc + c] = v
  return out


@numba.njit(cache=True, nogil=True)
def upsample_plane(plane, rows, cols, rh, rv, fancy, height, width):
  """A component's samples `plane` (its real part `rows x cols`) -> the `(height, width)` uint8
  plane libjpeg-turbo's upsampler makes: the triangle filter when `fancy` (ratios 2x1, 1x2,
  2x2), else each sample repeated `rv x rh` times."""
  out = np.empty((height, width), np.uint8)
  if not fancy:
    for y in range(height):
      for x in range(width):
        out[y, x] = plane[y // rv, x // rh]
    return out
  if rv == 2:
    rowsum = np.empty((2, cols), np.int64)
  for y in range(height):
    i = y // rv
    if rv == 2:                        # column sums 3 a + b (b the row above or below)
      j = max(i - 1, 0) if y % 2 == 0 else min(i + 1, rows - 1)
      for x in range(cols):
        rowsum[0, x] = 3 * np.int64(plane[i, x]) + plane[j, x]
    if rh == 1:                        # h1v2: (3 a + b + 1 or 2) >> 2
      bias = 1 if y % 2 == 0 else 2
      for x in range(width):
        out[y, x] = (rowsum[0, x] + bias) >> 2
    elif rv == 1:                      # h2v1: (3 a + b + 1 or 2) >> 2 along the row
      for x in range(width):
        k = x // 2
        if x % 2 == 0:
          v = 3 * np.int64(plane[i, k]) + plane[i, max(k - 1, 0)] + 1
        else:
          v = 3 * np.int64(plane[i, k]) + plane[i, min(k + 1, cols - 1)] + 2
        out[y, x] = v >> 2
    else:                              # h2v2: (3 c + d + 8 or 7) >> 4 on the column sums
      for x in range(width):
        k = x // 2
        if x % 2 == 0:
          v = 3 * rowsum[0, k] + rowsum[0, max(k - 1, 0)] + 8
        else:
          v = 3 * rowsum[0, k] + rowsum[0, min(k + 1, cols - 1)] + 7
        out[y, x] = v >> 4
  return out


@numba.njit(cache=True, nogil=True)
def ycc_to_rgb(y, cb, cr):
  """Full-resolution Y, Cb, Cr planes `(H, W)` uint8 -> `(H, W, 3)` uint8 RGB (jdcolor.c)."""
  height, width = y.shape
  out = np.empty((height, width, 3), np.uint8)
  half = 1 << 15
  for r in range(height):
    for c in range(width):
      yy = np.int64(y[r, c])
      b_ = np.int64(cb[r, c]) - 128
      r_ = np.int64(cr[r, c]) - 128
      # FIX(1.40200), FIX(0.34414), FIX(0.71414), FIX(1.77200) in 16 bits (`djpeg.color`).
      red = yy + ((91881 * r_ + half) >> 16)
      green = yy + ((-22554 * b_ - 46802 * r_ + half) >> 16)
      blue = yy + ((116130 * b_ + half) >> 16)
      out[r, c, 0] = min(max(red, 0), 255)
      out[r, c, 1] = min(max(green, 0), 255)
      out[r, c, 2] = min(max(blue, 0), 255)
  return out
