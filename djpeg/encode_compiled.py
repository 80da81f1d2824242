"""libjpeg-turbo's encode of 8-bit pixels to DCT coefficients, as compiled loops.

The mirror of `djpeg.decode_compiled`. `djpeg.codec.encode` states the encoder in XLA
(differentiable, batched, any device); an exporter on a CPU needs only the integer result, once
or twice per image, and there each new image width cost XLA a trace and a compiled program (in
a batch of photos of many sizes, about 2.5 s of tracing per process). Here numba runs the same
integer arithmetic sample by sample and block by block, for any size, compiled once and cached
on disk (`djpeg.codec.transform_pixels` and `encode_pixels` use it for one image on a CPU):

* `ycc_planes`: jccolor.c's `rgb_ycc_convert` in 16-bit fixed point (`djpeg.color`).
* `component_plane`: a component's padded sample grid as libjpeg builds it
  (`djpeg.sampling.downsample_component`): the right edge replicated at full resolution to the
  component's whole blocks, the bottom to a whole row group, the box average with jcsample.c's
  alternating rounding bias, then the last *downsampled* row replicated to whole blocks.
* `forward_dct`: `jpeg_fdct_islow` (jfdctint.c, as `djpeg.dct` states it) of every block,
  computed in float64 where its integer arithmetic is exact, a block row at a time with one
  block per SIMD lane, in orthonormal units (libjpeg's integer output / 8, exact in float32), and `quantize_dct`:
  jcdctmgr.c's division of that output by 8 * step, rounded half away from zero.

Planes: uint8 `(rows, cols)`; coefficients `(block_rows, block_cols, 8, 8)` in natural order.
"""

from __future__ import annotations

import numba
import numpy as np

from djpeg.islow_compiled import (CONST_BITS as _CONST_BITS, F0541 as _F0541,
                                  F0765 as _F0765, F1847 as _F1847, PASS1_BITS as _PASS1_BITS,
                                  odd_part)


@numba.njit(cache=True, nogil=True)
def ycc_planes(pixels):
  """`(H, W, 3)` uint8 RGB -> Y, Cb, Cr planes `(H, W)` uint8 (jccolor.c).

  A row at a time: its channels split into int32 rows, then each output as a loop of int32
  arithmetic (every product and sum stays below 2**24), which runs eight pixels per SIMD
  vector; the interleaved arithmetic ran at a third of the speed."""
  height, width = pixels.shape[:2]
  y = np.empty((height, width), np.uint8)
  cb = np.empty((height, width), np.uint8)
  cr = np.empty((height, width), np.uint8)
  flat = pixels.reshape(height, width * 3)
  red = np.empty(width, np.int32)
  green = np.empty(width, np.int32)
  blue = np.empty(width, np.int32)
  # FIX(0.29900), FIX(0.58700), FIX(0.11400), FIX(0.16874), FIX(0.33126), FIX(0.5),
  # FIX(0.41869), FIX(0.08131) in 16 bits; ONE_HALF; CBCR_OFFSET + ONE_HALF - 1 (libjpeg's
  # fudge that keeps Cb and Cr <= 255).
  k0, k1, k2, k3 = np.int32(19595), np.int32(38470), np.int32(7471), np.int32(11059)
  k4, k5, k6, k7 = np.int32(21709), np.int32(32768), np.int32(27439), np.int32(5329)
  half, offset, bits = np.int32(1 << 15), np.int32((128 << 16) + (1 << 15) - 1), np.int32(16)
  for r in range(height):
    row = flat[r]
    for c in range(width):
      red[c] = row[3 * c]
      green[c] = row[3 * c + 1]
      blue[c] = row[3 * c + 2]
    out = y[r]
    for c in range(width):
      out[c] = np.uint8(np.int32(k0 * red[c] + k1 * green[c] + k2 * blue[c] + half) >> bits)
    out = cb[r]
    for c in range(width):
      out[c] = np.uint8(np.int32(k5 * blue[c] - k3 * red[c] - k4 * green[c] + offset) >> bits)
    out = cr[r]
    for c in range(width):
      out[c] = np.uint8(np.int32(k5 * red[c] - k6 * green[c] - k7 * blue[c] + offset) >> bits)
  return y, cb, cr


@numba.njit(cache=True, nogil=True)
def component_plane(plane, rh, rv, block_rows, block_cols):
  """A full-resolution plane `(H, W)` uint8 -> the component's `(8 block_rows, 8 block_cols)`
  uint8 samples, reduced by `rh` columns and `rv` rows as libjpeg pads and downsamples it
  (module docstring)."""
  height, width = plane.shape
  out_rows, out_cols = 8 * block_rows, 8 * block_cols
  real_rows = (height + rv - 1) // rv      # downsampled rows made from image rows
  out = np.empty((out_rows, out_cols), np.uint8)
  count = rh * rv
  for r in range(min(real_rows, out_rows)):
    if count == 1:                         # full resolution: the row, its last sample repeated
      out[r, :width] = plane[r]
      out[r, width:] = plane[r, width - 1]
      continue
    for c in range(out_cols):
      if c * rh + rh <= width and r * rv + rv <= height:     # inside: no edge to replicate
        total = np.int64(0)
        for i in range(rv):
          for j in range(rh):
            total += plane[r * rv + i, c * rh + j]
      else:
        total = np.int64(0)
        for i in range(rv):
          y = min(r * rv + i, height - 1)
          for j in range(rh):
            total += plane[y, min(c * rh + j, width - 1)]
      if rh == 2 and rv == 2:            # h2v2_downsample: bias 1, 2, 1, 2, ...
        out[r, c] = (total + 1 + (c & 1)) >> 2
      elif rh == 2 and rv == 1:            # h2v1_downsample: bias 0, 1, 0, 1, ...
        out[r, c] = (total + (c & 1)) >> 1
      else:                                # int_downsample: (sum + n / 2) / n
        out[r, c] = (total + count // 2) // count
  for r in range(real_rows, out_rows):     # below the image: the last downsampled row again
    for c in range(out_cols):
      out[r, c] = out[real_rows - 1, c]
  return out


@numba.njit(cache=True, nogil=True, inline="always")
def _descale(x, n):
  """DESCALE, (x + 2**(n-1)) >> n, of an integer held in a float64 (exact: |x| < 2**29)."""
  return np.floor((x + 2.0 ** (n - 1)) * 2.0 ** -n)


@numba.njit(cache=True, nogil=True, inline="always")
def _fdct_1d(src, dst, n, shift):
  """One jpeg_fdct_islow pass: for each of `n` blocks b, the 8 values src[0..7, b] -> dst[0..7,
  b], descaled by `shift` bits. In float64, where every sum and product of this integer
  arithmetic is exact (libjpeg's int32 values stay below 2**29), one block per SIMD lane: the
  loop over b runs the butterflies on vectors. The two even outputs libjpeg forms by left
  shifts are the same values descaled from `* 2**13`."""
  one = 2.0 ** _CONST_BITS
  for b in range(n):
    d0, d1, d2, d3 = src[0, b], src[1, b], src[2, b], src[3, b]
    d4, d5, d6, d7 = src[4, b], src[5, b], src[6, b], src[7, b]
    tmp0, tmp7 = d0 + d7, d0 - d7
    tmp1, tmp6 = d1 + d6, d1 - d6
    tmp2, tmp5 = d2 + d5, d2 - d5
    tmp3, tmp4 = d3 + d4, d3 - d4
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    dst[0, b] = _descale((tmp10 + tmp11) * one, shift)
    dst[4, b] = _descale((tmp10 - tmp11) * one, shift)
    z1 = (tmp12 + tmp13) * _F0541
    dst[2, b] = _descale(z1 + tmp13 * _F0765, shift)
    dst[6, b] = _descale(z1 - tmp12 * _F1847, shift)
    o7, o5, o3, o1 = odd_part(tmp4, tmp5, tmp6, tmp7)
    dst[7, b] = _descale(o7, shift)
    dst[5, b] = _descale(o5, shift)
    dst[3, b] = _descale(o3, shift)
    dst[1, b] = _descale(o1, shift)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_dct(plane, br, samples, rows_out, out):
  """libjpeg's integer DCT of the blocks of block row `br` of `plane`: out[v, u, b] (8x
  orthonormal, integers in float64) for each block b. `samples`, `rows_out`: (8, 8, cols)
  float64 scratch."""
  cols = plane.shape[1] // 8
  for r in range(8):                         # pass 1: along each row of the blocks
    for k in range(8):
      for b in range(cols):
        samples[r, k, b] = np.float64(plane[8 * br + r, 8 * b + k]) - 128.0
    _fdct_1d(samples[r], rows_out[r], cols, _CONST_BITS - _PASS1_BITS)
  for u in range(8):                         # pass 2: down each column
    for r in range(8):
      for b in range(cols):
        samples[u, r, b] = rows_out[r, u, b]
    _fdct_1d(samples[u], out[u], cols, _CONST_BITS + _PASS1_BITS)


@numba.njit(cache=True, nogil=True)
def forward_dct(plane):
  """`(8R, 8C)` uint8 samples -> `(R, C, 8, 8)` float32 DCT coefficients in orthonormal units
  (libjpeg's integer output / 8, exact)."""
  rows, cols = plane.shape[0] // 8, plane.shape[1] // 8
  out = np.empty((rows, cols, 8, 8), np.float32)
  samples = np.empty((8, 8, cols))
  rows_out = np.empty((8, 8, cols))
  dct = np.empty((8, 8, cols))               # [u, v, b]: column u's outputs v
  for br in range(rows):
    _row_dct(plane, br, samples, rows_out, dct)
    for b in range(cols):
      for v in range(8):
        for u in range(8):
          out[br, b, v, u] = dct[u, v, b] * 0.125
  return out


@numba.njit(cache=True, nogil=True)
def quantize_dct(plane, steps):
  """`(8R, 8C)` uint8 samples and `(8, 8)` integer steps -> `(R, C, 8, 8)` int16 quantized
  values: libjpeg's integer DCT output divided by 8 * step, rounded half away from zero."""
  rows, cols = plane.shape[0] // 8, plane.shape[1] // 8
  out = np.empty((rows, cols, 8, 8), np.int16)
  samples = np.empty((8, 8, cols))
  rows_out = np.empty((8, 8, cols))
  dct = np.empty((8, 8, cols))
  half = np.empty((8, 8))
  inverse = np.empty((8, 8))
  for v in range(8):
    for u in range(8):
      half[v, u] = 4.0 * steps[v, u]
      inverse[v, u] = 1.0 / (8.0 * steps[v, u])
  for br in range(rows):
    _row_dct(plane, br, samples, rows_out, dct)
    for b in range(cols):
      for v in range(8):
        for u in range(8):
          # floor((|x| + 4 step) / (8 step)) by a reciprocal: |x| < 2**17, so the product is
          # within 2**-34 of the quotient, and a quotient below an integer is at least
          # 1 / (8 step) >= 2**-11 below it; the 2**-20 nudge lifts exact integers only.
          x = dct[u, v, b]
          q = np.int16(np.floor((abs(x) + half[v, u]) * inverse[v, u] + 2.0 ** -20))
          out[br, b, v, u] = -q if x < 0 else q
  return out


# ------------------------------------------------------------ chroma fitted to the decoder

@numba.njit(cache=True, nogil=True)
def _triangle_normal(n_out, n_in):
  """The tridiagonal normal matrix A^T A of libjpeg's fancy upsampling by 2 along one axis
  (jdsample.c: out[2i] = (3 c[i] + c[i-1]) / 4, out[2i+1] = (3 c[i] + c[i+1]) / 4, the edge
  sample repeated), with only the first `n_out` of its 2 n_in outputs kept (an odd image
  size), factored for the Thomas algorithm: (lower multipliers, pivots, upper diagonal)."""
  diag = np.zeros(n_in)
  upper = np.zeros(max(n_in - 1, 1))
  for r in range(n_out):
    i = r // 2
    j = max(i - 1, 0) if r % 2 == 0 else min(i + 1, n_in - 1)
    if j == i:                               # the edge: 3/4 + 1/4 of the same sample
      diag[i] += 1.0
    else:
      diag[i] += 0.5625
      diag[j] += 0.0625
      upper[min(i, j)] += 0.1875
  lower = np.zeros(max(n_in - 1, 1))
  pivot = np.empty(n_in)
  pivot[0] = diag[0]
  for i in range(1, n_in):
    lower[i - 1] = upper[i - 1] / pivot[i - 1]
    pivot[i] = diag[i] - lower[i - 1] * upper[i - 1]
  return lower, pivot, upper


@numba.njit(cache=True, nogil=True, inline="always")
def _fit_lines(x, n_out, n_in, lower, pivot, upper, out):
  """The least-squares samples `out[:n_in, :]` whose fancy upsampling along axis 0 is nearest
  to `x[:n_out, :]`, for every column (lane) at once: the normal equations A^T A c = A^T x,
  solved by the factored tridiagonal matrix. Each lane is an independent line; the lanes are
  contiguous in memory, so every step runs over whole rows of them."""
  lanes = out.shape[1]
  for i in range(n_in):
    for k in range(lanes):
      out[i, k] = 0.0
  for r in range(n_out):                     # A^T x
    i = r // 2
    j = max(i - 1, 0) if r % 2 == 0 else min(i + 1, n_in - 1)
    if j == i:
      for k in range(lanes):
        out[i, k] += x[r, k]
    else:
      for k in range(lanes):
        out[i, k] += 0.75 * x[r, k]
        out[j, k] += 0.25 * x[r, k]
  for i in range(1, n_in):                   # forward substitution
    for k in range(lanes):
      out[i, k] -= lower[i - 1] * out[i - 1, k]
  for k in range(lanes):
    out[n_in - 1, k] /= pivot[n_in - 1]
  for i in range(n_in - 2, -1, -1):          # back substitution
    for k in range(lanes):
      out[i, k] = (out[i, k] - upper[i] * out[i + 1, k]) / pivot[i]


#: Image rows fitted at once across (`fitted_component_plane`): lanes of the row pass.
_ROW_LANES = 32


@numba.njit(cache=True, nogil=True)
def fitted_component_plane(plane, rh, rv, block_rows, block_cols, blend):
  """As `component_plane`, for ratios of 1 or 2, with the samples chosen for the decoder: the
  least-squares plane whose fancy upsampling (libjpeg-turbo's default, `_triangle_normal`) is
  nearest to the full-resolution plane, mixed as `blend * fitted + (1 - blend) * box average`,
  rounded and clamped to 0..255, edges repeated to whole blocks.

  The box average is what libjpeg codes, and its decode is the box average blurred by the
  upsampling's triangle: a colour edge comes out softer than the luma beside it. The fitted
  samples undo the blur where the sampling grid can carry it. Separable: the rows, then the
  columns, through a float32 intermediate `(H, W / rh)` and the float64 result at the
  subsampled size (never a float64 image)."""
  height, width = plane.shape
  if not ((rh == 1 or rh == 2) and (rv == 1 or rv == 2)) or rh * rv == 1:
    return component_plane(plane, rh, rv, block_rows, block_cols)
  box = component_plane(plane, rh, rv, block_rows, block_cols)
  cols_in = (width + rh - 1) // rh
  rows_in = (height + rv - 1) // rv
  across = np.empty((height, cols_in), np.float32)
  if rh == 2:
    # The rows in groups of _ROW_LANES, each group turned on its side so that the solve runs
    # over whole contiguous rows of lanes (one image row at a time is a serial recurrence).
    lower, pivot, upper = _triangle_normal(width, cols_in)
    lines = np.empty((width, _ROW_LANES))
    fitted = np.empty((cols_in, _ROW_LANES))
    for r0 in range(0, height, _ROW_LANES):
      n = min(_ROW_LANES, height - r0)
      for c in range(width):
        for k in range(n):
          lines[c, k] = plane[r0 + k, c]
        for k in range(n, _ROW_LANES):
          lines[c, k] = 0.0
      _fit_lines(lines, width, cols_in, lower, pivot, upper, fitted)
      for k in range(n):
        for c in range(cols_in):
          across[r0 + k, c] = fitted[c, k]
  else:
    for r in range(height):
      for c in range(width):
        across[r, c] = plane[r, c]
  solved = np.empty((rows_in, cols_in))
  if rv == 2:                                # the columns: across's rows are their lanes
    lower, pivot, upper = _triangle_normal(height, rows_in)
    _fit_lines(across, height, rows_in, lower, pivot, upper, solved)
  else:
    for r in range(rows_in):
      for c in range(cols_in):
        solved[r, c] = across[r, c]
  out = box.copy()
  for r in range(rows_in):
    for c in range(cols_in):
      value = blend * solved[r, c] + (1.0 - blend) * np.float64(box[r, c])
      out[r, c] = np.uint8(min(255.0, max(0.0, np.floor(value + 0.5))))
  for r in range(rows_in):                   # right of the image: the last sample again
    for c in range(cols_in, out.shape[1]):
      out[r, c] = out[r, cols_in - 1]
  for r in range(rows_in, out.shape[0]):     # below it: the last row again
    for c in range(out.shape[1]):
      out[r, c] = out[rows_in - 1, c]
  return out


#: sRGB's transfer function (IEC 61966-2-1) sampled every 1/_LINEAR_STEPS of a code value over
#: 0..255, for `luma_for_chroma`'s Newton steps (interpolated linearly: within 3e-8 of the curve).
_LINEAR_STEPS = 16


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
  v = np.asarray(v, np.float64) / 255.0
  return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_LINEAR = _srgb_to_linear(np.arange(255 * _LINEAR_STEPS + 2) / _LINEAR_STEPS)
#: The brightness kept: SSIMULACRA 2's (libjxl's) opsin absorbance mix of linear R, G, B, its L
#: and M cones summed (the luma of XYB before its cube roots).
_BRIGHTNESS = (0.30 + 0.23, 0.622 + 0.692, 0.078 + 0.078)


@numba.njit(cache=True, nogil=True, inline="always")
def _linear_at(v):
  """(sRGB-to-linear of a code value v, its derivative per code value); 0 slope outside 0..255."""
  if v <= 0.0:
    return _LINEAR[0], 0.0
  if v >= 255.0:
    return _LINEAR[255 * _LINEAR_STEPS], 0.0
  x = v * _LINEAR_STEPS
  i = int(x)
  slope = _LINEAR[i + 1] - _LINEAR[i]
  return _LINEAR[i] + (x - i) * slope, slope * _LINEAR_STEPS


@numba.njit(cache=True, nogil=True)
def luma_for_chroma(pixels, y, cb, cr, coded_cb, coded_cr):
  """The Y plane `(H, W)` uint8 that brings back each pixel's brightness under the chroma the
  decoder will show.

  Subsampled and quantized chroma reaches the decoder changed (averaged over 2x2, upsampled,
  rounded to its steps), and at an edge between saturated colours the changed chroma moves the
  pixel's linear-light brightness even though JPEG's Y (a gamma-domain sum) is kept: a red
  edge beside green comes out darker or brighter than it was. Adding the same offset d to R, G
  and B changes Y by d and leaves Cb and Cr alone, so per pixel the offset is solved (Newton's
  method on the sRGB curve) that makes the brightness of the decoded pixel RGB(Y + d, cb, cr)
  equal the original pixel's, as libwebp's "sharp YUV" does for its own space; brightness is
  the sum of SSIMULACRA 2's L and M cone responses in linear light (`_BRIGHTNESS`). Where the
  decoded chroma is within one code value of the pixel's own, Y is kept (the offset would
  round away). Inputs: `pixels` `(H, W, 3)` uint8 RGB, `y`, `cb`, `cr` its planes
  (`ycc_planes`), `coded_cb`, `coded_cr` the full-resolution chroma the decoder makes of the
  coded samples (`decode_compiled.upsample_plane`)."""
  height, width = y.shape
  out = np.empty((height, width), np.uint8)
  w0, w1, w2 = _BRIGHTNESS
  exact = np.empty(256)
  for k in range(256):
    exact[k] = _LINEAR[k * _LINEAR_STEPS]
  for r in range(height):
    for c in range(width):
      du = np.int32(coded_cb[r, c]) - np.int32(cb[r, c])
      dv = np.int32(coded_cr[r, c]) - np.int32(cr[r, c])
      if abs(du) + abs(dv) <= 1:
        out[r, c] = y[r, c]
        continue
      target = (w0 * exact[pixels[r, c, 0]] + w1 * exact[pixels[r, c, 1]]
                + w2 * exact[pixels[r, c, 2]])
      yy = np.float64(y[r, c])
      u = np.float64(coded_cb[r, c]) - 128.0
      v = np.float64(coded_cr[r, c]) - 128.0
      red, green, blue = yy + 1.402 * v, yy - 0.344136 * u - 0.714136 * v, yy + 1.772 * u
      d = 0.0
      for _ in range(4):
        a, da = _linear_at(red + d)
        b, db = _linear_at(green + d)
        e, de = _linear_at(blue + d)
        slope = w0 * da + w1 * db + w2 * de
        if slope <= 0.0:
          break
        step = (w0 * a + w1 * b + w2 * e - target) / slope
        d = min(max(d - step, -255.0), 255.0)
        if abs(step) < 0.05:
          break
      out[r, c] = np.uint8(min(255.0, max(0.0, np.floor(yy + d + 0.5))))
  return out
