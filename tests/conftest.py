"""Shared helpers: libjpeg-turbo (through Pillow) and jpeglib as reference implementations."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

from djpeg import samples

PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def pillow_encode(pixels: np.ndarray, **save_options) -> bytes:
  """libjpeg-turbo's encode of uint8 `(H, W, C)` pixels (C = 1 or 3) with Pillow's save options."""
  image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
  buf = io.BytesIO()
  image.save(buf, "JPEG", **save_options)
  return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
  """libjpeg-turbo's decode as uint8 `(H, W, C)`."""
  pixels = np.asarray(Image.open(io.BytesIO(data)))
  return pixels[..., None] if pixels.ndim == 2 else pixels


def read_dct(data: bytes):
  """`jpeglib.read_dct` of a JPEG held in memory: (components, tables per component)."""
  import jpeglib
  fd, path = tempfile.mkstemp(suffix=".jpg")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    dct = jpeglib.read_dct(path)
    comps = [np.array(dct.Y)] + ([np.array(dct.Cb), np.array(dct.Cr)] if dct.has_chrominance else [])
    tables = [np.array(dct.qt[i]) for i in dct.quant_tbl_no[:len(comps)]]
    return comps, tables
  finally:
    os.unlink(path)


def to_uint8(images) -> np.ndarray:
  """djpeg's float output in [0, 1] back to the 8-bit values it encodes."""
  return np.round(np.asarray(images, np.float64) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def colour_batch() -> np.ndarray:
  """The three bundled RGB samples as one uint8 batch `(3, 128, 192, 3)`."""
  return np.stack([samples.load(n, uint8=True) for n in ("limes", "houses", "castle")])


@pytest.fixture(scope="session")
def gray_sample() -> np.ndarray:
  """The bundled gray sample, uint8 `(75, 97, 1)` (odd sizes on purpose)."""
  return samples.load("bear_gray", uint8=True)


def jpeg_segments(data: bytes):
  """(marker, payload) of each header segment up to the first SOS, and the entropy-coded bytes of
  a single-scan file (between the SOS header and EOI). A minimal parser for test references."""
  assert data[:2] == b"\xff\xd8"
  pos, segments = 2, []
  while True:
    marker = data[pos + 1]
    length = int.from_bytes(data[pos + 2:pos + 4], "big")
    segments.append((marker, data[pos + 4:pos + 2 + length]))
    pos += 2 + length
    if marker == 0xDA:
      return segments, data[pos:data.rindex(b"\xff\xd9")]


def huffman_tables(data: bytes) -> dict:
  """{(class, id): code length of each symbol, (256,) int} from a file's DHT segments."""
  tables = {}
  for marker, payload in jpeg_segments(data)[0]:
    p = 0
    while marker == 0xC4 and p < len(payload):
      tc, th = payload[p] >> 4, payload[p] & 15
      counts = list(payload[p + 1:p + 17])
      values = payload[p + 17:p + 17 + sum(counts)]
      lengths = np.zeros(256, int)
      i = 0
      for length, n in enumerate(counts, start=1):
        for _ in range(n):
          lengths[values[i]] = length
          i += 1
      tables[(tc, th)] = lengths
      p += 17 + sum(counts)
  return tables


def scan_bits(data: bytes) -> int:
  """Entropy-coded bits of a single-scan file, without the stuffed zero bytes."""
  scan = jpeg_segments(data)[1]
  return 8 * (len(scan) - scan.count(b"\xff\x00"))
