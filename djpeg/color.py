"""Colour conversion between RGB and JFIF YCbCr, exact to libjpeg's fixed point or in float.

Samples are in 8-bit units, 0..255, channels last: `(..., 3)`. The exact versions reproduce
libjpeg's integer tables bit for bit (`jccolor.c: rgb_ycc_convert`, `jdcolor.c: ycc_rgb_convert`,
16-bit fixed point with their rounding offsets and the final range limit); their gradient is that
of the float formula, which is what they approximate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from djpeg.rounding import exact_forward

_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)
_CBCR_OFFSET = 128 << _SCALEBITS


def _fix(x: float) -> int:
  """libjpeg's FIX(): a constant in 16-bit fixed point."""
  return int(x * (1 << _SCALEBITS) + 0.5)


def _rgb_to_ycbcr_exact(r, g, b):
  r, g, b = (p.astype(jnp.int32) for p in (r, g, b))
  y = (_fix(0.29900) * r + _fix(0.58700) * g + _fix(0.11400) * b + _ONE_HALF) >> _SCALEBITS
  # ONE_HALF - 1: libjpeg's rounding fudge keeps Cb, Cr <= 255 without a range limit.
  cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b
        + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
  cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b
        + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
  return tuple(p.astype(jnp.float32) for p in (y, cb, cr))


def _rgb_to_ycbcr_float(r, g, b):
  y = 0.299 * r + 0.587 * g + 0.114 * b
  cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
  cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
  return y, cb, cr


def _ycbcr_to_rgb_exact(y, cb, cr):
  y, cb, cr = (p.astype(jnp.int32) for p in (y, cb, cr))
  cb = cb - 128
  cr = cr - 128
  r = y + ((_fix(1.40200) * cr + _ONE_HALF) >> _SCALEBITS)
  g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + _ONE_HALF) >> _SCALEBITS)
  b = y + ((_fix(1.77200) * cb + _ONE_HALF) >> _SCALEBITS)
  return tuple(jnp.clip(p, 0, 255).astype(jnp.float32) for p in (r, g, b))


def _ycbcr_to_rgb_float(y, cb, cr):
  cb, cr = cb - 128.0, cr - 128.0
  return y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb


_rgb_to_ycbcr_ste = exact_forward(_rgb_to_ycbcr_exact, _rgb_to_ycbcr_float)
_ycbcr_to_rgb_ste = exact_forward(_ycbcr_to_rgb_exact, _ycbcr_to_rgb_float)


def rgb_to_ycbcr_planes(r, g, b, *, exact: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`rgb_to_ycbcr` on separate `(...)` planes; returns (Y, Cb, Cr) planes.

  The codec works plane by plane: splitting and re-stacking channels costs more than the
  conversion itself on CPU.
  """
  return (_rgb_to_ycbcr_ste if exact else _rgb_to_ycbcr_float)(r, g, b)


def ycbcr_to_rgb_planes(y, cb, cr, *, exact: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`ycbcr_to_rgb` on separate `(...)` planes; returns (R, G, B) planes."""
  return (_ycbcr_to_rgb_ste if exact else _ycbcr_to_rgb_float)(y, cb, cr)


def rgb_to_ycbcr(rgb: jax.Array, *, exact: bool = True) -> jax.Array:
  """RGB to JFIF YCbCr.

  Args:
    rgb: `(..., 3)` samples in 0..255. With `exact`, they must be integer-valued (8-bit samples).
    exact: reproduce libjpeg's fixed-point result (integer-valued output, float gradient);
      otherwise the plain float transform.
  Returns:
    `(..., 3)` float32 [Y, Cb, Cr] in 0..255.
  """
  rgb = jnp.asarray(rgb, jnp.float32)
  return jnp.stack(rgb_to_ycbcr_planes(rgb[..., 0], rgb[..., 1], rgb[..., 2], exact=exact), -1)


def ycbcr_to_rgb(ycc: jax.Array, *, exact: bool = True) -> jax.Array:
  """JFIF YCbCr to RGB.

  Args:
    ycc: `(..., 3)` [Y, Cb, Cr] samples in 0..255 (integer-valued with `exact`).
    exact: reproduce libjpeg's fixed-point result and its range limit to 0..255 (gradient of the
      float transform); otherwise the plain float transform, not clipped.
  Returns:
    `(..., 3)` float32 RGB.
  """
  ycc = jnp.asarray(ycc, jnp.float32)
  return jnp.stack(ycbcr_to_rgb_planes(ycc[..., 0], ycc[..., 1], ycc[..., 2], exact=exact), -1)


# ------------------------------------------------------------ whole images, as 8-pixel tiles
#
# The codec works on planes, but images are channels-last. Interleaving planes back into RGB is a
# strided copy that XLA's CPU code handles badly; as 8-pixel tiles, (…, W / 8, 24) with R, G, B
# interleaved, it becomes one small matmul that also does the colour arithmetic (the integer
# version is exact in float32: every partial sum stays below 2^24). The float forward conversion
# uses the same tiles. The exact forward conversion reads the channels elementwise instead: its
# integer arithmetic is cheap enough that XLA fuses it into the downsampling and the DCT, which
# is faster than the matmul and its separate pass.

_HIGHEST = jax.lax.Precision.HIGHEST
_FLOAT_TO_YCC = np.array([[0.299, 0.587, 0.114],
                          [-0.168735892, -0.331264108, 0.5],
                          [0.5, -0.418687589, -0.081312411]])


def _rgb_tile_matrix(weights: np.ndarray) -> np.ndarray:
  """(24, 24): tile [r0 g0 b0 ... r7 g7 b7] to [c0_0..c0_7, c1_0..c1_7, c2_0..c2_7]."""
  m = np.zeros((24, 24), np.float32)
  for p in range(8):
    for c_out in range(3):
      for c_in in range(3):
        m[3 * p + c_in, 8 * c_out + p] = weights[c_out, c_in]
  return m


def _scatter_matrix(channel_weights) -> np.ndarray:
  """(8, 24): 8 samples of one plane to an RGB tile, sample p into channel c times weight[c]."""
  m = np.zeros((8, 24), np.float32)
  for p in range(8):
    for c, w in enumerate(channel_weights):
      m[p, 3 * p + c] = w
  return m


_RGB_TO_YCC_FLOAT = _rgb_tile_matrix(_FLOAT_TO_YCC)
_FLOAT_OFFSETS_TILE = np.repeat([0.0, 128.0, 128.0], 8).astype(np.float32)
_TO_ALL = _scatter_matrix((1.0, 1.0, 1.0))
_TO_R, _TO_G, _TO_B = (_scatter_matrix(np.eye(3)[c]) for c in range(3))
_CB_TO_RGB = _scatter_matrix((0.0, -0.344136286, 1.772))
_CR_TO_RGB = _scatter_matrix((1.402, -0.714136286, 0.0))


def _tiles(x: jax.Array, n: int) -> jax.Array:
  *lead, w = x.shape[:-1] if n == 24 else x.shape
  return x.reshape(*lead, w // 8, n)


def _image_to_planes_exact(image):
  # Elementwise on the channel slices (see above): a 768x512 image converts in ~0.5 ms, against
  # ~2 ms for the tile matmul on a 2-core CPU.
  return _rgb_to_ycbcr_exact(image[..., 0], image[..., 1], image[..., 2])


def _image_to_planes_float(image):
  *lead, h, w, _ = image.shape
  ycc = jnp.matmul(_tiles(image, 24), _RGB_TO_YCC_FLOAT, precision=_HIGHEST) + _FLOAT_OFFSETS_TILE
  return tuple(ycc[..., 8 * c:8 * c + 8].reshape(*lead, h, w) for c in range(3))


def _planes_to_image_exact(y, cb, cr):
  *lead, h, w = y.shape
  y, cb, cr = _tiles(y, 8), _tiles(cb, 8) - 128.0, _tiles(cr, 8) - 128.0
  shift = lambda v: jnp.floor((v + _ONE_HALF) / 65536.0)   # RIGHT_SHIFT(v + ONE_HALF, 16)
  r = jnp.clip(y + shift(_fix(1.40200) * cr), 0.0, 255.0)
  g = jnp.clip(y + shift(-_fix(0.34414) * cb - _fix(0.71414) * cr), 0.0, 255.0)
  b = jnp.clip(y + shift(_fix(1.77200) * cb), 0.0, 255.0)
  dot = lambda a, m: jnp.matmul(a, m, precision=_HIGHEST)
  return (dot(r, _TO_R) + dot(g, _TO_G) + dot(b, _TO_B)).reshape(*lead, h, w, 3)


def _planes_to_image_float(y, cb, cr):
  *lead, h, w = y.shape
  dot = lambda a, m: jnp.matmul(a, m, precision=_HIGHEST)
  rgb = (dot(_tiles(y, 8), _TO_ALL) + dot(_tiles(cb, 8) - 128.0, _CB_TO_RGB)
         + dot(_tiles(cr, 8) - 128.0, _CR_TO_RGB))
  return rgb.reshape(*lead, h, w, 3)


_image_to_planes_ste = exact_forward(_image_to_planes_exact, _image_to_planes_float)
_planes_to_image_ste = exact_forward(_planes_to_image_exact, _planes_to_image_float)


def image_to_ycbcr_planes(image: jax.Array, *, exact: bool = True):
  """`(..., H, W, 3)` RGB samples to (Y, Cb, Cr) planes `(..., H, W)`; as `rgb_to_ycbcr`."""
  if image.shape[-2] % 8:
    return rgb_to_ycbcr_planes(image[..., 0], image[..., 1], image[..., 2], exact=exact)
  return (_image_to_planes_ste if exact else _image_to_planes_float)(image)


def ycbcr_planes_to_image(y, cb, cr, *, exact: bool = True) -> jax.Array:
  """(Y, Cb, Cr) planes `(..., H, W)` to an RGB image `(..., H, W, 3)`; as `ycbcr_to_rgb`."""
  if y.shape[-1] % 8:
    return jnp.stack(ycbcr_to_rgb_planes(y, cb, cr, exact=exact), axis=-1)
  return (_planes_to_image_ste if exact else _planes_to_image_float)(y, cb, cr)
