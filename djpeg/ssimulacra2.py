"""SSIMULACRA 2 (Cloudinary, version 2.1) in JAX: differentiable, batched, jit-able.

A port of `ssimulacra2.cc` (https://github.com/cloudinary/ssimulacra2, Jon Sneyers, 2022/2023,
commit 81feacf) and of the libjxl pieces it uses. Scores are on the reference program's scale:
100 for identical images, about 90 visually lossless, 70 high, 50 medium, 30 low quality;
strong distortions go negative. `ssimulacra2(reference, distorted)` takes sRGB images in
[0, 1], `(..., H, W, 3)` (or `(..., H, W, 1)` gray), and returns scores `(...)`.

Pipeline, for a reference image A and a distorted image B (all maps and values unitless):

1. sRGB -> linear light with libjxl's `TF_SRGB::DisplayFromEncoded`, which is not the exact
   formula `((v + 0.055) / 1.055) ** 2.4` but a 4/4-degree rational polynomial fit of it for
   v > 0.04045 (`v / 12.92` below), odd-symmetric for negative v: linear = P(v) / Q(v), by
   Horner's rule with fused multiply-adds. Linear values are relative light in [0, 1].
2. Six scales, 1:1 to 1:32. At scale s > 0 the linear RGB image of scale s - 1 is downscaled
   by 2x2 box averaging, `(((a00 + a01) + a10) + a11) * 0.25`; an odd width or height is padded
   by repeating the last column/row (the output is ceil(W / 2) x ceil(H / 2)). Scales stop as
   in the reference: scale s is computed only while the image of scale s - 1 (the input for
   s = 0) is at least 8 x 8, so an 8 x 8 image has 2 scales (8 x 8 and 4 x 4) and all 6 need
   min(H, W) >= 113.
3. Linear RGB -> XYB (JPEG XL's opsin space) at every scale: mixed = M rgb + b with the opsin
   absorbance matrix M (rows (0.30, 0.622, 0.078), (0.23, 0.692, 0.078), (0.24342268924547819,
   0.20476744424496821, 0.5518098665)) and bias b = 0.0037930732552754493, clamped at 0;
   m = cbrt(mixed) - cbrt(b) (libjxl's `CubeRootAndAdd`: bit-trick guess, Newton steps);
   X = (m0 - m1) / 2, Y = (m0 + m1) / 2, B = m2. SSIMULACRA 2 then shifts/scales the channels
   to roughly [0, 1]: X' = 14 X + 0.42, Y' = Y + 0.01, B' = (B - Y) + 0.55.
4. Per channel, libjxl's recursive Gaussian (sigma 1.5; Charalampidis 2016 truncated-cosine
   IIR of radius N = 5, three second-order resonators summed, zero outside the image),
   horizontal pass then vertical pass, of A, B, A^2, B^2 and AB: mu1, mu2, s11, s22, s12.
5. Error maps per channel:
   - SSIM without the luminance denominator: d = max(0, 1 - (1 - (mu1 - mu2)^2)
     (2 (s12 - mu1 mu2) + C2) / ((s11 - mu1^2) + (s22 - mu2^2) + C2)), C2 = 0.0009;
   - edge maps, r = (1 + |B - mu2|) / (1 + |A - mu1|) - 1: artifact = max(r, 0) (ringing,
     blocking: B has edges where A is smooth) and detail loss = max(-r, 0) (blur, smearing).
   Each map is pooled over the pixels by its 1-norm (mean) and 4-norm (mean(d^4)^(1/4)).
6. n_scales x 3 channels x 2 norms x 3 maps = up to 108 values v_i, combined as
   x = 0.9562382616834844 sum_i w_i |v_i| with the reference's 108 weights, then
   x <- 2.326765642916932 x - 0.020884521182843837 x^2 + 6.248496625763138e-05 x^3 and
   score = 100 - 10 x^0.6276336467831387 for x > 0, else 100. As in the reference, the weight
   index runs over the computed scales only, (channel * n_scales + scale) * 6 + norm * 3 + map,
   so with fewer than 6 scales the weights are taken from the start of the table.

Numerics. The IIR's resonators have their poles on the unit circle, so float32 rounding errors
never decay and the reference's own rounding noise is part of its scores (a float64 blur is off
by up to 0.55 points on the test fixtures). This port therefore repeats the reference's float32
operations in order: the horizontal pass switches, per line, between libjxl's one-output and
unrolled four-output arithmetic exactly where `FastGaussian1D` does; fused multiply-adds are used
where libjxl's SIMD code uses `MulAdd`, and `_no_fma` keeps XLA (which always lets LLVM contract
`a * b + c`) from fusing products that the reference rounds first. On XLA:CPU the blur and XYB
images are bit-identical to the reference's and scores agree to ~1e-5 (the float32 pooling);
letting XLA contract freely costs up to 0.09 points, a plain scalar recursion up to 0.11. All
scales are blurred together on one canvas (see `_blur_canvas`): 2 scans per call, so a shape
compiles in about a second.

Inputs. The reference reads 8-bit PNGs as v = u8 * float32(1 / 255); uint8 images are read
the same way (on a CPU the compiled path then takes linear light from a 256-entry table), and
float images `u8.astype(np.float32) * np.float32(1 / 255)` give the same scores.
Nothing is clipped beyond what the reference clamps (mixed >= 0, max(., 0) in the maps,
x > 0). Concrete inputs outside [0, 1] by more than 1e-6 raise `ValueError` (the reference only
sees 8-bit data; the transfer function would extrapolate silently); traced inputs are not
checked. Gradients (with respect to both images) are finite everywhere in [0, 1], identical
images included: the 4-norms and the final power use double `where`s, the cube root a custom
JVP (x^(-2/3) / 3 from the Newton iterate), neither changing forward values.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from djpeg import error_maps, recursive_gaussian

__all__ = ["ssimulacra2"]

_F32 = np.float32

# --- sRGB transfer function (lib/jxl/transfer_functions-inl.h, TF_SRGB::DisplayFromEncoded).
# Rational polynomial coefficients, lowest degree first.
_SRGB_P = tuple(_F32(v) for v in (2.200248328e-04, 1.043637593e-02, 1.624820318e-01,
                                  7.961564959e-01, 8.210152774e-01))
_SRGB_Q = tuple(_F32(v) for v in (2.631846970e-01, 1.076976492e+00, 4.987528350e-01,
                                  -5.512498495e-02, 6.521209011e-03))
_SRGB_THRESH = _F32(0.04045)
_SRGB_LOW_DIV_INV = _F32(1.0) / _F32(12.92)  # kLowDivInv = 1.0f / kLowDiv, in float

# --- Opsin absorbance (lib/jxl/opsin_params.h); float arithmetic as in C++.
_M02 = _F32(0.078)
_M00 = _F32(0.30)
_M01 = _F32(1.0) - _M02 - _M00
_M12 = _F32(0.078)
_M10 = _F32(0.23)
_M11 = _F32(1.0) - _M12 - _M10
_M20 = _F32(0.24342268924547819)
_M21 = _F32(0.20476744424496821)
_M22 = _F32(1.0) - _M20 - _M21
_OPSIN = ((_M00, _M01, _M02), (_M10, _M11, _M12), (_M20, _M21, _M22))
_OPSIN_BIAS = _F32(0.0037930732552754493)
# -cbrtf(kOpsinAbsorbanceBias[i]); glibc's cbrtf gives 0x1.3f64eap-3, the same float.
_NEG_BIAS_CBRT = -_F32(np.cbrt(np.float64(_OPSIN_BIAS)))

# --- SSIMULACRA 2 constants (ssimulacra2.cc).
_C2 = _F32(0.0009)
_NUM_SCALES = 6
_MIN_SIZE = 8
_WEIGHTS = (
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0,
    0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271,
    0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0, 1.8422455520539298,
    11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833,
    0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0,
    7.466890328078848, 0.0, 17.445833984131262, 0.0006235601634041466, 0.0, 0.0,
    6.683678146179332, 0.00037724407979611296, 1.027889937768264, 225.20515300849274, 0.0,
    0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757,
    0.0004485436923833408, 0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0,
    8.826982764996862, 23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682,
    0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0,
    0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537)
_SCORE_SCALE = 0.9562382616834844
_POLY = (2.326765642916932, -0.020884521182843837, 6.248496625763138e-05)
_EXPONENT = 0.6276336467831387

_RANGE_TOLERANCE = 1e-6


def _recursive_gaussian(sigma: float) -> dict:
  """libjxl `CreateRecursiveGaussian` (gauss_blur.cc): IIR constants, double then float32."""
  radius = float(np.floor(np.float32(3.2795 * sigma + 0.2546) + 0.5))  # roundf(float)
  pi_div_2r = np.pi / (2.0 * radius)
  omega = (pi_div_2r, 3.0 * pi_div_2r, 5.0 * pi_div_2r)
  p1 = +1.0 / np.tan(0.5 * omega[0])
  p3 = -1.0 / np.tan(0.5 * omega[1])
  p5 = +1.0 / np.tan(0.5 * omega[2])
  r1 = +p1 * p1 / np.sin(omega[0])
  r3 = -p3 * p3 / np.sin(omega[1])
  r5 = +p5 * p5 / np.sin(omega[2])
  neg_half_sigma2 = -0.5 * sigma * sigma
  recip_radius = 1.0 / radius
  rho = [np.exp(neg_half_sigma2 * w * w) * recip_radius for w in omega]
  d13 = p1 * r3 - r1 * p3
  d35 = p3 * r5 - r3 * p5
  d51 = p5 * r1 - r5 * p1
  recip_d13 = 1.0 / d13
  zeta15 = d35 * recip_d13
  zeta35 = d51 * recip_d13
  a = [p1, p3, p5, r1, r3, r5, zeta15, zeta35, 1.0]
  # linalg.h Inv3x3Matrix.
  t = [a[4] * a[8] - a[5] * a[7], a[2] * a[7] - a[1] * a[8], a[1] * a[5] - a[2] * a[4],
       a[5] * a[6] - a[3] * a[8], a[0] * a[8] - a[2] * a[6], a[2] * a[3] - a[0] * a[5],
       a[3] * a[7] - a[4] * a[6], a[1] * a[6] - a[0] * a[7], a[0] * a[4] - a[1] * a[3]]
  det = a[0] * t[0] + a[1] * t[3] + a[2] * t[6]
  idet = 1.0 / det
  inv = [v * idet for v in t]
  gamma = (1.0, radius * radius - sigma * sigma, zeta15 * rho[0] + zeta35 * rho[1] + rho[2])
  beta = []
  for y in range(3):  # linalg.h MatMul
    e = 0.0
    for z in range(3):
      e += inv[y * 3 + z] * gamma[z]
    beta.append(e)
  n2, d1, mul_in, mul_prev, mul_prev2 = [], [], [], [], []
  for i in range(3):
    n2i = -beta[i] * np.cos(omega[i] * (radius + 1.0))
    d1i = -2.0 * np.cos(omega[i])
    d_2 = d1i * d1i
    n2.append(n2i)
    d1.append(d1i)
    mul_prev.append((-d1i, d_2 - 1.0, -d_2 * d1i + 2.0 * d1i, d_2 * d_2 - 3.0 * d_2 + 1.0))
    mul_prev2.append((-1.0, d1i, -d_2 + 1.0, d_2 * d1i - 2.0 * d1i))
    mul_in.append((n2i, -d1i * n2i, d_2 * n2i - n2i, -d_2 * d1i * n2i + 2.0 * d1i * n2i))
  f32 = lambda v: np.asarray(v, np.float64).astype(np.float32)  # noqa: E731
  return dict(radius=int(radius), n2=f32(n2), d1=f32(d1), mul_in=f32(mul_in),
              mul_prev=f32(mul_prev), mul_prev2=f32(mul_prev2))


_RG = _recursive_gaussian(1.5)
assert _RG["radius"] == 5


# ------------------------------------------------------------------------------------------
# Elementwise pieces.


@jax.custom_jvp
def _no_fma(p: jax.Array, fallback: jax.Array) -> jax.Array:
  """Returns the product `p`, rounded to float32 on its own (`fallback` only where p is NaN).

  XLA lets LLVM contract `a * b + c` into a fused multiply-add (one rounding). The reference
  fuses only where libjxl writes `MulAdd`/`NegMulAdd`; elsewhere it rounds the product first.
  Passing the product through a select the compiler cannot fold keeps it out of any FMA.
  The derivative is the identity in `p` (no residuals are saved for it).
  """
  return jnp.where(jnp.isnan(p), fallback, p)


@_no_fma.defjvp
def _no_fma_jvp(primals, tangents):
  return _no_fma(*primals), tangents[0]


def _srgb_to_linear(v: jax.Array) -> jax.Array:
  """libjxl sRGB EOTF approximation, any shape, float32; odd-symmetric like the reference."""
  sign = jnp.where(v < 0, _F32(-1.0), _F32(1.0))
  x = v * sign  # |v|, with derivative 1 at v = 0
  yp = jnp.full_like(x, _SRGB_P[4])
  yq = jnp.full_like(x, _SRGB_Q[4])
  for k in (3, 2, 1, 0):  # Horner with MulAdd
    yp = yp * x + _SRGB_P[k]
    yq = yq * x + _SRGB_Q[k]
  poly = yp / yq
  low = x * _SRGB_LOW_DIV_INV
  return sign * jnp.where(x > _SRGB_THRESH, poly, low)


def _cbrt_newton(x: jax.Array) -> jax.Array:
  """libjxl `CubeRootAndAdd` core: r ~= x^(-1/3) for x >= 0 (r = 0 at x = 0)."""
  k1_3 = _F32(1.0) / _F32(3.0)
  k4_3 = _F32(4.0) / _F32(3.0)
  xa_3 = k1_3 * x
  m1 = jax.lax.bitcast_convert_type(x, jnp.int32)
  m2 = jnp.where(m1 == 0, jnp.int32(0),
                 jnp.int32(0x54800000) - jax.lax.shift_right_logical(m1, jnp.int32(23))
                 * jnp.int32(0x002AAAAA))
  r = jax.lax.bitcast_convert_type(m2, jnp.float32)
  for _ in range(3):
    r2 = r * r
    # NegMulAdd(xa_3, r2^2, k4_3 * r): only the r2^2 product is fused.
    r = _no_fma(k4_3 * r, r) - xa_3 * (r2 * r2)
  r2 = r * r
  return k1_3 * (r - x * (r2 * r2)) + r  # MulAdd(1/3, NegMulAdd(x, r2^2, r), r)


@jax.custom_jvp
def _cube_root_and_add(x: jax.Array) -> jax.Array:
  """cbrt(x) - cbrt(bias) for x >= 0 as libjxl computes it; derivative r^2 / 3 (0 at x = 0)."""
  r = _cbrt_newton(x)
  return (r * r) * x + _NEG_BIAS_CBRT  # MulAdd(r^2, x, add)


@_cube_root_and_add.defjvp
def _cube_root_and_add_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  r = _cbrt_newton(x)
  y = (r * r) * x + _NEG_BIAS_CBRT
  # d cbrt(x) / dx = x^(-2/3) / 3 = r^2 / 3: finite for x > 0, and 0 where x == 0 (r == 0).
  return y, dx * ((r * r) * _F32(1.0 / 3.0))


def _linear_to_positive_xyb(lin: jax.Array) -> jax.Array:
  """Linear RGB planes `(..., 3, H, W)` -> SSIMULACRA 2's positive XYB planes, same shape."""
  r, g, b = lin[..., 0, :, :], lin[..., 1, :, :], lin[..., 2, :, :]
  mixed = []
  for row in _OPSIN:
    # MulAdd(m0, r, MulAdd(m1, g, MulAdd(m2, b, bias))), clamped at 0.
    m = row[0] * r + (row[1] * g + (row[2] * b + _OPSIN_BIAS))
    mixed.append(_cube_root_and_add(jnp.maximum(m, _F32(0.0))))
  half = _F32(0.5)
  x = half * (mixed[0] - mixed[1])
  y = half * (mixed[0] + mixed[1])
  bb = mixed[2]
  # MakePositiveXYB (plain C++: products rounded before the adds).
  bp = (bb - y) + _F32(0.55)
  xp = _no_fma(x * _F32(14.0), x) + _F32(0.42)
  yp = y + _F32(0.01)
  return jnp.stack([xp, yp, bp], axis=-3)


def _downsample(lin: jax.Array) -> jax.Array:
  """2x2 box average of `(..., H, W)` -> `(..., ceil(H/2), ceil(W/2))`, edges replicated."""
  h, w = lin.shape[-2], lin.shape[-1]
  if h % 2 or w % 2:
    pad = [(0, 0)] * (lin.ndim - 2) + [(0, h % 2), (0, w % 2)]
    lin = jnp.pad(lin, pad, mode="edge")
  a00 = lin[..., 0::2, 0::2]
  a01 = lin[..., 0::2, 1::2]
  a10 = lin[..., 1::2, 0::2]
  a11 = lin[..., 1::2, 1::2]
  return (((a00 + a01) + a10) + a11) * _F32(0.25)


# ------------------------------------------------------------------------------------------
# libjxl recursive Gaussian, float32, same order of operations, on a canvas of all scales.
#
# All scales are blurred at once: the planes of scale s (H_s x W_s) are placed in a canvas of
# width W (the full width) at rows o_s .. o_s + H_s - 1, zero-padded on the right, with 2N = 10
# zero rows between scales. Horizontally every canvas row is a line of its own, whose true
# width W_s decides where the reference switches between its 1-output and 4-output arithmetic;
# vertically the recursion state is reset at the start of each scale's rows. Outputs outside
# the images are discarded. This gives exactly the reference's per-scale results with 2 scans
# in total, which keeps compile times (and GPU step counts) low.


def _scale_sizes(h: int, w: int) -> list[tuple[int, int]]:
  """Image sizes of the scales the reference computes (the loop in ComputeSSIMULACRA2)."""
  sizes = []
  for scale in range(_NUM_SCALES):
    if h < _MIN_SIZE or w < _MIN_SIZE:
      break
    if scale:
      h, w = (h + 1) // 2, (w + 1) // 2
    sizes.append((h, w))
  return sizes


def _canvas_layout(h: int, w: int) -> tuple[list[tuple[int, int]], list[int], int]:
  """Scale sizes, their first canvas rows, and the canvas height."""
  gap = 2 * _RG["radius"]
  sizes = _scale_sizes(h, w)
  offsets, row = [], 0
  for hs, _ in sizes:
    offsets.append(row)
    row += hs + gap
  return sizes, offsets, row - gap


def _tap_sums(xt: jax.Array) -> jax.Array:
  """`(L, ...)` lines -> `(L + N - 1, ...)`: sum_n = in[n - N - 1] + in[n + N - 1], n >= -N+1.

  Samples outside the line are 0 (the reference's zero padding; x + 0 == x in float32).
  """
  n_rad = _RG["radius"]
  length = xt.shape[0]
  zeros = jnp.zeros((2 * n_rad,) + xt.shape[1:], xt.dtype)
  padded = jnp.concatenate([zeros, xt, zeros], axis=0)  # in[i] at padded[i + 2N]
  count = length + n_rad - 1
  return padded[0:count] + padded[2 * n_rad:2 * n_rad + count]


def _blur_lines_horizontal(xt: jax.Array, line_w: np.ndarray) -> jax.Array:
  """libjxl `FastGaussian1D` along axis 0 of `(W, *L)` -> `(W, *L)`.

  line_w: int array broadcastable to L, the true width of each line (zeros follow it).
  The reference computes outputs n = -N+1 .. W_line - 1 (N = 5; kept for n >= 0) in three
  phases with different float32 arithmetic: one output per step for n < 8 (each k in {1,3,5}:
  out = MulAdd(-d1, prev, MulAdd(-1, prev2, sum * n2))), then 4 outputs per step while
  n < W_line - 7 (unrolled with precomputed powers `mul_in`, `mul_prev`, `mul_prev2`), then one
  per step again; output = out_1 + (out_3 + out_5). Each scan step here covers 4 consecutive n
  and picks, per line, the arithmetic the reference uses there.
  """
  n_rad = _RG["radius"]
  w = xt.shape[0]
  lshape = xt.shape[1:]
  ones = (1,) * len(lshape)
  n_first = -n_rad + 1
  steps = -(-(w - n_first) // 4)
  sums = _tap_sums(xt)  # row i is n = i + n_first
  sums = jnp.concatenate([sums, jnp.zeros((4 * steps - (w - n_first),) + lshape, xt.dtype)])
  sums = sums.reshape((steps, 4) + lshape)
  n0 = jnp.asarray(4 * np.arange(steps, dtype=np.int32) + n_first)  # first n of each step
  line_w = jnp.asarray(np.asarray(line_w, np.int32))
  first_aligned = -(-(n_rad + 1) // 4) * 4  # RoundUpTo(N + 1, 4) = 8
  mul_in = _RG["mul_in"]  # [k][lane]
  n2 = jnp.asarray(mul_in[:, 0]).reshape((3,) + ones)
  mp0 = jnp.asarray(_RG["mul_prev"][:, 0]).reshape((3,) + ones)
  lanes = np.zeros((4, 4, 3), np.float32)  # [i][j][k] = mul_in[k][j - i], 0 for j < i
  for i in range(4):
    for j in range(i, 4):
      lanes[i, j] = mul_in[:, j - i]
  lanes = [jnp.asarray(lanes[i]).reshape((4, 3) + ones) for i in range(4)]
  mprev = jnp.asarray(_RG["mul_prev"].T).reshape((4, 3) + ones)
  mprev2 = jnp.asarray(_RG["mul_prev2"].T).reshape((4, 3) + ones)

  def step(carry, inputs):
    prev, prev2 = carry  # (3, *L): outputs n - 1 and n - 2 of the k = 1, 3, 5 filters
    s, n = inputs  # s: (4, *L) tap sums of n .. n + 3
    # One output at a time.
    p, p2, single = prev, prev2, []
    for j in range(4):
      out = _no_fma(s[j] * n2, s[j]) - p2
      out = mp0 * p + out
      p, p2 = out, p
      single.append(out)
    single = jnp.stack(single, axis=0)  # (4 lanes, 3, *L)
    # Four at a time: lane j = sum_0 mul_in[j] (rounded), MulAdd(mul_in[j - i], sum_i, .)
    # for i = 1..3, then MulAdd(mul_prev2[j], prev2, .) and MulAdd(mul_prev[j], prev, .).
    block = _no_fma(lanes[0] * s[0], s[0])
    for i in range(1, 4):
      block = lanes[i] * s[i] + block
    block = mprev2 * prev2 + block
    block = mprev * prev + block
    is_block = (n >= first_aligned) & (n < line_w - n_rad + 1 - 3)
    out = jnp.where(is_block, block, single)
    return (out[3], out[2]), out[:, 0] + (out[:, 1] + out[:, 2])

  init = (jnp.zeros((3,) + lshape, xt.dtype), jnp.zeros((3,) + lshape, xt.dtype))
  _, ys = jax.lax.scan(step, init, (sums, n0))
  return ys.reshape((4 * steps,) + lshape)[-n_first:-n_first + w]


def _blur_lines_vertical(xt: jax.Array, reset: np.ndarray) -> jax.Array:
  """libjxl `FastGaussianVertical` along axis 0 of `(H, *L)` -> `(H, *L)`.

  One output per step: y_k(n) = MulAdd(n2_k, sum_n, NegMulSub(d1_k, y_k(n-1), y_k(n-2)))
  = n2 sum + (-d1 y(n-1) - y(n-2)), output y_1 + (y_3 + y_5), for n = -N+1 .. H-1.
  reset: bool `(H + N - 1,)`, zero the state before that step (start of a scale's rows).
  """
  n_rad = _RG["radius"]
  ones = (1,) * (xt.ndim - 1)
  sums = _tap_sums(xt)
  n2 = jnp.asarray(_RG["n2"]).reshape((3,) + ones)
  neg_d1 = jnp.asarray(-_RG["d1"]).reshape((3,) + ones)

  def step(carry, inputs):
    y1, y2 = carry
    s, r = inputs
    y1 = jnp.where(r, _F32(0.0), y1)
    y2 = jnp.where(r, _F32(0.0), y2)
    t = neg_d1 * y1 - y2
    y = n2 * s + t
    return (y, y1), y[0] + (y[1] + y[2])

  zeros = jnp.zeros((3,) + xt.shape[1:], xt.dtype)
  _, ys = jax.lax.scan(step, (zeros, zeros), (sums, jnp.asarray(reset)))
  return ys[n_rad - 1:]


def _scale_resets(h_c: int, offsets: list[int]) -> np.ndarray:
  """`(H_c + N - 1,)` bool: the vertical steps that start a scale (step n = o - N + 1 for a
  scale's first row o), where the recursion state is zeroed."""
  reset = np.zeros((h_c + _RG["radius"] - 1,), bool)
  reset[offsets[1:]] = True
  return reset


def _blur_canvas(x: jax.Array, row_w: np.ndarray, offsets: list[int]) -> jax.Array:
  """libjxl `FastGaussian` (sigma 1.5) of canvas planes `(P, H_c, W)`, each scale separately.

  row_w: `(H_c,)` true width of each canvas row (0 in the gaps); offsets: first row of each
  scale. Returns `(P, H_c, W)`; values outside the scales' images are garbage.
  """
  h_c = x.shape[1]
  rows = jnp.transpose(x, (2, 0, 1))  # (W, P, H_c): every (plane, row) is a line
  tmp = _blur_lines_horizontal(rows, row_w)
  cols = jnp.transpose(tmp, (2, 1, 0))  # (H_c, P, W)
  out = _blur_lines_vertical(cols, _scale_resets(h_c, offsets))
  return jnp.transpose(out, (1, 0, 2))


# ------------------------------------------------------------------------------------------
# Maps, pooling, score.


def _safe_fourth_root(m: jax.Array) -> jax.Array:
  """m^(1/4) for m >= 0 with a finite (zero) gradient at m == 0."""
  pos = m > 0
  safe = jnp.where(pos, m, _F32(1.0))
  return jnp.where(pos, jnp.sqrt(jnp.sqrt(safe)), _F32(0.0))


def _error_maps(img1: jax.Array, img2: jax.Array, blurred: jax.Array) -> jax.Array:
  """XYB planes `(..., H, W)` x2 and their 5 blurs `(5, ..., H, W)` -> `(..., 3 maps, H, W)`.

  Maps: 1 - SSIM' (ssimulacra2.cc SSIMMap), artifact and detail loss (EdgeDiffMap).
  Zero where all inputs are zero (outside the images on the canvas).
  """
  s11, s22, s12, mu1, mu2 = (blurred[i] for i in range(5))
  mu11 = _no_fma(mu1 * mu1, mu1)
  mu22 = _no_fma(mu2 * mu2, mu2)
  mu12 = _no_fma(mu1 * mu2, mu1)
  diff = mu1 - mu2
  num_m = _F32(1.0) - _no_fma(diff * diff, diff)
  num_s = _F32(2.0) * (s12 - mu12) + _C2
  denom_s = (s11 - mu11) + (s22 - mu22) + _C2
  ssim_d = jnp.maximum(_F32(1.0) - (num_m * num_s / denom_s), _F32(0.0))
  # (1 + e2) / (1 + e1) - 1, which the reference evaluates in double, as (e2 - e1) / (1 + e1):
  # the same number without float32 cancellation.
  e1 = jnp.abs(img1 - mu1)
  e2 = jnp.abs(img2 - mu2)
  ratio = (e2 - e1) / (_F32(1.0) + e1)
  artifact = jnp.maximum(ratio, _F32(0.0))
  detail_lost = jnp.maximum(-ratio, _F32(0.0))
  return jnp.stack([ssim_d, artifact, detail_lost], axis=-3)


def _score_from_values(values: jax.Array) -> jax.Array:
  """`(B, n_scales, 3 channels, 2 norms, 3 maps)` pooled values -> `(B,)` (Msssim::Score)."""
  n_scales = values.shape[1]
  # Reference order: channel, scale, norm, map; the weight index runs over computed scales.
  v = jnp.transpose(values, (0, 2, 1, 3, 4)).reshape(values.shape[0], n_scales * 18)
  w = jnp.asarray(np.asarray(_WEIGHTS[:n_scales * 18], np.float32))
  x = jnp.sum(w * jnp.abs(v), axis=-1) * _F32(_SCORE_SCALE)
  x = _F32(_POLY[0]) * x + _F32(_POLY[1]) * x * x + _F32(_POLY[2]) * x * x * x
  pos = x > 0
  safe = jnp.where(pos, x, _F32(1.0))
  return jnp.where(pos, _F32(100.0) - _F32(10.0) * safe ** _F32(_EXPONENT), _F32(100.0))


def _xyb_canvas(img: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(B, H, W, 3)` float32 sRGB -> (its positive XYB at every scale on the canvas
  `(B, 3, H_c, W)`, zero outside the scales' images; the `(H_c, W)` inside mask)."""
  b, h, w = img.shape[:3]
  sizes, offsets, h_c = _canvas_layout(h, w)
  gap = 2 * _RG["radius"]
  lin = _srgb_to_linear(jnp.moveaxis(img, -1, -3))  # (B, 3, H, W)
  parts = []
  for scale, (hs, ws) in enumerate(sizes):
    if scale:
      lin = _downsample(lin)
      parts.append(jnp.zeros((b, 3, gap, w), jnp.float32))
    parts.append(jnp.pad(lin, ((0, 0), (0, 0), (0, 0), (0, w - ws))))
  canvas = jnp.concatenate(parts, axis=2)
  inside = _inside(h, w)
  return jnp.where(inside, _linear_to_positive_xyb(canvas), _F32(0.0)), inside


def _row_widths(h: int, w: int) -> np.ndarray:
  """`(H_c,)` true width of each canvas row (0 in the gaps between scales)."""
  sizes, offsets, h_c = _canvas_layout(h, w)
  row_w = np.zeros((h_c,), np.int32)
  for (hs, ws), o in zip(sizes, offsets):
    row_w[o:o + hs] = ws
  return row_w


def _inside(h: int, w: int) -> jax.Array:
  """`(H_c, W)` bool: the canvas samples inside the scales' images."""
  return jnp.asarray(np.arange(w)[None, :] < _row_widths(h, w)[:, None])


def _blurred(planes: list[jax.Array], h: int, w: int, inside: jax.Array) -> jax.Array:
  """FastGaussian of canvas planes `[(B, 3, H_c, W), ...]` -> `(len, B, 3, H_c, W)`, zero
  outside the images. (Each line is blurred on its own: blurring planes in one call or in
  several gives the same numbers.)"""
  _, offsets, h_c = _canvas_layout(h, w)
  stack = jnp.stack(planes, axis=0)
  blurred = _blur_canvas(stack.reshape(-1, h_c, w), _row_widths(h, w), offsets)
  return jnp.where(inside, blurred.reshape(stack.shape), _F32(0.0))


def _reference_planes(reference: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(B, H, W, 3)` sRGB reference -> its XYB canvas, the inside mask and its two planes to
  blur `(2, B, 3, H_c, W)` (squared, plain)."""
  img1, inside = _xyb_canvas(reference)
  return img1, inside, jnp.stack([_no_fma(img1 * img1, img1), img1])


@jax.jit
def _reference_side(reference: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(B, H, W, 3)` sRGB reference -> its XYB canvas, blurred square and blurred XYB: the half
  of the metric that does not depend on the distorted image."""
  h, w = reference.shape[1:3]
  img1, inside, planes = _reference_planes(reference)
  s11, mu1 = _blurred(list(planes), h, w, inside)
  return img1, s11, mu1


def _distorted_planes(img1: jax.Array, distorted: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The reference's XYB canvas and `(B, H, W, 3)` distorted images -> (their XYB canvas, the
  three planes to blur, `(3, B, 3, H_c, W)`: squared, product with the reference, plain)."""
  img2, _ = _xyb_canvas(distorted)
  return img2, jnp.stack([_no_fma(img2 * img2, img2), _no_fma(img1 * img2, img1), img2])


def _scores(img1: jax.Array, img2: jax.Array, s11: jax.Array, mu1: jax.Array,
            blurred: jax.Array, h: int, w: int) -> jax.Array:
  """Both XYB canvases, the reference's blurs and the distorted side's three blurs (any values
  outside the images) -> `(B,)` scores: maps, 1- and 4-norm pooling per scale, the score."""
  sizes, offsets, _ = _canvas_layout(h, w)
  inside = _inside(h, w)
  s22, s12, mu2 = (jnp.where(inside, b, _F32(0.0)) for b in blurred)
  maps = _error_maps(img1, img2, jnp.stack([s11, s22, s12, mu1, mu2]))  # (B, 3, 3, H_c, W)
  m2 = maps * maps
  row1 = jnp.sum(maps, axis=-1)  # (B, 3, 3, H_c)
  row4 = jnp.sum(m2 * m2, axis=-1)
  values = []
  for (hs, ws), o in zip(sizes, offsets):
    inv = _F32(1.0 / (hs * ws))
    n1 = jnp.sum(row1[..., o:o + hs], axis=-1) * inv
    n4 = _safe_fourth_root(jnp.sum(row4[..., o:o + hs], axis=-1) * inv)
    values.append(jnp.stack([n1, n4], axis=-2))  # (B, 3 channels, 2 norms, 3 maps)
  return _score_from_values(jnp.stack(values, axis=1))


@jax.jit
def _against_reference(img1: jax.Array, s11: jax.Array, mu1: jax.Array,
                       distorted: jax.Array) -> jax.Array:
  """`_reference_side`'s arrays and `(B, H, W, 3)` sRGB distorted images -> `(B,)` scores."""
  h, w = distorted.shape[1:3]
  img2, planes = _distorted_planes(img1, distorted)
  _, offsets, h_c = _canvas_layout(h, w)
  blurred = _blur_canvas(planes.reshape(-1, h_c, w), _row_widths(h, w), offsets)
  return _scores(img1, img2, s11, mu1, blurred.reshape(planes.shape), h, w)




def _blur_compiled(planes: jax.Array, h: int, w: int) -> np.ndarray:
  """`_blur_canvas` of canvas planes `(..., H_c, W)` as compiled loops (`djpeg.recursive_gaussian`):
  the same numbers, bit for bit, several times faster on a CPU. Concrete arrays only."""
  planes = np.asarray(planes)
  return _blur_moments_compiled(planes, planes, [recursive_gaussian.PLAIN], h, w, 0)[0]


def _blur_moments_compiled(a: np.ndarray, b: np.ndarray, kinds, h: int, w: int,
                           first_rows) -> np.ndarray:
  """The blurs of the planes each of `kinds` (K of `recursive_gaussian.SQUARE`, `PRODUCT`,
  `PLAIN`) makes of canvases `a`, `b` `(..., H_c, W)`: `(K, ..., H_c, W)` (the squares and
  products formed in the blur's transposes, not stored). `first_rows` (broadcast to `(K, ...)`):
  the canvas row each plane's blur starts at; the rows above it are 0."""
  _, offsets, h_c = _canvas_layout(h, w)
  lead = np.shape(b)[:-2]
  a = np.ascontiguousarray(a, np.float32).reshape(-1, h_c, w)
  b = np.ascontiguousarray(b, np.float32).reshape(-1, h_c, w)
  kinds = np.repeat(np.asarray(kinds, np.int64), b.shape[0])
  # A writable copy, never the read-only broadcast view: that is another type to numba, and
  # would compile `blur_moments` a second time on first use after installing.
  first = np.array(np.broadcast_to(np.asarray(first_rows, np.int64),
                                   (len(kinds) // b.shape[0],) + lead))
  blurred = recursive_gaussian.blur_moments(
      a, b, kinds, _row_widths(h, w), _scale_resets(h_c, offsets),
      first.reshape(-1), _RG["n2"], _RG["d1"], _RG["mul_in"],
      _RG["mul_prev"], _RG["mul_prev2"])
  return blurred.reshape((-1,) + lead + (h_c, w))


def _ssim_weighted(n_scales: int) -> np.ndarray:
  """`(3, n_scales)` bool: whether the score weighs channel c's SSIM map at scale s (both
  norms' weights; at full scale X and B have none, so their blurred square and product with
  the reference are never needed there)."""
  w = np.asarray(_WEIGHTS[:n_scales * 18]).reshape(3, n_scales, 2, 3)
  return np.any(w[..., 0] != 0, axis=-1)


def _ssim_first_rows(h: int, w: int) -> np.ndarray:
  """`(3,)` per channel the first canvas row of the first scale whose SSIM map is weighed (H_c
  if none): the second-moment planes are blurred from there."""
  _, offsets, h_c = _canvas_layout(h, w)
  weighted = _ssim_weighted(len(offsets))
  return np.asarray([offsets[int(np.argmax(row))] if row.any() else h_c for row in weighted],
                    np.int64)


def _xyb_canvas_compiled(img) -> np.ndarray:
  """`_xyb_canvas` as compiled loops (`djpeg.error_maps.xyb_canvas`): the same numbers as the
  jitted function, bit for bit. Concrete arrays only; uint8 images as the reference reads
  them (`_from_8bit`), through a table of linear light."""
  sizes, offsets, h_c = _canvas_layout(*np.shape(img)[1:3])
  layout = (np.asarray(offsets, np.int64), np.asarray([hs for hs, _ in sizes], np.int64),
            np.asarray([ws for _, ws in sizes], np.int64), h_c)
  xyb = (np.asarray(_OPSIN, _F32), _OPSIN_BIAS, _NEG_BIAS_CBRT)
  srgb = (np.asarray(_SRGB_P, _F32), np.asarray(_SRGB_Q, _F32), _SRGB_THRESH, _SRGB_LOW_DIV_INV)
  if np.dtype(img.dtype) == np.uint8:
    global _LINEAR_LUT
    if _LINEAR_LUT is None:
      _LINEAR_LUT = error_maps.linear_lut(*srgb)
    pixels = np.ascontiguousarray(img).view()
    pixels.flags.writeable = False     # one numba type for every caller's array (`codec`)
    return error_maps.xyb_canvas_8bit(pixels, _LINEAR_LUT, *layout, *xyb)
  return error_maps.xyb_canvas(np.asarray(img, np.float32), *layout, *srgb, *xyb)


_LINEAR_LUT = None


def _reference_side_compiled(reference: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`_reference_side` as compiled loops (XYB, blur), numpy arrays."""
  h, w = reference.shape[1:3]
  img1 = _xyb_canvas_compiled(reference)
  first = np.stack([_ssim_first_rows(h, w), np.zeros(3, np.int64)])[:, None, :]
  s11, mu1 = _blur_moments_compiled(img1, img1, [recursive_gaussian.SQUARE,
                                                 recursive_gaussian.PLAIN], h, w, first)
  _zero_outside(s11, h, w)
  _zero_outside(mu1, h, w)
  return img1, s11, mu1


def _zero_outside(x: np.ndarray, h: int, w: int) -> None:
  """Sets canvas planes `(..., H_c, W)` to 0 outside the scales' images, in place (as
  `jnp.where(_inside(h, w), x, 0)`, by slices: a boolean mask took about 15 ms on a Kodak
  image)."""
  sizes, offsets, h_c = _canvas_layout(h, w)
  for (hs, ws), top, end in zip(sizes, offsets, offsets[1:] + [h_c]):
    x[..., top:top + hs, ws:] = 0.0
    x[..., top + hs:end, :] = 0.0


def _against_reference_compiled(img1: np.ndarray, s11: np.ndarray, mu1: np.ndarray,
                                distorted: jax.Array) -> np.ndarray:
  """`_against_reference` as compiled loops: XYB, blur, and the error maps pooled in double as
  the reference program does (`djpeg.error_maps`; within about 1e-5 of the XLA scores)."""
  h, w = distorted.shape[1:3]
  img1, s11, mu1 = (np.asarray(a) for a in (img1, s11, mu1))
  img2 = _xyb_canvas_compiled(distorted)
  ssim_first = _ssim_first_rows(h, w)
  first = np.stack([ssim_first, ssim_first, np.zeros(3, np.int64)])[:, None, :]
  s22, s12, mu2 = _blur_moments_compiled(
      img1, img2, [recursive_gaussian.SQUARE, recursive_gaussian.PRODUCT,
                   recursive_gaussian.PLAIN], h, w, first)
  sizes, offsets, _ = _canvas_layout(h, w)
  values = error_maps.pooled_values(
      img1, img2, s11, s22, s12, mu1, mu2, np.asarray(offsets, np.int64),
      np.asarray([hs for hs, _ in sizes], np.int64), np.asarray([ws for _, ws in sizes], np.int64),
      _ssim_weighted(len(offsets)))
  scores = error_maps.score_from_values(values, np.asarray(_WEIGHTS, np.float64), _SCORE_SCALE,
                                        _POLY, _EXPONENT)
  return scores.astype(np.float32)


def _use_compiled(*arrays) -> bool:
  """Whether the compiled loops can serve: concrete arrays (not under `jit` or `grad`) in host
  memory, numpy arrays or JAX arrays on a CPU (others would travel to the host and back).
  Asking the arrays, not JAX's default device, starts no XLA runtime for numpy inputs."""
  for a in arrays:
    if isinstance(a, jax.core.Tracer):
      return False
    if isinstance(a, jax.Array) and any(d.platform != "cpu" for d in a.devices()):
      return False
  return True


@jax.jit
def _ssimulacra2_batch(reference: jax.Array, distorted: jax.Array) -> jax.Array:
  """`(B, H, W, 3)` float32 sRGB pair -> `(B,)` scores."""
  return _against_reference(*_reference_side(reference), distorted)


# ------------------------------------------------------------------------------------------
# Public API.


def _check_image(name: str, x):
  """Validates one input `(..., H, W, C)`: a float32 jax array, or a uint8 numpy array."""
  dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
  eight_bit = dtype == np.uint8
  if not (eight_bit or jnp.issubdtype(dtype, jnp.floating)):  # float16/32/64 and bfloat16
    raise ValueError(
        f"ssimulacra2: {name} must be an 8-bit image (uint8) or a floating-point image in "
        f"[0, 1], got dtype {dtype}")
  shape = tuple(np.shape(x))
  if len(shape) < 3 or shape[-1] not in (1, 3):
    raise ValueError(
        f"ssimulacra2: {name} must have shape (..., H, W, 3) or (..., H, W, 1), got {shape}")
  if shape[-3] < _MIN_SIZE or shape[-2] < _MIN_SIZE:
    raise ValueError(
        f"ssimulacra2: minimum image size is {_MIN_SIZE}x{_MIN_SIZE} pixels, {name} is "
        f"{shape[-2]}x{shape[-3]} (W x H)")
  if eight_bit:
    return x if isinstance(x, jax.core.Tracer) else np.asarray(x)
  if not isinstance(x, jax.core.Tracer):
    if isinstance(x, jax.Array):
      # A concrete array closed over by a jitted function: evaluated now, not staged.
      with jax.ensure_compile_time_eval():
        finite = bool(jnp.all(jnp.isfinite(x)))
        lo, hi = (float(v) for v in (jnp.min(x), jnp.max(x))) if finite else (0.0, 0.0)
    else:
      arr = np.asarray(x)
      finite = bool(np.all(np.isfinite(arr)))
      lo, hi = (float(arr.min()), float(arr.max())) if finite else (0.0, 0.0)
    if not finite:
      raise ValueError(f"ssimulacra2: {name} contains NaN or infinite values")
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
      raise ValueError(
          f"ssimulacra2: {name} values must be in [0, 1] (sRGB), got range [{lo:g}, {hi:g}]")
  return jnp.asarray(x, jnp.float32)


def _from_8bit(x):
  """A checked input as float32 in [0, 1]: uint8 as the reference program reads 8-bit files,
  u8 * float32(1 / 255) (outside any compiled function: fused into one, the scaling would
  round differently and move scores by up to 0.01)."""
  if np.dtype(x.dtype) != np.uint8:
    return x
  if isinstance(x, jax.core.Tracer):
    return x.astype(jnp.float32) * _F32(1 / 255)
  return jnp.asarray(np.asarray(x).astype(np.float32) * np.float32(1 / 255))


def _flat_rgb(x):
  """Checked `(..., H, W, C)` images -> `(B, H, W, 3)`, gray repeated to RGB as the reference
  program reads gray PNGs (numpy arrays stay numpy arrays)."""
  xp = np if isinstance(x, np.ndarray) else jnp
  h, w, c = x.shape[-3:]
  x = x.reshape((-1, h, w, c))
  return xp.repeat(x, 3, axis=-1) if c == 1 else x


@dataclasses.dataclass(frozen=True)
class Ssimulacra2Reference:
  """A reference image's half of SSIMULACRA 2, computed once (`ssimulacra2_reference`) for
  scoring many distorted versions of it (`ssimulacra2_against`): an encoder's search scores
  several candidates of one image. About 12 float32 values per pixel and scale-canvas row.

  Attributes:
    shape: the reference's shape `(..., H, W, C)` as given.
    arrays: its XYB canvas, blurred square and blurred XYB, `(B, 3, H_c, W)` each (numpy arrays
      when made by the compiled loops on a CPU).
  """
  shape: tuple[int, ...]
  arrays: tuple[jax.Array | np.ndarray, jax.Array | np.ndarray, jax.Array | np.ndarray]


def ssimulacra2_reference(reference: jax.Array) -> Ssimulacra2Reference:
  """Prepares `reference` (as for `ssimulacra2`) for `ssimulacra2_against` (with the compiled
  blur for concrete arrays on a CPU, as there)."""
  reference = _check_image("reference", reference)
  if _use_compiled(reference):
    arrays = _reference_side_compiled(_flat_rgb(reference))
  else:
    arrays = _reference_side(_flat_rgb(_from_8bit(reference)))
  return Ssimulacra2Reference(tuple(reference.shape), arrays)


def ssimulacra2_against(reference: Ssimulacra2Reference, distorted: jax.Array) -> jax.Array:
  """`ssimulacra2(r, distorted)` for a reference prepared by `ssimulacra2_reference(r)`: the
  same scores, the reference's half computed once. Not differentiable when the
  inputs are concrete arrays on a CPU: the metric then runs as compiled loops
  (`djpeg.error_maps`, `djpeg.recursive_gaussian`: the same XYB and blurs bit for bit, the
  reference program's double sums, within about 1e-5 points; several times faster); traced inputs
  (under `jit` or `grad`) and other devices take the scans. The scores come back as numpy
  float32 when `distorted` is a numpy array and the compiled loops served (no XLA runtime is
  started), else as a JAX array."""
  distorted = _check_image("distorted", distorted)
  if tuple(distorted.shape) != reference.shape:
    raise ValueError(
        f"ssimulacra2: image shapes differ: reference {reference.shape}, "
        f"distorted {tuple(distorted.shape)}")
  if _use_compiled(distorted, *reference.arrays):
    scores = _against_reference_compiled(*reference.arrays, _flat_rgb(distorted))
    if not isinstance(distorted, np.ndarray):
      scores = jnp.asarray(scores)
  else:
    scores = _against_reference(*reference.arrays, _flat_rgb(_from_8bit(distorted)))
  return scores.reshape(reference.shape[:-3])


def ssimulacra2(reference: jax.Array, distorted: jax.Array) -> jax.Array:
  """SSIMULACRA 2.1 score of `distorted` against `reference` (100 = identical).

  Args:
    reference: sRGB image(s), float in [0, 1] or uint8 (read as the reference program reads
      8-bit files), shape `(..., H, W, 3)` or `(..., H, W, 1)` (gray, repeated to 3 channels
      like the reference program does for gray PNGs); H, W >= 8.
    distorted: same shape as `reference`.

  Returns:
    float32 scores of shape `(...)` (the batch shape). Differentiable with respect to float
    images; works under `jax.jit`, `jax.vmap` and `jax.grad`. For 8-bit images (uint8, or
    converted as `u8.astype(np.float32) * np.float32(1 / 255)`) the scores equal the reference
    program's (`ssimulacra2 ref.png dist.png`) to about 1e-5 on CPU.

  Raises:
    ValueError: for dtypes other than floats and uint8, wrong rank or channel count,
      images under 8x8, mismatched shapes and, when the values are concrete (not traced),
      NaN/inf values or values outside [0, 1] by more than 1e-6.
  """
  reference = _check_image("reference", reference)
  distorted = _check_image("distorted", distorted)
  if reference.shape != distorted.shape:
    raise ValueError(
        f"ssimulacra2: image shapes differ: reference {reference.shape}, "
        f"distorted {distorted.shape}")
  scores = _ssimulacra2_batch(_flat_rgb(_from_8bit(reference)), _flat_rgb(_from_8bit(distorted)))
  return scores.reshape(reference.shape[:-3])
