"""butteraugli, the perceptual distance of Debian's `butteraugli` program, as compiled loops.

A faithful port of google/butteraugli at 290e39552e213ed352761114561f92b93c902f55 (2017-01-16,
Apache License 2.0), the version Debian packages as `butteraugli` 0~20170116-3 and the one
`bench/rd.py` scores with: the same float32 and float64 arithmetic in the same order, so that
the distance map equals the program's bit for bit (the tests carry the program's distances for
69 image pairs). It is not differentiable: the encoder uses it to find where its errors show
(`djpeg.perceptual.butteraugli_weights`).

The pipeline, per image: sRGB to linear light (a 256-entry table), the opsin dynamics (a blur
of sigma 1.1 sets each pixel's sensitivity; XYB by butteraugli's own mixing), then against the
other image the "high intensity change" mask, per 8x8 block every 3 pixels the DC, the AC power
spectrum (an 8-point FFT) weighed by a contrast sensitivity table and two edge detectors on
blurred planes, masked by the smaller image's local activity (gradients, 5x5 average, 4x4 min,
blur), pooled into a per-pixel map that a wide blur spreads. The distance is the map's maximum
(its max-norm); larger is worse, about 1 is "just noticeable".

Images: uint8 `(H, W, 3)` sRGB, or gray `(H, W)` / `(H, W, 1)` (as three equal channels, as
the program reads a gray PNG). Under 8 pixels in either direction the distance is 0, as the
program's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


def _srgb_table() -> np.ndarray:
  """The program's sRGB to linear light table: 255 * EOTF(i / 255), stored as float32."""
  t = np.empty(256, dtype=np.float64)
  for i in range(256):
    s = i / 255.0
    t[i] = 255.0 * (s / 12.92 if s <= 0.04045 else math.pow((s + 0.055) / 1.055, 2.4))
  return t.astype(np.float32)


def _accum_lut(first, inc) -> np.ndarray:
  """`MakeHighFreqColorDiffDx` and its kin: 21 entries, [0] = 0 (left unset in the C++, 0 in
  the program), then `first` (if any) and steps of `inc`."""
  lut = np.zeros(21, dtype=np.float64)
  v = 0.0
  start = 1
  if first is not None:
    lut[1] = first
    v = first
    start = 2
  for i in range(start, 21):
    v = v + inc
    lut[i] = v
  return lut


def _make_mask(extmul, extoff, mul, offset, scaler) -> np.ndarray:
  """`MakeMask`: the 512-entry masking curve (1 + extmul (mul / (0.01 scaler i + offset) +
  extoff))^2."""
  lut = np.empty(512, dtype=np.float64)
  for i in range(512):
    c = mul / ((0.01 * scaler * i) + offset)
    v = 1.0 + extmul * (c + extoff)
    lut[i] = v * v
  return lut


_SRGB_TO_LINEAR = _srgb_table()
_HF_DX = _accum_lut(11.38708334481672, 14.550189611520716)
_HF_DY = _accum_lut(1.4103373714040413, 0.7084088867024)
_LF_DY = _accum_lut(None, 5.2511644570349185)
#: The contrast sensitivity of each power-spectrum entry of an 8x8 block (`GetContrastSensitivity
#: Matrix`, entries 0..36 of the half spectrum).
_CSF = np.array([
  5.28270670524, 0.0, 0.0, 0.0, 0.3831134973, 0.676303603859, 3.58927792424,
  18.6104367002, 18.6104367002, 3.09093131948, 1.0, 0.498250875965,
  0.36198671102, 0.308982169883, 0.1312701920435, 2.37370549629,
  3.58927792424, 1.0, 2.37370549629, 0.991205724152, 1.05178802919,
  0.627264168628, 0.4, 0.1312701920435, 0.676303603859, 0.498250875965,
  0.991205724152, 0.5, 0.3831134973, 0.349686450518, 0.627264168628,
  0.308982169883, 0.3831134973, 0.36198671102, 1.05178802919, 0.3831134973,
  0.12], dtype=np.float64)
_K_GLOBAL_SCALE = 1.0 / 14.921561160295326
_MASK_X = _make_mask(0.975741017749, -4.25328244168, 20.8029176447, 0.454909521427,
                     0.0738288224836)
_MASK_Y = _make_mask(0.373995618954, 1.5307267433, 16.2447033988, 0.911952641929, 1.1731667845)
_MASK_B = _make_mask(0.61582234137, -4.25376118646, 31.1444967089, 1.05105070921, 0.47434643535)
_MASK_DC_X = _make_mask(1.79116943438, -3.86797479189, 20.4563479139, 0.670960225853,
                        0.486575865525)
_MASK_DC_Y = _make_mask(0.212223514236, -3.65647120524, 21.6566724788, 1.73396799447,
                        0.170392660501)
_MASK_DC_B = _make_mask(0.349376011816, -0.894711072781, 18.0373825149, 0.901647926679,
                        0.380086095024)


@njit(cache=True)
def _interp_s(arr, sx):
  """The C++ `Interpolate`: linear interpolation in `arr` at |sx|, the sign of sx kept."""
  ix = abs(sx)
  baseix = int(ix)
  size = arr.shape[0]
  if baseix >= size - 1:
    res = arr[size - 1]
  else:
    mix = ix - baseix
    res = arr[baseix] + mix * (arr[baseix + 1] - arr[baseix])
  if sx < 0:
    res = -res
  return res


@njit(cache=True)
def _conv_scale(size, step, mult, off, border_ratio):
  """Per output position of a `Convolution` pass, 1 / the kernel's weight inside the image
  (mixed with the whole kernel's by `border_ratio`)."""
  n = mult.shape[0]
  wnb = 0.0
  for j in range(2 * off + 1):
    wnb += mult[j]
  dsize = (size + step - 1) // step
  scale = np.empty(dsize)
  for o in range(dsize):
    x = o * step
    minx = 0 if x < off else x - off
    maxx = min(size, x + n - off) - 1
    w = 0.0
    for j in range(minx, maxx + 1):
      w += mult[j - x + off]
    w = (1.0 - border_ratio) * w + border_ratio * wnb
    scale[o] = 1.0 / w
  return scale


@njit(cache=True)
def _blur(img, mult, off, step, border_ratio):
  """img: float32 (H, W) C-contiguous -> new float32 (H, W).

  NB: inner loops index views with the bare loop variable; numba then knows
  the index is non-negative (no wraparound select) and LLVM vectorises."""
  H, W = img.shape
  n = mult.shape[0]
  dW = (W + step - 1) // step
  dH = (H + step - 1) // step
  sx = _conv_scale(W, step, mult, off, border_ratio)
  sy = _conv_scale(H, step, mult, off, border_ratio)
  blen = max(W + off, (dW - 1) * step + n)
  plen = (blen + step - 1) // step
  buf = np.zeros(plen * step, dtype=np.float32)
  phase = np.empty(step * plen, dtype=np.float32)
  acc = np.empty(dW)
  tmp = np.empty((H, dW), dtype=np.float32)
  bdata = buf[off:off + W]
  # horizontal pass: tmp[y, ox] (the C++ stores it transposed)
  for y in range(H):
    row = img[y]
    for x in range(W):
      bdata[x] = row[x]
    for ox in range(dW):
      acc[ox] = 0.0
    if step == 1:
      for k in range(n):
        m = mult[k]
        bv = buf[k:k + dW]
        for ox in range(dW):
          acc[ox] += np.float64(bv[ox] * m)
    else:
      # de-interleave the padded row so that tap k of output ox is
      # phase[(k % step) * plen + k // step + ox] (contiguous in ox)
      for ph in range(step):
        src = buf[ph::step]
        dst = phase[ph * plen:(ph + 1) * plen]
        for i in range(plen):
          dst[i] = src[i]
      for k in range(n):
        m = mult[k]
        base = (k % step) * plen + k // step
        pv = phase[base:base + dW]
        for ox in range(dW):
          acc[ox] += np.float64(pv[ox] * m)
    trow = tmp[y]
    for ox in range(dW):
      trow[ox] = acc[ox] * sx[ox]
  # vertical pass
  out = np.empty((dH, dW), dtype=np.float32)
  for oy in range(dH):
    yy = oy * step
    for ox in range(dW):
      acc[ox] = 0.0
    for k in range(n):
      j = yy + k - off
      if j < 0 or j >= H:
        continue
      m = mult[k]
      trow = tmp[j]
      for ox in range(dW):
        acc[ox] += np.float64(trow[ox] * m)
    orow = out[oy]
    s = sy[oy]
    for ox in range(dW):
      orow[ox] = acc[ox] * s
  if step == 1:
    return out
  res = np.empty((H, W), dtype=np.float32)
  full = W // step
  for oy in range(dH):
    orow = out[oy]
    rrow = res[oy * step]
    for t in range(step):
      rv = rrow[t:full * step:step]
      for ox in range(full):
        rv[ox] = orow[ox]
    for x in range(full * step, W):
      rrow[x] = orow[x // step]
    for y in range(oy * step + 1, min(H, oy * step + step)):
      res[y, :] = rrow
  return res


_KERNELS = {}


def _kernel(sigma):
  """(taps, radius, step) of `Blur` at `sigma`: exp(-x^2 / (2 sigma^2)) over 2.25 sigma, and
  the subsampling step int(sigma / 3) at which wide blurs are computed (cached per sigma)."""
  k = _KERNELS.get(sigma)
  if k is None:
    m = 2.25
    scaler = -1.0 / (2 * sigma * sigma)
    diff = max(1, int(m * abs(sigma)))
    expn = np.array([math.exp(scaler * i * i) for i in range(-diff, diff + 1)], dtype=np.float32)
    xstep = max(1, int(sigma / 3))
    k = _KERNELS[sigma] = (expn, diff, xstep)
  return k


_GAMMA_P = np.array([881.979476556478289, 1496.058452015812463, 908.662212739659481,
                     373.566100223287378, 85.840860336314364, 6.683258861509244])


_GAMMA_Q = np.array([12.262350348616792, 20.557285797683576, 12.161463238367844,
                     4.711532733641639, 0.899112889751053, 0.035662329617191])


@njit(cache=True, inline='always')
def _clen6(x, c0, c1, c2, c3, c4, c5):
  """_clenshaw_s unrolled for 6 coefficients (same operation order)."""
  b1 = 0.0
  b2 = 0.0
  xb1 = x * b1
  t = (xb1 + xb1) - b2 + c5
  b2 = b1
  b1 = t
  xb1 = x * b1
  t = (xb1 + xb1) - b2 + c4
  b2 = b1
  b1 = t
  xb1 = x * b1
  t = (xb1 + xb1) - b2 + c3
  b2 = b1
  b1 = t
  xb1 = x * b1
  t = (xb1 + xb1) - b2 + c2
  b2 = b1
  b1 = t
  xb1 = x * b1
  t = (xb1 + xb1) - b2 + c1
  b2 = b1
  b1 = t
  return x * b1 - b2 + c0


@njit(cache=True)
def _opsin_xyb(rgb, lut, mult, off, step, p, q):
  """uint8 (H, W, 3) sRGB -> float32 (3, H, W) XYB (OpsinDynamicsImage)."""
  H, W = rgb.shape[0], rgb.shape[1]
  lin = np.empty((3, H, W), dtype=np.float32)
  for y in range(H):
    for x in range(W):
      for c in range(3):
        lin[c, y, x] = lut[rgb[y, x, c]]
  b0 = _blur(lin[0], mult, off, step, 0.0)
  b1 = _blur(lin[1], mult, off, step, 0.0)
  b2 = _blur(lin[2], mult, off, step, 0.0)
  out = np.empty((3, H, W), dtype=np.float32)
  p0, p1, p2, p3, p4, p5 = p[0], p[1], p[2], p[3], p[4], p[5]
  q0, q1, q2, q3, q4, q5 = q[0], q[1], q[2], q[3], q[4], q[5]
  vmin = 0.770000000000000
  vmax = 274.579999999999984
  pre = np.empty(3 * W)
  sens = np.empty(3 * W)
  for y in range(H):
    br = b0[y]
    bg = b1[y]
    bb = b2[y]
    for x in range(W):
      r = np.float64(br[x])
      g = np.float64(bg[x])
      b = np.float64(bb[x])
      pre[x] = 0.348036746003 * r + 0.577814843137 * g + 0.0544556093735 * b + 0.774145581713
      pre[W + x] = 0.26922717275 * r + 0.767247733938 * g + 0.0366922708552 * b + 0.920130265014
      pre[2 * W + x] = 0.0882062883536 * r + 0.158581714673 * g + 0.712857943858 * b + 10.6524069248
    for i in range(3 * W):
      v = pre[i]
      xx = np.float64(np.float32(v))
      x01 = (xx - vmin) / (vmax - vmin)
      xc = 2.0 * x01 - 1.0
      yp = _clen6(xc, p0, p1, p2, p3, p4, p5)
      yq = _clen6(xc, q0, q1, q2, q3, q4, q5)
      gm = np.float64(np.float32(yp / yq))
      if yq == 0.0:
        gm = 0.0
      sens[i] = gm / v
    lr = lin[0, y]
    lg = lin[1, y]
    lb = lin[2, y]
    o0 = out[0, y]
    o1 = out[1, y]
    o2 = out[2, y]
    for x in range(W):
      r = np.float64(lr[x])
      g = np.float64(lg[x])
      b = np.float64(lb[x])
      c0 = (0.348036746003 * r + 0.577814843137 * g + 0.0544556093735 * b
            + 0.774145581713) * sens[x]
      c1 = (0.26922717275 * r + 0.767247733938 * g + 0.0366922708552 * b
            + 0.920130265014) * sens[W + x]
      c2 = (0.0882062883536 * r + 0.158581714673 * g + 0.712857943858 * b
            + 10.6524069248) * sens[2 * W + x]
      o0[x] = 1.01611726948 * c0 - 0.982482243696 * c1
      o1[x] = 1.43571362627 * c0 + 0.896039849412 * c1
      o2[x] = c2
  return out


@njit(cache=True)
def _mask_high_intensity_change(c0, c1):
  """`MaskHighIntensityChange`: both XYB images `(3, H, W)` pulled towards their mean where
  the luminance changes fast (the C++ float64 arithmetic, float32 results)."""
  _, H, W = c0.shape
  o0 = np.empty_like(c0)
  o1 = np.empty_like(c1)
  g = np.empty((H, W))
  for y in range(H):
    for x in range(W):
      g[y, x] = 0.5 * np.float64(c0[1, y, x] + c1[1, y, x])
  kRX = 275.19165240059317
  kRY = 18599.41286306991
  kRZ = 410.8995306951065
  kCB = 106.95800948271017
  for y in range(H):
    for x in range(W):
      ave0 = np.float64(c0[0, y, x] + c1[0, y, x]) * 0.5
      ave1 = np.float64(c0[1, y, x] + c1[1, y, x]) * 0.5
      ave2 = np.float64(c0[2, y, x] + c1[2, y, x]) * 0.5
      sqr = -1.0
      if x > 0:
        d = g[y, x - 1] - ave1
        d = d * d
        if sqr < d:
          sqr = d
      if x + 1 < W:
        d = g[y, x + 1] - ave1
        d = d * d
        if sqr < d:
          sqr = d
      if y > 0:
        d = g[y - 1, x] - ave1
        d = d * d
        if sqr < d:
          sqr = d
      if y + 1 < H:
        d = g[y + 1, x] - ave1
        d = d * d
        if sqr < d:
          sqr = d
      chroma = kCB / (ave1 + kCB)
      m0 = chroma * kRX / (sqr + kRX)
      m1 = kRY / (sqr + kRY)
      m2 = chroma * kRZ / (sqr + kRZ)
      o0[0, y, x] = m0 * np.float64(c0[0, y, x]) + (1 - m0) * ave0
      o1[0, y, x] = m0 * np.float64(c1[0, y, x]) + (1 - m0) * ave0
      o0[1, y, x] = m1 * np.float64(c0[1, y, x]) + (1 - m1) * ave1
      o1[1, y, x] = m1 * np.float64(c1[1, y, x]) + (1 - m1) * ave1
      o0[2, y, x] = m2 * np.float64(c0[2, y, x]) + (1 - m2) * ave2
      o1[2, y, x] = m2 * np.float64(c1[2, y, x]) + (1 - m2) * ave2
  return o0, o1


_K_SQRT_HALF = 0.70710678118654752440084436210484903


@njit(cache=True)
def _reorder(re, im, o):
  """The FFT's output permutation (the C++ `FFT8`'s final reordering)."""
  tr = re[o + 2]
  ti = im[o + 2]
  re[o + 2] = re[o + 3]; im[o + 2] = im[o + 3]
  re[o + 3] = re[o + 5]; im[o + 3] = im[o + 5]
  re[o + 5] = re[o + 7]; im[o + 5] = im[o + 7]
  re[o + 7] = re[o + 4]; im[o + 7] = im[o + 4]
  re[o + 4] = re[o + 1]; im[o + 4] = im[o + 1]
  re[o + 1] = re[o + 6]; im[o + 1] = im[o + 6]
  re[o + 6] = tr; im[o + 6] = ti


@njit(cache=True)
def _fft4(re, im, o):
  """The C++ 4-point complex FFT, in place at offset `o` of (re, im)."""
  t5 = re[o + 2]
  t1 = re[o + 0] - t5
  t7 = re[o + 3]
  t5 += re[o + 0]
  t3 = re[o + 1] - t7
  t7 += re[o + 1]
  t8 = t5 + t7
  re[o + 0] = t8
  t5 -= t7
  re[o + 1] = t5
  t6 = im[o + 2]
  t2 = im[o + 0] - t6
  t6 += im[o + 0]
  t5 = im[o + 3]
  im[o + 2] = t2 + t3
  t2 -= t3
  im[o + 3] = t2
  t4 = im[o + 1] - t5
  re[o + 3] = t1 + t4
  t1 -= t4
  re[o + 2] = t1
  t5 += im[o + 1]
  im[o + 0] = t6 + t5
  t6 -= t5
  im[o + 1] = t6


@njit(cache=True)
def _fft8(re, im, o):
  """The C++ 8-point complex FFT, in place at offset `o` of (re, im)."""
  t7 = im[o + 4]
  t4 = im[o + 0] - t7
  t7 += im[o + 0]
  im[o + 0] = t7

  t8 = re[o + 6]
  t5 = re[o + 2] - t8
  t8 += re[o + 2]
  re[o + 2] = t8

  t7 = im[o + 6]
  im[o + 6] = t4 - t5
  t4 += t5
  im[o + 4] = t4

  t6 = im[o + 2] - t7
  t7 += im[o + 2]
  im[o + 2] = t7

  t8 = re[o + 4]
  t3 = re[o + 0] - t8
  t8 += re[o + 0]
  re[o + 0] = t8

  re[o + 4] = t3 - t6
  t3 += t6
  re[o + 6] = t3

  t7 = re[o + 5]
  t3 = re[o + 1] - t7
  t7 += re[o + 1]
  re[o + 1] = t7

  t8 = im[o + 7]
  t6 = im[o + 3] - t8
  t8 += im[o + 3]
  im[o + 3] = t8
  t1 = t3 - t6
  t3 += t6

  t7 = im[o + 5]
  t4 = im[o + 1] - t7
  t7 += im[o + 1]
  im[o + 1] = t7

  t8 = re[o + 7]
  t5 = re[o + 3] - t8
  t8 += re[o + 3]
  re[o + 3] = t8

  t2 = t4 - t5
  t4 += t5

  t6 = t1 - t4
  t8 = _K_SQRT_HALF
  t6 *= t8
  re[o + 5] = re[o + 4] - t6
  t1 += t4
  t1 *= t8
  im[o + 5] = im[o + 4] - t1
  t6 += re[o + 4]
  re[o + 4] = t6
  t1 += im[o + 4]
  im[o + 4] = t1

  t5 = t2 - t3
  t5 *= t8
  im[o + 7] = im[o + 6] - t5
  t2 += t3
  t2 *= t8
  re[o + 7] = re[o + 6] - t2
  t2 += re[o + 6]
  re[o + 6] = t2
  t5 += im[o + 6]
  im[o + 6] = t5

  _fft4(re, im, o)
  _reorder(re, im, o)


@njit(cache=True)
def _real_fft8(inp, io, re, im, o):
  """The C++ `RealFFT8`: 8 real inputs at `inp[io:]` to the half spectrum at offset `o`."""
  t8 = inp[io + 6]
  t5 = inp[io + 2] - t8
  t8 += inp[io + 2]
  re[o + 2] = t8
  im[o + 6] = -t5
  im[o + 4] = t5
  t8 = inp[io + 4]
  t3 = inp[io + 0] - t8
  t8 += inp[io + 0]
  re[o + 0] = t8
  re[o + 4] = t3
  re[o + 6] = t3
  t7 = inp[io + 5]
  t3 = inp[io + 1] - t7
  t7 += inp[io + 1]
  re[o + 1] = t7
  t8 = inp[io + 7]
  t5 = inp[io + 3] - t8
  t8 += inp[io + 3]
  re[o + 3] = t8
  t2 = -t5
  t6 = t3 - t5
  t8 = _K_SQRT_HALF
  t6 *= t8
  re[o + 5] = re[o + 4] - t6
  t1 = t3 + t5
  t1 *= t8
  im[o + 5] = im[o + 4] - t1
  t6 += re[o + 4]
  re[o + 4] = t6
  t1 += im[o + 4]
  im[o + 4] = t1
  t5 = t2 - t3
  t5 *= t8
  im[o + 7] = im[o + 6] - t5
  t2 += t3
  t2 *= t8
  re[o + 7] = re[o + 6] - t2
  t2 += re[o + 6]
  re[o + 6] = t2
  t5 += im[o + 6]
  im[o + 6] = t5
  t5 = re[o + 2]
  t1 = re[o + 0] - t5
  t7 = re[o + 3]
  t5 += re[o + 0]
  t3 = re[o + 1] - t7
  t7 += re[o + 1]
  t8 = t5 + t7
  re[o + 0] = t8
  t5 -= t7
  re[o + 1] = t5
  im[o + 2] = t3
  im[o + 3] = -t3
  re[o + 3] = t1
  re[o + 2] = t1
  im[o + 0] = 0.0
  im[o + 1] = 0.0
  _reorder(re, im, o)


@njit(cache=True)
def _fft_squared(block, bo, re, im, r0, r1):
  """`ButteraugliFFTSquared`: the 8x8 block at `block[bo:]` replaced by its power spectrum
  (entries 4..36 of the half spectrum, times 64e-6)."""
  for y in range(8):
    _real_fft8(block, bo + y * 8, re, im, y * 8)
  for i in range(8):
    for j in range(i):
      a = 8 * i + j
      b = 8 * j + i
      tr = re[a]; ti = im[a]
      re[a] = re[b]; im[a] = im[b]
      re[b] = tr; im[b] = ti
  for x in range(8):
    r0[x] = re[x]
    r1[x] = re[32 + x]
  _real_fft8(r0, 0, re, im, 0)
  _real_fft8(r1, 0, re, im, 32)
  for y in range(1, 4):
    _fft8(re, im, y * 8)
  for i in range(4, 37):
    v = re[i] * re[i] + im[i] * im[i]
    block[bo + i] = v * 0.000064


@njit(cache=True)
def _lowfreq_vals(x, y, z, lf_dy):
  """`XybLowFreqToVals`: an XYB difference to the values its squared error is counted in."""
  z = z + 0.0812519812628 * y
  valz = z * 7.34905756986
  valx = x * 6.64482198135
  valy = _interp_s(lf_dy, y * 0.837846224276)
  return valx, valy, valz


@njit(cache=True)
def _remove_range(v, r):
  """`RemoveRangeAroundZero`: v moved towards 0 by `r`, 0 within (-r, r)."""
  if v >= -r and v < r:
    return 0.0
  if v < 0:
    return v + r
  return v - r


@njit(cache=True)
def _block_diff_map(xyb0, xyb1, xsize, ysize, step, res_xsize, csf, hf_dy, lf_dy,
          out_dc, out_ac):
  """`BlockDiffMap`: every `step` pixels the 8x8 block's DC (`out_dc`) and AC (`out_ac`)
  differences of the two XYB images, weighed by the contrast sensitivity `csf`."""
  b0 = np.empty(192)
  b1 = np.empty(192)
  re = np.empty(64)
  im = np.empty(64)
  r0 = np.empty(8)
  r1 = np.empty(8)
  xmul = 64.8
  ymul = 1.753123908348329
  ymul2 = 1.51983458269
  zmul = 2.4
  res_y = 0
  while res_y + (8 - step - 1) < ysize:
    res_x = 0
    while res_x + (8 - step - 1) < xsize:
      res_ix = (res_y * res_xsize + res_x) // step
      oy = min(res_y, ysize - 8)
      ox = min(res_x, xsize - 8)
      for c in range(3):
        for y in range(8):
          for x in range(8):
            b0[c * 64 + y * 8 + x] = xyb0[c, oy + y, ox + x]
            b1[c * 64 + y * 8 + x] = xyb1[c, oy + y, ox + x]
      avg = np.zeros(3)
      for i in range(192):
        d = b0[i] - b1[i]
        c = i // 64
        avg[c] += d / 64.0
      vx, vy, vz = _lowfreq_vals(avg[0], avg[1], avg[2], lf_dy)
      f = csf[0]
      out_dc[res_ix * 3 + 0] = f * vx * vx
      out_dc[res_ix * 3 + 1] = f * vy * vy
      out_dc[res_ix * 3 + 2] = f * vz * vz
      for i in range(192):
        a = (b0[i] + b1[i]) / 2
        h = (b0[i] - b1[i]) / 2
        b0[i] = a
        b1[i] = h
      _fft_squared(b0, 64, re, im, r0, r1)   # y_avg
      _fft_squared(b1, 0, re, im, r0, r1)    # x halfdiff
      _fft_squared(b1, 64, re, im, r0, r1)   # y halfdiff
      _fft_squared(b1, 128, re, im, r0, r1)  # z halfdiff
      ac0 = 0.0
      ac1 = 0.0
      ac2 = 0.0
      for i in range(4, 37):
        d = csf[i]
        ac0 += d * xmul * b1[i]
        ac2 += d * zmul * b1[128 + i]
        ya = math.sqrt(b0[64 + i])
        yh = math.sqrt(b1[64 + i])
        y0 = ya - yh
        y1 = ya + yh
        y0 = _remove_range(y0, 0.04)
        y1 = _remove_range(y1, 0.04)
        if y0 != y1:
          v0 = _interp_s(hf_dy, y0 * ymul2)
          v1 = _interp_s(hf_dy, y1 * ymul2)
          vy = ymul * (v0 - v1)
          ac1 += d * vy * vy
      out_ac[res_ix * 3 + 0] = ac0
      out_ac[res_ix * 3 + 1] = ac1
      out_ac[res_ix * 3 + 2] = ac2
      res_x += step
    res_y += step


@njit(cache=True)
def _xyb_lowfreq_sq_acc(r0, g0, b0, r1, g1, b1, factor, res, lf_dy):
  """`XybDiffLowFreqSquaredAccumulate`: `factor` times the squared difference of two XYB
  values, in `XybLowFreqToVals` units, added to `res`."""
  vx0, vy0, vz0 = _lowfreq_vals(r0, g0, b0, lf_dy)
  if r1 == 0.0 and g1 == 0.0 and b1 == 0.0:
    res[0] += factor * vx0 * vx0
    res[1] += factor * vy0 * vy0
    res[2] += factor * vz0 * vz0
    return
  vx1, vy1, vz1 = _lowfreq_vals(r1, g1, b1, lf_dy)
  vx = vx0 - vx1
  vy = vy0 - vy1
  vz = vz0 - vz1
  res[0] += factor * vx * vx
  res[1] += factor * vy * vy
  res[2] += factor * vz * vz


@njit(cache=True)
def _edge_detector_map(bl0, bl1, xsize, ysize, step, res_xsize, lf_dy, out):
  """`EdgeDetectorMap`: differences across each block corner of the blurred images."""
  w = 0.711100840192
  weight = 0.01617112696
  offs = np.array([[0, 0], [0, 7], [7, 0], [7, 7]])
  local = np.zeros(3)
  st = 3
  res_y = 0
  while res_y + (8 - step) < ysize:
    res_x = 0
    while res_x + (8 - step) < xsize:
      res_ix = (res_y * res_xsize + res_x) // step
      pos_x = min(res_x, xsize - 8)
      pos_y = min(res_y, ysize - 8)
      local[0] = 0.0
      local[1] = 0.0
      local[2] = 0.0
      count = 0
      for k in range(4):
        x = pos_x + offs[k, 0]
        y = pos_y + offs[k, 1]
        if x >= st and x + st < xsize:
          ya, xa = y, x - st
          yb, xb = y, x + st
          _xyb_lowfreq_sq_acc(
            w * (bl0[0, ya, xa] - bl0[0, yb, xb]),
            w * (bl0[1, ya, xa] - bl0[1, yb, xb]),
            w * (bl0[2, ya, xa] - bl0[2, yb, xb]),
            w * (bl1[0, ya, xa] - bl1[0, yb, xb]),
            w * (bl1[1, ya, xa] - bl1[1, yb, xb]),
            w * (bl1[2, ya, xa] - bl1[2, yb, xb]),
            1.0, local, lf_dy)
          count += 1
        if y >= st and y + st < ysize:
          ya, xa = y - st, x
          yb, xb = y + st, x
          _xyb_lowfreq_sq_acc(
            w * (bl0[0, ya, xa] - bl0[0, yb, xb]),
            w * (bl0[1, ya, xa] - bl0[1, yb, xb]),
            w * (bl0[2, ya, xa] - bl0[2, yb, xb]),
            w * (bl1[0, ya, xa] - bl1[0, yb, xb]),
            w * (bl1[1, ya, xa] - bl1[1, yb, xb]),
            w * (bl1[2, ya, xa] - bl1[2, yb, xb]),
            1.0, local, lf_dy)
          count += 1
      mul = weight * 8.0 / count if count > 0 else np.inf
      for i in range(3):
        out[res_ix * 3 + i] = 0.0 + mul * local[i]
      res_x += step
    res_y += step


@njit(cache=True)
def _edge_detector_lowfreq(bl0, bl1, xsize, ysize, step_, res_xsize, lf_dy, ac):
  """`EdgeDetectorLowFreq`: the largest low-frequency edge difference at 8 pixels, added to
  the AC map (the C++ writes it two cells to the right; kept)."""
  kmul = 10.0
  step = 8
  diff = np.zeros((4, 3))
  dxyb = np.zeros(3)
  mx = np.zeros(3)
  y = 0
  while y + step < ysize:
    resy = y // step_
    resx = step // step_
    x = 0
    while x + step < xsize:
      res_ix = resy * res_xsize + resx
      for i in range(3):
        a1 = bl1[i, y, x]
        a0 = bl0[i, y, x]
        diff[0, i] = (a1 - a0) + (bl0[i, y, x + 8] - bl1[i, y, x + 8])
        diff[1, i] = (a1 - a0) + (bl0[i, y + 8, x] - bl1[i, y + 8, x])
        diff[2, i] = (a1 - a0) + (bl0[i, y + 6, x + 6] - bl1[i, y + 6, x + 6])
        if x < step:
          diff[3, i] = 0.0
        else:
          diff[3, i] = (a1 - a0) + (bl0[i, y + 6, x - 6] - bl1[i, y + 6, x - 6])
      mx[0] = 0.0
      mx[1] = 0.0
      mx[2] = 0.0
      for k in range(4):
        dxyb[0] = 0.0
        dxyb[1] = 0.0
        dxyb[2] = 0.0
        _xyb_lowfreq_sq_acc(diff[k, 0], diff[k, 1], diff[k, 2], 0.0, 0.0, 0.0,
                  1.0, dxyb, lf_dy)
        for i in range(3):
          # std::max<double>(a, b) == (a < b) ? b : a
          if mx[i] < dxyb[i]:
            mx[i] = dxyb[i]
      for i in range(3):
        ac[res_ix * 3 + i] = np.float32(np.float64(ac[res_ix * 3 + i]) + kmul * mx[i])
      x += step_
      resx += 1
    y += step_


@njit(cache=True)
def _diff_precompute(xyb0, xyb1, hf_dx, hf_dy):
  _, H, W = xyb0.shape
  out = np.empty((3, H, W), dtype=np.float32)
  for y in range(H):
    y2 = y + 1 if y + 1 < H else y - 1
    for x in range(W):
      x2 = x + 1 if x + 1 < W else x - 1
      # image 0
      h0 = _interp_s(hf_dx, np.float64(xyb0[0, y, x] - xyb0[0, y, x2]) * 0.758304045695)
      h1 = _interp_s(hf_dy, np.float64(xyb0[1, y, x] - xyb0[1, y, x2]) * 2.28148649801)
      h2 = 1.87816926918 * np.float64(xyb0[2, y, x] - xyb0[2, y, x2])
      v0 = _interp_s(hf_dx, np.float64(xyb0[0, y, x] - xyb0[0, y2, x]) * 0.758304045695)
      v1 = _interp_s(hf_dy, np.float64(xyb0[1, y, x] - xyb0[1, y2, x]) * 2.28148649801)
      v2 = 1.87816926918 * np.float64(xyb0[2, y, x] - xyb0[2, y2, x])
      s00 = abs(h0) + abs(v0)
      s01 = abs(h1) + abs(v1)
      s02 = abs(h2) + abs(v2)
      # image 1
      h0 = _interp_s(hf_dx, np.float64(xyb1[0, y, x] - xyb1[0, y, x2]) * 0.758304045695)
      h1 = _interp_s(hf_dy, np.float64(xyb1[1, y, x] - xyb1[1, y, x2]) * 2.28148649801)
      h2 = 1.87816926918 * np.float64(xyb1[2, y, x] - xyb1[2, y, x2])
      v0 = _interp_s(hf_dx, np.float64(xyb1[0, y, x] - xyb1[0, y2, x]) * 0.758304045695)
      v1 = _interp_s(hf_dy, np.float64(xyb1[1, y, x] - xyb1[1, y2, x]) * 2.28148649801)
      v2 = 1.87816926918 * np.float64(xyb1[2, y, x] - xyb1[2, y2, x])
      s10 = abs(h0) + abs(v0)
      s11 = abs(h1) + abs(v1)
      s12 = abs(h2) + abs(v2)
      out[0, y, x] = s10 if s10 < s00 else s00
      out[1, y, x] = s11 if s11 < s01 else s01
      out[2, y, x] = s12 if s12 < s02 else s02
  return out


@njit(cache=True)
def _average5x5_minsq(d):
  """Average5x5 followed by MinSquareVal(4, 0) on a float32 (H, W) plane."""
  H, W = d.shape
  w = np.float32(0.679144890667)
  scale = np.float32(1.0 / (5.0 + np.float64(np.float32(4) * w)))
  if W < 4 or H < 4:
    r = d.copy()
  else:
    t1 = np.empty((H, W), dtype=np.float32)
    for y in range(H):
      for x in range(W):
        t1[y, x] = d[y, x] * w
    r = np.empty((H, W), dtype=np.float32)
    for y in range(H):
      for x in range(W):
        a = d[y, x]
        if y > 0:
          if x > 0:
            a += t1[y - 1, x - 1]
          a += d[y - 1, x]
          if x + 1 < W:
            a += t1[y - 1, x + 1]
        if x > 0:
          a += d[y, x - 1]
        if x + 1 < W:
          a += d[y, x + 1]
        if y + 1 < H:
          if x > 0:
            a += t1[y + 1, x - 1]
          a += d[y + 1, x]
          if x + 1 < W:
            a += t1[y + 1, x + 1]
        r[y, x] = a * scale
  # MinSquareVal(4, 0): vertical then horizontal window [i, i+3]
  tmp = np.empty((H, W), dtype=np.float32)
  for y in range(H):
    for x in range(W):
      m = r[y, x]
      for j in range(y + 1, min(H, y + 4)):
        v = r[j, x]
        if v < m:
          m = v
      tmp[y, x] = m
  for y in range(H):
    for x in range(W):
      m = tmp[y, x]
      for j in range(x + 1, min(W, x + 4)):
        v = tmp[y, j]
        if v < m:
          m = v
      r[y, x] = m
  return r


@njit(cache=True)
def _mask_lut(tab, p, gs):
  sx = 0.0 if p < 0 else p
  v = np.float64(np.float32(_interp_s(tab, sx)))
  return np.float32(v * gs)


@njit(cache=True)
def _combine_and_diffmap(s0, s1, s2, dc, ac, edge, xsize, ysize, step, res_xsize,
            mx_, my_, mb_, mdx_, mdy_, mdb_, gs):
  """Mask LUTs (evaluated only where CombineChannels reads them), CombineChannels
  and the first half of CalculateDiffmap.  Returns (out float32 (H, W), inner)."""
  s2h = (8 - step) // 2
  out = np.zeros((ysize, xsize), dtype=np.float32)
  thr = 1.0 / np.float64(np.float32(100) * np.float32(100))
  ry = 0
  while ry + 8 - step < ysize:
    rx = 0
    while rx + 8 - step < xsize:
      ridx = (ry * res_xsize + rx) // step
      yy = ry + 3
      xx = rx + 3
      p0 = 232.206464018 * np.float64(s0[yy, xx])
      p1 = 22.9455222245 * np.float64(s1[yy, xx])
      p2 = 503.962310606 * np.float64(s2[yy, xx])
      m0 = np.float64(_mask_lut(mx_, p0, gs))
      m1 = np.float64(_mask_lut(my_, p1, gs))
      m2 = np.float64(_mask_lut(mb_, p2, gs))
      md0 = np.float64(_mask_lut(mdx_, p0, gs))
      md1 = np.float64(_mask_lut(mdy_, p1, gs))
      md2 = np.float64(_mask_lut(mdb_, p2, gs))
      d1 = (np.float64(dc[3 * ridx]) * md0 + np.float64(dc[3 * ridx + 1]) * md1
            + np.float64(dc[3 * ridx + 2]) * md2)
      d2 = (np.float64(ac[3 * ridx]) * m0 + np.float64(ac[3 * ridx + 1]) * m1
            + np.float64(ac[3 * ridx + 2]) * m2)
      d3 = (np.float64(edge[3 * ridx]) * m0 + np.float64(edge[3 * ridx + 1]) * m1
            + np.float64(edge[3 * ridx + 2]) * m2)
      orig = np.float32(d1 + d2 + d3)
      if np.float64(orig) < thr:
        val = orig * np.float32(100)
      else:
        val = np.float32(math.sqrt(orig))
      for oy in range(step):
        for ox in range(step):
          out[ry + oy + s2h, rx + ox + s2h] = val
      rx += step
    ry += step
  s = 8 - step
  inner = np.empty((ysize - s, xsize - s), dtype=np.float32)
  for y in range(ysize - s):
    for x in range(xsize - s):
      inner[y, x] = out[y + s2h, x + s2h]
  return out, inner


@njit(cache=True)
def _finish_diffmap(out, inner, bl, step):
  ysize, xsize = out.shape
  s2h = (8 - step) // 2
  s = 8 - step
  mul1 = 24.8235314874
  scale = 1.0 / (1.0 + mul1)
  for y in range(ysize - s):
    for x in range(xsize - s):
      out[y + s2h, x + s2h] = np.float64(inner[y, x]) + mul1 * np.float64(bl[y, x])
  res = np.empty((ysize, xsize))
  for y in range(ysize):
    for x in range(xsize):
      res[y, x] = np.float64(np.float32(np.float64(out[y, x]) * scale))
  return res


def _blur_planes(xyb, sigmas):
  out = np.empty_like(xyb)
  for i in range(3):
    expn, diff, xstep = _kernel(sigmas[i])
    out[i] = _blur(xyb[i], expn, diff, xstep, 0.0)
  return out


_MASK_SIG = (9.65781083553, 14.2644604355, 4.53358927369)


_EDGE_SIG = (1.5, 0.586, 0.4)


_LOW_SIG = (14.0, 14.0, 14.0)


def _diffmap(xyb0_in, xyb1_in, step=3):
  """DiffmapOpsinDynamicsImage; inputs float32 (3, H, W). Returns float64 (H, W)
  holding the C++ float map."""
  _, ysize, xsize = xyb0_in.shape
  if xsize < 8 or ysize < 8:
    return np.zeros((ysize, xsize), dtype=np.float64)
  res_xsize = (xsize + step - 1) // step
  res_ysize = (ysize + step - 1) // step
  xyb0, xyb1 = _mask_high_intensity_change(xyb0_in, xyb1_in)
  n = res_xsize * res_ysize
  dc = np.zeros(3 * n, dtype=np.float32)
  ac = np.zeros(3 * n, dtype=np.float32)
  edge = np.zeros(3 * n, dtype=np.float32)
  _block_diff_map(xyb0, xyb1, xsize, ysize, step, res_xsize, _CSF, _HF_DY, _LF_DY, dc, ac)
  bl0 = _blur_planes(xyb0, _EDGE_SIG)
  bl1 = _blur_planes(xyb1, _EDGE_SIG)
  _edge_detector_map(bl0, bl1, xsize, ysize, step, res_xsize, _LF_DY, edge)
  bl0 = _blur_planes(xyb0, _LOW_SIG)
  bl1 = _blur_planes(xyb1, _LOW_SIG)
  _edge_detector_lowfreq(bl0, bl1, xsize, ysize, step, res_xsize, _LF_DY, ac)
  del bl0, bl1
  m = _diff_precompute(xyb0, xyb1, _HF_DX, _HF_DY)
  s = []
  for i in range(3):
    a = _average5x5_minsq(m[i])
    expn, diff, xstep = _kernel(_MASK_SIG[i])
    s.append(_blur(a, expn, diff, xstep, 0.0))
  out, inner = _combine_and_diffmap(s[0], s[1], s[2], dc, ac, edge, xsize, ysize, step, res_xsize,
                   _MASK_X, _MASK_Y, _MASK_B, _MASK_DC_X, _MASK_DC_Y, _MASK_DC_B,
                   _K_GLOBAL_SCALE * _K_GLOBAL_SCALE)
  expn, diff, xstep = _kernel(8.8510880283)
  bl = _blur(inner, expn, diff, xstep, 0.03027655136)
  return _finish_diffmap(out, inner, bl, step)


# ------------------------------------------------------------------------------- the API


def _pixels(image, what: str) -> np.ndarray:
  """uint8 `(H, W, 3)` of an image argument (gray as three equal channels), or ValueError."""
  a = np.asarray(image)
  if a.dtype != np.uint8:
    raise ValueError(f"butteraugli takes uint8 sRGB images; the {what} image is {a.dtype} "
                     "(for floats in [0, 1]: np.round(image * 255).astype(np.uint8)).")
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.ndim == 2:
    a = np.repeat(a[..., None], 3, axis=-1)
  if a.ndim != 3:
    raise ValueError(f"butteraugli takes one image (H, W, 3) or gray (H, W) at a time; the "
                     f"{what} image has shape {a.shape}.")
  if a.shape[-1] != 3:
    raise ValueError(f"butteraugli takes 3 channels (RGB) or gray; the {what} image has "
                     f"{a.shape[-1]} channels.")
  # Writable always: numba compiles (and caches) a read-only array as another type.
  return np.ascontiguousarray(a) if a.flags.writeable else np.array(a, order="C")


def _xyb(pixels: np.ndarray) -> np.ndarray:
  """The opsin dynamics image (XYB) `(3, H, W)` float32 of uint8 `(H, W, 3)` pixels."""
  expn, diff, xstep = _kernel(1.1)
  return _opsin_xyb(pixels, _SRGB_TO_LINEAR, expn, diff, xstep, _GAMMA_P, _GAMMA_Q)


class ButteraugliReference:
  """The reference image's own half of butteraugli, computed once to score many distorted
  versions of it (`butteraugli_diffmap(reference, d)` for each d): its opsin dynamics image,
  about a sixth of a score's time. (The rest mixes both images from its first step.)

  Args:
    pixels: uint8 `(H, W, 3)` sRGB, or gray `(H, W)` / `(H, W, 1)`.
  """

  def __init__(self, pixels):
    self.pixels = _pixels(pixels, "reference")
    self.shape = self.pixels.shape[:2]
    self._xyb = _xyb(self.pixels) if min(self.shape) >= 8 else None


def butteraugli_diffmap(reference, distorted) -> np.ndarray:
  """butteraugli's distance map of `distorted` against `reference`.

  Args:
    reference: uint8 `(H, W, 3)` sRGB (or gray), or a `ButteraugliReference` of it.
    distorted: uint8 pixels of the same size.
  Returns:
    `(H, W)` float64: the program's float32 map, per pixel the distance the eye would see
    there (its maximum is `butteraugli`); zeros under 8 pixels in either direction.
  Raises:
    ValueError: not uint8, not one RGB or gray image, or sizes that differ.
  """
  if not isinstance(reference, ButteraugliReference):
    reference = ButteraugliReference(reference)
  pixels = _pixels(distorted, "distorted")
  if pixels.shape[:2] != reference.shape:
    raise ValueError(f"butteraugli compares images of the same size; got {reference.shape} and "
                     f"{pixels.shape[:2]} (height, width).")
  if reference._xyb is None:
    return np.zeros(reference.shape, np.float64)
  return _diffmap(reference._xyb, _xyb(pixels))


def butteraugli(reference, distorted) -> float:
  """butteraugli's max-norm distance of `distorted` from `reference`: what Debian's
  `butteraugli` program prints for the two images as 8-bit files (arguments as for
  `butteraugli_diffmap`). 0 for equal images; about 1 is just noticeable, 2 and more clearly
  visible. The map's NaNs, which the program skips (images 8 pixels across), are skipped."""
  distances = butteraugli_diffmap(reference, distorted)
  finite = distances[~np.isnan(distances)]
  return max(0.0, float(finite.max())) if finite.size else 0.0
