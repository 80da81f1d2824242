"""The distortion model the exporter optimizes: RGB mean squared error, from DCT coefficients.

The DCT is orthonormal, so a coefficient's quantization error is pixel error energy of its
component plane. Three things turn it into RGB MSE per pixel (8-bit scale):

* colour: a Y, Cb or Cr error reaches R, G and B through the YCbCr-to-RGB matrix; its weight is
  the squared norm of the matrix column over 3 (`RGB_WEIGHTS`);
* upsampling: a subsampled component's error is spread by libjpeg's upsampling filter; the
  weight of each of its DCT basis functions is that function's energy after upsampling
  (`upsampling_gain`: the triangle filter for 2x2, the block count for other ratios);
* pixel count: weights are per pixel of the image, so sums over coefficients are MSE.

`rgb_mse_weights` gives the per-component `(8, 8)` weights, `rate_distortion` the file size
(`djpeg.rate`) and this MSE of one image quantized by given tables, the model that the table
optimization, the learned tables, the trellis and the dead-zone all share. The model tracks the
decoded MSE up to a near-constant offset per image (chroma subsampling and pixel rounding);
`decoded_mse` measures the real thing on libjpeg's decode to calibrate it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from djpeg import codec, rate, sampling
from djpeg.coefficients import Coefficients
from djpeg.dct import idct
from djpeg.exact import sizes
from djpeg.quantization import quantize_with_tables

#: ||column of the YCbCr -> RGB matrix||^2 / 3: how much of a Y, Cb or Cr error reaches RGB MSE.
RGB_WEIGHTS = np.array([1.0, (0.344136286 ** 2 + 1.772 ** 2) / 3,
                        (1.402 ** 2 + 0.714136286 ** 2) / 3])


@functools.lru_cache(maxsize=None)
def upsampling_gain() -> np.ndarray:
  """`(8, 8)` energy of each chroma DCT basis function after libjpeg's 2x2 triangle upsampling."""
  basis = np.zeros((64, 8, 8), np.float32)
  basis[np.arange(64), np.arange(64) // 8, np.arange(64) % 8] = 1.0
  with jax.ensure_compile_time_eval():   # a constant, even when first needed inside a trace
    plane = jnp.zeros((64, 24, 24)).at[:, 8:16, 8:16].set(idct(jnp.asarray(basis)))
    up = sampling.upsample(plane, 2, 2, exact=False)
    return np.asarray(jnp.sum(up ** 2, axis=(-2, -1))).reshape(8, 8)


@functools.lru_cache(maxsize=None)
def rgb_mse_weights(factors, num_pixels: int) -> tuple[np.ndarray, ...]:
  """Per component `(8, 8)` float32 weights turning squared coefficient errors into RGB MSE per
  pixel (8-bit scale when the coefficients are), for sampling `factors` and an image of
  `num_pixels` pixels. Gray images have weight 1 / num_pixels."""
  weights = []
  for c in range(len(factors)):
    rh, rv = sampling.ratios(factors, c)
    gain = upsampling_gain() if (rh, rv) == (2, 2) else np.full((8, 8), rh * rv, np.float32)
    channel = RGB_WEIGHTS[c] if len(factors) == 3 else 1.0
    weights.append((channel * gain / num_pixels).astype(np.float32))
  return tuple(weights)


def coefficient_mse(dct, quantized, steps, weights) -> jax.Array:
  """Model MSE: sum over components of weights * (dct - quantized * step)^2.

  Args:
    dct: per component `(..., rows, cols, 8, 8)` coefficients (`djpeg.transform`).
    quantized: per component the quantized values, same shapes.
    steps: `(C, 8, 8)` steps (or broadcastable per component).
    weights: per component `(8, 8)` weights (`rgb_mse_weights`), or any shape broadcasting
      against the blocks (e.g. times a per-block importance).
  """
  return sum(jnp.sum(w * (d - x * s) ** 2) for w, d, x, s in zip(weights, dct, quantized, steps))


def rate_distortion(dct, tables, *, sampling, height: int, width: int, code: str = "huffman",
                    headers: bool = True, weights=None):
  """File size and RGB MSE of one image quantized by `tables`, from its DCT coefficients.

  The fast model `optimize_tables` descends on, and training code reuses: no decode.

  Args:
    dct: per component `(rows, cols, 8, 8)` coefficients from `djpeg.transform` (one image).
    tables: `(C, 8, 8)` real-valued steps (rounded and clipped to 1..255 straight-through).
    sampling: the components' sampling factors (`djpeg.sampling.factors_for`).
    height, width: image size in pixels.
    code: "huffman" (exact file bits) or "entropy" (ideal code lengths; cheaper, for gradients).
    headers: count the file's headers (exact; they jump when, e.g., two tables become distinct,
      and they dominate small crops). Training on crops should leave them out.
    weights: per component distortion weights (default `rgb_mse_weights`; pass them times a
      per-block importance for a weighted MSE).
  Returns:
    (bits per pixel of the file, or of its entropy-coded data without `headers`; RGB MSE on the
    8-bit scale, up to a per-image constant offset for chroma subsampling and rounding), both
    differentiable with respect to `tables`.
  """
  factors = tuple(map(tuple, sampling))
  num_pixels = height * width
  if weights is None:
    weights = rgb_mse_weights(factors, num_pixels)
  q, steps = quantize_with_tables(tuple(dct), tables)
  bits, used = rate.image_rate(q, factors, code, with_used=True)
  if headers:
    bits = 8 * (rate.header_bytes(steps, used) + sizes.data_bytes(bits))
  return bits / num_pixels, coefficient_mse(dct, q, steps, weights)


def _levels(image) -> jax.Array:
  """The 8-bit levels, as float32, of an image in [0, 1] or of uint8 pixels."""
  if np.asarray(image).dtype == np.uint8:
    return jnp.asarray(image, jnp.float32)
  return jnp.round(jnp.asarray(image, jnp.float32) * 255)


#: Images with more pixels than this are decoded for `decoded_mse` in stripes of about
#: `DECODE_STRIPE_PIXELS` pixels (whole MCU rows, `codec.decode_sample_stripes` for concrete
#: integer coefficients, else `codec.decode_stripes`): a whole 24-MP decode in XLA holds about
#: 1.5 GB, and stripes of a fixed number of rows grow with the image's width.
DECODE_WHOLE_LIMIT = 4_000_000
DECODE_STRIPE_PIXELS = 1 << 21


def _squared_error(decoded, image, importance):
  """Per-sample squared error (8-bit scale) of a decode in [0, 1] against `image` rows, times
  the per-pixel `importance` when given."""
  error = (jnp.round(decoded * 255) - _levels(image)) ** 2
  if importance is None:
    return error
  return error * jnp.asarray(importance, jnp.float32)[..., None]


def decoded_mse(image, coefficients: Coefficients, importance=None) -> float:
  """RGB MSE (8-bit scale) of libjpeg-turbo's decode of `coefficients` against `image`.

  Args:
    image: `(H, W, C)` float in [0, 1] (the original; rounded to 8 bits as the encoder reads it),
      or its uint8 pixels.
    coefficients: one image's `Coefficients`.
    importance: optional `(H, W)` per-pixel weights of the squared error (mean 1 keeps the
      scale); None for the plain MSE.
  """
  if coefficients.height * coefficients.width <= DECODE_WHOLE_LIMIT:
    return float(jnp.mean(_squared_error(codec.decode(coefficients), image, importance)))
  rows = max(1, DECODE_STRIPE_PIXELS // coefficients.width)
  total = 0.0
  if all(isinstance(c, np.ndarray) and c.dtype.kind in "iu" for c in coefficients.components):
    # The decode any decoder shows, as 8-bit samples from compiled loops: no XLA program per
    # stripe shape, and an exact integer sum where there is no importance.
    for top, stripe in codec.decode_sample_stripes(coefficients, rows):
      part = slice(top, top + stripe.shape[0])
      levels = np.asarray(image[part])
      if levels.dtype != np.uint8:
        levels = np.round(levels.astype(np.float32) * np.float32(255))
      error = np.square(stripe.astype(np.int64) - levels.astype(np.int64))
      if importance is not None:
        error = error * np.asarray(importance[part], np.float64)[..., None]
      total += float(np.sum(error))
  else:
    for top, stripe in codec.decode_stripes(coefficients, rows):
      part = slice(top, top + stripe.shape[0])
      error = _squared_error(stripe, image[part],
                             None if importance is None else importance[part])
      total += float(jnp.sum(error, dtype=jnp.float32))
  return total / (coefficients.height * coefficients.width * np.shape(image)[-1])
