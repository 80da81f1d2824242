"""Scans and their symbols: scan scripts, sparse coefficients, progressive DC scans.

Entropy coding is split in stages. `sparse_component` lists a component's nonzero AC
coefficients once (block, zigzag index, value). A scan coder (`sequential.symbols`, `dc_first`
and `dc_refine` here, `progressive.ac_first` and `ac_refine`) turns them into the scan's
symbols with array operations only, and returns an object with three methods: `counts` (the
symbol histogram, from which `writer` chooses the tables), `raw_bits` (bits sent without a code,
for `scripts`' estimates) and `segment`, which, given the tables' codes, computes where every
field of the scan starts in the bit stream and has `bitpack` pack them. No stream-ordered array
of symbols is ever built: positions follow from cumulative sums of field lengths over blocks
and coefficients.

A symbol is `table * 256 + byte`, `table` indexing the scan's list of tables.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import bitpack, layout as layout_lib
from djpeg.tables import ZIGZAG

EOB, ZRL = 0x00, 0xF0

# Bit length of 0..32767 (magnitude categories, EOB run classes); larger maps to the sentinel 99.
SIZE_LUT = np.append(np.frexp(np.arange(32768.0))[1], 99).astype(np.int32)


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


def nbits(a: np.ndarray, magnitude: np.ndarray | None = None) -> np.ndarray:
  """Bit length of |a| (JPEG's magnitude category SSSS); 99 where |a| > 32767."""
  return np.take(SIZE_LUT, np.abs(a) if magnitude is None else magnitude, mode="clip")


def magnitude_bits(v: np.ndarray, size: np.ndarray) -> np.ndarray:
  """The `size` extra bits JPEG sends for v: v if v > 0, else the low bits of v - 1."""
  return v + ((v >> (8 * v.dtype.itemsize - 1)) & ((1 << size) - 1))  # branch-free v < 0 test


def ramp(reps: np.ndarray) -> np.ndarray:
  """0, 1, ..., reps[0]-1, 0, 1, ..., reps[1]-1, ... as one array."""
  starts = np.cumsum(reps) - reps
  return np.arange(int(reps.sum())) - np.repeat(starts, reps)


def block_runs(block: np.ndarray, k: np.ndarray, k_before_first: int):
  """For a sparse list sorted by block: `(first, last, run)`, the indices of each nonempty
  block's first and last coefficient `(B,)`, and the zero run before each coefficient `(M,)`
  (counted from `k_before_first` at a block's first one)."""
  first = np.flatnonzero(block[1:] != block[:-1]) + 1
  first = np.concatenate([[0], first]) if len(block) else first
  last = np.append(first[1:] - 1, len(block) - 1) if len(block) else first
  previous = np.empty_like(k)
  previous[1:] = k[:-1]
  previous[first] = k_before_first
  run = k - previous
  run -= 1
  return first, last, run


def run_size_symbols(run: np.ndarray, size: np.ndarray, table: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """`(symbol, zrl)` of AC coefficients from their zero runs and sizes `(M,)` (`block_runs`):
  `table * 256 + ((run % 16) << 4 | size)` and the ZRLs (`run // 16`) coded before each.
  Reuses `run`'s buffer for the symbols."""
  zrl = run >> 4
  run &= 15
  run <<= 4
  run |= size
  run += table * 256
  return run, zrl


def add_zrls(acc: np.ndarray, zrl: np.ndarray, end: np.ndarray, length: np.ndarray,
             z_len: int, z_code) -> None:
  """Packs the ZRLs that open coefficients' fields: coefficient j's `zrl[j]` ZRL codes come just
  before its own field (`length[j]` bits ending at `end[j]`); ZRL r of z ends z - r - 1 codes
  before that field starts."""
  with_zrl = np.flatnonzero(zrl > 0)
  reps = zrl[with_zrl]
  back = np.repeat(reps, reps) - ramp(reps)
  zrl_end = np.repeat(end[with_zrl] - length[with_zrl], reps) - (back - 1) * z_len
  bitpack.add_fields(acc, z_code, z_len, zrl_end)


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


@dataclasses.dataclass
class BlockFields:
  """A scan of one field per coded block, the progressive DC scans.

  Attributes:
    layout, restart: the scan's layout and restart interval (MCUs, 0 for none).
    symbol: `(N,)` int32 DC symbol (`table * 256 + size`) of each block, or None for raw bits.
    extra: `(N,)` uint32 the bits after the symbol (or the raw bits).
    raw_length: bits of each raw field (when `symbol` is None).
  """

  layout: layout_lib.ScanLayout
  restart: int
  symbol: np.ndarray | None
  extra: np.ndarray
  raw_length: int = 0

  def counts(self, num_tables: int) -> np.ndarray:
    """`(num_tables, 256)` symbol counts."""
    counts = np.zeros(num_tables * 256, np.int64)
    if self.symbol is not None:
      counts += np.bincount(self.symbol, minlength=num_tables * 256)
    return counts.reshape(num_tables, 256)

  def raw_bits(self) -> int:
    return 0 if self.symbol is not None else self.raw_length * len(self.extra)

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The entropy-coded segment, given per symbol its shifted code and field length."""
    if self.symbol is None:
      lengths = np.full(len(self.extra), self.raw_length, np.uint8)
      values = self.extra
    else:
      lengths = np.take(total, self.symbol)
      values = np.take(shifted, self.symbol) | self.extra
    starts, seg_end_bit, pad = bitpack.unit_starts(
        lengths.astype(np.int64), layout_lib.interval_starts(self.layout, self.restart))
    acc = bitpack.windows(int(seg_end_bit[-1]))
    bitpack.add_fields(acc, values, lengths, starts + lengths)
    return bitpack.finish(acc, seg_end_bit, pad)


def dc_first(sparse: list[Sparse], layout: layout_lib.ScanLayout, restart: int, al: int,
             dc_table) -> BlockFields:
  """A progressive DC first scan: differences of DC >> Al (arithmetic shift)."""
  dc = layout_lib.gather_dc(layout, [s.dc for s in sparse])
  diff = dc_differences(dc >> al, layout, restart)
  size = nbits(diff)
  check_dc(size, diff, layout)
  symbol = np.asarray(dc_table, np.int32)[layout.component] * 256 + size
  return BlockFields(layout, restart, symbol, magnitude_bits(diff, size).astype(np.uint32))


def dc_refine(sparse: list[Sparse], layout: layout_lib.ScanLayout, restart: int,
              al: int) -> BlockFields:
  """A progressive DC refinement scan: bit Al of each DC, raw."""
  dc = layout_lib.gather_dc(layout, [s.dc for s in sparse])
  return BlockFields(layout, restart, None, ((dc >> al) & 1).astype(np.uint32), 1)
