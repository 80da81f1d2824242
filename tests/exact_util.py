"""Helpers for the file-backend tests: Pillow and jpeglib as oracles, random coefficients."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from djpeg import sampling
from djpeg.coefficients import Coefficients

# The Pillow (libjpeg-turbo) oracles are shared with the codec tests.
from conftest import PIL_SUBSAMPLING  # noqa: F401
from conftest import pillow_decode as pillow_pixels  # noqa: F401
from conftest import pillow_encode as pillow_file  # noqa: F401


def jpeglib_coefficients(data: bytes) -> Coefficients:
  """`jpeglib.read_dct` of in-memory JPEG data as `Coefficients` (the test oracle)."""
  import jpeglib
  fd, path = tempfile.mkstemp(suffix=".jpg")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    dct = jpeglib.read_dct(path)
    comps = [np.array(dct.Y)] + ([np.array(dct.Cb), np.array(dct.Cr)] if dct.has_chrominance else [])
    tables = np.stack([np.array(dct.qt[i]) for i in dct.quant_tbl_no[:len(comps)]])
    factors = tuple((int(v_h[1]), int(v_h[0])) for v_h in np.asarray(dct.samp_factor)[:len(comps)])
    return Coefficients(tuple(comps), tables.astype(np.float32), int(dct.height), int(dct.width),
                        factors)
  finally:
    os.unlink(path)


def assert_same_coefficients(got: Coefficients, want: Coefficients) -> None:
  assert (got.height, got.width) == (want.height, want.width)
  assert tuple(map(tuple, got.sampling)) == tuple(map(tuple, want.sampling))
  assert len(got.components) == len(want.components)
  for i, (a, b) in enumerate(zip(got.components, want.components)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"component {i}")
  np.testing.assert_array_equal(np.asarray(got.tables), np.asarray(want.tables))


def entropy_data(data: bytes) -> bytes:
  """Everything after the first SOS header: the entropy-coded data (and what follows)."""
  i = data.index(b"\xff\xda")
  return data[i + 2 + int.from_bytes(data[i + 2:i + 4], "big"):]


def random_coefficients(rng: np.random.Generator, height: int, width: int, factors,
                        density: float = 0.15, extremes: bool = True) -> Coefficients:
  """Realistic random quantized coefficients: mostly zero, Laplacian-ish, decaying with
  frequency, with occasional values at the coding limits (|AC| = 1023, DC = -1024 or 1023)."""
  comps = []
  freq = np.add.outer(np.arange(8), np.arange(8))
  for c in range(len(factors)):
    rows, cols = sampling.component_blocks(height, width, factors, c)
    shape = (rows, cols, 8, 8)
    scale = 40.0 / (1.0 + freq) ** 1.5
    values = np.round(rng.laplace(0.0, 1.0, shape) * scale)
    keep = rng.random(shape) < density * 2.0 / (1.0 + 0.3 * freq)
    values = np.where(keep, values, 0.0)
    values[..., 0, 0] = np.round(np.cumsum(rng.normal(0, 30, (rows, cols)), axis=1))
    if extremes:
      flat = values.reshape(-1)
      n = max(1, flat.size // 2000)
      pos = rng.integers(0, flat.size, n)
      flat[pos] = rng.choice([-1023.0, 1023.0], n)
      dc = values[..., 0, 0].reshape(-1)
      dc[rng.integers(0, dc.size, max(1, dc.size // 50))] = rng.choice([-1024.0, 1023.0])
    values[..., 1:, :] = np.clip(values[..., 1:, :], -1023, 1023)
    values[..., 0, 1:] = np.clip(values[..., 0, 1:], -1023, 1023)
    values[..., 0, 0] = np.clip(values[..., 0, 0], -1024, 1023)
    comps.append(values.astype(np.int16))
  tables = rng.integers(1, 256, (len(factors), 8, 8)).astype(np.float32)
  if len(factors) == 3 and rng.random() < 0.5:
    tables[2] = tables[1]  # libjpeg's usual sharing of the chroma table
  return Coefficients(tuple(comps), tables, height, width, tuple(factors))
