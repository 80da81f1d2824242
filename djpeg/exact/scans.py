"""Scans and their symbols: scan scripts, sequential scans, and progressive DC scans.

Entropy coding is split in two. This module (and `progressive`) turns a scan's coefficients into
*tokens*, with array operations only: each token is one Huffman symbol and the extra bits that
follow it, or a raw bit field (DC refinement and correction bits). `writer` then counts the
symbols, picks the tables, and `bitpack` packs the codes. A symbol is `table * 256 + byte`, with
`table` an index into the scan's list of tables; raw fields have symbol `RAW`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import layout as layout_lib

#: Symbol of a token that is a raw bit field, not a Huffman code.
RAW = -1
EOB, ZRL = 0x00, 0xF0


@dataclasses.dataclass(frozen=True)
class Scan:
  """One scan of a script: components (frame indices), spectral band Ss..Se, bit positions Ah, Al."""

  components: tuple[int, ...]
  ss: int = 0
  se: int = 63
  ah: int = 0
  al: int = 0

  @property
  def is_dc(self) -> bool:
    return self.ss == 0


def sequential_script(num_components: int) -> tuple[Scan, ...]:
  """Baseline: one scan of every component and all 64 coefficients."""
  return (Scan(tuple(range(num_components))),)


def progressive_script(num_components: int) -> tuple[Scan, ...]:
  """libjpeg's `jpeg_simple_progression` for YCbCr (3 components) or one component."""
  if num_components == 3:
    return (
        Scan((0, 1, 2), 0, 0, 0, 1),
        Scan((0,), 1, 5, 0, 2),
        Scan((2,), 1, 63, 0, 1),
        Scan((1,), 1, 63, 0, 1),
        Scan((0,), 6, 63, 0, 2),
        Scan((0,), 1, 63, 2, 1),
        Scan((0, 1, 2), 0, 0, 1, 0),
        Scan((2,), 1, 63, 1, 0),
        Scan((1,), 1, 63, 1, 0),
        Scan((0,), 1, 63, 1, 0),
    )
  if num_components == 1:
    return (
        Scan((0,), 0, 0, 0, 1),
        Scan((0,), 1, 5, 0, 2),
        Scan((0,), 6, 63, 0, 2),
        Scan((0,), 1, 63, 2, 1),
        Scan((0,), 0, 0, 1, 0),
        Scan((0,), 1, 63, 1, 0),
    )
  raise ValueError(f"no progressive script for {num_components} components.")


@dataclasses.dataclass
class Tokens:
  """A scan's tokens in output order.

  Attributes:
    symbol: `(T,)` int64 `table * 256 + byte` of each Huffman symbol, or `RAW`.
    extra: `(T,)` bits that follow the code (the raw field itself for `RAW`); only the low
      `nextra` bits count.
    nextra: `(T,)` number of extra bits.
    segment_ends: `(m,)` token index where each restart interval ends (the last is T).
  """

  symbol: np.ndarray
  extra: np.ndarray
  nextra: np.ndarray
  segment_ends: np.ndarray


def nbits(a: np.ndarray) -> np.ndarray:
  """Bit length of |a| (JPEG's magnitude category SSSS), int64."""
  return np.frexp(np.abs(a).astype(np.float64))[1].astype(np.int64)


def magnitude_bits(v: np.ndarray) -> np.ndarray:
  """The extra bits JPEG sends after a size symbol: v for v > 0, v - 1 (low bits) for v < 0."""
  return v - (v < 0)


def segment_ends(token_start: np.ndarray, block_starts: np.ndarray, total: int) -> np.ndarray:
  """Token indices where restart intervals end, from the blocks where intervals start."""
  return np.concatenate([token_start[block_starts], [total]]).astype(np.int64)


def check_dc(size: np.ndarray, diff: np.ndarray, layout: layout_lib.ScanLayout) -> None:
  bad = np.flatnonzero(size > 11)
  if bad.size:
    i = int(bad[0])
    raise ValueError(f"{layout.describe(i)}: DC difference {int(diff[i])} from the previous block "
                     "needs more than 11 bits; 8-bit JPEG codes at most 11 (|difference| <= 2047).")


def dc_differences(dc: np.ndarray, layout: layout_lib.ScanLayout, restart: int) -> np.ndarray:
  """`(N,)` DC differences in coding order (prediction restarts with each interval)."""
  pred = layout_lib.dc_predecessors(layout, restart)
  dc = dc.astype(np.int64)
  return dc - np.where(pred >= 0, dc[pred], 0)


def sequential_tokens(blocks: np.ndarray, layout: layout_lib.ScanLayout, restart: int,
                      dc_table: np.ndarray, ac_table: np.ndarray) -> Tokens:
  """Tokens of a sequential (baseline) scan.

  Args:
    blocks: `(N, 64)` integer coefficients in zigzag order, coding order (`gather_blocks`).
    layout: the scan's layout.
    restart: restart interval in MCUs (0 for none).
    dc_table, ac_table: `(len(layout.components),)` table index of each scan component.
  Raises:
    ValueError: a DC difference needs more than 11 bits or an AC value more than 10.
  """
  n = len(blocks)
  comp = layout.component
  diff = dc_differences(blocks[:, 0], layout, restart)
  dc_size = nbits(diff)
  check_dc(dc_size, diff, layout)

  flat = blocks.reshape(-1)
  nz = np.flatnonzero(flat)
  nz = nz[(nz & 63) != 0]
  k = nz & 63
  b = nz >> 6
  v = flat[nz].astype(np.int64)
  size = nbits(v)
  if size.size and size.max() > 10:
    i = int(np.argmax(size > 10))
    raise ValueError(f"{layout.describe(int(b[i]))}: AC coefficient {int(k[i])} (zigzag) is "
                     f"{int(v[i])}; 8-bit JPEG codes |AC| <= 1023.")
  first = np.ones(len(b), bool)
  first[1:] = b[1:] != b[:-1]
  last = np.ones(len(b), bool)
  last[:-1] = first[1:]
  prevk = np.empty_like(k)
  prevk[1:] = k[:-1]
  prevk[first] = 0
  run = k - prevk - 1
  zrl = run >> 4

  per_block = np.bincount(b, minlength=n)
  last_k = np.zeros(n, np.int64)
  last_k[b[last]] = k[last]
  eob = last_k != 63  # blocks without AC have last_k 0
  zrl_block = np.bincount(b, weights=zrl, minlength=n).astype(np.int64) if zrl.any() else 0
  count = 1 + per_block + zrl_block + eob
  start = np.cumsum(count) - count
  total = int(start[-1] + count[-1])
  # Each AC token follows its block's DC token, the block's earlier AC tokens and all ZRLs up
  # to and including its own.
  first_nz = np.cumsum(per_block) - per_block
  zrl_cum = np.cumsum(zrl)
  zrl_at_block_start = zrl_cum[first_nz[b]] - zrl[first_nz[b]]
  pos = start[b] + 1 + (np.arange(len(b)) - first_nz[b]) + (zrl_cum - zrl_at_block_start)

  symbol = np.empty(total, np.int64)
  extra = np.zeros(total, np.int64)
  nextra = np.zeros(total, np.int64)
  dc_t = np.asarray(dc_table, np.int64)[comp]
  ac_t = np.asarray(ac_table, np.int64)[comp]
  symbol[start] = dc_t * 256 + dc_size
  extra[start] = magnitude_bits(diff)
  nextra[start] = dc_size
  ac_tb = ac_t[b]
  symbol[pos] = ac_tb * 256 + (((run & 15) << 4) | size)
  extra[pos] = magnitude_bits(v)
  nextra[pos] = size
  if zrl.any():
    with_zrl = np.flatnonzero(zrl)
    reps = zrl[with_zrl]
    zpos = np.repeat(pos[with_zrl] - reps, reps) + _ramp(reps)
    symbol[zpos] = np.repeat(ac_tb[with_zrl], reps) * 256 + ZRL
  eob_blocks = np.flatnonzero(eob)
  symbol[start[eob_blocks] + count[eob_blocks] - 1] = ac_t[eob_blocks] * 256 + EOB
  ends = segment_ends(start, layout_lib.interval_starts(layout, restart), total)
  return Tokens(symbol, extra, nextra, ends)


def _ramp(reps: np.ndarray) -> np.ndarray:
  """0, 1, ..., reps[0]-1, 0, 1, ..., reps[1]-1, ... as one array."""
  total = int(reps.sum())
  starts = np.cumsum(reps) - reps
  return np.arange(total) - np.repeat(starts, reps)


def dc_first_tokens(blocks: np.ndarray, layout: layout_lib.ScanLayout, restart: int, al: int,
                    dc_table: np.ndarray) -> Tokens:
  """Tokens of a progressive DC first scan: the difference of DC >> Al (arithmetic shift)."""
  diff = dc_differences(blocks[:, 0].astype(np.int64) >> al, layout, restart)
  size = nbits(diff)
  check_dc(size, diff, layout)
  symbol = np.asarray(dc_table, np.int64)[layout.component] * 256 + size
  start = np.arange(len(blocks))
  ends = segment_ends(start, layout_lib.interval_starts(layout, restart), len(blocks))
  return Tokens(symbol, magnitude_bits(diff), size, ends)


def dc_refine_tokens(blocks: np.ndarray, layout: layout_lib.ScanLayout, restart: int,
                     al: int) -> Tokens:
  """Tokens of a progressive DC refinement scan: bit Al of each DC, raw."""
  n = len(blocks)
  bits = (blocks[:, 0].astype(np.int64) >> al) & 1
  ends = segment_ends(np.arange(n), layout_lib.interval_starts(layout, restart), n)
  return Tokens(np.full(n, RAW, np.int64), bits, np.ones(n, np.int64), ends)
