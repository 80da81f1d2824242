"""Image quality metrics in JAX, differentiable: MSE, PSNR, SSIM, MS-SSIM and SSIMULACRA 2.

Images are `(..., H, W, C)` floats in [0, 1] (any C); results have the batch shape `(...)`.
SSIM follows Wang et al. 2004 as implemented by scikit-image with `gaussian_weights=True`:
an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the 'valid' part
of the window, averaged over pixels and channels. MS-SSIM follows Wang et al. 2003 with the usual
five-scale weights, 2x2 average pooling between scales, the mean contrast-structure term at every
scale but the coarsest and the mean SSIM there (each averaged over pixels and channels).
SSIMULACRA 2 (`ssimulacra2`, Cloudinary's metric, the one encoders are judged by) is a faithful
float32 port of the reference program, in `djpeg.ssimulacra2`. butteraugli (`butteraugli`,
`butteraugli_diffmap`: Debian's program, bit for bit, in `djpeg.butteraugli`) is numpy in and
out, not differentiable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from djpeg.blocks import blockify
# Debian's butteraugli program as compiled loops (numpy in, numpy out; not differentiable).
from djpeg.butteraugli import ButteraugliReference, butteraugli  # noqa: F401
from djpeg.butteraugli import butteraugli_diffmap  # noqa: F401
from djpeg.checks import concrete_range
# Cloudinary's metric (see its module); the reference/against pair scores many candidates of one
# image with the reference's half computed once.
from djpeg.ssimulacra2 import Ssimulacra2Reference  # noqa: F401
from djpeg.ssimulacra2 import ssimulacra2  # noqa: F401
from djpeg.ssimulacra2 import ssimulacra2_against, ssimulacra2_reference  # noqa: F401

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair_of_images(name: str, a, b, peak: float | None = 1.0) -> None:
  """Two images `(..., H, W, C)` of one size and channel count (batch axes broadcast: many
  candidates against one reference), real-valued, finite (when concrete), and on the scale
  `peak` says: values far beyond it (0..255 data with the default peak of 1) are an error, not
  a silently meaningless score. `peak` None: any scale (`mse`)."""
  sa, sb = tuple(np.shape(a)), tuple(np.shape(b))
  if len(sa) < 3 or len(sb) < 3 or sa[-3:] != sb[-3:]:
    raise ValueError(f"{name} takes two images (..., H, W, C) of one size and channel count; "
                     f"got {sa} and {sb}.")
  try:
    np.broadcast_shapes(sa[:-3], sb[:-3])
  except ValueError:
    raise ValueError(f"{name}: the batch shapes of {sa} and {sb} do not broadcast.") from None
  if peak is not None and not (isinstance(peak, (int, float, np.integer, np.floating))
                               and not isinstance(peak, bool) and np.isfinite(peak) and peak > 0):
    raise ValueError(f"{name}: peak must be a positive number; got {peak!r}.")
  for label, x in (("first", a), ("second", b)):
    dtype = jnp.result_type(x)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
      raise ValueError(f"{name}: the {label} image has dtype {dtype}; images are real numbers "
                       f"in [0, peak].")
    if peak is None:
      concrete_range(f"{name}'s {label} image", x, -np.inf, np.inf, what="")   # finite only
      continue
    hint = (lambda low, high: " The data look like 0..255: divide by 255, or pass peak=255."
            if peak <= 1 and high > 2 else "")
    concrete_range(f"{name}'s {label} image", x, -float(peak), 2.0 * float(peak), what="",
                   hint=hint)


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean squared error over `(H, W, C)`: `(...)`.

  Raises:
    ValueError: images of different sizes or channel counts, or of rank under 3 (batch axes
      broadcast), or non-finite values. Any scale.
  """
  _check_pair_of_images("mse", a, b, peak=None)
  return _mse(a, b)


@jax.jit
def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.mean((jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32)) ** 2, axis=(-3, -2, -1))


def psnr(a: jax.Array, b: jax.Array, *, peak: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB over `(H, W, C)`: `(...)`; inf for identical images.

  `peak` is the images' largest value (1 for [0, 1]; 255 for 8-bit samples). Raises ValueError
  as `mse` does, on the scale of `peak`.
  """
  _check_pair_of_images("psnr", a, b, peak)
  return _psnr(a, b, peak=float(peak))


@functools.partial(jax.jit, static_argnames=("peak",))
def _psnr(a: jax.Array, b: jax.Array, *, peak: float = 1.0) -> jax.Array:
  return 10.0 * jnp.log10(peak ** 2 / _mse(a, b))


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def _filter(x: jax.Array, window: np.ndarray) -> jax.Array:
  """Separable 'valid' filtering of `(..., H, W, C)` over H and W."""
  k = len(window)
  h, w = x.shape[-3], x.shape[-2]
  rows = sum(window[i] * x[..., i:h - k + 1 + i, :, :] for i in range(k))
  return sum(window[i] * rows[..., :, i:w - k + 1 + i, :] for i in range(k))


def _ssim_terms(a, b, window, k1=0.01, k2=0.03, peak=1.0):
  c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
  mu_a, mu_b = _filter(a, window), _filter(b, window)
  # Unbiased variances as in scikit-image (sample covariance over the window).
  n = len(window) ** 2
  correction = n / (n - 1)
  var_a = (_filter(a * a, window) - mu_a ** 2) * correction
  var_b = (_filter(b * b, window) - mu_b ** 2) * correction
  cov = (_filter(a * b, window) - mu_a * mu_b) * correction
  luminance = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
  contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
  return luminance, contrast_structure


def ssim(a: jax.Array, b: jax.Array, *, peak: float = 1.0) -> jax.Array:
  """Structural similarity, `(...)`; images at least 11x11, checked as `psnr` checks them."""
  _check_pair_of_images("ssim", a, b, peak)
  return _ssim(a, b, peak=float(peak))


@functools.partial(jax.jit, static_argnames=("peak",))
def _ssim(a: jax.Array, b: jax.Array, *, peak: float = 1.0) -> jax.Array:
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  if min(a.shape[-3:-1]) < 11:
    raise ValueError(f"ssim needs images of at least 11x11 pixels; got {a.shape[-3:-1]}.")
  luminance, cs = _ssim_terms(a, b, _gaussian(), peak=peak)
  return jnp.mean(luminance * cs, axis=(-3, -2, -1))


def _pool(x: jax.Array) -> jax.Array:
  h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
  x = x[..., :h, :w, :]
  return 0.25 * (x[..., 0::2, 0::2, :] + x[..., 1::2, 0::2, :] + x[..., 0::2, 1::2, :]
                 + x[..., 1::2, 1::2, :])


def ms_ssim(a: jax.Array, b: jax.Array, *, peak: float = 1.0, scales: int | None = None) -> jax.Array:
  """Multi-scale SSIM, `(...)`.

  Args:
    a, b: `(..., H, W, C)` images (checked as `psnr` checks them).
    scales: number of scales, 1..5 (default 5; fewer if the image is too small for 11x11
      windows at the coarsest scale); the weights are the standard ones truncated and
      renormalized.
  """
  _check_pair_of_images("ms_ssim", a, b, peak)
  if scales is not None and not (isinstance(scales, (int, np.integer))
                                 and not isinstance(scales, bool) and 1 <= scales <= 5):
    raise ValueError(f"ms_ssim: scales must be an integer in 1..5 (or None); got {scales!r}.")
  return _ms_ssim(a, b, peak=float(peak), scales=None if scales is None else int(scales))


@functools.partial(jax.jit, static_argnames=("peak", "scales"))
def _ms_ssim(a: jax.Array, b: jax.Array, *, peak: float = 1.0, scales: int | None = None) -> jax.Array:
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  smallest = min(a.shape[-3:-1])
  if smallest < 11:
    raise ValueError(f"ms_ssim needs images of at least 11x11 pixels; got {a.shape[-3:-1]}.")
  fit = 1 + int(np.floor(np.log2(smallest / 11)))
  scales = min(scales or 5, fit, 5)
  weights = np.array(MS_SSIM_WEIGHTS[:scales])
  weights = weights / weights.sum()
  window = _gaussian()
  value = 1.0
  for s in range(scales):
    luminance, cs = _ssim_terms(a, b, window, peak=peak)
    term_map = luminance * cs if s == scales - 1 else cs
    # Clamp at a small positive value so that the fractional powers stay differentiable.
    term = jnp.maximum(jnp.mean(term_map, axis=(-3, -2, -1)), 1e-6)
    value = value * term ** weights[s]
    a, b = _pool(a), _pool(b)
  return value


def _block_sums(x: jax.Array) -> jax.Array:
  """`(B, H, W)` -> `(B, ceil(H / 8), ceil(W / 8))`: sums over 8x8 blocks (zero-padded)."""
  h, w = x.shape[-2:]
  return blockify(jnp.pad(x, ((0, 0), (0, -h % 8), (0, -w % 8)))).sum(axis=(-2, -1))


@functools.partial(jax.jit, static_argnames=("smoothing", "floor"))
def ms_ssim_sensitivity(reference: jax.Array, distorted: jax.Array, *, smoothing: float = 0.05,
                        floor: float = 1e-3) -> jax.Array:
  """How much squared error in each 8x8 block weighs in 1 - MS-SSIM, near `distorted`.

  `block_sensitivity` of the loss 1 - MS-SSIM (details there).

  Args:
    reference, distorted: `(B, H, W, C)` in [0, 1], at least 11x11.
  Returns:
    `(B, ceil(H / 8), ceil(W / 8))` float32 weights, largest 1 per image.
  """
  _check_pair("ms_ssim_sensitivity", reference, distorted)
  return block_sensitivity(lambda r, d: 1.0 - ms_ssim(r, d), reference, distorted,
                           smoothing=smoothing, floor=floor)


@functools.partial(jax.jit, static_argnames=("smoothing", "floor"))
def ssimulacra2_sensitivity(reference: jax.Array, distorted: jax.Array, *,
                            smoothing: float = 0.05, floor: float = 1e-3) -> jax.Array:
  """How much squared error in each 8x8 block weighs in SSIMULACRA 2's loss, near `distorted`.

  `block_sensitivity` of (100 - SSIMULACRA 2) / 100: the per-block weight that makes the
  exporter's weighted-MSE trellis spend bits where SSIMULACRA 2 gains most from them.

  Args:
    reference, distorted: `(B, H, W, C)` in [0, 1], at least 8x8.
  Returns:
    `(B, ceil(H / 8), ceil(W / 8))` float32 weights, largest 1 per image.
  """
  _check_pair("ssimulacra2_sensitivity", reference, distorted)
  return block_sensitivity(lambda r, d: (100.0 - ssimulacra2(r, d)) / 100.0, reference,
                           distorted, smoothing=smoothing, floor=floor)


def _check_pair(name: str, reference, distorted) -> None:
  if np.ndim(reference) != 4 or np.shape(reference) != np.shape(distorted):
    raise ValueError(f"{name} takes two (B, H, W, C) batches of one shape; got "
                     f"{np.shape(reference)} and {np.shape(distorted)}.")


def block_sensitivity(loss, reference: jax.Array, distorted: jax.Array, *,
                      smoothing: float = 0.05, floor: float = 1e-3) -> jax.Array:
  """How much squared error in each 8x8 block weighs in a loss, near `distorted`.

  Scaling block b's error `e_b = distorted - reference` by `s` changes 1 - MS-SSIM at the rate
  `g_b . e_b` (g its gradient), about `2 w_b |e_b|^2` if the metric is locally `sum_b w_b |e_b|^2`,
  so `w_b = g_b . e_b / |e_b|^2` is the weight of squared error there: the per-block
  distortion weight that makes a weighted-MSE rate-distortion optimizer (the exporter's table
  optimization and trellis) spend bits where MS-SSIM gains most from them. Measured with the
  error of a real JPEG, it holds at that operating point (errors there are block-shaped and far
  from infinitesimal). Blocks with little error are pulled towards the image-wide ratio:
  `(g.e + eps * r) / (|e|^2 + eps)` with `eps = smoothing * mean_b |e_b|^2`.

  Args:
    loss: `(reference, distorted) -> (B,)` losses, differentiable (lower is better).
    reference, distorted: `(B, H, W, C)` in [0, 1].
    smoothing: how far blocks with little error are pulled to the image's ratio (see above).
    floor: weights below `floor` times the image's ratio are raised to it (the metric can fall
      with error locally, and a weight must stay positive).
  Returns:
    `(B, ceil(H / 8), ceil(W / 8))` float32 weights, largest 1 per image; all ones where
    `distorted` equals `reference`.
  """
  reference = jnp.asarray(reference, jnp.float32)
  distorted = jnp.asarray(distorted, jnp.float32)
  grad = jax.grad(lambda d: jnp.sum(loss(reference, d)))(distorted)
  error = distorted - reference
  num = _block_sums(jnp.sum(grad * error, axis=-1))
  den = _block_sums(jnp.sum(error * error, axis=-1))
  total = jnp.sum(den, axis=(1, 2), keepdims=True)
  ratio = jnp.sum(num, axis=(1, 2), keepdims=True) / jnp.maximum(total, 1e-20)
  ratio = jnp.maximum(ratio, 1e-12)
  eps = smoothing * total / den[0].size + 1e-20
  weights = jnp.maximum((num + eps * ratio) / (den + eps), floor * ratio)
  weights = weights / jnp.max(weights, axis=(1, 2), keepdims=True)
  return jnp.where(total > 0, weights, 1.0)
