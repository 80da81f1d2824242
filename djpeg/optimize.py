"""Per-image quantization table optimization: gradient descent on rate + lambda * distortion.

`optimize_tables(image, bpp=... | psnr=... | lmbda=...)` returns valid baseline tables for one
image. The image is transformed once (`djpeg.transform`, libjpeg's exact DCT); every step then
quantizes those coefficients exactly as the encoder would, prices them with the rate model
(`djpeg.rate`: exact Huffman bits, smooth gradient) and measures the distortion, and optax's Adam
updates the log-tables through the straight-through rounding.

Distortion is RGB mean squared error (8-bit scale) by default, computed in the DCT domain: the
DCT is orthonormal, so each coefficient's error is pixel error energy; chroma errors are weighted
by how much of them the YCbCr-to-RGB conversion and libjpeg's upsampling filter pass on. This
model tracks the decoded MSE to a near-constant offset (chroma subsampling and rounding), which
is calibrated once per image. `distortion="ms-ssim"` and `"ssimulacra2"` run the full
differentiable codec instead (decode and the metric every step; slower): their distortion is
1 - MS-SSIM, or the SSIMULACRA 2 points lost (100 - score).

Targets: `lmbda` minimizes bits/pixel + lmbda * MSE; `bpp` and `psnr` adapt lambda during the
descent (dual ascent on the constraint) and finish with a uniform rescaling of the tables that
meets the target exactly where it can be met.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from djpeg import checks, metrics, rate, roi, sampling
from djpeg.codec import decode, encode, transform
from djpeg.distortion import decoded_mse, rate_distortion, rgb_mse_weights
from djpeg.tables import ANNEX_K, quality_tables

DISTORTIONS = ("mse", "ms-ssim", "ssimulacra2")


@dataclasses.dataclass(frozen=True)
class TableOptimization:
  """The result of `optimize_tables`.

  Attributes:
    tables: `(C, 8, 8)` int tables (Y, Cb, Cr, or one for gray), natural order, 1..255.
    subsampling: the subsampling they were optimized for.
    bits_per_pixel: bits per pixel of the whole baseline file `djpeg.save` writes with these
      tables (`djpeg.rate.file_bytes`: exact symbol count, headers included; within about 0.5%
      of the real file).
    psnr: RGB PSNR in dB of the decoded image (exact codec).
    ms_ssim: MS-SSIM of the decoded image.
    lmbda: the final Lagrange multiplier (bits/pixel per unit of MSE, or of 1 - MS-SSIM).
    history: per-step model bits/pixel and distortion, `(steps, 2)`.
  """
  tables: np.ndarray
  subsampling: str
  bits_per_pixel: float
  psnr: float
  ms_ssim: float
  lmbda: float
  history: np.ndarray


@functools.partial(jax.jit, static_argnames=("factors", "height", "width", "kind", "steps"))
def _descend(log_tables, log_lmbda, target, dct, weights, learning_rate, *, factors, height, width,
             kind, steps):
  """`steps` Adam steps on log-tables; `kind` "lmbda" keeps lambda, "bpp"/"mse" adapt it."""
  optimizer = optax.adam(learning_rate)

  def objective(log_tables, lmbda):
    # Ideal code lengths are cheaper than building Huffman tables every step and give nearly the
    # same slopes; the exact Huffman size is used again to meet the target at the end.
    bpp, mse = rate_distortion(dct, jnp.exp(log_tables), sampling=factors, height=height,
                               width=width, code="entropy", weights=weights)
    return bpp + lmbda * mse, (bpp, mse)

  def step(i, carry):
    log_tables, state, log_lmbda, history = carry
    (_, (bpp, mse)), grad = jax.value_and_grad(objective, has_aux=True)(
        log_tables, jnp.exp(log_lmbda))
    updates, state = optimizer.update(grad, state, log_tables)
    log_tables = jnp.clip(optax.apply_updates(log_tables, updates), 0.0, math.log(255.0))
    # Dual ascent: weigh distortion more while it is above its target, less while the rate is.
    if kind == "bpp":
      log_lmbda = log_lmbda + 0.2 * jnp.clip((target - bpp) / target, -1.0, 1.0)
    elif kind == "mse":
      log_lmbda = log_lmbda + 0.2 * jnp.clip((mse - target) / target, -1.0, 1.0)
    history = history.at[i].set(jnp.stack([bpp, mse]))
    return log_tables, state, log_lmbda, history

  carry = (log_tables, optimizer.init(log_tables), log_lmbda, jnp.zeros((steps, 2)))
  log_tables, _, log_lmbda, history = jax.lax.fori_loop(0, steps, step, carry)
  return log_tables, log_lmbda, history


@functools.partial(jax.jit, static_argnames=("factors", "height", "width"))
def _evaluate(tables, dct, weights, *, factors, height, width):
  """Model (bpp, mse) for each set of tables in `tables` `(n, C, 8, 8)`: `(n,)`, `(n,)`."""
  return jax.lax.map(lambda t: rate_distortion(dct, t, sampling=factors, height=height,
                                               width=width, weights=weights), tables)


def codec_distortion(distortion: str, decoded: jax.Array, image: jax.Array) -> jax.Array:
  """A perceptual distortion of a decode, differentiable: "ms-ssim" is 1 - MS-SSIM,
  "ssimulacra2" the SSIMULACRA 2 points lost, 100 - score. `(..., H, W, C)` -> `(...)`."""
  if distortion == "ms-ssim":
    return 1.0 - metrics.ms_ssim(decoded, image)
  return 100.0 - metrics.ssimulacra2(image, decoded)


@functools.partial(jax.jit, static_argnames=("subsampling", "distortion"))
def _codec_step(log_tables, state, image, lmbda, learning_rate, *, subsampling, distortion):
  """One Adam step on log-tables through the whole differentiable codec."""
  optimizer = optax.adam(learning_rate)
  num_pixels = image.shape[0] * image.shape[1]

  def objective(log_tables):
    c = encode(image, tables=jnp.exp(log_tables), subsampling=subsampling)
    bpp = rate.rate(c) / num_pixels
    loss = codec_distortion(distortion, decode(c), image)
    return bpp + lmbda * loss, (bpp, loss)

  (_, aux), grad = jax.value_and_grad(objective, has_aux=True)(log_tables)
  updates, state = optimizer.update(grad, state, log_tables)
  return jnp.clip(optax.apply_updates(log_tables, updates), 0.0, math.log(255.0)), state, aux


def _full_codec_descent(image, tables, lmbda, subsampling, steps, learning_rate, distortion):
  """Adam on log-tables through the whole differentiable codec, for a perceptual distortion."""
  log_tables = jnp.log(jnp.asarray(tables, jnp.float32))
  state = optax.adam(learning_rate).init(log_tables)
  history = []
  for _ in range(steps):
    log_tables, state, aux = _codec_step(log_tables, state, image, jnp.float32(lmbda),
                                         jnp.float32(learning_rate), subsampling=subsampling,
                                         distortion=distortion)
    history.append(aux)
  return np.exp(np.asarray(log_tables)), np.asarray(jax.device_get(history), np.float32)


def optimize_tables(image, *, bpp: float | None = None, psnr: float | None = None,
                    lmbda: float | None = None, subsampling: str = "4:2:0",
                    distortion: str = "mse", steps: int = 100, learning_rate: float = 0.05,
                    importance=None, progress=None) -> TableOptimization:
  """Finds quantization tables for one image that minimise rate + lambda * distortion.

  Exactly one target:
    bpp: bits per pixel of the whole file to spend (the highest quality that fits);
    psnr: RGB PSNR in dB to reach (the fewest bits that reach it);
    lmbda: the trade-off itself: minimise bits/pixel + lmbda * MSE (8-bit scale), or
      bits/pixel + lmbda * (1 - MS-SSIM), or bits/pixel + lmbda * (100 - SSIMULACRA 2).

  Args:
    image: `(H, W, C)` float in [0, 1], C = 3 or 1.
    subsampling: "4:2:0", "4:2:2" or "4:4:4" (ignored for gray).
    distortion: "mse" (fast, DCT-domain model of RGB MSE), "ms-ssim" or "ssimulacra2" (full
      codec and metric each step; lmbda targets only).
    steps: gradient steps (Adam on log-tables).
    learning_rate: Adam's learning rate in log-table units.
    importance: optional `(H, W)` non-negative per-pixel weights of the squared error (e.g.
      `djpeg.roi.pixel_weights` of a saliency map, mean 1): the MSE and PSNR targets then mean
      the weighted MSE (the reported `psnr` stays the plain one). "mse" distortion only.
    progress: optional callable(str) for progress messages.
  Returns:
    `TableOptimization` with valid baseline tables (`djpeg.encode(image, tables=result.tables,
    subsampling=result.subsampling)` and `djpeg.save` use them as they are).
  Raises:
    ValueError: no or several targets, a non-positive target, bad image or option names.
  Warns:
    UserWarning: if the target cannot be met (even all-255 or all-1 tables miss it); the result
      is then the nearest reachable one.
  """
  say = progress or (lambda message: None)
  shape = checks.check_images(image)
  if len(shape) != 3:
    raise ValueError(f"optimize_tables takes one image (H, W, C); got shape {shape}.")
  targets = {k: v for k, v in (("bpp", bpp), ("psnr", psnr), ("lmbda", lmbda)) if v is not None}
  if len(targets) != 1:
    raise ValueError(f"give exactly one target of bpp, psnr and lmbda; got {sorted(targets) or 'none'}.")
  (kind, target), = targets.items()
  if not checks.positive_finite(target):
    raise ValueError(f"{kind} must be a positive finite number; got {target!r}.")
  checks.check_choice("distortion", distortion, DISTORTIONS)
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an integer of at least 1; got {steps!r}.")
  if not checks.positive_finite(learning_rate):
    # 0 never moves, a negative rate climbs the loss, NaN failed seconds later as "tables".
    raise ValueError(f"learning_rate must be a positive finite number; got {learning_rate!r}.")
  image = jnp.asarray(image, jnp.float32)
  height, width, channels = shape
  factors = sampling.factors_for(subsampling, channels)
  num_pixels = height * width
  dct = transform(image, subsampling=subsampling)
  weights = rgb_mse_weights(factors, num_pixels)
  if importance is not None:
    if distortion != "mse":
      raise ValueError('importance weights go with distortion="mse".')
    importance = roi.check_importance(importance, height, width)
    weights = tuple(jnp.asarray(w) * b[..., None, None]
                    for w, b in zip(weights, roi.block_means(importance, height, width, factors)))
  standard = np.asarray(ANNEX_K)[[0, 1, 1]][:channels]

  # Start from the Annex K tables at the quality closest to the target.
  # 13 qualities: the same batch shape as the target search below, so one compilation serves both.
  qualities = np.array([2, 5, 10, 15, 20, 30, 40, 50, 60, 75, 85, 92, 98], np.float32)
  start = np.asarray(quality_tables(qualities, standard))
  reference = int(np.argmin(np.abs(qualities - 75)))
  first = encode(image, tables=start[reference], subsampling=subsampling)
  bpp_curve, mse_curve = (np.asarray(v) for v in _evaluate(
      jnp.asarray(start), dct, weights, factors=factors, height=height, width=width))
  # The DCT-domain model misses chroma subsampling and pixel rounding: calibrate its offset.
  measured = decoded_mse(image, first, importance) - float(mse_curve[reference])
  if kind == "bpp":
    index = int(np.argmin(np.abs(bpp_curve - target)))
    dual_target = float(target)
  elif kind == "psnr":
    mse_target = 255.0 ** 2 / 10 ** (target / 10) - measured
    if mse_target <= 0:
      warnings.warn(f"PSNR {target} dB is beyond what JPEG reaches for this image; aiming as high "
                    "as it goes.", stacklevel=2)
      mse_target = max(float(mse_curve.min()), 1e-3)
    index = int(np.argmin(np.abs(mse_curve - mse_target)))
    dual_target = float(mse_target)
  elif distortion == "mse":
    index = int(np.argmin(bpp_curve + target * mse_curve))
    dual_target = 0.0
  else:
    index, dual_target = reference, 0.0   # MS-SSIM is not modelled in the DCT domain
  q0 = int(qualities[index])
  # The local slope of the Annex K curve is the lambda that quality already balances.
  lo, hi = max(index - 1, 0), min(index + 1, len(qualities) - 1)
  slope = (bpp_curve[hi] - bpp_curve[lo]) / max(mse_curve[lo] - mse_curve[hi], 1e-9)
  lmbda0 = float(target) if kind == "lmbda" else max(float(slope), 1e-6)
  say(f"start: Annex K tables at quality {q0}: {bpp_curve[index]:.3f} bpp, model MSE "
      f"{mse_curve[index]:.2f}; lambda {lmbda0:.3g}")

  if distortion != "mse":
    if kind != "lmbda":
      raise ValueError(f'distortion="{distortion}" takes an lmbda target.')
    tables, history = _full_codec_descent(image, start[index], float(target), subsampling, steps,
                                          learning_rate, distortion)
    lmbda_final = float(target)
  else:
    kind_code = {"bpp": "bpp", "psnr": "mse", "lmbda": "lmbda"}[kind]
    log_tables, log_lmbda, history = _descend(
        jnp.log(jnp.asarray(start[index])), jnp.float32(math.log(lmbda0)), jnp.float32(dual_target),
        dct, weights, jnp.float32(learning_rate), factors=factors, height=height, width=width,
        kind=kind_code, steps=steps)
    tables, lmbda_final, history = np.exp(np.asarray(log_tables)), float(np.exp(log_lmbda)), np.asarray(history)
  tables = np.clip(np.floor(tables + 0.5), 1, 255)
  say(f"descent: {steps} steps, model {history[-1, 0]:.3f} bpp, distortion {history[-1, 1]:.4g}")

  if kind in ("bpp", "psnr") and distortion == "mse":
    tables = _scale_to_target(tables, kind, dual_target, dct, weights, factors, height, width)

  coefficients = encode(image, tables=tables, subsampling=subsampling)
  decoded = decode(coefficients)
  result = TableOptimization(
      tables=tables.astype(np.int32), subsampling=subsampling,
      bits_per_pixel=8 * float(rate.file_bytes(coefficients)) / num_pixels,
      psnr=float(metrics.psnr(jnp.round(decoded * 255) / 255, image)),
      ms_ssim=float(metrics.ms_ssim(decoded, image)) if min(height, width) >= 11 else float("nan"),
      lmbda=lmbda_final, history=history)
  say(f"result: {result.bits_per_pixel:.3f} bpp, PSNR {result.psnr:.2f} dB")
  return result


def _scale_to_target(tables, kind, target, dct, weights, factors, height, width):
  """Scales the tables uniformly to meet a bpp or MSE target (log-spaced rounds of 13).

  Among the scalings that meet the target the best one on the other axis wins. A target beyond
  reach of any baseline tables (all steps 255, or all 1) gets a warning and the nearest result.
  """
  def search(tables, scales):
    candidates = np.clip(np.floor(tables[None] * scales[:, None, None, None] + 0.5), 1, 255)
    bpp, mse = (np.asarray(v) for v in _evaluate(jnp.asarray(candidates, jnp.float32), dct,
                                                 weights, factors=factors, height=height,
                                                 width=width))
    reach, other = (bpp, mse) if kind == "bpp" else (mse, bpp)
    ok = reach <= target
    index = int(np.argmin(np.where(ok, other, np.inf))) if ok.any() else int(np.argmin(reach))
    return candidates[index], bool(ok.any())

  wide = np.exp(np.linspace(math.log(1 / 8), math.log(8), 13))
  extremes = np.array([256.0 / max(float(tables.min()), 1.0), 1 / 256.0])  # all 255; all 1
  tables, _ = search(tables, np.concatenate([wide[:11], extremes]))
  tables, _ = search(tables, np.exp(np.linspace(math.log(1 / 1.4), math.log(1.4), 13)))
  tables, met = search(tables, np.exp(np.linspace(math.log(1 / 1.06), math.log(1.06), 13)))
  what = "bits per pixel" if kind == "bpp" else "distortion"
  if not met:
    warnings.warn(f"the {what} target cannot be met with baseline tables (1..255); returning the "
                  "nearest reachable tables.", stacklevel=3)
  elif np.all(tables == (1 if kind == "bpp" else 255)):
    # Met only because even the extreme tables stay on the safe side of it.
    warnings.warn(f"the {what} target cannot be met: even the {'finest' if kind == 'bpp' else 'coarsest'}"
                  " baseline tables stay below it; returning those.", stacklevel=3)
  return tables
