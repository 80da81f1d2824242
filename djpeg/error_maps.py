"""SSIMULACRA 2's candidate side as compiled loops: the XYB canvas, and the error maps pooled.

`djpeg.ssimulacra2` states the metric in XLA: differentiable, batched, for any device. Scoring
an encoder's candidates needs none of that, and on a CPU XLA's elementwise work (XYB of every
scale, the three error maps over the whole canvas, float32 pooling) was half of a score's time
once the blur was compiled (`djpeg.recursive_gaussian`). Here:

* `xyb_canvas`: sRGB -> linear -> 2x2 box averages -> opsin mixing and cube roots -> positive
  XYB, with a fused multiply-add exactly where libjxl writes `MulAdd` (as XLA contracts them in
  the jitted function): the same numbers as `ssimulacra2._xyb_canvas` under `jit`, bit for bit.
* `pooled_values`: the maps (1 - SSIM', artifact, detail loss) sample by sample inside each
  scale's image only, with ssimulacra2.cc's arithmetic (float32 maps, double where it computes
  in double) and its double sums. Scores agree with the XLA path to about 1e-5 points (the
  order and width of the sums differ) and with the reference program more closely (3.8e-6 at
  worst over the fixtures; `tests/test_ssimulacra2.py`).

Arrays: canvas planes `(B, 3, H_c, W)` float32 (`djpeg.ssimulacra2`'s layout: scale s occupies
rows `offsets[s]` to `offsets[s] + heights[s]` and columns 0 to `widths[s]`).
"""

from __future__ import annotations

import numba
import numpy as np

from djpeg.recursive_gaussian import fma as _fma

_C2 = np.float32(0.0009)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _accumulate(sums, d, artifact, lost):
  """Adds a row's maps and their fourth powers to the six double sums. Reassociation lets LLVM
  vectorize them (their order is free: the reference's own is row by row); only the sums run
  under it, the maps are computed exactly as written (`_pool`)."""
  t0 = t1 = t2 = t3 = t4 = t5 = 0.0
  for x in range(d.shape[0]):
    a, b, c = d[x], artifact[x], lost[x]
    a2, b2, c2 = a * a, b * b, c * c
    t0 += a
    t1 += a2 * a2
    t2 += b
    t3 += b2 * b2
    t4 += c
    t5 += c2 * c2
  sums[0] += t0
  sums[1] += t1
  sums[2] += t2
  sums[3] += t3
  sums[4] += t4
  sums[5] += t5


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pool(img1, img2, s11, s22, s12, mu1, mu2, b, c, top, h, w, with_ssim):
  """One scale's and channel's `(h, w)` planes (rows `top` on of image `b`, channel `c` of the
  canvases) -> the six sums (map, map^4 for the three maps), the maps with ssimulacra2.cc's
  arithmetic, a row at a time. Two things let LLVM run the two loops per row on SIMD vectors
  (2.5x faster, the same values): the canvases indexed whole (C-contiguous) rather than sliced,
  whose rows numba cannot prove of unit stride, and numpy's error model, without the division
  by zero check Python's model puts in every division (no denominator here can be 0: 1 + |e|
  and a variance sum + C2)."""
  sums = np.zeros(6)
  d = np.zeros(w)
  artifact = np.empty(w)
  lost = np.empty(w)
  for y in range(top, top + h):
    if with_ssim:
      for x in range(w):
        m1, m2 = mu1[b, c, y, x], mu2[b, c, y, x]
        mu11, mu22, mu12 = m1 * m1, m2 * m2, m1 * m2
        diff = m1 - m2
        num_m = np.float32(1.0 - np.float64(diff * diff))
        num_s = np.float32(2.0) * (s12[b, c, y, x] - mu12) + _C2
        denom_s = (s11[b, c, y, x] - mu11) + (s22[b, c, y, x] - mu22) + _C2
        d[x] = max(1.0 - np.float64((num_m * num_s) / denom_s), 0.0)
    for x in range(w):
      e1 = abs(img1[b, c, y, x] - mu1[b, c, y, x])
      e2 = abs(img2[b, c, y, x] - mu2[b, c, y, x])
      ratio = (1.0 + np.float64(e2)) / (1.0 + np.float64(e1)) - 1.0
      artifact[x] = max(ratio, 0.0)
      lost[x] = max(-ratio, 0.0)
    _accumulate(sums, d, artifact, lost)
  return sums


@numba.njit(cache=True, nogil=True)
def pooled_values(img1, img2, s11, s22, s12, mu1, mu2, offsets, heights, widths, ssim_weighted):
  """The pooled maps `(B, scales, 3 channels, 2 norms, 3 maps)` float64: per scale, channel and
  map the mean (1-norm) and the fourth root of the mean fourth power (4-norm) of
  ssimulacra2.cc's `SSIMMap` (1 - SSIM') and `EdgeDiffMap` (artifact, detail loss). The SSIM
  map is left at 0 where `ssim_weighted[c, s]` is False (the score weighs it by 0; its blurred
  second moments need not exist there)."""
  batch = img1.shape[0]
  scales = offsets.shape[0]
  out = np.zeros((batch, scales, 3, 2, 3), np.float64)
  for b in range(batch):
    for s in range(scales):
      top, h, w = offsets[s], heights[s], widths[s]
      inv = 1.0 / (h * w)
      for c in range(3):
        sums = _pool(img1, img2, s11, s22, s12, mu1, mu2, b, c, top, h, w,
                     ssim_weighted[c, s])
        for m in range(3):
          out[b, s, c, 0, m] = inv * sums[2 * m]
          out[b, s, c, 1, m] = np.sqrt(np.sqrt(inv * sums[2 * m + 1]))
  return out


def score_from_values(values: np.ndarray, weights: np.ndarray, scale: float,
                      poly: tuple[float, float, float], exponent: float) -> np.ndarray:
  """`(B, scales, 3, 2, 3)` pooled values -> `(B,)` scores, in double as ssimulacra2.cc's
  `Msssim::Score` (weights indexed over channel, scale, norm, map)."""
  values = np.asarray(values, np.float64)
  batch, scales = values.shape[:2]
  v = np.transpose(values, (0, 2, 1, 3, 4)).reshape(batch, scales * 18)
  x = np.abs(v) @ np.asarray(weights[:scales * 18], np.float64) * scale
  x = poly[0] * x + poly[1] * x * x + poly[2] * x * x * x
  with np.errstate(invalid="ignore"):
    return np.where(x > 0, 100.0 - 10.0 * np.power(np.maximum(x, 0.0), exponent), 100.0)


# ------------------------------------------------------------------------------------------
# The distorted image's positive XYB at every scale, on the canvas.


@numba.njit(cache=True, nogil=True)
def _srgb_to_linear(v, p, q, thresh, low_div_inv):
  """libjxl's sRGB EOTF approximation of one float32 (Horner with MulAdd, odd-symmetric)."""
  sign = np.float32(-1.0) if v < 0 else np.float32(1.0)
  x = v * sign
  yp, yq = p[4], q[4]
  for k in range(3, -1, -1):
    yp = _fma(yp, x, p[k])
    yq = _fma(yq, x, q[k])
  return sign * (yp / yq if x > thresh else x * low_div_inv)


@numba.njit(cache=True, nogil=True)
def _cube_root_and_add(x, neg_bias_cbrt):
  """libjxl `CubeRootAndAdd`: cbrt(x) - cbrt(bias) by three Newton steps on x^(-1/3)."""
  k1_3 = np.float32(1.0) / np.float32(3.0)
  k4_3 = np.float32(4.0) / np.float32(3.0)
  xa_3 = k1_3 * x
  m1 = np.float32(x).view(np.int32)
  if m1 == 0:
    m2 = np.int32(0)
  else:
    m2 = np.int32(0x54800000) - np.int32(np.uint32(m1) >> np.uint32(23)) * np.int32(0x002AAAAA)
  r = np.int32(m2).view(np.float32)
  for _ in range(3):
    r2 = r * r
    r = _fma(-xa_3, r2 * r2, k4_3 * r)
  r2 = r * r
  r = _fma(k1_3, _fma(-x, r2 * r2, r), r)
  return _fma(r * r, x, neg_bias_cbrt)


@numba.njit(cache=True, nogil=True)
def xyb_canvas(img, offsets, heights, widths, h_c, srgb_p, srgb_q, thresh, low_div_inv,
               opsin, bias, neg_bias_cbrt):
  """`(B, H, W, 3)` float32 sRGB -> its positive XYB at every scale on the canvas
  `(B, 3, H_c, W)`, zero outside the scales' images (`djpeg.ssimulacra2._xyb_canvas`, the same
  float32 operations: linear RGB, 2x2 box averages with the edge replicated, opsin mixing,
  cube roots, MakePositiveXYB)."""
  batch, height, width = img.shape[:3]
  canvas = np.zeros((batch, 3, h_c, width), np.float32)
  lin = np.empty((3, height, width), np.float32)
  for b in range(batch):
    for y in range(height):
      for x in range(width):
        for c in range(3):
          lin[c, y, x] = _srgb_to_linear(img[b, y, x, c], srgb_p, srgb_q, thresh, low_div_inv)
    _xyb_from_linear(lin, canvas[b], offsets, heights, widths, opsin, bias, neg_bias_cbrt)
  return canvas


@numba.njit(cache=True, nogil=True)
def linear_lut(srgb_p, srgb_q, thresh, low_div_inv):
  """`(256,)` float32: linear light of every 8-bit value v, read as the reference program
  reads 8-bit files (v * (1 / 255) in float32) and converted by `_srgb_to_linear`."""
  lut = np.empty(256, np.float32)
  inv = np.float32(1.0 / 255.0)
  for v in range(256):
    lut[v] = _srgb_to_linear(np.float32(v) * inv, srgb_p, srgb_q, thresh, low_div_inv)
  return lut


@numba.njit(cache=True, nogil=True)
def xyb_canvas_8bit(img, lut, offsets, heights, widths, h_c, opsin, bias, neg_bias_cbrt):
  """`xyb_canvas` of `(B, H, W, 3)` uint8 sRGB through `linear_lut(...)`: the same canvas as
  `xyb_canvas(img * float32(1 / 255))`, bit for bit, without a per-pixel EOTF."""
  batch, height, width = img.shape[:3]
  canvas = np.zeros((batch, 3, h_c, width), np.float32)
  lin = np.empty((3, height, width), np.float32)
  for b in range(batch):
    for c in range(3):
      for y in range(height):
        for x in range(width):
          lin[c, y, x] = lut[img[b, y, x, c]]
    _xyb_from_linear(lin, canvas[b], offsets, heights, widths, opsin, bias, neg_bias_cbrt)
  return canvas


@numba.njit(cache=True, nogil=True)
def _xyb_from_linear(lin, canvas, offsets, heights, widths, opsin, bias, neg_bias_cbrt):
  """Linear RGB `(3, H, W)` (overwritten by the downscales) -> one image's canvas `(3, H_c,
  W)`: per scale the 2x2 box average of the previous one, then positive XYB."""
  height, width = lin.shape[1:]
  half = np.float32(0.5)
  quarter = np.float32(0.25)
  zero = np.float32(0.0)
  h, w = height, width
  for s in range(offsets.shape[0]):
    if s:
      hs, ws = heights[s], widths[s]
      for c in range(3):
        for y in range(hs):
          y0, y1 = 2 * y, min(2 * y + 1, h - 1)
          for x in range(ws):
            x0, x1 = 2 * x, min(2 * x + 1, w - 1)
            lin[c, y, x] = (((lin[c, y0, x0] + lin[c, y0, x1]) + lin[c, y1, x0])
                            + lin[c, y1, x1]) * quarter
      h, w = hs, ws
    top = offsets[s]
    for y in range(h):
      for x in range(w):
        r, g, bl = lin[0, y, x], lin[1, y, x], lin[2, y, x]
        m0 = _cube_root_and_add(max(_fma(opsin[0, 0], r, _fma(opsin[0, 1], g, _fma(
            opsin[0, 2], bl, bias))), zero), neg_bias_cbrt)
        m1 = _cube_root_and_add(max(_fma(opsin[1, 0], r, _fma(opsin[1, 1], g, _fma(
            opsin[1, 2], bl, bias))), zero), neg_bias_cbrt)
        m2 = _cube_root_and_add(max(_fma(opsin[2, 0], r, _fma(opsin[2, 1], g, _fma(
            opsin[2, 2], bl, bias))), zero), neg_bias_cbrt)
        xx = half * (m0 - m1)
        yy = half * (m0 + m1)
        canvas[0, top + y, x] = xx * np.float32(14.0) + np.float32(0.42)
        canvas[1, top + y, x] = yy + np.float32(0.01)
        canvas[2, top + y, x] = (m2 - yy) + np.float32(0.55)
