"""Images and coefficients to files and back: `save`, `dumps`, `load_coefficients`.

The layer where an image becomes a real .jpg file. An image is transformed exactly as
libjpeg-turbo does (`djpeg.codec`), or, with `trellis` or `saliency`, its coefficients are chosen
by `djpeg.encoder.compress`; `Coefficients` are written as they are. The bytes come from the
numpy backend (`djpeg.exact`), so a saved image is the file Pillow would write.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import warnings
from typing import Sequence

import jax
import numpy as np
from PIL import Image, UnidentifiedImageError

from djpeg import checks, codec
from djpeg.atomic import check_writable, write_bytes_atomic
from djpeg.coefficients import Coefficients
from djpeg.encoder import compress
from djpeg.exact import Metadata, check_tables, read_coefficients, write_coefficients
from djpeg.images import describe
from djpeg.tables import DEFAULT_QUALITY

__all__ = ["dumps", "load_coefficients", "read_metadata", "save"]


def _tables_arg(qtables) -> np.ndarray:
  """Pillow-style `qtables` (list of 64-lists, dict, or `(k, 8, 8)`) to a `(k, 8, 8)` array."""
  if isinstance(qtables, dict):
    qtables = [qtables[i] for i in sorted(qtables)]
  try:
    tables = np.asarray(qtables, np.float64)
  except (ValueError, TypeError):
    raise ValueError("qtables must be 1 to 3 tables of 64 numbers each (or (k, 8, 8)); got "
                     "tables of unequal lengths or entries that are not numbers.") from None
  if tables.ndim == 2 and tables.shape[-1] == 64:
    tables = tables.reshape(-1, 8, 8)
  elif tables.ndim == 2 and tables.shape == (8, 8):
    tables = tables[None]
  if tables.ndim != 3 or tables.shape[1:] != (8, 8) or not 1 <= len(tables) <= 3:
    raise ValueError("qtables must be 1 to 3 tables of 64 entries in natural (row-major) order: "
                     f"a (k, 8, 8) array or a list of 64-lists; got shape {tables.shape}.")
  check_tables(tables, "qtables")
  return tables


#: Pillow's integer forms of `subsampling`.
PILLOW_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def _subsampling_arg(subsampling) -> str:
  """"4:2:0" (None), a name, or Pillow's 0 / 1 / 2 (and -1, its "keep"; here the default)."""
  if subsampling is None or subsampling == -1:
    return "4:2:0"
  if isinstance(subsampling, (int, np.integer)) and not isinstance(subsampling, bool):
    if int(subsampling) not in PILLOW_SUBSAMPLING:
      raise ValueError(f"subsampling must be 0 (4:4:4), 1 (4:2:2), 2 (4:2:0) or a name; got "
                       f"{subsampling!r}.")
    return PILLOW_SUBSAMPLING[int(subsampling)]
  return subsampling


def _metadata_arg(metadata, icc_profile, exif, xmp, comment, dpi) -> Metadata | None:
  """A `Metadata` from either `metadata=` or Pillow's keywords (not both)."""
  given = any(v is not None for v in (icc_profile, exif, xmp, comment, dpi))
  if metadata is not None and given:
    raise ValueError("give metadata= or icc_profile=/exif=/xmp=/comment=/dpi=, not both.")
  if metadata is not None and not isinstance(metadata, Metadata):
    raise ValueError(f"metadata must be a djpeg.exact.Metadata; got {type(metadata).__name__}.")
  return metadata if metadata is not None else (
      Metadata.of(icc_profile=icc_profile, exif=exif, xmp=xmp, comment=comment, dpi=dpi)
      if given else None)


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


def _trellis_coefficients(images, quality, tables, subsampling, trellis, saliency) -> Coefficients:
  """Coefficients chosen by `djpeg.encoder.compress` (trellis, region of interest), per image."""
  images = np.asarray(images)
  if images.ndim == 2:
    images = images[..., None]
  lmbda = None if trellis is True else trellis
  if lmbda is not None and not checks.positive_finite(lmbda):
    raise ValueError(f"trellis must be True, False or a positive lambda (bits per pixel per unit "
                     f"of RGB MSE); got {trellis!r}.")
  batch = images[None] if images.ndim == 3 else images
  quality_of = np.broadcast_to(np.asarray(quality if quality is not None else DEFAULT_QUALITY), batch.shape[:1])
  results = [compress(image, quality=None if tables is not None and quality is None else
                      float(quality_of[i]), tables=tables, lmbda=lmbda, saliency=saliency,
                      subsampling=subsampling, mode="mse", measure=False).coefficients
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
  subsampling = _subsampling_arg(subsampling)
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


def dumps(image_or_coefficients, *, quality=None, qtables=None, subsampling=None,
          optimize: bool = True, progressive=False, restart_interval: int | None = None,
          trellis=False, saliency=None, icc_profile=None, exif=None, xmp=None, comment=None,
          dpi=None, metadata: Metadata | None = None, compact: bool = False, jfif: bool = True):
  """JPEG file bytes of an image or of quantized coefficients.

  Args:
    image_or_coefficients: an image, uint8 `(H, W)` / `(H, W, C)` or float in [0, 1]
      `(H, W, C)` / `(B, H, W, C)` with C = 1 (gray) or 3 (RGB), transformed exactly as
      libjpeg-turbo does (`djpeg.encode(..., faithful=True)`); or `Coefficients` (from `encode`
      or `load_coefficients`) whose integer coefficients and tables are written as they are.
    quality: IJG quality 1..100 (images only; default `DEFAULT_QUALITY`, 75).
    qtables: quantization tables (images only), natural order: a `(k, 8, 8)` array or a list of
      k 64-lists (or a dict {0: ..., 1: ...}), k = 1, 2 (luma, chroma) or 3; entries 1..255.
      With `quality` too they are base tables scaled by it, as libjpeg scales them.
    subsampling: "4:2:0" (default), "4:2:2" or "4:4:4", or Pillow's 2, 1, 0 (images only;
      ignored for gray).
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
    icc_profile, exif, xmp, comment: metadata written into the file, Pillow's keywords: bytes
      (str for XMP and comments; a `PIL.Image.Exif` for EXIF); profiles over 64 KB span
      several APP2 segments (`djpeg.exact.metadata`). The EXIF orientation is kept as it is.
    dpi: the print resolution, Pillow's `(x, y)` dots per inch (the JFIF density; default
      none).
    metadata: or all of them at once, as a `djpeg.exact.Metadata` (e.g. `read_metadata`).
    compact: the fewest header bytes for the same coefficients (one DQT and one DHT segment,
      Huffman tables shared by luma and chroma where smaller; `write_coefficients`); default
      False: libjpeg-turbo's file byte for byte. For small images, with `jfif=False`: 70-80
      bytes fewer on a 32x32 file of 400-800.
    jfif: write the JFIF APP0 segment (default; False leaves out its 18 bytes: decoders assume
      YCbCr without it, as for camera files; it refuses a `dpi`).
  Returns:
    `bytes`, or a list of `bytes` for a batch.
  Raises:
    ValueError: bad arguments, non-integer coefficients, values JPEG cannot code (|AC| > 1023,
      DC differences beyond 11 bits), or tables outside 1..255 (images; coefficients read
      from a file may carry libjpeg's 16-bit steps, up to 65535); the message names the
      component, block or table entry.
  """
  meta = _metadata_arg(metadata, icc_profile, exif, xmp, comment, dpi)
  c = _coefficients_for(image_or_coefficients, quality, qtables, subsampling, trellis, saliency)
  files = write_coefficients(c, optimize=optimize, progressive=progressive,
                             restart_interval=restart_interval, metadata=meta, compact=compact,
                             jfif=jfif)
  return files if c.batch_shape else files[0]


def _write(fp, data: bytes) -> None:
  if isinstance(fp, (str, os.PathLike)):
    write_bytes_atomic(fp, data)
  elif hasattr(fp, "write"):
    try:
      fp.write(data)
    except TypeError:         # a text-mode file: say which mode, not "argument must be str"
      raise ValueError("fp must be a binary file object (opened with 'wb'); got a text-mode "
                       f"{type(fp).__name__}.") from None
  else:
    raise ValueError(f"fp must be a path or a binary file object; got {type(fp).__name__}.")


def save(fp, image_or_coefficients, *, quality=None, qtables=None, subsampling=None,
         optimize: bool = True, progressive=False, restart_interval: int | None = None,
         trellis=False, saliency=None, icc_profile=None, exif=None, xmp=None, comment=None,
         dpi=None, metadata: Metadata | None = None, compact: bool = False,
         jfif: bool = True) -> None:
  """Writes a JPEG file; arguments as for `dumps`.

  Args:
    fp: a path (str or PathLike) or a binary file object; for a batch of B images or
      coefficients, a sequence of B of them.
  All files are encoded before anything is written; a path is written atomically (temporary
  file in the same directory, then `os.replace`), so on any error no file is left behind.
  """
  meta = _metadata_arg(metadata, icc_profile, exif, xmp, comment, dpi)
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
    if isinstance(target, (str, os.PathLike)):
      # Every path checked before the first is written: a bad second path of a batch had left
      # the first file written.
      check_writable(target)
  files = write_coefficients(c, optimize=optimize, progressive=progressive,
                             restart_interval=restart_interval, metadata=meta, compact=compact,
                             jfif=jfif)
  for target, data in zip(targets, files):
    _write(target, data)


def load_coefficients(fp) -> Coefficients:
  """Reads the quantized coefficients, tables and sampling factors of a JPEG file.

  Args:
    fp: a path, `bytes`, or a binary file object (`djpeg.exact.read_coefficients` says which
      files are read).
  Returns:
    `Coefficients` with numpy arrays (int16 components, float32 tables); `djpeg.decode` of it
    is the image libjpeg-turbo decodes.
  Raises:
    JPEGError: the file is malformed, truncated or of a kind not read here; the message says which.
    ValueError: `fp` is neither a path, bytes nor a binary file object.
  """
  return read_coefficients(file_bytes(fp))


def file_bytes(fp, name: str = "fp") -> bytes:
  """The bytes of a file given as bytes, a path or a binary file object (read to its end).

  Raises:
    ValueError: `fp` is none of those, or a file object opened in text mode; named `name`.
  """
  if isinstance(fp, (bytes, bytearray, memoryview)):
    return bytes(fp)
  if isinstance(fp, (str, os.PathLike)):
    with open(fp, "rb") as f:
      return f.read()
  if hasattr(fp, "read"):
    data = fp.read()
    if not isinstance(data, (bytes, bytearray)):
      raise ValueError(f"{name} must be opened in binary mode (read() returned text).")
    return bytes(data)
  raise ValueError(f"{name} must be a JPEG file's bytes, a path or a binary file object; got "
                   f"{type(fp).__name__}.")


#: TIFF tags that describe the picture rather than the TIFF file's layout: what a JPEG's EXIF
#: keeps of a TIFF input (with the EXIF and GPS sub-IFDs).
_TIFF_DESCRIPTION_TAGS = (0x010E, 0x010F, 0x0110, 0x0112, 0x0131, 0x0132, 0x013B, 0x8298)


@functools.cache
def _pillow_orients_tiff() -> bool:
  """Whether this Pillow turns a TIFF's pixels by its orientation tag when it reads them (Pillow
  13 does), judged on a 2x1 TIFF with orientation 6."""
  exif = Image.Exif()
  exif[0x0112] = 6
  buf = io.BytesIO()
  Image.new("L", (2, 1)).save(buf, "TIFF", exif=exif)
  buf.seek(0)
  with Image.open(buf) as image:
    image.load()
    return image.size == (1, 2)


def _tiff_exif(tags) -> bytes | None:
  """An EXIF block from a TIFF file's tags: its description tags, EXIF and GPS IFDs; without
  the orientation when Pillow has already turned the pixels by it (else viewers would turn
  them again)."""
  exif = Image.Exif()
  for tag in _TIFF_DESCRIPTION_TAGS:
    if tag in tags and not (tag == 0x0112 and _pillow_orients_tiff()):
      exif[tag] = tags[tag]
  for ifd in (0x8769, 0x8825):
    sub = tags.get_ifd(ifd)
    if sub:
      exif[ifd] = sub
  return exif.tobytes() if len(exif) else None


#: PNG text chunks that `read_metadata` carries over (as the comment and the XMP packet).
_PNG_TEXT_KEPT = ("Comment", "comment", "XML:com.adobe.xmp")


def _say_text_left_out(image, has_exif: bool) -> None:
  """Warns of a PNG's text chunks (tEXt, zTXt, iTXt: Copyright, Description, ...) that no JPEG
  segment takes over (only the comment and the XMP packet are carried), naming them."""
  if image.format != "PNG":
    return
  left = [key for key in getattr(image, "text", {}) if key not in _PNG_TEXT_KEPT
          and not (has_exif and key.startswith("Raw profile type"))]  # EXIF read from it
  if left:
    warnings.warn(f"PNG text not carried to the JPEG: {', '.join(left)} (a JPEG keeps such "
                  "text in XMP or EXIF; only the Comment and the XMP packet are carried)",
                  stacklevel=3)


def read_metadata(source) -> Metadata:
  """The ICC profile, EXIF, XMP, comment and resolution (dpi) of an image file (JPEG, PNG, TIFF,
  WebP, ...), as Pillow reads them; absent ones are None (and so is a resolution no JFIF
  segment can hold).

  Raises:
    ValueError: the file is missing or unreadable.
  """
  what = describe(source)
  try:
    with Image.open(source) as image:
      info = image.info
      exif = info.get("exif")
      if exif is None and image.format == "TIFF":
        exif = _tiff_exif(image.getexif())
      xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
      comment = info.get("comment") or info.get("Comment")
      _say_text_left_out(image, exif is not None)
      try:
        density = Metadata.of(dpi=info["dpi"]).density if "dpi" in info else None
      except ValueError:
        density = None        # e.g. a zero resolution: nothing a JFIF density can state
      if image.format == "JPEG" and "jfif_density" in info and "dpi" not in info:
        units, (x, y) = info.get("jfif_unit", 0), info["jfif_density"]
        if units == 0 and x and y and (x, y) != (1, 1) and max(x, y) <= 65535:
          density = (0, int(x), int(y))     # a pixel aspect ratio
      return dataclasses.replace(
          Metadata.of(icc_profile=info.get("icc_profile"), exif=exif, xmp=xmp, comment=comment),
          density=density)
  except FileNotFoundError:
    raise ValueError(f"{what}: no such file.") from None
  except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{what} cannot be read as an image: {e}") from None
