"""Colour conversion between RGB and JFIF YCbCr, exact to libjpeg's fixed point or in float.

Samples are in 8-bit units, 0..255, channels last: `(..., 3)`. The exact versions reproduce
libjpeg's integer tables bit for bit (`jccolor.c: rgb_ycc_convert`, `jdcolor.c: ycc_rgb_convert`,
16-bit fixed point with their rounding offsets and the final range limit); their gradient is that
of the float formula, which is what they approximate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
