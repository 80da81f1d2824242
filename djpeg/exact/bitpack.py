"""Vectorized bit packing for entropy-coded segments: bits to bytes, 0xFF stuffing, RST markers.

The scan coders produce a stream of bit fields (value, length) in output order. This module
packs them MSB first into bytes with array operations only: each field is placed at its
cumulative bit offset inside a 64-bit window over two 32-bit words, and the words are summed
with `np.bincount` (the fields never overlap, so a sum is an OR and float64 sums of values below
2**32 are exact). Restart intervals are padded to a byte boundary with 1-bits, every 0xFF data
byte gets a 0x00 stuffed after it, and RST0..RST7 markers go between intervals.
"""

from __future__ import annotations

import numpy as np

#: Longest field `pack` accepts, in bits.
MAX_FIELD_BITS = 32


def _words(values: np.ndarray, lengths: np.ndarray, starts: np.ndarray, total_bits: int) -> np.ndarray:
  """ORs fields into big-endian 32-bit words; returns the `(ceil(total_bits / 8),)` bytes."""
  n_words = (total_bits + 31) // 32 + 1
  word = starts >> 5
  offset = starts & 31
  shift = (64 - offset - lengths).astype(np.uint64)
  window = values.astype(np.uint64) << shift
  hi = (window >> np.uint64(32)).astype(np.float64)
  lo = (window & np.uint64(0xFFFFFFFF)).astype(np.float64)
  words = np.bincount(word, weights=hi, minlength=n_words)
  words[1:] += np.bincount(word, weights=lo, minlength=n_words)[:-1]
  data = words.astype(np.uint32).astype(">u4").view(np.uint8)
  return data[:(total_bits + 7) // 8]


def pack(values, lengths, segment_ends=None) -> np.ndarray:
  """Packs bit fields into an entropy-coded segment.

  Args:
    values: `(n,)` unsigned field values; only the low `lengths[i]` bits of each are used.
    lengths: `(n,)` field lengths in bits, 0..32.
    segment_ends: optional `(m,)` increasing field indices: restart interval j holds fields
      `segment_ends[j-1]:segment_ends[j]` (the last end must be n). Each interval is padded to
      a byte with 1-bits, and RST(j mod 8) follows every interval but the last.
  Returns:
    `(bytes,)` uint8: the segment as it goes after SOS, stuffed, with its RST markers.
  """
  values = np.asarray(values, np.uint64)
  lengths = np.asarray(lengths, np.int64)
  if lengths.size and lengths.max() > MAX_FIELD_BITS:
    raise ValueError(f"bit fields are limited to {MAX_FIELD_BITS} bits.")
  values = values & ((np.uint64(1) << lengths.astype(np.uint64)) - np.uint64(1))
  ends_bits = np.cumsum(lengths)
  starts = ends_bits - lengths
  if segment_ends is None:
    segment_ends = np.array([len(lengths)], np.int64)
  segment_ends = np.asarray(segment_ends, np.int64)
  # Bits in each interval, then the 1-bit padding that brings it to a byte boundary.
  cum = np.concatenate([[0], ends_bits])[segment_ends]
  seg_bits = np.diff(cum, prepend=0)
  pad = -seg_bits % 8
  pad_before = np.concatenate([[0], np.cumsum(pad)[:-1]])
  # Fields of interval j move right by the padding of all earlier intervals.
  seg_of_field = np.repeat(np.arange(len(segment_ends)), np.diff(segment_ends, prepend=0))
  starts = starts + pad_before[seg_of_field]
  seg_end_bit = cum + pad_before + pad  # padded end of each interval
  has_pad = pad > 0
  all_values = np.concatenate([values, (np.uint64(1) << pad[has_pad].astype(np.uint64)) - 1])
  all_lengths = np.concatenate([lengths, pad[has_pad]])
  all_starts = np.concatenate([starts, (seg_end_bit - pad)[has_pad]])
  total_bits = int(seg_end_bit[-1]) if len(seg_end_bit) else 0
  data = _words(all_values, all_lengths, all_starts, total_bits)
  # Byte stuffing: a 0x00 after every 0xFF data byte.
  ff = np.flatnonzero(data == 0xFF)
  stuffed = np.insert(data, ff + 1, 0) if ff.size else data
  if len(segment_ends) > 1:
    boundary = seg_end_bit[:-1] // 8
    boundary = boundary + np.searchsorted(ff, boundary, side="left")
    markers = 0xD0 + (np.arange(len(boundary)) % 8)
    positions = np.repeat(boundary, 2)
    marker_bytes = np.stack([np.full_like(markers, 0xFF), markers], axis=1).ravel()
    stuffed = np.insert(stuffed, positions, marker_bytes.astype(np.uint8))
  return stuffed
