"""libjxl's recursive Gaussian (sigma 1.5) over SSIMULACRA 2's scale canvas, as compiled loops.

`djpeg.ssimulacra2._blur_canvas` states the blur as two `lax.scan`s: differentiable, batched,
for any XLA device, and on XLA:CPU bit-identical to the reference program's float32 arithmetic.
Scoring the candidates of an encoder's search needs no gradient, and there the scans are most
of the metric's time on a CPU (about 22 ns per sample and plane). This module runs the same
recursion as numba loops, `_LINES` lines at a time horizontally (transposed, SIMD across lines,
each over its scale's true width only) and row by row (SIMD across columns) vertically: the
same float32 operations in the same order, with a fused multiply-add exactly
where the scans have one (libjxl's `MulAdd`, which XLA contracts; numba contracts nothing on its
own), so the output equals the scans' bit for bit (`tests/test_ssimulacra2.py`).

Arrays: `a`, `b` are `(Q, H_c, W)` float32 canvases, zero outside the scales' images, of which
`blur_moments` blurs squares, products or the planes themselves; `row_w`
`(H_c,)` the true width of each canvas row (0 in the gaps), which decides where the horizontal
pass switches between libjxl's one-output and four-output arithmetic; `reset` `(H_c + N - 1,)`
marks the vertical steps that start a scale (the recursion state is zeroed there). The filter
constants come from `djpeg.ssimulacra2` (`_RG`), as float32 arrays.
"""

from __future__ import annotations

import llvmlite.ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_N = 5                      # the filter's radius for sigma 1.5
_FIRST = -_N + 1            # the first output n the reference computes
_FIRST_ALIGNED = 8          # RoundUpTo(N + 1, 4): where the four-output arithmetic may start


@intrinsic
def fma(typingctx, a, b, c):
  """float32 a * b + c with one rounding (LLVM's llvm.fma)."""
  if not all(isinstance(t, types.Float) and t.bitwidth == 32 for t in (a, b, c)):
    return None
  signature = types.float32(types.float32, types.float32, types.float32)

  def codegen(context, builder, sig, args):
    f32 = llvmlite.ir.FloatType()
    fn = cgutils.get_or_insert_function(builder.module, llvmlite.ir.FunctionType(f32, [f32] * 3),
                                        "llvm.fma.f32")
    return builder.call(fn, args)
  return signature, codegen


@numba.njit(cache=True, nogil=True)
def _horizontal(lines, out, line_w, n2, mul_in, mul_prev, mul_prev2):
  """libjxl `FastGaussian1D` of lines of one true width `line_w`, stored as columns `(W, L)`,
  into `out` `(W, L)`: four outputs per step as the scan, all lines in lock step (straight-line
  code over lines, which LLVM vectorizes)."""
  width, count = lines.shape
  zero = np.float32(0.0)
  prev = np.zeros((3, count), np.float32)
  prev2 = np.zeros((3, count), np.float32)
  result = np.zeros((4, 3, count), np.float32)
  s = np.zeros((4, count), np.float32)
  steps = -(-(width - _FIRST) // 4)
  block_end = line_w - _N + 1 - 3
  for step in range(steps):
    n0 = 4 * step + _FIRST
    for j in range(4):      # tap sums in[n - N - 1] + in[n + N - 1], 0 outside the line
      top, bottom = n0 + j - _N - 1, n0 + j + _N - 1
      for i in range(count):
        a = lines[top, i] if 0 <= top < width else zero
        b = lines[bottom, i] if 0 <= bottom < width else zero
        s[j, i] = a + b
    if _FIRST_ALIGNED <= n0 < block_end:
      # Four at a time: lane j = mul_in[k][j] * s0 (rounded), then MulAdd(mul_in[k][j - i], s_i)
      # for i = 1..3 (0 for i > j), MulAdd(mul_prev2[k][j], prev2), MulAdd(mul_prev[k][j], prev).
      for j in range(4):
        for k in range(3):
          c0 = mul_in[k, j]
          c1 = mul_in[k, j - 1] if j >= 1 else zero
          c2 = mul_in[k, j - 2] if j >= 2 else zero
          c3 = mul_in[k, j - 3] if j >= 3 else zero
          cp2, cp = mul_prev2[k, j], mul_prev[k, j]
          for i in range(count):
            v = c0 * s[0, i]
            v = fma(c1, s[1, i], v)
            v = fma(c2, s[2, i], v)
            v = fma(c3, s[3, i], v)
            v = fma(cp2, prev2[k, i], v)
            result[j, k, i] = fma(cp, prev[k, i], v)
      for k in range(3):
        for i in range(count):
          prev[k, i] = result[3, k, i]
          prev2[k, i] = result[2, k, i]
    else:
      # One at a time: out = MulAdd(-d1, prev, sum * n2 - prev2).
      for j in range(4):
        for k in range(3):
          c, m = n2[k], mul_prev[k, 0]
          for i in range(count):
            v = fma(m, prev[k, i], s[j, i] * c - prev2[k, i])
            prev2[k, i] = prev[k, i]
            prev[k, i] = v
            result[j, k, i] = v
    for j in range(4):
      n = n0 + j
      if 0 <= n < width:
        for i in range(count):
          out[n, i] = result[j, 0, i] + (result[j, 1, i] + result[j, 2, i])


@numba.njit(cache=True, nogil=True)
def _step_widths(row_w, reset, height):
  """`(H_c + N - 1,)` per vertical step, the columns its recursion needs: the widest row of
  the scale whose steps (from one reset to the next) it belongs to."""
  steps = reset.shape[0]
  widths = np.zeros(steps, np.int64)
  start = 0
  for step in range(steps + 1):
    if step == steps or (reset[step] and step > start):
      w = 0
      for t in range(start, step):
        n = t + _FIRST
        if 0 <= n < height:
          w = max(w, row_w[n])
      widths[start:step] = w
      start = step
  return widths


@numba.njit(cache=True, nogil=True)
def _vertical(plane, out, reset, n2, d1, first, step_w):
  """libjxl `FastGaussianVertical` of `(H_c, W)` into `out`: y = MulAdd(n2, sum,
  NegMulSub(d1, y(n - 1), y(n - 2))), output y_1 + (y_3 + y_5), state zeroed at `reset`.
  Starts at step `first` (0, or a scale's first row: where the state is zeroed anyway). Each
  step runs over its scale's columns only (`step_w`; the columns right of them are set to 0).
  Straight-line code over columns (one state row per filter), which LLVM vectorizes."""
  height, full_width = plane.shape
  zero = np.float32(0.0)
  state = np.zeros((6, full_width), np.float32)   # y(n - 1) and y(n - 2) of the three filters
  a1, a3, a5 = state[0], state[1], state[2]
  b1, b3, b5 = state[3], state[4], state[5]
  sums = np.zeros(full_width, np.float32)
  n2_1, n2_3, n2_5 = n2[0], n2[1], n2[2]
  d1_1, d1_3, d1_5 = -d1[0], -d1[1], -d1[2]
  for step in range(first, height + _N - 1):
    n = step + _FIRST
    width = min(step_w[step], full_width)
    if reset[step]:
      state[:] = zero
    top, bottom = n - _N - 1, n + _N - 1
    if 0 <= top < height and 0 <= bottom < height:
      for col in range(width):
        sums[col] = plane[top, col] + plane[bottom, col]
    elif 0 <= top < height:
      for col in range(width):
        sums[col] = plane[top, col] + zero
    elif 0 <= bottom < height:
      for col in range(width):
        sums[col] = zero + plane[bottom, col]
    else:
      sums[:] = zero
    row = out[max(n, 0)]
    row[width:] = zero
    for col in range(width):
      s = sums[col]
      y1 = fma(n2_1, s, fma(d1_1, a1[col], -b1[col]))
      y3 = fma(n2_3, s, fma(d1_3, a3[col], -b3[col]))
      y5 = fma(n2_5, s, fma(d1_5, a5[col], -b5[col]))
      b1[col], b3[col], b5[col] = a1[col], a3[col], a5[col]
      a1[col], a3[col], a5[col] = y1, y3, y5
      row[col] = y1 + (y3 + y5)


#: Lines blurred together by the horizontal pass (transposed in chunks: one transpose of a whole
#: scale, and the filter run over the canvas's full width rather than the scale's, were most of
#: the blur's time; 256 measured faster than 64, and each step's cost barely depends on the count).
_LINES = 256


#: Rows per strip of the transposes: each strip is read a column at a time (a short gather)
#: and written as contiguous runs; 32 rows measured fastest (0.4-0.45 ns a value against 0.55-0.8
#: for 8x8 tiles, which the strips replace).
_STRIP = 32


@numba.njit(cache=True, nogil=True)
def _transpose(a, out):
  """`out[:] = a.T`."""
  _transpose_moment(a, a, PLAIN, out)


#: What `blur_moments` blurs of (a, b) for each plane: b * b, a * b, b.
SQUARE, PRODUCT, PLAIN = 0, 1, 2


@numba.njit(cache=True, nogil=True, inline="always")
def _moment(a, b, kind, i, j):
  """b^2, a * b or b at (i, j) (float32 products, each rounded on its own as `np.multiply`
  rounds them)."""
  v = b[i, j]
  if kind == SQUARE:
    return v * v
  if kind == PRODUCT:
    return a[i, j] * v
  return v


@numba.njit(cache=True, nogil=True)
def _transpose_moment(a, b, kind, out):
  """`out[:] = f(a, b).T` with f one of `SQUARE`, `PRODUCT`, `PLAIN`, in strips of `_STRIP` rows."""
  rows, cols = b.shape
  full_rows = rows - rows % _STRIP
  for i0 in range(0, full_rows, _STRIP):
    for j in range(cols):
      for i in range(i0, i0 + _STRIP):
        out[j, i] = _moment(a, b, kind, i, j)
  for i in range(full_rows, rows):
    for j in range(cols):
      out[j, i] = _moment(a, b, kind, i, j)


@numba.njit(cache=True, nogil=True)
def blur_moments(a, b, kinds, row_w, reset, first_row, n2, d1, mul_in, mul_prev, mul_prev2):
  """The blur of `P = len(kinds)` canvas planes made from `(Q, H_c, W)` float32 canvases `a` and
  `b` (plane p from a[p % Q] and b[p % Q], by `kinds[p]`: b^2, a * b or b, formed while the
  rows are transposed rather than stored), each scale separately (module docstring); values
  outside the scales' images are garbage, as the scans'. Plane p is blurred
  from canvas row `first_row[p]` (0, or the first row of a scale; `H_c`: not at all), and is
  0 above it: scales whose result the score weighs by 0 need no blur. The horizontal
  pass takes each scale's rows (one true width) `_LINES` at a time, transposed so that lines
  are columns."""
  count_b, height, width = b.shape
  planes = kinds.shape[0]
  step_w = _step_widths(row_w, reset, height)
  tmp = np.zeros((height, width), np.float32)     # gap rows (width 0, all-zero input) blur to 0
  out = np.empty((planes, height, width), np.float32)
  for p in range(planes):
    q = p % count_b
    first = first_row[p]
    out[p, :first] = 0.0
    if first >= height:
      continue
    r = first
    while r < height:
      end = r + 1
      while end < height and row_w[end] == row_w[r]:
        end += 1
      if row_w[r] > 0:
        line_w = min(row_w[r], width)
        for top in range(r, end, _LINES):
          count = min(_LINES, end - top)
          chunk = np.empty((line_w, count), np.float32)
          result = np.empty((line_w, count), np.float32)
          _transpose_moment(a[q, top:top + count, :line_w], b[q, top:top + count, :line_w],
                            kinds[p], chunk)
          _horizontal(chunk, result, line_w, n2, mul_in, mul_prev, mul_prev2)
          _transpose(result, tmp[top:top + count, :line_w])
      r = end
    _vertical(tmp, out[p], reset, n2, d1, first, step_w)
  return out
