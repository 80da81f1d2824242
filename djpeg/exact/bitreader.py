"""The entropy-coded data of one scan, ready for Huffman decoding, and where decoders write.

The reader's side of `bitpack` (libjpeg-turbo's `jdhuff.c` bit buffer and `jdmarker.c`'s
restart handling): `entropy_segment` finds where a scan's data ends and its RST markers,
`destuff` removes the stuffed zero bytes and the markers and records where each restart interval
starts, and `Bits` holds the result as native 32-bit words (big-endian bit order within the
data), so that `peek_bits` reads the 32 bits at any bit position with two word loads and one
shift. `decoder_lut` turns a DHT table into a lookup over the next 10 bits, backed by one over
the next 16 bits for longer codes, so each Huffman symbol costs one table lookup, two for rare
long codes (`decode_symbol`).

The decoders (`decode_sequential`, `decode_progressive`) are loops compiled by numba
(`@numba.njit(cache=True, nogil=True)`: compiled at a program's first read, the machine code
cached on disk, in `__pycache__`, for later processes) over these arrays, calling the small
compiled helpers here (`peek_bits`, `decode_symbol`, `extend`). numba keys a cached loop to its
own source file only: after editing a helper here, delete `djpeg/exact/__pycache__/*.nbi` (or
touch the decoder modules) so that the loops are compiled again. A compiled loop cannot raise
a `JPEGError` with a message, so it returns a status tuple `(code, block, bit position, interval
end, a, b)` (code `OK` when it decoded the scan) and its Python wrapper raises the error the code
stands for.

`ScanTarget` is the output side: the coefficient store (one row of 64 values per block of the
frame in natural order, plus a sink row for the dummy blocks of partial MCUs) and where each
coded block goes. The store is int16, as libjpeg's; a value beyond int16 (only corrupt files
make one) stops the decoder with `OVERFLOW`, raised as `CoefficientOverflow`, and the reader
reads the file again into an int32 store, whose writes wrap at 32 bits as numpy's do. numba
compiles each loop for both stores (`reader` has it do so at a program's first read, so that
the rare second read never waits for a compile); `ScanTarget.bounds` is what a loop may write.

Malformed input raises `JPEGError`: every read stays inside a zero-padded buffer (decoders check
their position against the end of the data after each block, and one block reads far fewer
bits than the padding holds), and `corrupt` names truncation when a decoder has run past its
data.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numba
import numpy as np

from djpeg.exact import huffman
from djpeg.exact.errors import JPEGError

# Bytes of zero padding after the entropy-coded data: a block reads at most 64 symbols of at
# most 31 bits (and at most 63 correction bits) before its end is checked, so reads never leave
# the buffer.
_PAD = 320

# Bits the first level of a decoder lookup covers (`decoder_lut`), and its entries.
_FAST_BITS = 10
_FAST = 1 << _FAST_BITS

#: Status codes the compiled decoders share (each module numbers its own errors from 2 up).
OK = 0
OVERFLOW = 1


class CoefficientOverflow(Exception):
  """A decoded value does not fit the int16 coefficient store: read again into an int32 one."""


@functools.lru_cache(maxsize=64)
def decoder_lut(bits: tuple[int, ...], values: bytes) -> np.ndarray:
  """A Huffman table's decoder lookup, int16 entries `(symbol << 5) | code length`, -1 where no
  code starts with the bits (`decode_symbol` reads it).

  Two levels in one array: `_FAST` entries over the next `_FAST_BITS` bits, then 65536 over the
  next 16. A fast entry is 0 where the code is longer than `_FAST_BITS` (look in the full
  level); since canonical codes fill the code space from 0 up, the bits of no code form one
  run at the end, so a fast entry of -1 means no longer code either. The fast level is small
  enough to stay in the L1 cache, where most symbols are found. Read-only: the array is shared
  by every file with the same table.
  """
  codes, lengths = huffman.canonical_codes(bits)
  full = np.full(65536, -1, np.int16)
  if len(codes):
    entries = np.repeat((np.frombuffer(values, np.uint8).astype(np.int16) << 5) | lengths,
                        1 << (16 - lengths))
    full[:len(entries)] = entries
  fast = full[::1 << (16 - _FAST_BITS)].copy()
  fast[(fast > 0) & ((fast & 31) > _FAST_BITS)] = 0
  lut = np.concatenate([fast, full])
  lut.setflags(write=False)
  return lut


@numba.njit
def decode_symbol(lut, x):
  """`(symbol << 5) | code length` of the Huffman code at the top of the 32 bits `x`, or -1."""
  e = np.int64(lut[x >> (32 - _FAST_BITS)])
  if e == 0:
    e = np.int64(lut[_FAST + (x >> 16)])
  return e


def stack_luts(luts: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
  """The distinct tables of `luts` as one `(T, L)` array, and each one's row in it."""
  rows: dict[int, int] = {}
  distinct = []
  for lut in luts:
    if id(lut) not in rows:
      rows[id(lut)] = len(distinct)
      distinct.append(lut)
  return np.stack(distinct), [rows[id(lut)] for lut in luts]


class Bits:
  """Destuffed entropy-coded data of one scan, with restart intervals, as 32-bit words.

  Attributes:
    words: `(W,)` uint32, the data and at least `_PAD` bytes of zero padding, 4 bytes per word,
      big-endian bit order (bit p of the data is bit `31 - p % 32` of `words[p // 32]`).
    interval_bytes: `(m + 1,)` int64, start byte of each restart interval in the destuffed data,
      then the end.
  """

  def __init__(self, padded: np.ndarray, interval_bytes: np.ndarray):
    """`padded`: uint8, the data then zeros (at least `_PAD + 8` bytes), a multiple of 4 long."""
    self.nbytes = int(interval_bytes[-1])
    self.words = padded.view(">u4").astype(np.uint32)
    self.interval_bytes = interval_bytes


@numba.njit
def peek_bits(words, p):
  """The 32 bits of the data from bit position `p`, as a non-negative int64."""
  j = p >> 5
  both = (np.int64(words[j]) << 32) | np.int64(words[j + 1])
  return (both >> (32 - (p & 31))) & 0xFFFFFFFF


@numba.njit
def extend(v, s):
  """JPEG's magnitude bits `v` of size category `s` as a signed value (HUFF_EXTEND)."""
  if v < (1 << (s - 1)):
    v -= (1 << s) - 1
  return v


@dataclasses.dataclass
class ScanTarget:
  """Where a scan's decoder writes.

  Attributes:
    store: flat int16 (or int32) coefficient store, `(blocks + 1) * 64` values, each block's in
      natural (row-major) order (last row: a sink for dummy blocks).
    dest: `(N,)` int64, per coded block of the scan, in coding order, its row in `store` times 64.
    per_interval: blocks per restart interval (all blocks of the scan when there are none).
    nonzero: `(blocks + 1,)` int64, per row of `store`, bit k set when its AC coefficient at
      zigzag position k is nonzero: what AC scans of a progressive frame keep up to date, so
      that a refinement finds a block's history in one load (empty for a sequential frame).
  """
  store: np.ndarray
  dest: np.ndarray
  per_interval: int
  nonzero: np.ndarray

  @property
  def bounds(self) -> tuple[int, int]:
    """The values a decoder may write: int16's range, or no bound for an int32 store (whose
    writes wrap at 32 bits, as numpy's do)."""
    if self.store.dtype == np.int16:
      return -32768, 32767
    return -(1 << 62), 1 << 62


def corrupt(what: str, block: int, p: int, limit: int) -> JPEGError:
  """The error for undecodable data: truncation if the decoder has run past the data."""
  if p >= limit:
    return JPEGError(f"entropy-coded data is truncated: block {block} of a scan runs past the "
                     "end of its data.")
  return JPEGError(f"corrupt entropy-coded data in block {block}: {what}.")


def entropy_segment(array: np.ndarray, pos: int) -> tuple[int, np.ndarray]:
  """End of the entropy-coded data starting at byte `pos` of the file `array`, and the byte
  positions of its RST markers (checked to be in sequence)."""
  end, count = _find_end(array, pos)
  if end < 0:
    raise JPEGError("truncated file: the entropy-coded data runs to the end of the file.")
  rst = np.empty(count, np.int64)
  if count:
    _find_restarts(array, pos, end, rst)
  expected = 0xD0 + np.arange(count) % 8
  bad = np.flatnonzero(array[rst + 1] != expected)
  if bad.size:
    i = int(bad[0])
    raise JPEGError(f"restart marker out of sequence: RST{array[rst[i] + 1] - 0xD0} where "
                    f"RST{i % 8} was expected.")
  return end, rst


@numba.njit(cache=True, nogil=True)
def _find_end(array, pos):
  """(position of the first marker other than RSTn at or after `pos`, or -1 if none; how many
  RST markers come before it)."""
  count = 0
  i = pos
  last = array.shape[0] - 1
  while i < last:
    if array[i] == 0xFF:
      following = array[i + 1]
      if following != 0:
        if following < 0xD0 or following > 0xD7:
          return i, count
        count += 1
      i += 1  # the byte after FF is not the FF of a marker (a stuffed 00 or RSTn's code)
    i += 1
  return -1, count


@numba.njit(cache=True, nogil=True)
def _find_restarts(array, pos, end, out):
  """Fills `out` with the positions of the RST markers in `array[pos:end]`."""
  count = 0
  i = pos
  while i < end:
    if array[i] == 0xFF:
      if array[i + 1] != 0:
        out[count] = i
        count += 1
      i += 1
    i += 1


def destuff(array: np.ndarray, pos: int, end: int, rst: np.ndarray, num_mcus: int,
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
  padded = np.zeros(-(-(end - pos + _PAD + 8) // 4) * 4, np.uint8)
  starts = np.empty(intervals + 1, np.int64)
  _destuff(array, pos, end, padded, starts)
  return Bits(padded, starts)


@numba.njit(cache=True, nogil=True)
def _destuff(array, pos, end, out, starts):
  """Copies `array[pos:end]` into `out` without stuffed zeros (the 00 after FF) and RST markers;
  `starts` gets each restart interval's first byte in `out`, then the end."""
  n = 0
  interval = 0
  starts[0] = 0
  i = pos
  while i < end:
    byte = array[i]
    if byte == 0xFF and array[i + 1] != 0:  # RSTn: the next interval begins
      interval += 1
      starts[interval] = n
      i += 2
      continue
    out[n] = byte
    n += 1
    i += 2 if byte == 0xFF else 1
  starts[interval + 1] = n
