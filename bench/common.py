"""Helpers the benchmark scripts share: where the data is, image loading, timing, Pillow's JPEG.

The scripts run as `python bench/NAME.py` with the package installed; this folder is then first
on `sys.path`, so they import this module as `common`.
"""

from __future__ import annotations

import glob
import io
import os
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
KODAK = os.path.join(SHARED, "kodak")
TRAIN = os.path.join(SHARED, "train")


def png_paths(folder: str, limit: int | None = None) -> list[str]:
  """The sorted PNG files of `folder` (the first `limit`); exits with a message if none."""
  paths = sorted(glob.glob(os.path.join(folder, "*.png")))[:limit or None]
  if not paths:
    sys.exit(f"no PNG images in {folder}")
  return paths


def load_rgb(path: str) -> np.ndarray:
  """`(H, W, 3)` uint8 pixels of an image file."""
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def median_time(fn, repeats: int, *, warmup: bool = False) -> float:
  """Median seconds of `repeats` calls of `fn` (after one untimed call with `warmup`)."""
  if warmup:
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def pillow_jpeg(pixels: np.ndarray, **options) -> bytes:
  """libjpeg-turbo's file for uint8 pixels `(H, W, 3)` (or `(H, W)`), through Pillow."""
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", **options)
  return buf.getvalue()
