"""`save`, `dumps`, `load_coefficients`: real .jpg files from images or `Coefficients`, and back.

This is the exact, non-differentiable end of djpeg: coefficients are written as they are
(integers, nothing re-quantized), so `djpeg.decode(load_coefficients(dumps(c)))` is what any
JPEG decoder shows for `c`. Images are first transformed by `djpeg.encode(..., faithful=True)`,
which reproduces libjpeg-turbo, so a saved image is the file Pillow would write.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from djpeg import codec
from djpeg.coefficients import Coefficients
from djpeg.exact import reader, writer
from djpeg._files import write_bytes_atomic
from djpeg.exact.errors import JPEGError

__all__ = ["save", "dumps", "load_coefficients", "JPEGError"]


def _fmt(x) -> str:
  """A numpy scalar as a user would write it: 256, 0.5, nan."""
  x = float(x)
  return str(int(x)) if x.is_integer() else repr(x)


def _tables_arg(qtables) -> np.ndarray:
  """Pillow-style `qtables` (list of 64-lists, dict, or `(k, 8, 8)`) to a `(k, 8, 8)` array."""
  if isinstance(qtables, dict):
    qtables = [qtables[i] for i in sorted(qtables)]
  tables = np.asarray(qtables, np.float64)
  if tables.ndim == 2 and tables.shape[-1] == 64:
    tables = tables.reshape(-1, 8, 8)
  elif tables.ndim == 2 and tables.shape == (8, 8):
    tables = tables[None]
  if tables.ndim != 3 or tables.shape[1:] != (8, 8) or not 1 <= len(tables) <= 3:
    raise ValueError("qtables must be 1 to 3 tables of 64 entries in natural (row-major) order: "
                     f"a (k, 8, 8) array or a list of 64-lists; got shape {tables.shape}.")
  _check_tables(tables, "qtables")
  return tables


def _check_tables(tables: np.ndarray, what: str) -> None:
  """Quantization tables must be integers in 1..255 (8-bit DQT, baseline)."""
  bad = ~np.isfinite(tables) | (tables != np.round(tables)) | (tables < 1) | (tables > 255)
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    *lead, t, u, v = idx
    where = f"table {t}" + (f" of image {tuple(lead)}" if lead else "")
    raise ValueError(f"{what}: {where} entry [{u}, {v}] is {_fmt(tables[idx])}; baseline JPEG "
                     "quantization steps are integers in 1..255.")


def _as_images(images) -> np.ndarray:
  """uint8 `(H, W)`, `(H, W, C)`, `(B, H, W, C)` or float in [0, 1] to float32 in [0, 1]."""
  a = np.asarray(images)
  if a.ndim == 2:
    a = a[..., None]
  if a.dtype == np.uint8:
    return a.astype(np.float32) / 255.0
  if not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"images must be uint8 or float in [0, 1]; got dtype {a.dtype}.")
  return a.astype(np.float32)


_LIMIT = np.full((8, 8), 1023)
_LIMIT[0, 0] = 2047


def _integer_components(c: Coefficients) -> list[np.ndarray]:
  """The components as integer numpy arrays, refusing non-integer or out-of-range values."""
  out = []
  for i, comp in enumerate(c.components):
    a = np.asarray(comp)
    small = _small_integers(a)
    out.append(small if small is not None else _checked_integers(i, a))
  return out


def _small_integers(a: np.ndarray) -> np.ndarray | None:
  """`a` as int16 when every entry is an integer in -1023..1023 (what 8-bit images give), else
  None. Three cheap passes, against the full check's several; a None sends `a` to that check."""
  if a.dtype not in (np.float32, np.float64, np.int16, np.int32):
    return None
  with np.errstate(invalid="ignore"):
    ints = a.astype(np.int16)  # NaN, inf and values beyond int16 come out different from `a`
  if a.dtype != np.int16 and not np.array_equal(ints, a):
    return None
  if ints.size and (ints.max() > 1023 or ints.min() < -1023):
    return None
  return ints


def _checked_integers(i: int, a: np.ndarray) -> np.ndarray:
  """Component `i` as int32, or a ValueError naming its first bad entry."""
  if np.issubdtype(a.dtype, np.integer):
    a = a.astype(np.int64) if a.dtype.itemsize > 4 or a.dtype == np.uint32 else a
  elif not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"component {i} has dtype {a.dtype}; coefficients must be integers.")
  with np.errstate(invalid="ignore"):
    ints = a.astype(np.int32) if a.dtype != np.int32 else a
  if a.dtype.kind == "f" and not np.array_equal(ints, a):
    idx = tuple(int(j) for j in np.argwhere(~(ints == a))[0])
    raise ValueError(
        f"component {i} holds non-integer coefficients (entry {idx} is {_fmt(a[idx])}); a file "
        "stores integers. Coefficients from rounding='noise' or other soft roundings must be "
        "rounded (e.g. encode with rounding='ste') before saving.")
  if ints.size and (ints.max() > 1023 or ints.min() < -1023):  # rare: find out what is wrong
    bad = np.abs(a.astype(np.float64)) > _LIMIT
    if bad.any():
      *lead, r, col, u, v = (int(j) for j in np.argwhere(bad)[0])
      what = "DC" if (u, v) == (0, 0) else f"AC coefficient [{u}, {v}]"
      limit = "|DC| <= 2047" if (u, v) == (0, 0) else "|AC| <= 1023"
      image = f" of image {tuple(lead)}" if lead else ""
      raise ValueError(f"component {i} block (row {r}, col {col}){image}: {what} is "
                       f"{_fmt(a[(*lead, r, col, u, v)])}; 8-bit JPEG codes {limit}.")
  return ints


def _trellis_coefficients(images, quality, tables, subsampling, trellis, saliency) -> Coefficients:
  """Coefficients chosen by `djpeg.encoder.compress` (trellis, region of interest), per image."""
  import jax

  from djpeg.encoder import compress
  images = np.asarray(images)
  if images.ndim == 2:
    images = images[..., None]
  lmbda = None if trellis is True else trellis
  if lmbda is not None and not (isinstance(lmbda, (int, float)) and np.isfinite(lmbda) and lmbda > 0):
    raise ValueError(f"trellis must be True, False or a positive lambda (bits per pixel per unit "
                     f"of RGB MSE); got {trellis!r}.")
  batch = images[None] if images.ndim == 3 else images
  quality_of = np.broadcast_to(np.asarray(quality if quality is not None else 75), batch.shape[:1])
  results = [compress(image, quality=None if tables is not None and quality is None else
                      float(quality_of[i]), tables=tables, lmbda=lmbda, saliency=saliency,
                      subsampling=subsampling, measure=False).coefficients
             for i, image in enumerate(batch)]
  if images.ndim == 3:
    return results[0]
  return jax.tree.map(lambda *a: np.stack(a), *results)


def _coefficients_for(image_or_coefficients, quality, qtables, subsampling, trellis=False,
                      saliency=None) -> Coefficients:
  if isinstance(image_or_coefficients, Coefficients):
    given = [n for n, v in (("quality", quality), ("qtables", qtables), ("subsampling", subsampling))
             if v is not None]
    if given:
      raise ValueError(f"{', '.join(given)} cannot be given with Coefficients: they are written "
                       "as they are, with their own tables and sampling factors.")
    if trellis is not False or saliency is not None:
      raise ValueError("trellis and saliency choose coefficients from the image: pass the image, "
                       "not Coefficients (djpeg.encoder.compress gives both).")
    return image_or_coefficients
  tables = None if qtables is None else _tables_arg(qtables)
  subsampling = "4:2:0" if subsampling is None else subsampling
  if trellis is not False or saliency is not None:
    return _trellis_coefficients(image_or_coefficients, quality, tables, subsampling,
                                 True if trellis is False else trellis, saliency)
  pixels = np.asarray(image_or_coefficients)
  if pixels.dtype == np.uint8:
    return codec.encode_pixels(pixels[..., None] if pixels.ndim == 2 else pixels,
                               quality=quality, tables=tables, subsampling=subsampling)
  images = _as_images(image_or_coefficients)
  return codec.encode(images, quality=quality, tables=tables, subsampling=subsampling,
                      faithful=True)


def _encode_all(c: Coefficients, optimize: bool, progressive, restart_interval) -> list[bytes]:
  c.check()
  if progressive not in (True, False, "optimize"):
    raise ValueError(f'progressive must be False, True or "optimize"; got {progressive!r}.')
  if progressive == "optimize" and not optimize:
    raise ValueError('progressive="optimize" chooses scans by their optimal Huffman tables: it '
                     "needs optimize=True.")
  if len(c.batch_shape) > 1:
    raise ValueError(f"a batch of coefficients must have one batch axis; got {c.batch_shape}.")
  if restart_interval is None:
    restart_interval = 0
  if not isinstance(restart_interval, (int, np.integer)) or not 0 <= restart_interval <= 65535:
    raise ValueError(f"restart_interval must be an integer in 0..65535 (MCUs); got {restart_interval!r}.")
  if c.height > 65535 or c.width > 65535:
    raise ValueError(f"JPEG frames are at most 65535x65535; got {c.height}x{c.width}.")
  tables = np.asarray(c.tables, np.float64)
  _check_tables(tables, "Coefficients.tables")
  components = _integer_components(c)
  tables = tables.astype(np.int64)
  def one(comps, tabs):
    script = None
    if progressive == "optimize":
      from djpeg.exact import scripts
      script = scripts.choose(comps, c.height, c.width, c.sampling)
    return writer.encode_image(comps, tabs, c.height, c.width, c.sampling, optimize=optimize,
                               progressive_mode=bool(progressive),
                               restart_interval=int(restart_interval), script=script)

  if not c.batch_shape:
    return [one(components, tables)]
  return [one([comp[i] for comp in components], tables[i]) for i in range(c.batch_shape[0])]


def dumps(image_or_coefficients, *, quality=None, qtables=None, subsampling=None,
          optimize: bool = True, progressive=False, restart_interval: int | None = None,
          trellis=False, saliency=None):
  """JPEG file bytes of an image or of quantized coefficients.

  Args:
    image_or_coefficients: an image, uint8 `(H, W)` / `(H, W, C)` or float in [0, 1]
      `(H, W, C)` / `(B, H, W, C)` with C = 1 (gray) or 3 (RGB), transformed exactly as
      libjpeg-turbo does (`djpeg.encode(..., faithful=True)`); or `Coefficients` (from `encode`
      or `load_coefficients`) whose integer coefficients and tables are written as they are.
    quality: IJG quality 1..100 (images only; default 75).
    qtables: quantization tables (images only), natural order: a `(k, 8, 8)` array or a list of
      k 64-lists (or a dict {0: ..., 1: ...}), k = 1, 2 (luma, chroma) or 3; entries 1..255.
      With `quality` too they are base tables scaled by it, as libjpeg scales them.
    subsampling: "4:2:0" (default), "4:2:2" or "4:4:4" (images only; ignored for gray).
    optimize: optimal Huffman tables per image, built exactly as libjpeg-turbo does (default);
      False uses the Annex K tables.
    progressive: progressive JPEG (SOF2) with libjpeg's default scan script and per-scan
      optimal tables (with `optimize=False`: Annex K tables, end-of-band runs of one block);
      "optimize": the smallest script of a family of standard ones for this image
      (`djpeg.exact.scripts`, like mozjpeg's optimize_scans), never larger than libjpeg's.
    restart_interval: emit RST markers every this many MCUs (None or 0: none).
    trellis: images only: trellis quantization (`djpeg.exact.trellis`): per block, the values
      that minimise real bits + lambda * RGB-MSE distortion for these tables; True uses the
      tables' own rate-distortion slope as lambda, a number is lambda itself (bits per pixel
      per unit of MSE). The file is as standard as any other.
    saliency: images only: a region of interest (implies `trellis`): an `(H, W)` map in
      [0, 1], a mask image path, a callable or "auto" (`djpeg.roi.saliency_map`); important
      blocks keep more of their coefficients.
  Returns:
    `bytes`, or a list of `bytes` for a batch.
  Raises:
    ValueError: bad arguments, non-integer coefficients, values JPEG cannot code (|AC| > 1023,
      DC differences beyond 11 bits), or tables outside 1..255; the message names the
      component, block or table entry.
  """
  c = _coefficients_for(image_or_coefficients, quality, qtables, subsampling, trellis, saliency)
  files = _encode_all(c, optimize, progressive, restart_interval)
  return files if c.batch_shape else files[0]


def _write_atomic(path, data: bytes) -> None:
  """Writes via a temporary file in the same directory and `os.replace`; leaves nothing on error."""
  write_bytes_atomic(path, data)


def _write(fp, data: bytes) -> None:
  if isinstance(fp, (str, os.PathLike)):
    _write_atomic(fp, data)
  elif hasattr(fp, "write"):
    fp.write(data)
  else:
    raise ValueError(f"fp must be a path or a binary file object; got {type(fp).__name__}.")


def save(fp, image_or_coefficients, *, quality=None, qtables=None, subsampling=None,
         optimize: bool = True, progressive=False, restart_interval: int | None = None,
         trellis=False, saliency=None) -> None:
  """Writes a JPEG file; arguments as for `dumps`.

  Args:
    fp: a path (str or PathLike) or a binary file object; for a batch of B images or
      coefficients, a sequence of B of them.
  All files are encoded before anything is written; a path is written atomically (temporary
  file in the same directory, then `os.replace`), so on any error no file is left behind.
  """
  c = _coefficients_for(image_or_coefficients, quality, qtables, subsampling, trellis, saliency)
  if c.batch_shape:
    if isinstance(fp, (str, os.PathLike)) or not isinstance(fp, Sequence) or len(fp) != c.batch_shape[0]:
      raise ValueError(f"a batch of {c.batch_shape[0]} images needs a sequence of "
                       f"{c.batch_shape[0]} paths or files; got {fp!r}.")
    targets = list(fp)
  else:
    targets = [fp]
  for target in targets:
    if not isinstance(target, (str, os.PathLike)) and not hasattr(target, "write"):
      raise ValueError(f"fp must be a path or a binary file object; got {type(target).__name__}.")
  files = _encode_all(c, optimize, progressive, restart_interval)
  for target, data in zip(targets, files):
    _write(target, data)


def load_coefficients(fp) -> Coefficients:
  """Reads the quantized coefficients, tables and sampling factors of a JPEG file.

  Args:
    fp: a path, `bytes`, or a binary file object. Baseline (SOF0/SOF1) and progressive (SOF2)
      Huffman-coded 8-bit files with 1 (gray) or 3 components, any sampling factors, restart
      markers; APPn and COM segments are skipped.
  Returns:
    `Coefficients` with numpy arrays: int16 components (int32 if a value does not fit),
    float32 tables, the file's size and sampling factors. `djpeg.decode` of it is the image
    libjpeg-turbo decodes.
  Raises:
    JPEGError: the file is malformed or truncated, or uses something not read here (arithmetic
      coding, 12-bit or lossless, hierarchical, 2 or 4 components); the message says which.
  """
  if isinstance(fp, (bytes, bytearray, memoryview)):
    data = bytes(fp)
  elif isinstance(fp, (str, os.PathLike)):
    with open(fp, "rb") as f:
      data = f.read()
  elif hasattr(fp, "read"):
    data = fp.read()
    if not isinstance(data, (bytes, bytearray)):
      raise ValueError("load_coefficients needs a binary file object (read() returned text).")
    data = bytes(data)
  else:
    raise ValueError(f"fp must be a path, bytes or a binary file object; got {type(fp).__name__}.")
  return reader.read(data)
