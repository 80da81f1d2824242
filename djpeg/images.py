"""Image files to 8-bit pixel arrays: the one loader of the package (CLI, masks, training data).

A JPEG holds 8-bit gray or 8-bit colour without transparency, so every input becomes `(H, W, 1)`
or `(H, W, 3)` uint8, and nothing is lost without saying so:

* 8-bit gray (L), colour (RGB), bilevel (1) and palette (P) images convert exactly;
* 16-bit gray (I;16) and 32-bit integer (I, values up to 65535) images are rounded to the nearest
  8-bit value, v * 255 / 65535, never clipped;
* 16-bit colour files are refused: Pillow reads only their high bytes (a truncation, up to one
  level off), so the error asks for an 8-bit conversion rather than guessing;
* transparency (RGBA, LA, PA, P with a transparent colour, RGB or gray with a transparent colour
  key) is dropped only when every pixel is opaque; otherwise it needs a `matte` colour to
  composite onto, or the load fails, since a JPEG cannot store it;
* CMYK, float and other modes have no single correct RGB reading without a colour profile and
  are refused with the mode named.

Bad files raise `ValueError` naming the file and the problem.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Modes read as gray and as colour without any choice to make.
_GRAY, _COLOUR = ("L", "1"), ("RGB",)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = {"RGBA": "RGB", "LA": "L", "PA": "RGB", "RGBa": "RGB", "La": "L"}
#: Named matte colours for compositing transparent images.
MATTES = {"white": (255, 255, 255), "black": (0, 0, 0)}


def describe(source: Any) -> str:
  """How messages name an image source: its path, or "the image"."""
  return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "the image"


def _high_byte_colour(image: Image.Image) -> bool:
  """True for colour images Pillow reduces from 16 bits per sample (PNG RGB;16B, TIFF RGB;16):
  read from the decoder's raw mode, so only before `image.load()`."""
  rawmodes = [tile[3] for tile in getattr(image, "tile", None) or () if len(tile) > 3]
  rawmodes = [r[0] if isinstance(r, tuple) else r for r in rawmodes]
  return image.mode in ("RGB", "RGBA") and any(isinstance(r, str) and "16" in r for r in rawmodes)


def _matte(matte) -> tuple[int, int, int] | None:
  if matte is None:
    return None
  if isinstance(matte, str):
    if matte not in MATTES:
      raise ValueError(f"unknown matte {matte!r}; expected one of {', '.join(MATTES)} or an "
                       "(r, g, b) triple of 0..255.")
    return MATTES[matte]
  rgb = tuple(int(v) for v in matte)
  if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
    raise ValueError(f"matte must be 'white', 'black' or (r, g, b) with 0..255; got {matte!r}.")
  return rgb


def _flatten(pixels: np.ndarray, alpha: np.ndarray, matte, what: str) -> np.ndarray:
  """Drops an all-opaque alpha channel, or composites onto `matte` (rounded), or refuses."""
  if np.all(alpha == 255):
    return pixels
  if matte is None:
    share = float(np.mean(alpha < 255))
    raise ValueError(f"{what} has transparency ({100 * share:.1f}% of pixels not opaque) and a "
                     "JPEG cannot store it: give a matte colour to composite onto (matte='white', "
                     "or --matte white on the command line).")
  a = alpha.astype(np.float64)[..., None] / 255.0
  colour = np.asarray(matte, np.float64)
  if pixels.shape[-1] == 1:       # a gray image on a colour matte: the matte's luma (JPEG's Y)
    colour = colour[:1] if colour.size == 1 else colour[None, :3] @ np.array([0.299, 0.587, 0.114])
  out = pixels.astype(np.float64) * a + colour * (1.0 - a)
  return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def pixels_of(image: Image.Image, *, matte=None, what: str = "the image") -> np.ndarray:
  """A loaded PIL image as `(H, W, 1)` or `(H, W, 3)` uint8 (module docstring for the rules).

  Args:
    image: a PIL image, already loaded (`image.load()`).
    matte: None (transparency is an error), "white", "black" or an (r, g, b) triple: the colour
      transparent pixels are composited onto.
    what: how error messages name the image.
  Raises:
    ValueError: transparency without a matte, CMYK or another mode with no unambiguous 8-bit
      reading. (16-bit colour files are caught by `load_image`, before Pillow drops their low
      bytes.)
  """
  matte = _matte(matte)
  mode = image.mode
  if mode in ("RGB", "L", "1") and image.info.get("transparency") is not None:
    # A transparent colour key (PNG tRNS): its pixels are transparent as an alpha of 0 is.
    image = image.convert("RGBA" if mode == "RGB" else "LA")
    mode = image.mode
  if mode in _GRAY:
    pixels = np.asarray(image.convert("L"))[..., None]
  elif mode in _COLOUR:
    pixels = np.asarray(image)
  elif mode in _SIXTEEN_BIT:
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
      raise ValueError(f"{what} has {mode} samples outside 0..65535 (min {values.min()}, max "
                       f"{values.max()}); only 8- and 16-bit images are read.")
    pixels = ((values * 255 + 32767) // 65535).astype(np.uint8)[..., None]  # rounded to nearest
  elif mode == "P" or mode in _ALPHA:
    if mode == "P":
      image = image.convert("RGBA")
    elif mode in ("RGBa", "La"):         # premultiplied: undo it first
      image = image.convert(mode[:-1] + "A")
    rgba = np.asarray(image if mode != "PA" else image.convert("RGBA"))
    pixels = _flatten(rgba[..., :-1], rgba[..., -1], matte, what)
  else:
    why = "converting CMYK needs its colour profile" if mode == "CMYK" else "no single 8-bit reading"
    raise ValueError(f"{what} has mode {mode!r} ({why}); convert it to 8-bit RGB or gray first.")
  return np.ascontiguousarray(pixels)


def load_image(source, *, matte=None) -> np.ndarray:
  """Reads an image file as `(H, W, 1)` (gray) or `(H, W, 3)` (colour) uint8 pixels.

  Args:
    source: a path or a binary file object (PNG, JPEG, TIFF, BMP, WebP, ... anything Pillow opens).
    matte: colour to composite transparent pixels onto (`pixels_of`); None refuses transparency.
  Raises:
    ValueError: the file is missing or unreadable, or its pixels have no faithful 8-bit reading
      (`pixels_of`); the message names the file.
  """
  what = describe(source)
  try:
    with Image.open(source) as image:
      if _high_byte_colour(image):
        kind = "gray image with alpha" if any(
            str(t[3]).startswith(("LA", "('LA")) for t in image.tile if len(t) > 3) else \
            "colour image"
        raise ValueError(f"{what} is a 16-bit {kind}, which Pillow reads only to its high "
                         "bytes; convert it to 8 bits per sample first (for example with "
                         "ImageMagick: convert in.png -depth 8 out.png).")
      frames = getattr(image, "n_frames", 1)
      if frames > 1:
        warnings.warn(f"{what} holds {frames} frames (an animation or several pages); the "
                      "first is read.", stacklevel=2)
      image.load()
      return pixels_of(image, matte=matte, what=what)
  except FileNotFoundError:
    raise ValueError(f"{what}: no such file.") from None
  except UnidentifiedImageError:
    raise ValueError(f"{what} cannot be read as an image: not an image format Pillow reads, or "
                     "not an image file.") from None
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{what} cannot be read as an image: {e}") from None


def to_float(pixels: np.ndarray) -> np.ndarray:
  """uint8 pixels to float32 in [0, 1], the codec's convention."""
  return np.asarray(pixels, np.float32) / 255.0

