"""Deterministic distortion recipes for the SSIMULACRA 2 test fixtures (numpy + Pillow only).

Shared by `make_ssimulacra2_fixtures.py` (which scores the pairs with the reference program)
and `test_ssimulacra2.py` (which rebuilds the distorted images from `data/ssimulacra2/`).
Images are uint8 arrays `(H, W, 3)` (RGB) or `(H, W)` (gray).
"""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
from PIL import Image


def jpeg_bytes(img: np.ndarray, quality: int, subsampling: int) -> bytes:
  """Pillow baseline JPEG (libjpeg-turbo), `subsampling` 0 = 4:4:4, 2 = 4:2:0."""
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
  return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
  """Decodes image bytes (PNG or JPEG) with Pillow to uint8 `(H, W, 3)` or `(H, W)`."""
  with Image.open(io.BytesIO(data)) as im:
    im = im.convert("L" if im.mode in ("L", "I;16", "1") else "RGB")
    return np.asarray(im).copy()


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur in float64, kernel radius ceil(3 sigma), symmetric padding,
  rows then columns, explicit summation order; rounded half-to-even to uint8."""
  r = int(math.ceil(3.0 * sigma))
  x = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  k = k / k.sum()
  a = img.astype(np.float64)
  extra = [(0, 0)] * (a.ndim - 2)
  h, w = a.shape[:2]
  p = np.pad(a, [(r, r), (0, 0)] + extra, mode="symmetric")
  acc = np.zeros_like(a)
  for i in range(2 * r + 1):
    acc = acc + k[i] * p[i:i + h]
  p = np.pad(acc, [(0, 0), (r, r)] + extra, mode="symmetric")
  acc = np.zeros_like(a)
  for i in range(2 * r + 1):
    acc = acc + k[i] * p[:, i:i + w]
  return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def gaussian_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  """Adds N(0, sigma^2) noise (8-bit units) from `np.random.default_rng(seed)`, clips, rounds."""
  rng = np.random.default_rng(seed)
  noise = rng.normal(0.0, sigma, size=img.shape)
  return np.clip(np.rint(img.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def pixels_sha256(img: np.ndarray) -> str:
  """Hash of a uint8 image's shape and pixels, to detect a recipe or decoder that drifted."""
  h = hashlib.sha256(repr(img.shape).encode())
  h.update(np.ascontiguousarray(img, np.uint8).tobytes())
  return h.hexdigest()
