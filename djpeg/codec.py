"""The differentiable JPEG codec: `encode` images to `Coefficients`, `decode` them back, `jpeg`.

The pipeline is libjpeg-turbo's, stage by stage:

  encode: 8-bit samples -> YCbCr (`color`) -> edge padding and box downsampling (`sampling`)
          -> 8x8 blocks (`blocks`) -> integer DCT (`dct`) -> quantization (`quantization`)
  decode: dequantization -> integer IDCT with range limit -> triangle upsampling -> RGB

With `faithful=True` (the default) every stage computes libjpeg's integer arithmetic exactly, so
`encode` returns the coefficients libjpeg-turbo (and Pillow) would store and `decode` returns the
pixels they would decode; gradients are those of the float formulas behind each stage, with
straight-through rounding. With `faithful=False` the same stages run in float32 without the 8-bit
roundings. In both modes only the coefficient rounding uses the chosen surrogate (`rounding=`).

All functions accept one image `(H, W, C)` or a batch `(B, H, W, C)`, float in [0, 1] (concrete
values outside are refused; traced ones, which cannot be checked, are clipped straight-through),
C = 3 (RGB) or 1 (gray), any H, W >= 1. They compile once
per shape and option set and work under `jax.jit`, `jax.vmap` and `jax.grad`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from djpeg import checks, decode_compiled, encode_compiled, sampling
from djpeg.blocks import blockify, unblockify
from djpeg.coefficients import Coefficients
from djpeg.color import image_to_ycbcr_planes, ycbcr_planes_to_image
from djpeg.dct import fdct, fdct_islow, idct, idct_islow
from djpeg.quantization import dequantize, quantize
from djpeg.rounding import ROUNDINGS, clip_ste, round_ste
from djpeg.tables import (ANNEX_K, DEFAULT_QUALITY, concrete_quality_tables, quality_scale,
                          round_tables, scale_tables)


def _component_tables(tables: jax.Array, num_components: int) -> jax.Array:
  """`(..., k, 8, 8)` with k in {1, 2, 3} to one table per component, `(..., C, 8, 8)`.

  k = 1: one table for all; k = 2: [luma, chroma] as libjpeg assigns them; k = 3: Y, Cb, Cr.
  A gray image uses the first (luma) table.
  """
  k = tables.shape[-3]
  if num_components == 1:
    return tables[..., :1, :, :]
  index = {1: [0, 0, 0], 2: [0, 1, 1], 3: [0, 1, 2]}[k]
  return tables[..., index, :, :]


def resolve_tables(quality, tables, batch_shape: tuple[int, ...], num_components: int) -> jax.Array:
  """The per-image, per-component steps `encode` will use: `batch_shape + (C, 8, 8)`.

  * neither given: `DEFAULT_QUALITY` (75) on the Annex K tables (libjpeg's default);
  * `quality` only: the Annex K tables scaled by IJG's rule (`djpeg.quality_tables`);
  * `tables` only: those tables, rounded to integers (straight-through);
  * both: `tables` are base tables scaled by `quality`, as libjpeg scales custom tables.

  `quality` is a scalar or one value per image; `tables` is `(8, 8)`, `(k, 8, 8)` shared by all
  images, or `batch_shape + (k, 8, 8)`, with k = 1 (all components), 2 (luma, chroma) or
  3 (Y, Cb, Cr).
  """
  quality, base = _table_arguments(quality, tables, batch_shape)
  return _steps(quality, base, batch_shape=batch_shape, num_components=num_components)


def _table_arguments(quality, tables, batch_shape: tuple[int, ...]):
  """Checks `resolve_tables`' arguments; returns `(quality, base)` as `_steps` takes them.

  `quality` comes back as float32 (None when only tables are given), `base` as the float32
  tables to scale or round; numpy stays numpy, so a jitted consumer transfers both at once.
  """
  if isinstance(quality, (list, tuple)):
    quality = np.asarray(quality)           # one per image, as a list
  if quality is not None:
    dtype = jnp.result_type(quality) if not isinstance(quality, str) else None
    if dtype is None or isinstance(quality, bool) or not (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
      raise ValueError(f"quality must be a number in [1, 100] (or one per image); got "
                       f"{quality!r}.")
    checks.concrete_range("quality", quality, 1, 100)
    q_shape = np.shape(quality)
    if q_shape not in ((), batch_shape):
      raise ValueError(f"quality must be a scalar or have one value per image, shape {batch_shape}; "
                       f"got shape {q_shape}.")
  if tables is None:
    base = ANNEX_K
  else:
    try:
      t_shape = np.shape(tables)
    except ValueError:                # ragged nested lists
      raise ValueError("tables must be an array of shape (8, 8) or (k, 8, 8); got lists of "
                       "unequal lengths.") from None
    if len(t_shape) == 2 and t_shape == (8, 8):
      tables = (jnp.reshape(tables, (1, 8, 8)) if isinstance(tables, jax.Array)
                else np.reshape(tables, (1, 8, 8)))
      t_shape = (1, 8, 8)
    t_dtype = jnp.result_type(tables) if hasattr(tables, "dtype") else np.asarray(tables).dtype
    if not (jnp.issubdtype(t_dtype, jnp.floating) or jnp.issubdtype(t_dtype, jnp.integer)):
      raise ValueError(f"tables must hold real numbers (steps 1..255); got dtype {t_dtype}.")
    if (len(t_shape) < 3 or t_shape[-2:] != (8, 8) or t_shape[-3] not in (1, 2, 3)
        or t_shape[:-3] not in ((), batch_shape)):
      raise ValueError(
          f"tables must have shape (8, 8), (k, 8, 8) or {batch_shape + ('k', 8, 8)} with k = 1, 2 "
          f"or 3 (all components; luma and chroma; Y, Cb and Cr); got shape {t_shape}.")
    hi = 32767 if quality is not None else 255
    checks.concrete_range("tables", tables, 1, hi, what="entries")
    base = tables
  if quality is None and tables is None:
    quality = DEFAULT_QUALITY
  as_f32 = lambda x: jnp.asarray(x, jnp.float32) if isinstance(x, jax.Array) else np.asarray(x, np.float32)
  return (None if quality is None else as_f32(quality)), as_f32(base)


@functools.partial(jax.jit, static_argnames=("batch_shape", "num_components"))
def _steps(quality, base, *, batch_shape, num_components):
  """The arithmetic of `resolve_tables`, compiled (eagerly it is a dozen small dispatches)."""
  if quality is not None:
    scale = quality_scale(quality)
    steps = scale_tables(base, jnp.reshape(scale, jnp.shape(scale) + (1, 1, 1)))
  else:
    steps = round_tables(base)
  steps = _component_tables(steps, num_components)
  return jnp.broadcast_to(steps, batch_shape + (num_components, 8, 8))


def _concrete_steps(quality, base, num_components: int) -> np.ndarray:
  """`_steps` for one image's concrete arguments, in numpy (the same values, no XLA program)."""
  if isinstance(quality, jax.Array) or isinstance(base, jax.Array):
    return np.asarray(_steps(quality, base, batch_shape=(), num_components=num_components))
  if quality is not None:
    steps = concrete_quality_tables(float(quality), base)
  else:
    steps = np.clip(np.floor(np.asarray(base, np.float32) + np.float32(0.5)), 1, 255)
  if steps.ndim == 2:
    steps = steps[None]
  index = [0] if num_components == 1 else {1: [0, 0, 0], 2: [0, 1, 1], 3: [0, 1, 2]}[steps.shape[0]]
  return np.ascontiguousarray(steps[index], np.float32)


@functools.partial(jax.jit, static_argnames=("factors", "faithful"))
def _transform(images, *, factors, faithful):
  """images `(N, H, W, C)` -> per component DCT coefficients `(N, rows, cols, 8, 8)`.

  Images are float in [0, 1], or uint8 samples (a batch's fast path: a quarter of the bytes
  to move, no rounding to undo).
  """
  _, height, width, channels = images.shape
  if images.dtype == jnp.uint8:
    samples = images.astype(jnp.float32)
  else:
    samples = clip_ste(images, 0.0, 1.0) * 255.0
    if faithful:
      samples = round_ste(samples)
  if channels == 3:
    planes = image_to_ycbcr_planes(samples, exact=faithful)
  else:
    planes = [samples[..., 0]]
  out = []
  for c in range(channels):
    rh, rv = sampling.ratios(factors, c)
    rows, cols = sampling.component_blocks(height, width, factors, c)
    plane = sampling.downsample_component(planes[c], rh, rv, rows, cols, exact=faithful)
    blocks = blockify(plane)
    out.append(fdct_islow(blocks) if faithful else fdct(blocks - 128.0))
  return tuple(out)


@functools.partial(jax.jit, static_argnames=("factors", "rounding", "faithful"))
def _encode(images, steps, key, deadzone=None, *, factors, rounding, faithful):
  """images `(N, H, W, C)` in [0, 1], steps `(N, C, 8, 8)` -> quantized components.

  `deadzone`: None, or per component `(N, rows, cols, 1, 1)` or `(N, rows, cols, 8, 8)`.
  """
  dct = _transform(images, factors=factors, faithful=faithful)
  keys = [None] * len(dct) if key is None else list(jax.random.split(key, len(dct)))
  zones = [None] * len(dct) if deadzone is None else deadzone
  return tuple(quantize(d, steps[:, c, None, None, :, :], rounding=rounding, key=keys[c],
                        deadzone=zones[c])
               for c, d in enumerate(dct))


def _deadzone_arg(deadzone, batch_shape, height, width, factors):
  """Per-component dead-zone maps to `(N, rows, cols, 1, 1)` or `(N, rows, cols, 8, 8)` arrays.

  Each component's map is per block, `(rows, cols)`, or per coefficient, `(rows, cols, 8, 8)`,
  optionally with the batch axes in front; values are offsets >= 0 in steps.
  """
  if deadzone is None:
    return None
  if isinstance(deadzone, (jax.Array, np.ndarray)) or not hasattr(deadzone, "__len__"):
    raise ValueError(f"deadzone must be a sequence of {len(factors)} arrays, one per component "
                     "(their block grids differ with subsampling); see djpeg.roi.deadzone.")
  if len(deadzone) != len(factors):
    raise ValueError(f"deadzone needs one array per component ({len(factors)}); got {len(deadzone)}.")
  out = []
  for c, zone in enumerate(deadzone):
    rows, cols = sampling.component_blocks(height, width, factors, c)
    shape = tuple(np.shape(zone))
    if shape[-4:] == (rows, cols, 8, 8) and shape[:-4] in ((), batch_shape):
      zone = jnp.asarray(zone, jnp.float32)
    elif shape[-2:] == (rows, cols) and shape[:-2] in ((), batch_shape):
      zone = jnp.asarray(zone, jnp.float32)[..., None, None]
    else:
      raise ValueError(
          f"deadzone of component {c} must have shape {batch_shape + (rows, cols)} (per block) or "
          f"{batch_shape + (rows, cols, 8, 8)} (per coefficient), batch axes optional; got {shape}.")
    checks.concrete_range(f"deadzone of component {c}", zone, 0.0, np.inf)
    zone = jnp.broadcast_to(zone, batch_shape + zone.shape[-4:])
    out.append(zone.reshape((-1,) + zone.shape[len(batch_shape):]))
  return tuple(out)


def transform(images, *, subsampling: str = "4:2:0", faithful: bool = True) -> tuple[jax.Array, ...]:
  """The encoder up to quantization: colour conversion, downsampling and DCT.

  `encode(images, tables=t)` equals quantizing these coefficients by `t` (with libjpeg's rounding),
  which is what per-image table optimization exploits: transform once, quantize many times.

  Args:
    images, subsampling, faithful: as for `encode`.
  Returns:
    One array per component (Y, Cb, Cr or gray), `(..., rows, cols, 8, 8)` DCT coefficients in
    orthonormal units (multiples of 1/8 in faithful mode, libjpeg's integer DCT output / 8).
  """
  shape = checks.check_images(images)
  checks.check_choice("subsampling", subsampling, sampling.SUBSAMPLINGS)
  batch_shape, (height, width, channels) = shape[:-3], shape[-3:]
  factors = sampling.factors_for(subsampling, channels)
  flat = jnp.asarray(images, jnp.float32).reshape((-1, height, width, channels))
  out = _transform(flat, factors=factors, faithful=faithful)
  return tuple(c.reshape(batch_shape + c.shape[1:]) for c in out)


def _pixel_geometry(pixels, subsampling: str):
  """Checks 8-bit pixels `(H, W, C)` / `(B, H, W, C)`; returns (batch shape, H, W, C, factors)."""
  shape = np.shape(pixels)
  if len(shape) not in (3, 4) or shape[-1] not in (1, 3) or min(shape[-3:-1]) < 1:
    raise ValueError(f"pixels must be (H, W, C) or (B, H, W, C) with C = 1 or 3; got {shape}.")
  dtype = getattr(pixels, "dtype", None)
  dtype = np.dtype(dtype) if dtype is not None else np.asarray(pixels).dtype
  if dtype != np.uint8:       # a cast would wrap 16-bit values and truncate floats silently
    raise ValueError(f"pixels must be uint8 8-bit samples; got {dtype} (float images in [0, 1] "
                     "go to djpeg.encode / djpeg.transform).")
  checks.check_choice("subsampling", subsampling, sampling.SUBSAMPLINGS)
  batch_shape, (height, width, channels) = shape[:-3], shape[-3:]
  return batch_shape, height, width, channels, sampling.factors_for(subsampling, channels)


def _component_planes(pixels: np.ndarray, factors, chroma_fit: float = 0.0) -> list[np.ndarray]:
  """Per component the `(8 rows, 8 cols)` uint8 sample grid libjpeg codes for one image
  `(H, W, C)` uint8 (`djpeg.encode_compiled`: colour conversion, padding, downsampling); with
  `chroma_fit` above 0, downsampled components fitted to the decoder's upsampling
  (`encode_compiled.fitted_component_plane`, that much of the fit mixed with the box average)."""
  height, width = pixels.shape[:2]
  pixels = np.ascontiguousarray(pixels, np.uint8)
  if pixels.shape[-1] == 3:
    # A read-only view whatever the caller passed, and a gray plane copied (writable, as the
    # colour planes are): one numba type each, compiled once (a writable and a read-only array
    # are two types to numba, and each cost a compilation on first use).
    view = pixels.view()
    view.flags.writeable = False
    planes = encode_compiled.ycc_planes(view)
  else:
    planes = (pixels[..., 0].copy(),)
  out = []
  for c, plane in enumerate(planes):
    rh, rv = sampling.ratios(factors, c)
    rows, cols = sampling.component_blocks(height, width, factors, c)
    plane = np.ascontiguousarray(plane)
    if chroma_fit > 0 and rh * rv > 1:
      out.append(encode_compiled.fitted_component_plane(plane, rh, rv, rows, cols,
                                                        float(chroma_fit)))
    else:
      out.append(encode_compiled.component_plane(plane, rh, rv, rows, cols))
  return out


def transform_pixels(pixels: np.ndarray, *, subsampling: str = "4:2:0",
                     chroma_fit: float = 0.0) -> tuple[np.ndarray, ...]:
  """`transform` for 8-bit pixels `(H, W, C)` uint8, as the exporter needs it: the same
  coefficients as `transform(pixels / 255)`, as numpy float32 arrays, computed by compiled
  loops (`djpeg.encode_compiled`: no XLA program per image size, and no float copy of the
  image).

  `chroma_fit` in [0, 1]: 0 downsamples as libjpeg does (box average); above 0, subsampled
  components are fitted to the decoder's fancy upsampling and mixed with the box average in
  that proportion (`encode_compiled.fitted_component_plane`; the default mode uses it)."""
  batch_shape, height, width, channels, factors = _pixel_geometry(pixels, subsampling)
  if batch_shape:
    raise ValueError(f"transform_pixels takes one image (H, W, C); got {np.shape(pixels)}.")
  if not 0.0 <= float(chroma_fit) <= 1.0:
    raise ValueError(f"chroma_fit must be in [0, 1]; got {chroma_fit}.")
  return tuple(encode_compiled.forward_dct(p)
               for p in _component_planes(pixels, factors, float(chroma_fit)))


def luma_for_coded_chroma(pixels: np.ndarray, chroma, chroma_tables, *,
                          subsampling: str = "4:2:0") -> np.ndarray:
  """The luma DCT `(rows, cols, 8, 8)` float32 (orthonormal units, as `transform_pixels`) of
  the Y plane chosen for the chroma a decoder will show of `chroma`: each pixel's linear-light
  brightness under that chroma made equal to the image's (`encode_compiled.luma_for_chroma`;
  the default mode codes its luma so, `djpeg.perceptual`).

  Args:
    pixels: `(H, W, 3)` uint8 RGB.
    chroma: the two chroma components' quantized coefficients `(rows, cols, 8, 8)` (integers),
      as they will be coded.
    chroma_tables: their `(2, 8, 8)` integer steps.
    subsampling: the chroma subsampling they were coded with.
  Raises:
    ValueError: not one RGB image, or chroma or tables of other shapes.
  """
  batch_shape, height, width, channels, factors = _pixel_geometry(pixels, subsampling)
  if batch_shape or channels != 3:
    raise ValueError("luma_for_coded_chroma takes one RGB image (H, W, 3); "
                     f"got {np.shape(pixels)}.")
  expected = [sampling.component_blocks(height, width, factors, c) + (8, 8) for c in (1, 2)]
  if len(chroma) != 2 or [np.shape(c) for c in chroma] != expected:
    raise ValueError(f"chroma must be the two chroma components {expected} of a {height}x{width} "
                     f"{subsampling} image; got shapes {[np.shape(c) for c in chroma]}.")
  if np.shape(chroma_tables) != (2, 8, 8):
    raise ValueError(f"chroma_tables must be (2, 8, 8); got {np.shape(chroma_tables)}.")
  view = np.ascontiguousarray(pixels, np.uint8).view()
  view.flags.writeable = False
  planes = encode_compiled.ycc_planes(view)
  steps = np.asarray(chroma_tables, np.int32)
  # Contiguous whatever the subsampling: one numba signature of the solve (a 4:4:4 plane is a
  # view of the IDCT's padded samples).
  coded = [np.ascontiguousarray(_decoded_plane(np.asarray(chroma[c - 1], np.int32), steps[c - 1],
                                               height, width, factors, c)) for c in (1, 2)]
  luma = encode_compiled.luma_for_chroma(view, *planes, *coded)
  rh, rv = sampling.ratios(factors, 0)
  return encode_compiled.forward_dct(encode_compiled.component_plane(
      luma, rh, rv, *sampling.component_blocks(height, width, factors, 0)))


def encode_pixels(pixels: np.ndarray, *, quality=None, tables=None,
                  subsampling: str = "4:2:0") -> Coefficients:
  """`encode` for 8-bit pixels `(H, W, C)` or `(B, H, W, C)` uint8, as the file writer needs it.

  Equal to `encode(pixels / 255, ...)` with exact rounding, without the float round trip: one
  image by compiled loops (`transform_pixels`), a batch in one compiled XLA call (tables,
  transform, quantization and reshapes). The components come back as int16
  (what a file stores; 8-bit samples give |values| <= 1024), so the writer needs no conversion.
  """
  batch_shape, height, width, channels, factors = _pixel_geometry(pixels, subsampling)
  quality, base = _table_arguments(quality, tables, batch_shape)
  if not batch_shape:           # one image: compiled loops (`transform_pixels`), no XLA
    steps = _concrete_steps(quality, base, channels)
    components = tuple(encode_compiled.quantize_dct(p, steps[c].astype(np.int32))
                       for c, p in enumerate(_component_planes(pixels, factors)))
    return Coefficients(components, steps, height, width, factors)
  components, steps = _encode_pixels(np.asarray(pixels, np.uint8), quality, base,
                                     batch_shape=batch_shape, factors=factors)
  return Coefficients(components, steps, height, width, factors)


@functools.partial(jax.jit, static_argnames=("batch_shape", "factors"))
def _encode_pixels(pixels, quality, base, *, batch_shape, factors):
  """uint8 pixels `batch_shape + (H, W, C)` -> (quantized components, steps), both batch-shaped."""
  height, width, channels = pixels.shape[-3:]
  steps = _steps(quality, base, batch_shape=batch_shape, num_components=channels)
  flat = pixels.reshape((-1, height, width, channels))
  components = _encode(flat, steps.reshape((-1, channels, 8, 8)), None, factors=factors,
                       rounding="ste", faithful=True)
  return tuple(c.astype(jnp.int16).reshape(batch_shape + c.shape[1:]) for c in components), steps


def encode(images, *, quality=None, tables=None, subsampling: str = "4:2:0", rounding: str = "ste",
           faithful: bool = True, key: jax.Array | None = None, deadzone=None) -> Coefficients:
  """JPEG-encodes images to quantized DCT coefficients, differentiably.

  Args:
    images: `(H, W, C)` or `(B, H, W, C)` float in [0, 1]; C = 3 (RGB) or 1 (gray).
    quality: IJG quality in [1, 100], a scalar or one per image (`(B,)`). Differentiable.
      Default `djpeg.tables.DEFAULT_QUALITY` (75) when `tables` is not given either.
    tables: quantization tables in natural order, `(8, 8)`, `(k, 8, 8)` or `(B, k, 8, 8)` with
      k = 1 (all components), 2 (luma, chroma) or 3 (Y, Cb, Cr); entries in 1..255, rounded to
      integers in the forward pass. Differentiable. With `quality` too, they are base tables
      scaled by it (as libjpeg scales custom tables).
    subsampling: "4:2:0" (default), "4:2:2" or "4:4:4". Ignored for gray images.
    rounding: coefficient rounding surrogate: "ste" (default), "ste_cubic", "cubic" or "noise"
      (see `djpeg.rounding`).
    faithful: reproduce libjpeg-turbo's integer arithmetic exactly (default); False runs the same
      pipeline in float32.
    key: `jax.random` key, required with rounding="noise".
    deadzone: optional per-block quality map, the differentiable stand-in for the exporter's
      trellis (`djpeg.quantization`): one array per component of dead-zone offsets >= 0 in
      steps, `(rows_c, cols_c)` per block or `(rows_c, cols_c, 8, 8)` per coefficient (batch
      axes optional in front); 0 is plain rounding, larger zeroes more. `djpeg.roi.deadzone`
      derives it from an importance map as the trellis would act. Differentiable (sigmoid
      surrogate); needs rounding "ste" or "ste_cubic". None (default): the exact codec.
  Returns:
    `Coefficients` with batch shape `()` or `(B,)`, C components, and the tables used.
  Raises:
    ValueError: bad shapes, dtypes or option names, or (when concrete) NaN/inf images, quality
      outside [1, 100], tables outside 1..255, or negative or NaN dead-zone offsets.
  """
  shape = checks.check_images(images)
  checks.check_choice("rounding", rounding, ROUNDINGS)
  checks.check_choice("subsampling", subsampling, sampling.SUBSAMPLINGS)
  if rounding == "noise" and key is None:
    raise ValueError('rounding="noise" needs a PRNG key: pass key=jax.random.key(seed).')
  batch_shape, (height, width, channels) = shape[:-3], shape[-3:]
  factors = sampling.factors_for(subsampling, channels)
  steps = resolve_tables(quality, tables, batch_shape, channels)
  zones = _deadzone_arg(deadzone, batch_shape, height, width, factors)
  if zones is not None and rounding not in ("ste", "ste_cubic"):
    raise ValueError(f'deadzone needs an exact-forward rounding ("ste" or "ste_cubic"); got '
                     f'rounding={rounding!r}.')
  images = jnp.asarray(images, jnp.float32).reshape((-1, height, width, channels))
  components = _encode(images, steps.reshape((-1, channels, 8, 8)), key, zones,
                       factors=factors, rounding=rounding, faithful=faithful)
  components = tuple(c.reshape(batch_shape + c.shape[1:]) for c in components)
  return Coefficients(components, steps, height, width, factors)


@functools.partial(jax.jit, static_argnames=("faithful",))
def _decode(coefficients: Coefficients, *, faithful: bool) -> jax.Array:
  """Coefficients with batch shape (N,) -> images (N, H, W, C)."""
  height, width, factors = coefficients.height, coefficients.width, coefficients.sampling
  steps = jnp.asarray(coefficients.tables, jnp.float32)
  planes = []
  # NaN steps or coefficients (a traced NaN quality, a diverged training step) come out as NaN
  # images, not as the grey the integer IDCT would make of them, so that a NaN guard sees them.
  poisoned = jnp.isnan(steps).any(axis=(-3, -2, -1))
  for c, quantized in enumerate(coefficients.components):
    quantized = jnp.asarray(quantized, jnp.float32)
    poisoned = poisoned | jnp.isnan(quantized).any(axis=(-4, -3, -2, -1))
    deq = dequantize(quantized, steps[:, c, None, None, :, :])
    samples = idct_islow(deq) if faithful else clip_ste(idct(deq) + 128.0, 0.0, 255.0)
    size = sampling.component_size(height, width, factors, c)
    rh, rv = sampling.ratios(factors, c)
    plane = sampling.upsample(unblockify(samples), rh, rv, exact=faithful, size=size)
    planes.append(plane[:, :height, :width])
  if len(planes) == 3:
    samples = ycbcr_planes_to_image(*planes, exact=faithful)
  else:
    samples = planes[0][..., None]
  images = clip_ste(samples / 255.0, 0.0, 1.0)
  return jnp.where(poisoned[:, None, None, None], jnp.float32(jnp.nan), images)


def decode(coefficients: Coefficients, *, faithful: bool = True) -> jax.Array:
  """Decodes quantized coefficients to images, as libjpeg-turbo does by default.

  Args:
    coefficients: from `encode` or `djpeg.load_coefficients`.
    faithful: libjpeg-turbo's integer IDCT, fancy upsampling and colour conversion, bit exact
      (default); False runs them in float32.
  Returns:
    `coefficients.batch_shape + (H, W, C)` float32 images in [0, 1]; C = 3 (RGB) for three
    components, 1 for gray.
  """
  if not isinstance(coefficients, Coefficients):
    raise ValueError(f"decode takes Coefficients (from encode or djpeg.load_coefficients); got "
                     f"{type(coefficients).__name__}.")
  coefficients.check()
  batch_shape = coefficients.batch_shape
  flat = jax.tree.map(lambda a: jnp.reshape(a, (-1,) + jnp.shape(a)[len(batch_shape):]),
                      coefficients)
  images = _decode(flat, faithful=faithful)
  return images.reshape(batch_shape + images.shape[1:])


def decode_pixels(coefficients: Coefficients) -> jax.Array:
  """libjpeg-turbo's 8-bit output for `coefficients`: `decode(coefficients)` as the uint8
  samples `(..., H, W, C)` it came from, in one compiled call (an encoder scoring candidates
  needs the pixels every decoder shows, not a float image)."""
  coefficients.check()
  batch_shape = coefficients.batch_shape
  compiled = _decode_pixels_compiled(coefficients) if jax.default_backend() == "cpu" else None
  if compiled is not None:
    return jnp.asarray(compiled.reshape(batch_shape + compiled.shape[1:]))
  flat = jax.tree.map(lambda a: jnp.reshape(a, (-1,) + jnp.shape(a)[len(batch_shape):]),
                      coefficients)
  pixels = _decode_pixels(flat)
  return pixels.reshape(batch_shape + pixels.shape[1:])


def decode_samples(coefficients: Coefficients) -> np.ndarray:
  """`decode_pixels` as a numpy array, by compiled loops on this CPU whatever JAX's default
  device (`djpeg.decode_compiled`; no XLA program): for an encoder's candidates, whose pixels
  go on to numpy code. Needs concrete, integer-valued coefficients and tables.

  Raises:
    ValueError: traced or fractional coefficients or tables (use `decode_pixels`).
  """
  coefficients.check()
  compiled = _decode_pixels_compiled(coefficients)
  if compiled is None:
    raise ValueError("decode_samples needs concrete, integer-valued coefficients and tables; "
                     "use decode_pixels for traced or fractional ones.")
  return compiled.reshape(coefficients.batch_shape + compiled.shape[1:])


def _integral(a) -> np.ndarray | None:
  """`a` as an int32 numpy array if it is concrete and integer-valued, else None."""
  if isinstance(a, jax.core.Tracer):
    return None
  a = np.asarray(a)
  if a.dtype.kind in "iu":
    return a.astype(np.int32, copy=False)
  if a.dtype.kind == "f" and np.all(np.abs(a) <= 32767) and np.array_equal(np.rint(a), a):
    return a.astype(np.int32)
  return None


def _decode_pixels_compiled(coefficients: Coefficients) -> np.ndarray | None:
  """`_decode_pixels` as compiled loops (`djpeg.decode_compiled`: the same integer arithmetic)
  for concrete integer coefficients and tables: `(B, H, W, C)` uint8 over the flattened batch;
  None otherwise."""
  components = [_integral(c) for c in coefficients.components]
  steps = _integral(coefficients.tables)
  if steps is None or any(c is None for c in components):
    return None
  batch = coefficients.batch_shape
  components = [c.reshape((-1,) + c.shape[len(batch):]) for c in components]
  steps = np.broadcast_to(steps, batch + steps.shape[-3:]).reshape((-1,) + steps.shape[-3:])
  height, width, factors = coefficients.height, coefficients.width, coefficients.sampling
  images = []
  for b in range(components[0].shape[0]):
    planes = [_decoded_plane(quantized[b], steps[b, c], height, width, factors, c)
              for c, quantized in enumerate(components)]
    images.append(decode_compiled.ycc_to_rgb(*planes) if len(planes) == 3
                  else planes[0][..., None])
  return np.stack(images)


def _decoded_plane(quantized, steps, height: int, width: int, factors, c: int) -> np.ndarray:
  """Component `c`'s quantized coefficients `(rows, cols, 8, 8)` int32 and `(8, 8)` int32 steps
  -> the `(height, width)` uint8 plane libjpeg-turbo's decoder makes of them (islow IDCT, then
  its upsampling; compiled loops)."""
  samples = decode_compiled.idct_plane(quantized, steps)
  rh, rv = sampling.ratios(factors, c)
  if (rh, rv) == (1, 1):
    return samples[:height, :width]
  rows, cols = sampling.component_size(height, width, factors, c)
  return decode_compiled.upsample_plane(samples, rows, cols, rh, rv,
                                        sampling.uses_fancy(rh, rv, cols), height, width)


@jax.jit
def _decode_pixels(coefficients: Coefficients) -> jax.Array:
  return jnp.round(_decode(coefficients, faithful=True) * 255.0).astype(jnp.uint8)


def decode_stripes(coefficients: Coefficients, rows: int = 1024):
  """Decodes one image in stripes of about `rows` pixel rows: yields `(top, stripe)`, the
  stripe `(h, W, C)` float32 in [0, 1] being rows `top:top + h` of `decode(coefficients)`,
  exactly: each stripe is decoded with one MCU row of context above and below (what fancy
  upsampling reads across a stripe's edge), then cut. A large image then needs the memory of a
  stripe's decode, not the whole image's (about 60 bytes a pixel); shapes, and so compilations,
  are a few per image width.

  Args:
    coefficients: one image's `Coefficients` (no batch).
    rows: pixel rows per stripe (rounded down to whole MCU rows, at least one).
  """
  for top, part, first, count in _stripe_parts(coefficients, rows, "decode_stripes"):
    yield top, decode(part)[first:first + count]


def decode_sample_stripes(coefficients: Coefficients, rows: int = 256):
  """`decode_stripes` as `decode_samples` decodes: `(top, stripe)` with the stripe `(h, W, C)`
  uint8, by compiled loops (no XLA program), rows `top:top + h` of
  `decode_samples(coefficients)` exactly, in the memory of a stripe."""
  for top, part, first, count in _stripe_parts(coefficients, rows, "decode_sample_stripes"):
    yield top, decode_samples(part)[first:first + count]


def _stripe_parts(coefficients: Coefficients, rows: int, name: str):
  """`decode_stripes`'s stripes: (top, the stripe's coefficients with their context, first row
  and number of rows of the stripe in their decode)."""
  coefficients.check()
  if coefficients.batch_shape:
    raise ValueError(f"{name} takes one image; got batch shape {coefficients.batch_shape}.")
  factors, height, width = coefficients.sampling, coefficients.height, coefficients.width
  mcu_h = 8 * max(v for _, v in factors)
  total = -(-height // mcu_h)
  per = max(1, int(rows) // mcu_h)
  for a in range(0, total, per):
    b = min(a + per, total)
    lo, hi = max(a - 1, 0), min(b + 1, total)
    part = Coefficients(
        tuple(np.asarray(comp)[lo * v:hi * v] for comp, (_, v) in zip(coefficients.components,
                                                                       factors)),
        coefficients.tables, min(hi * mcu_h, height) - lo * mcu_h, width, factors)
    yield a * mcu_h, part, (a - lo) * mcu_h, min(b * mcu_h, height) - a * mcu_h


def jpeg(images, *, quality=None, tables=None, subsampling: str = "4:2:0", rounding: str = "ste",
         faithful: bool = True, key: jax.Array | None = None, deadzone=None) -> jax.Array:
  """`decode(encode(images, ...))`: what a JPEG round trip makes of `images`, differentiably.

  Arguments as for `encode`; returns images of the input's shape, float32 in [0, 1].
  """
  coefficients = encode(images, quality=quality, tables=tables, subsampling=subsampling,
                        rounding=rounding, faithful=faithful, key=key, deadzone=deadzone)
  return decode(coefficients, faithful=faithful)
