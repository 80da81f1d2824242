"""Vectorized bit packing for entropy-coded segments: bits to bytes, 0xFF stuffing, RST markers.

The scan coders produce bit fields (value, length) in output order. This module packs them MSB
first into bytes with array operations only: each field is placed at its cumulative bit offset
inside a 64-bit window over two 32-bit words, and the windows that start in the same word, which
are adjacent in stream order, are summed with `np.add.reduceat` (the fields never overlap, so a
sum is an OR).
Restart intervals are padded to a byte boundary with 1-bits, every 0xFF data byte gets a 0x00
stuffed after it, and RST0..RST7 markers go between intervals.
"""

from __future__ import annotations

import numpy as np

#: Longest field `pack` accepts, in bits.
MAX_FIELD_BITS = 32


def _bytes(values: np.ndarray, lengths: np.ndarray, ends: np.ndarray, total_bits: int) -> np.ndarray:
  """ORs fields ending at bit `ends` (increasing) into bytes: `(ceil(total_bits / 8),)` uint8."""
  n_words = (total_bits + 31) // 32 + 1
  if not len(ends):
    return np.zeros((total_bits + 7) // 8, np.uint8)
  word = (ends - lengths) >> 5
  # Within the 64-bit window that starts at word `word`, the field's last bit (bit ends - 1)
  # sits at 64 - (ends - 32 * word) from the right.
  shift = (((word + 2) << 5) - ends).astype(np.uint64)
  window = values.astype(np.uint64) << shift
  # Fields come in stream order, so the windows of one word are adjacent: one reduceat sums
  # them (a sum of disjoint bits is their OR), far cheaper than a weighted bincount.
  first = np.flatnonzero(word[1:] != word[:-1]) + 1
  first = np.concatenate([[0], first])
  sums = np.add.reduceat(window, first)
  at = word[first]
  words = np.zeros(n_words + 1, np.uint64)
  words[at] = sums >> np.uint64(32)
  words[at + 1] += sums & np.uint64(0xFFFFFFFF)   # `at` is increasing: no index repeats
  return words[:n_words].astype(">u4").view(np.uint8)[:(total_bits + 7) // 8]


def pack(values, lengths, segment_ends=None) -> np.ndarray:
  """Packs bit fields into an entropy-coded segment.

  Args:
    values: `(n,)` unsigned field values, each below `2 ** lengths[i]`.
    lengths: `(n,)` field lengths in bits, 0..32.
    segment_ends: optional `(m,)` increasing field indices: restart interval j holds fields
      `segment_ends[j-1]:segment_ends[j]` (the last end must be n). Each interval is padded to
      a byte with 1-bits, and RST(j mod 8) follows every interval but the last.
  Returns:
    `(bytes,)` uint8: the segment as it goes after SOS, stuffed, with its RST markers.
  """
  values = np.asarray(values)
  lengths = np.asarray(lengths)
  ends = np.cumsum(lengths, dtype=np.int64)
  if segment_ends is None or len(segment_ends) <= 1:
    seg_end_bit = ends[-1:] if len(ends) else np.zeros(1, np.int64)
    pad = -seg_end_bit % 8
    seg_end_bit = seg_end_bit + pad
  else:
    # Fields of interval j move right by the padding of all earlier intervals.
    segment_ends = np.asarray(segment_ends, np.int64)
    seg_bits = np.diff(np.concatenate([[0], ends])[segment_ends], prepend=0)
    pad = -seg_bits % 8
    seg_of_field = np.repeat(np.arange(len(segment_ends)), np.diff(segment_ends, prepend=0))
    ends = ends + (np.cumsum(pad) - pad)[seg_of_field]
    seg_end_bit = np.cumsum(seg_bits + pad)
  total_bits = int(seg_end_bit[-1])
  data = _bytes(values, lengths, ends, total_bits)
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
