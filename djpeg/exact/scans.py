"""Scans and their symbols: scan scripts, sparse coefficients, progressive DC scans.

Entropy coding is split in stages. `sparse_component` lists a component's nonzero AC
coefficients once (block, zigzag index, value). The sequential scan (`sequential`) goes from
there straight to bit positions; the progressive scan coders here and in `progressive` turn
them into *tokens* with array operations only: a token is one Huffman symbol and the extra bits
that follow it, or a raw bit field (DC refinement and correction bits). Tokens come in groups of
one kind (all DC symbols of a scan, all its EOBs, ...) with their positions in the scan's token
stream, so no stream-sized array of symbols is ever built. `writer` counts the symbols, chooses
the tables, turns each group into codes, and `bitpack` packs them.

A symbol is `table * 256 + byte`, `table` indexing the scan's list of tables; raw fields have
symbol `RAW`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import bitpack, layout as layout_lib
from djpeg.tables import ZIGZAG

#: Symbol of a token that is a raw bit field, not a Huffman code.
RAW = -1
EOB, ZRL = 0x00, 0xF0

# Bit length of 0..32767 (magnitude categories, EOB run classes); larger maps to the sentinel 99.
_SIZE_LUT = np.append(np.frexp(np.arange(32768.0))[1], 99).astype(np.int32)


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


@dataclasses.dataclass(frozen=True)
class Sparse:
  """The coefficients of one component, AC as a sparse list.

  Attributes:
    dc: `(num_blocks,)` int64 DC values, blocks in raster order.
    block, k, value, magnitude: `(M,)` int32 block index, zigzag index (1..63), value and
      |value| of every nonzero AC coefficient, sorted by block, then by k.
    shifted: cache of `shifted_list` per point transform Al, shared by the scans of a file.
  """

  dc: np.ndarray
  block: np.ndarray
  k: np.ndarray
  value: np.ndarray
  magnitude: np.ndarray
  shifted: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @property
  def num_blocks(self) -> int:
    return len(self.dc)

  def shifted_list(self, al: int):
    """`(block, k, value, |value| >> al)` of the coefficients with |value| >> al nonzero.

    Progressive scans at Al > 0 see only these; several scans of a script share an Al (the
    first scans of two bands, a first scan and a refinement), so the list is made once.
    """
    if not al:
      return self.block, self.k, self.value, self.magnitude
    if al not in self.shifted:
      keep = np.flatnonzero(self.magnitude >= (1 << al))   # a bool mask: far faster to search
      self.shifted[al] = (np.take(self.block, keep), np.take(self.k, keep),
                          np.take(self.value, keep), np.take(self.magnitude, keep) >> al)
    return self.shifted[al]


def sparse_component(coefficients: np.ndarray) -> Sparse:
  """`(rows, cols, 8, 8)` integer coefficients (natural order) to a `Sparse` list.

  The dense passes (zigzag copy, mask, nonzero search) run on the input's own dtype: int16, as
  the writer passes them, halves their memory traffic against int32.
  """
  blocks = coefficients.reshape(-1, 64)
  # np.take, not blocks[:, ZIGZAG]: fancy indexing along the last axis returns a transposed
  # (Fortran-ordered) array, and every later pass would copy it back.
  zigzag = np.take(blocks, ZIGZAG, axis=1)
  mask = zigzag != 0
  mask[:, 0] = False
  flat = np.flatnonzero(mask)
  value = np.take(zigzag, flat).astype(np.int32)
  flat = flat.astype(np.int32)
  return Sparse(blocks[:, 0].astype(np.int64), flat >> 6, flat & 63, value, np.abs(value))


@dataclasses.dataclass
class Group:
  """Tokens of one kind at known stream positions.

  Attributes:
    pos: `(n,)` positions in the scan's token stream.
    symbol: `table * 256 + byte` (scalar or `(n,)`), or `RAW`.
    extra: bits after the code, already reduced to their low `nextra` bits (scalar or `(n,)`).
    nextra: number of extra bits (scalar or `(n,)`).
  """

  pos: np.ndarray
  symbol: int | np.ndarray
  extra: int | np.ndarray = 0
  nextra: int | np.ndarray = 0


@dataclasses.dataclass
class ScanTokens:
  """All tokens of a scan: `total` of them in `groups`, restart intervals ending at `segment_ends`.

  Like every coded scan (`sequential.ScanSymbols`, `progressive.RefineScan`) it gives its symbol
  `counts`, its `raw_bits` and, once the tables are chosen, its entropy-coded `segment`.
  """

  total: int
  groups: list[Group]
  segment_ends: np.ndarray

  def counts(self, num_tables: int) -> np.ndarray:
    """`(num_tables, 256)` symbol counts."""
    counts = np.zeros(num_tables * 256, np.int64)
    for g in self.groups:
      if np.ndim(g.symbol):
        counts += np.bincount(g.symbol, minlength=num_tables * 256)
      elif g.symbol != RAW:
        counts[g.symbol] += len(g.pos)
    return counts.reshape(num_tables, 256)

  def raw_bits(self) -> int:
    """Bits of the raw fields (no Huffman code)."""
    return int(sum(np.sum(np.broadcast_to(g.nextra, np.shape(g.pos)))
                   for g in self.groups if np.ndim(g.symbol) == 0 and g.symbol == RAW))

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The entropy-coded segment.

    Args:
      shifted, total: `(num_tables * 256,)` per symbol its code shifted left over its extra
        bits (uint32) and the field's total length (code and extra bits; uint8).
    """
    values = np.zeros(self.total, np.uint32)
    lengths = np.zeros(self.total, np.uint8)
    for g in self.groups:
      extra = np.asarray(g.extra).astype(np.uint32, copy=False)
      if np.ndim(g.symbol) == 0 and g.symbol == RAW:
        values[g.pos] = extra
        lengths[g.pos] = g.nextra
      elif np.ndim(g.symbol) == 0:
        values[g.pos] = shifted[g.symbol] | extra
        lengths[g.pos] = total[g.symbol]
      else:
        values[g.pos] = np.take(shifted, g.symbol) | extra
        lengths[g.pos] = np.take(total, g.symbol)
    return bitpack.pack(values, lengths, self.segment_ends)


def nbits(a: np.ndarray, magnitude: np.ndarray | None = None) -> np.ndarray:
  """Bit length of |a| (JPEG's magnitude category SSSS); 99 where |a| > 32767."""
  return np.take(_SIZE_LUT, np.abs(a) if magnitude is None else magnitude, mode="clip")


def magnitude_bits(v: np.ndarray, size: np.ndarray) -> np.ndarray:
  """The `size` extra bits JPEG sends for v: v if v > 0, else the low bits of v - 1."""
  return v + ((v >> (8 * v.dtype.itemsize - 1)) & ((1 << size) - 1))  # branch-free v < 0 test


def ramp(reps: np.ndarray) -> np.ndarray:
  """0, 1, ..., reps[0]-1, 0, 1, ..., reps[1]-1, ... as one array."""
  starts = np.cumsum(reps) - reps
  return np.arange(int(reps.sum())) - np.repeat(starts, reps)


def block_runs(block: np.ndarray, k: np.ndarray, k_before_first: int):
  """For a sorted sparse list: first-in-block and last-in-block masks and zero runs before each."""
  first = np.ones(len(block), bool)
  first[1:] = block[1:] != block[:-1]
  last = np.ones(len(block), bool)
  last[:-1] = first[1:]
  prevk = np.empty_like(k)
  prevk[1:] = k[:-1]
  prevk[first] = k_before_first
  return first, last, k - prevk - 1


def check_dc(size: np.ndarray, diff: np.ndarray, layout: layout_lib.ScanLayout) -> None:
  bad = np.flatnonzero(size > 11)
  if bad.size:
    i = int(bad[0])
    raise ValueError(f"{layout.describe(i)}: DC difference {int(diff[i])} from the previous block "
                     "needs more than 11 bits; 8-bit JPEG codes at most 11 (|difference| <= 2047).")


def check_ac(size: np.ndarray, sparse_rows: np.ndarray, k: np.ndarray, value: np.ndarray,
             layout: layout_lib.ScanLayout, index: int) -> None:
  if size.size and size.max() > 10:
    i = int(np.argmax(size > 10))
    position = int(layout.coded[index][int(sparse_rows[i])])
    raise ValueError(f"{layout.describe(position)}: AC coefficient {int(k[i])} (zigzag) is "
                     f"{int(value[i])}; 8-bit JPEG codes |AC| <= 1023.")


def dc_differences(dc: np.ndarray, layout: layout_lib.ScanLayout, restart: int) -> np.ndarray:
  """`(N,)` DC differences in coding order (prediction restarts with each interval)."""
  pred = layout_lib.dc_predecessors(layout, restart)
  return dc - np.where(pred >= 0, dc[pred], 0)


def _interval_ends(start: np.ndarray, layout, restart: int, total: int) -> np.ndarray:
  return np.append(start[layout_lib.interval_starts(layout, restart)], total).astype(np.int64)


def dc_first_tokens(sparse: list[Sparse], layout: layout_lib.ScanLayout, restart: int, al: int,
                    dc_table) -> ScanTokens:
  """Tokens of a progressive DC first scan: differences of DC >> Al (arithmetic shift)."""
  dc = layout_lib.gather_dc(layout, [s.dc for s in sparse])
  diff = dc_differences(dc >> al, layout, restart)
  size = nbits(diff)
  check_dc(size, diff, layout)
  n = len(dc)
  symbol = np.asarray(dc_table, np.int64)[layout.component] * 256 + size
  start = np.arange(n)
  return ScanTokens(n, [Group(start, symbol, magnitude_bits(diff, size), size)],
                    _interval_ends(start, layout, restart, n))


def dc_refine_tokens(sparse: list[Sparse], layout: layout_lib.ScanLayout, restart: int,
                     al: int) -> ScanTokens:
  """Tokens of a progressive DC refinement scan: bit Al of each DC, raw."""
  dc = layout_lib.gather_dc(layout, [s.dc for s in sparse])
  n = len(dc)
  start = np.arange(n)
  return ScanTokens(n, [Group(start, RAW, (dc >> al) & 1, 1)],
                    _interval_ends(start, layout, restart, n))
