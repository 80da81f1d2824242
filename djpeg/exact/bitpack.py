"""Vectorized bit packing for entropy-coded segments: bits to bytes, 0xFF stuffing, RST markers.

The scan coders produce bit fields (value, length, end bit) and this module packs them MSB first
into bytes with array operations only (`unit_starts` helps them place blocks). A field of at most 32 bits that starts in 32-bit word w
lies inside the 64-bit window [32 w, 32 w + 64) of the segment; each field is shifted into place
in its window and added to the window's accumulator with `np.add.at` (the fields never overlap,
so a sum is an OR, and the order of the fields does not matter). Word w is then the high half of
window w plus the low half of window w - 1. Restart intervals are padded to a byte boundary with
1-bits, every 0xFF data byte gets a 0x00 stuffed after it, and RST0..RST7 markers go between
intervals.
"""

from __future__ import annotations

import numpy as np

def windows(total_bits: int) -> np.ndarray:
  """Zeroed accumulators for a segment of `total_bits` bits: `(ceil(total_bits / 32) + 1,)` uint64."""
  return np.zeros((total_bits + 31) // 32 + 1, np.uint64)


def add_fields(acc: np.ndarray, values, lengths, ends: np.ndarray) -> None:
  """ORs bit fields into the window accumulators `acc` (from `windows`).

  Args:
    acc: the segment's accumulators, updated in place.
    values: `(n,)` unsigned field values, each below `2 ** lengths[i]` (or a scalar).
    lengths: `(n,)` field lengths in bits, 0..32 (or a scalar).
    ends: `(n,)` int32 or int64 bit position just after each field, in any order.
  """
  start = ends - lengths
  # The field's last bit sits at (start & 31) + lengths - 1 in the window of its first word,
  # so the field moves left by 64 minus that plus one.
  shift = start & 31
  shift += lengths
  np.subtract(64, shift, out=shift)
  np.right_shift(start, 5, out=start)              # the window
  window = np.broadcast_to(values, start.shape).astype(np.uint64)
  window <<= shift.astype(np.uint8)
  np.add.at(acc, start, window)


def add_bits(acc: np.ndarray, bits: np.ndarray, positions: np.ndarray) -> None:
  """ORs single bits into the accumulators: `bits[i]` (0 or 1, uint8) at bit `positions[i]`."""
  shift = positions & 31
  np.subtract(63, shift, out=shift)                # in the window of the bit's own word
  window = bits.astype(np.uint64)
  window <<= shift.astype(np.uint8)
  np.add.at(acc, positions >> 5, window)


def finish(acc: np.ndarray, seg_end_bit: np.ndarray, pad: np.ndarray) -> np.ndarray:
  """The stuffed segment from its accumulators.

  Args:
    acc: accumulators holding every field (`add_fields`).
    seg_end_bit: `(m,)` byte-aligned end bit of each restart interval (padding included); the
      last is the segment's length.
    pad: `(m,)` bits of 1-padding just before each of those ends (0..7).
  Returns:
    `(bytes,)` uint8: the segment as it goes after SOS, stuffed, with RST(j mod 8) after every
    interval j but the last.
  """
  total_bits = int(seg_end_bit[-1])
  low = acc & np.uint64(0xFFFFFFFF)
  words = acc >> np.uint64(32)
  words[1:] += low[:-1]
  data = words.astype(">u4").view(np.uint8)[:(total_bits + 7) // 8]
  # Padding: the last `pad` bits of each interval (all in its last byte) are 1s.
  last = seg_end_bit // 8 - 1
  has = pad > 0
  data[last[has]] |= ((1 << pad[has]) - 1).astype(np.uint8)
  # Byte stuffing: a 0x00 after every 0xFF data byte.
  ff = np.flatnonzero(data == 0xFF)
  stuffed = np.insert(data, ff + 1, 0) if ff.size else data
  boundary = seg_end_bit[:-1] // 8
  if boundary.size:
    at = boundary + np.searchsorted(ff, boundary, side="left")
    markers = (0xD0 + np.arange(len(boundary)) % 8).astype(np.uint8)
    marker_bytes = np.stack([np.full_like(markers, 0xFF), markers], axis=1).ravel()
    stuffed = np.insert(stuffed, np.repeat(at, 2), marker_bytes)
  return stuffed


def unit_starts(bits: np.ndarray, interval_first: np.ndarray):
  """Start bit of units (blocks) that follow each other, each restart interval padded to a byte.

  Args:
    bits: `(N,)` int64 bits of each unit, in stream order.
    interval_first: increasing indices of the units that begin the intervals after the first.
  Returns:
    `(starts (N,), seg_end_bit (m,), pad (m,))`, the last two for `finish`.
  """
  ends = np.cumsum(bits)
  if not len(interval_first):
    pad = -ends[-1:] % 8
    return ends - bits, ends[-1:] + pad, pad
  first = np.concatenate([[0], interval_first])
  seg_bits = np.add.reduceat(bits, first)
  pad = -seg_bits % 8
  # Units of interval j move right by the padding of all earlier intervals.
  interval = np.repeat(np.arange(len(first)), np.diff(np.append(first, len(bits))))
  return ends - bits + (np.cumsum(pad) - pad)[interval], np.cumsum(seg_bits + pad), pad
