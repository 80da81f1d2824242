"""The entropy-coded data of one scan, ready for Huffman decoding, and where decoders write.

The reader's side of `bitpack` (libjpeg-turbo's `jdhuff.c` bit buffer and `jdmarker.c`'s
restart handling): `entropy_segment` finds where a scan's data ends and its RST markers,
`destuff` removes the stuffed zero bytes and the markers and records where each restart interval
starts, and `Bits` gives every byte offset a 64-bit big-endian window (a Python list of ints) so
that a decoder reads any bit position with one shift. `decoder_lut` turns a DHT table into a
65536-entry lookup over the next 16 bits. Decoding is sequential by nature, a Python loop per
symbol, kept lean: each symbol costs one table lookup.

`ScanTarget` is the output side: the coefficient store (one row of 64 zigzag values per block of
the frame, plus a sink row for the dummy blocks of partial MCUs) and where each coded block goes.

Malformed input raises `JPEGError`: every read stays inside a zero-padded buffer, and `corrupt`
names truncation when a decoder has run past its data.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from djpeg.exact import huffman
from djpeg.exact.errors import JPEGError

# Bytes of zero padding after the entropy-coded data: a block reads at most 64 symbols of at
# most 31 bits before its end is checked, so reads never leave the buffer.
_PAD = 320


@functools.lru_cache(maxsize=64)
def decoder_lut(bits: tuple[int, ...], values: bytes) -> list[int]:
  """65536-entry lookup over the next 16 bits: (symbol << 5) | code length, or -1 (no code)."""
  codes, lengths = huffman.canonical_codes(bits)
  lut = np.full(65536, -1, np.int64)
  if len(codes):
    entries = np.repeat((np.frombuffer(values, np.uint8).astype(np.int64) << 5) | lengths,
                        1 << (16 - lengths))
    lut[:len(entries)] = entries
  return lut.tolist()


class Bits:
  """Destuffed entropy-coded data of one scan, with restart intervals and 64-bit windows.

  Attributes:
    windows: per byte offset, the 64 bits starting there (big-endian), as Python ints.
    interval_bytes: start byte of each restart interval in the destuffed data, then the end.
  """

  def __init__(self, data: np.ndarray, interval_bytes: list[int]):
    self.nbytes = len(data)
    padded = np.concatenate([data, np.zeros(_PAD + 8, np.uint8)])
    n = len(padded) - 7
    windows = np.ndarray((n,), ">u8", padded, 0, (1,))
    self.windows = windows.astype(np.uint64).tolist()
    self.padded = padded
    self.interval_bytes = interval_bytes

  def bits(self, p: int, count: int) -> np.ndarray:
    """`count` bits from bit p, as a uint8 array (vectorized reads)."""
    if p + count > 8 * (len(self.padded) - 8):
      raise JPEGError("entropy-coded data is truncated.")
    byte = self.padded[p >> 3:((p + count + 7) >> 3) + 1]
    return np.unpackbits(byte)[(p & 7):(p & 7) + count]


@dataclasses.dataclass
class ScanTarget:
  """Where a scan's decoder writes.

  Attributes:
    store: flat int32 coefficient store, `(blocks + 1) * 64` zigzag values (last row: a sink for
      dummy blocks).
    dest: per coded block of the scan, in coding order, its row in `store` times 64.
    per_interval: blocks per restart interval (all blocks of the scan when there are none).
  """
  store: np.ndarray
  dest: list[int]
  per_interval: int

  def scatter(self, idx, vals, al: int) -> None:
    """Writes values `vals` (shifted left by `al`) at flat store positions `idx`."""
    if idx:
      self.store[np.asarray(idx, np.int64)] = np.asarray(vals, np.int64) << al


def corrupt(what: str, block: int, p: int, limit: int) -> JPEGError:
  """The error for undecodable data: truncation if the decoder has run past the data."""
  if p >= limit:
    return JPEGError(f"entropy-coded data is truncated: block {block} of a scan runs past the "
                     "end of its data.")
  return JPEGError(f"corrupt entropy-coded data in block {block}: {what}.")


def entropy_segment(array: np.ndarray, pos: int) -> tuple[int, list[int]]:
  """End of the entropy-coded data starting at byte `pos` of the file `array`, and the byte
  positions of its RST markers (checked to be in sequence)."""
  a = array
  ff = np.flatnonzero(a[pos:len(a) - 1] == 0xFF) + pos
  nxt = a[ff + 1]
  rst = (nxt >= 0xD0) & (nxt <= 0xD7)
  marker = (nxt != 0) & ~rst
  if not marker.any():
    raise JPEGError("truncated file: the entropy-coded data runs to the end of the file.")
  end = int(ff[np.argmax(marker)])
  rst_pos = ff[rst & (ff < end)]
  expected = 0xD0 + np.arange(len(rst_pos)) % 8
  bad = np.flatnonzero(a[rst_pos + 1] != expected)
  if bad.size:
    i = int(bad[0])
    raise JPEGError(f"restart marker out of sequence: RST{a[rst_pos[i] + 1] - 0xD0} where "
                    f"RST{i % 8} was expected.")
  return end, rst_pos.tolist()


def destuff(array: np.ndarray, pos: int, end: int, rst: list[int], num_mcus: int,
            restart: int) -> Bits:
  """The scan's data `array[pos:end]` without stuffed zero bytes and RST markers, as `Bits`.

  Args:
    rst: byte positions of the RST markers (`entropy_segment`).
    num_mcus, restart: the scan's MCUs and the restart interval in MCUs (0: none), which fix
      how many intervals (and so markers) there must be.
  """
  intervals = math.ceil(num_mcus / restart) if restart else 1
  if len(rst) != intervals - 1:
    raise JPEGError(f"scan has {len(rst) + 1} restart intervals; "
                    f"{num_mcus} MCUs with DRI {restart} need {intervals}.")
  seg = array[pos:end]
  keep = np.ones(len(seg), bool)
  ff = np.flatnonzero(seg[:-1] == 0xFF)
  keep[ff[seg[ff + 1] == 0] + 1] = False  # stuffed zero bytes
  marks = np.asarray(rst, np.int64) - pos
  keep[marks] = False
  keep[marks + 1] = False
  data = seg[keep]
  # Interval starts in the destuffed data: bytes kept before each marker.
  kept_before = np.cumsum(keep) - keep
  starts = [0] + (kept_before[marks].tolist() if len(marks) else []) + [len(data)]
  return Bits(data, starts)
