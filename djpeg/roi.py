"""Region of interest: importance maps, per-block weights, dead-zones, and the MS-ROI baseline.

A standard JPEG file has one quantization table per component, so the only place quality can
vary across the image is which coefficients each block keeps (see `djpeg.quantization` and
`djpeg.exact.trellis`). An importance map says where quality matters:

* `saliency_map` turns what a user gives into a validated `(H, W)` map in [0, 1]: an array, a
  mask image file, a callable, "auto", the hook where a learned saliency network plugs in
  (`djpeg.models.saliency.SaliencyNet`, found through an entry point, or one installed with
  `register_saliency`), or "ms-ssim", MS-SSIM's own per-block weight of squared error measured
  on the image (`msssim_map`: the map the network learns to predict, at the cost of a JPEG and
  a gradient of MS-SSIM per image);
* `block_weights` turns a map into one distortion weight per 8x8 block of each component,
  `background + (1 - background) * map`, averaged over the pixels each block covers and
  normalised to mean 1 over the image, so that a uniform map changes nothing. Important blocks
  weigh their errors more, so the trellis zeroes fewer of their coefficients;
* `deadzone` turns block weights into the dead-zone offsets that stand in for the trellis in
  the differentiable codec (`djpeg.encode(..., deadzone=)`), for training with a map.

`msroi_mosaic` / `msroi` re-implement Prakash et al.'s multi-structure region-of-interest
coding (DCC 2017), the baseline to compare against at equal bytes.
"""

from __future__ import annotations

import io
import os
from importlib.metadata import entry_points
from typing import Callable

import jax.numpy as jnp
import numpy as np
from PIL import Image

from djpeg import checks, codec, metrics, sampling as sampling_lib
from djpeg.distortion import rgb_mse_weights
from djpeg.images import load_image

#: Default weight of the least important pixels relative to the most important (before
#: normalisation): errors there count a tenth as much.
BACKGROUND = 0.1

#: Bits the dead-zone model assumes a +-1 coefficient costs (its symbol and magnitude bit, less
#: what zeroing it adds to the next symbol's run). Fitted on training images (BSDS, DIV2K) at
#: qualities 50..90 with the tables' own lambda: the dead-zone's exact bits are then within 4%
#: of the trellis's, uniform or with a mask, its distortion 2-15% higher, 5% on average (the
#: trellis also weighs runs and the EOB). `bench/deadzone.py` measures it.
DEADZONE_BITS = 4.0

#: Background for `saliency="ms-ssim"`: MS-SSIM's sensitivity spans about three decades in an
#: image, so the floor sits below that.
MSSSIM_BACKGROUND = 0.001

_saliency_model: Callable | None = None

_AC_ONLY = np.ones((8, 8), np.float32)
_AC_ONLY[0, 0] = 0.0


def register_saliency(model: Callable | None) -> None:
  """Installs the model behind `saliency="auto"`: `model(image) -> (H, W)` map in [0, 1].

  `image` is `(H, W, C)` float32 in [0, 1]. A `background` attribute on the model, if any, is
  the background weight its maps are meant for (`pixel_weights`); `djpeg.encoder.compress`
  uses it unless told otherwise. None removes the model, and "auto" falls back to the one an
  installed package provides (entry point group `djpeg.saliency_models`, name "auto": this
  distribution's `djpeg.models.saliency.predict_saliency`, the learned SaliencyNet).
  """
  global _saliency_model
  if model is not None and not callable(model):
    raise ValueError(f"a saliency model must be callable (image -> map); got {type(model).__name__}.")
  _saliency_model = model


def auto_model() -> Callable:
  """The model behind `saliency="auto"`: the registered one, else the installed package's.

  Raises:
    NotImplementedError: no model registered and none installed.
  """
  if _saliency_model is not None:
    return _saliency_model
  found = entry_points(group="djpeg.saliency_models", name="auto")
  if not found:
    raise NotImplementedError(
        'saliency="auto" needs a saliency model and none is installed: install the full package '
        "(pip install .) for the learned SaliencyNet, pass a mask (an (H, W) array in [0, 1] or a "
        "mask image file), or install a model with djpeg.roi.register_saliency(fn).")
  return next(iter(found)).load()


def default_background(saliency) -> float:
  """The background weight for a saliency argument: the auto model's own for "auto", else
  `BACKGROUND`."""
  if isinstance(saliency, str) and saliency == "auto":
    return float(getattr(auto_model(), "background", BACKGROUND))
  if isinstance(saliency, str) and saliency in SENSITIVITY_METRICS:
    return MSSSIM_BACKGROUND
  return BACKGROUND


#: Metrics whose per-block sensitivity can be measured (`sensitivity_map`), with the smallest
#: image side each needs.
SENSITIVITY_METRICS = {"ms-ssim": 11, "ssimulacra2": 8}


def msssim_map(image, quality: float = 50.0) -> np.ndarray:
  """MS-SSIM's weight of squared error in each 8x8 block: `saliency="ms-ssim"`
  (`sensitivity_map(image, "ms-ssim", quality)`)."""
  return sensitivity_map(image, "ms-ssim", quality)


def sensitivity_map(image, metric: str, quality: float = 50.0) -> np.ndarray:
  """A metric's weight of squared error in each 8x8 block of `image`, measured:
  `saliency="ms-ssim"` or `saliency="ssimulacra2"`.

  Codes the image with `djpeg.jpeg` at IJG `quality` (4:2:0) and reads, from that JPEG's error
  and the metric's gradient, how much the metric's loss grows per unit of squared error in each
  block (`djpeg.metrics.ms_ssim_sensitivity`, `ssimulacra2_sensitivity`). A rate-distortion
  optimizer that weighs errors by it spends bits where the metric gains most from them.

  Args:
    image: `(H, W, C)` float32 in [0, 1], C = 3 or 1.
    metric: "ms-ssim" or "ssimulacra2".
    quality: the operating point the sensitivity is measured at.
  Returns:
    `(H, W)` float32 in (0, 1], constant over each 8x8 block; all ones for images smaller than
    the metric takes (11 pixels on a side for MS-SSIM, 8 for SSIMULACRA 2).
  """
  if metric not in SENSITIVITY_METRICS:
    raise ValueError(f"unknown metric {metric!r}; expected one of "
                     f"{', '.join(map(repr, SENSITIVITY_METRICS))}.")
  a = np.asarray(image, np.float32)
  height, width = a.shape[:2]
  if min(height, width) < SENSITIVITY_METRICS[metric]:
    return np.ones((height, width), np.float32)
  blocks = block_sensitivity(jnp.asarray(a)[None], quality, metric=metric)[0]
  return np.asarray(pixel_map(blocks, height, width), np.float32)


def msssim_block_weights(images, quality, *, faithful: bool = True) -> jnp.ndarray:
  """`block_sensitivity(images, quality, metric="ms-ssim")`."""
  return block_sensitivity(images, quality, metric="ms-ssim", faithful=faithful)


def block_sensitivity(images, quality, *, metric: str = "ms-ssim",
                      faithful: bool = True) -> jnp.ndarray:
  """A metric's per-block weight of squared error around a 4:2:0 JPEG of `images` at `quality`.

  Args:
    images: `(B, H, W, C)` float32 in [0, 1], large enough for the metric.
    quality: IJG quality, scalar or `(B,)`.
    metric: "ms-ssim" or "ssimulacra2".
    faithful: libjpeg's integer arithmetic for the JPEG (False: the float pipeline, faster).
  Returns:
    `(B, ceil(H / 8), ceil(W / 8))` in (0, 1], largest 1 per image
    (`djpeg.metrics.ms_ssim_sensitivity` or `ssimulacra2_sensitivity` of the JPEG's decode).
  """
  decoded = jnp.clip(codec.jpeg(images, quality=quality, subsampling="4:2:0", faithful=faithful),
                     0.0, 1.0)
  if metric == "ssimulacra2":
    if images.shape[-1] == 1:
      images, decoded = (jnp.repeat(x, 3, axis=-1) for x in (images, decoded))
    return metrics.ssimulacra2_sensitivity(images, decoded)
  return metrics.ms_ssim_sensitivity(images, decoded)


def pixel_map(block_map, height: int, width: int) -> jnp.ndarray:
  """Per-block map `(..., rows, cols)` -> per-pixel `(..., height, width)` (each block's value
  over its 8x8 pixels, cropped to the image). Differentiable."""
  up = jnp.repeat(jnp.repeat(jnp.asarray(block_map), 8, axis=-2), 8, axis=-1)
  return up[..., :height, :width]


def _load_mask(path) -> np.ndarray:
  """A mask file as `(H, W)` in [0, 1]: gray or colour (its luma, as Pillow computes it);
  transparent pixels count as black (unimportant)."""
  try:
    pixels = load_image(path, matte="black")
  except ValueError as e:
    raise ValueError(f"saliency mask: {e}") from None
  if pixels.shape[-1] == 3:
    return np.asarray(Image.fromarray(pixels).convert("L"), np.float64) / 255.0
  return pixels[..., 0].astype(np.float64) / 255.0


def check_map(values, height: int, width: int, what: str = "saliency map") -> np.ndarray:
  """Validates an importance map for a `height x width` image; returns it as float32 `(H, W)`.

  Accepted: float values in [0, 1], booleans (True = important), or uint8 (0..255), shaped
  `(H, W)` or `(H, W, 1)`.

  Raises:
    ValueError: wrong shape, NaN or infinite values, negative values, floats above 1.
  """
  a = np.asarray(values)
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.shape != (height, width):
    raise ValueError(f"{what} must have the image's shape ({height}, {width}); got "
                     f"{tuple(np.shape(values))}. Resize it to the image first.")
  if a.dtype == bool:
    return a.astype(np.float32)
  if a.dtype == np.uint8:
    return a.astype(np.float32) / 255
  if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
    raise ValueError(f"{what} must be numeric (float in [0, 1], bool or uint8); got dtype {a.dtype}.")
  a = a.astype(np.float64)
  if not np.all(np.isfinite(a)):
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    raise ValueError(f"{what} holds NaN or infinite values (first at {idx}).")
  if np.any(a < 0):
    idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
    raise ValueError(f"{what} holds negative weights (first at {idx}: {a[idx]:g}); importance "
                     "must be >= 0.")
  if np.any(a > 1):
    raise ValueError(f"{what} must lie in [0, 1] (max {a.max():g}); scale it first (uint8 maps "
                     "are scaled by 1/255 automatically).")
  return a.astype(np.float32)


def check_importance(weights, height: int, width: int) -> np.ndarray:
  """Validates per-pixel distortion weights `(H, W)`: finite and >= 0 (any scale). float32."""
  a = np.asarray(weights)
  if a.ndim == 3 and a.shape[-1] == 1:
    a = a[..., 0]
  if a.shape != (height, width):
    raise ValueError(f"importance must have the image's shape ({height}, {width}); got "
                     f"{tuple(np.shape(weights))}.")
  a = a.astype(np.float64)
  if not np.all(np.isfinite(a)):
    raise ValueError("importance holds NaN or infinite values.")
  if np.any(a < 0):
    raise ValueError(f"importance holds negative weights (min {a.min():g}); weights must be >= 0.")
  return a.astype(np.float32)


def saliency_map(saliency, image) -> np.ndarray | None:
  """The `(H, W)` importance map in [0, 1] that `saliency` stands for, for `image` `(H, W, C)`.

  Args:
    saliency: None (no map); an array (see `check_map`); a path to a mask image (gray or RGB,
      white = important, same size as the image); a callable `image -> map`; "auto": the
      model installed with `register_saliency` (the learned saliency network's hook); or
      "ms-ssim": `msssim_map`, measured on the image.
  Raises:
    ValueError: a bad map or mask file.
    NotImplementedError: "auto" while no saliency model is installed (`auto_model`).
  """
  if saliency is None:
    return None
  height, width = np.shape(image)[:2]
  if isinstance(saliency, str) and saliency == "auto":
    return check_map(auto_model()(np.asarray(image, np.float32)), height, width,
                     "the saliency model's map")
  if isinstance(saliency, str) and saliency in SENSITIVITY_METRICS:
    return sensitivity_map(image, saliency)
  if isinstance(saliency, (str, os.PathLike)):
    return check_map(_load_mask(saliency), height, width, f"saliency mask {os.fspath(saliency)!r}")
  if callable(saliency):
    return check_map(saliency(np.asarray(image, np.float32)), height, width, "the saliency map")
  return check_map(saliency, height, width)


def pixel_weights(saliency: np.ndarray, background: float = BACKGROUND) -> np.ndarray:
  """Per-pixel distortion weights `(H, W)` from a map in [0, 1], normalised to mean 1.

  `background + (1 - background) * map`: the most important pixels weigh 1 / background times
  the least important. A map that is all zero (nothing important) weighs every pixel alike.
  """
  if not (checks.is_real_number(background) and 0 < float(background) <= 1):
    raise ValueError(f"background must be in (0, 1]; got {background!r}.")
  w = background + (1.0 - background) * np.asarray(saliency, np.float64)
  return (w / w.mean()).astype(np.float32)


def block_means(pixel_map, height: int, width: int, factors) -> tuple:
  """Mean of a pixel map over the area each 8x8 block of each component covers.

  The map is padded by edge repetition to whole MCUs, as libjpeg pads the image. Works on numpy
  or JAX arrays (differentiable), with optional leading batch axes.

  Args:
    pixel_map: `(..., H, W)`.
    factors: sampling factors, e.g. `djpeg.sampling.factors_for("4:2:0", 3)`.
  Returns:
    One `(..., rows_c, cols_c)` array per component.
  """
  pixel_map = jnp.asarray(pixel_map, jnp.float32)
  out = []
  for c in range(len(factors)):
    rh, rv = sampling_lib.ratios(factors, c)
    rows, cols = sampling_lib.component_blocks(height, width, factors, c)
    th, tw = 8 * rv, 8 * rh
    padded = sampling_lib.pad_edge(pixel_map, rows * th, cols * tw)[..., :rows * th, :cols * tw]
    tiles = padded.reshape(padded.shape[:-2] + (rows, th, cols, tw))
    out.append(tiles.mean(axis=(-3, -1)))
  return tuple(out)


def block_weights(saliency: np.ndarray, height: int, width: int, factors,
                  background: float = BACKGROUND) -> list[np.ndarray]:
  """Per component `(rows, cols)` distortion weights of each block from a map in [0, 1]."""
  weights = pixel_weights(saliency, background)
  return [np.asarray(b, np.float64) for b in block_means(weights, height, width, factors)]


def deadzone(weights, tables, *, lmbda, height: int, width: int, subsampling: str = "4:2:0",
             bits: float = DEADZONE_BITS, limit: float = 64.0) -> tuple:
  """Dead-zone offsets that mimic the trellis for `djpeg.encode(..., deadzone=)`.

  theta = bits / (2 * lmbda * m_b * W_k * Q_k^2) for block weight m_b, frequency weight W_k
  (`djpeg.optimize`'s model of RGB MSE, per pixel) and step Q_k: the threshold below which the
  trellis zeroes an isolated +-1 costing `bits` bits (`djpeg.quantization`). Differentiable in
  `weights`, `tables` and `lmbda` (JAX).

  Args:
    weights: per component `(..., rows, cols)` block weights (`block_weights`, or a network's
      map through `block_means`).
    tables: `(..., C, 8, 8)` quantization steps (per component).
    lmbda: bits per pixel per unit of RGB MSE (as `djpeg.optimize_tables`' lmbda).
    limit: cap on theta (a block of weight 0 gets the cap: every AC coefficient zeroed).
  Returns:
    One `(..., rows, cols, 8, 8)` array per component; the DC entry is 0 (the trellis rounds
    every DC).
  """
  factors = sampling_lib.factors_for(subsampling, len(weights))
  w = rgb_mse_weights(factors, height * width)
  tables = jnp.asarray(tables, jnp.float32)
  out = []
  for c, m in enumerate(weights):
    # Per pixel MSE weights times the pixel count: distortion in squared-error units per image,
    # matching bits per image.
    per_error = jnp.asarray(w[c]) * (height * width) * tables[..., c, :, :] ** 2
    scale = 2.0 * lmbda * jnp.asarray(m, jnp.float32)[..., None, None] * per_error[..., None, None, :, :]
    theta = jnp.minimum(bits / jnp.maximum(scale, bits / limit), limit)
    # The trellis keeps every DC as libjpeg rounds it (its difference couples the blocks).
    out.append(theta * _AC_ONLY)
  return tuple(out)


def _salient(saliency: np.ndarray) -> np.ndarray:
  """Prakash et al.'s split: saliency at or above its median. When the median is the map's
  minimum (a binary mask covering under half the image), pixels at the minimum are background."""
  median = np.median(saliency)
  if median <= saliency.min():
    return saliency > median
  return saliency >= median


def _pillow_decode_at(pixels: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=int(quality), subsampling=subsampling)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def msroi_mosaic(pixels: np.ndarray, saliency, *, low: int = 80, high: int = 100) -> np.ndarray:
  """Prakash et al. 2017's mosaic: salient pixels from a quality-`high` JPEG, the rest from `low`.

  Their default model ("model 6" of their code): each pixel is taken from the decode of a JPEG
  at quality `high` (100) where the saliency is at or above its median and at quality `low`
  (80) elsewhere; JPEGs by libjpeg-turbo through Pillow with its default 4:2:0, as theirs were.

  Args:
    pixels: uint8 `(H, W, 3)`.
    saliency: `(H, W)` map (see `check_map`).
  Returns:
    uint8 `(H, W, 3)` mosaic, to be JPEG-encoded once at a global quality (`msroi`).
  """
  pixels = np.ascontiguousarray(pixels, np.uint8)
  if pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f"pixels must be uint8 (H, W, 3); got shape {pixels.shape}.")
  sal = check_map(saliency, pixels.shape[0], pixels.shape[1])
  salient = _salient(sal)
  hi = _pillow_decode_at(pixels, high, 2)
  lo = _pillow_decode_at(pixels, low, 2)
  return np.where(salient[..., None], hi, lo)


def msroi(pixels: np.ndarray, saliency, *, quality: int, low: int = 80, high: int = 100,
          optimize: bool = True) -> bytes:
  """The MS-ROI file: `msroi_mosaic` re-encoded once by libjpeg-turbo (Pillow, 4:2:0) at
  `quality`. Prakash et al. pick the quality whose file fits the byte budget of the uniform
  JPEG it is compared with; `bench/roi.py` does the same."""
  buf = io.BytesIO()
  Image.fromarray(msroi_mosaic(pixels, saliency, low=low, high=high)).save(
      buf, "JPEG", quality=int(quality), subsampling=2, optimize=optimize)
  return buf.getvalue()
