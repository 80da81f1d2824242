"""The sequential (baseline) scan, coded straight to bit positions.

Per coded block the scan holds its DC difference, then per nonzero AC coefficient its ZRLs (runs
of 16 zeros) and its (run, size) symbol, then EOB unless coefficient 63 is nonzero; dummy blocks
code their DC difference (0) and EOB. No stream of symbols is ever ordered: once the tables are
known, each block's length in bits follows from its symbols, a cumulative sum over blocks gives
where each block starts, and one over each component's nonzeros (already in block order) gives
where each AC field ends inside its block. Every field then goes to `bitpack` with its own end
bit, so the scan costs a few passes over the nonzero coefficients.

Two stages, as the tables need the counts first: `symbols` (symbols and their extra bits) and
`segment` (bits, given the code tables); `counts` is the histogram in between. `ScanSymbols`
offers both as methods, like the progressive scans' coders.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import bitpack, layout as layout_lib
from djpeg.exact.scans import (EOB, ZRL, Sparse, add_zrls, block_runs, check_ac, check_dc,
                                dc_differences, magnitude_bits, nbits, run_size_symbols)


@dataclasses.dataclass
class ComponentSymbols:
  """AC symbols of one scan component, its nonzero coefficients in block order.

  Attributes:
    coded: `(nb,)` coded position of each of the component's blocks (raster order).
    block: `(M,)` block (raster index) of each nonzero coefficient.
    symbol: `(M,)` int32 `table * 256 + ((run & 15) << 4 | size)`.
    bits: `(M,)` uint32 extra bits that follow each symbol (its magnitude).
    zrl: `(M,)` ZRLs coded just before each coefficient, or None when there are none.
    nonempty, first, last: `(B,)` the blocks with nonzero AC coefficients and the indices of
      their first and last one.
  """

  coded: np.ndarray
  block: np.ndarray
  symbol: np.ndarray
  bits: np.ndarray
  zrl: np.ndarray | None
  nonempty: np.ndarray
  first: np.ndarray
  last: np.ndarray


@dataclasses.dataclass
class ScanSymbols:
  """Symbols of a sequential scan before its tables are chosen.

  Attributes:
    layout, restart: the scan's block order and restart interval (MCUs, 0 for none).
    dc_symbol, dc_size, dc_bits: `(N,)` per coded block, its DC symbol (`table * 256 + size`),
      size and extra bits (uint32).
    eob_symbol: `(E,)` the EOB symbol (`table * 256`) of each block that ends with one, and
      `eob_blocks`, `(E,)` their coded positions.
    parts: per scan component, its AC symbols.
    zrl_table: per scan component, `table * 256` of its AC table (for the ZRL symbol).
  """

  layout: layout_lib.ScanLayout
  restart: int
  dc_symbol: np.ndarray
  dc_size: np.ndarray
  dc_bits: np.ndarray
  eob_symbol: np.ndarray
  eob_blocks: np.ndarray
  parts: list[ComponentSymbols]
  zrl_table: list[int]

  def counts(self, num_tables: int) -> np.ndarray:
    return counts(self, num_tables)

  def raw_bits(self) -> int:
    return 0

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    return segment(self, shifted, total)


def _component(sparse: Sparse, coded: np.ndarray, table: int, layout, index: int):
  """AC symbols of one component and which of its blocks end with EOB: `(ComponentSymbols, (nb,) bool)`."""
  b, k, v = sparse.block, sparse.k, sparse.value
  size = nbits(v, sparse.magnitude)
  check_ac(size, b, k, v, layout, index)
  first, last, run = block_runs(b, k, 0)
  run, zrl = run_size_symbols(run, size, table)
  nonempty = b[first]
  last_k = np.zeros(sparse.num_blocks, np.int32)
  last_k[nonempty] = k[last]
  part = ComponentSymbols(coded, b, run, magnitude_bits(v, size).view(np.uint32),
                          zrl if zrl.any() else None, nonempty, first, last)
  return part, last_k != 63


def symbols(sparse: list[Sparse], layout: layout_lib.ScanLayout, restart: int, dc_table,
            ac_table) -> ScanSymbols:
  """The symbols of a sequential scan.

  Args:
    sparse: per frame component, from `scans.sparse_component`.
    layout: the scan's layout.
    restart: restart interval in MCUs (0 for none).
    dc_table, ac_table: per scan component, its DC and AC table index.
  Raises:
    ValueError: a DC difference needs more than 11 bits or an AC value more than 10.
  """
  dc = layout_lib.gather_dc(layout, [s.dc for s in sparse])
  diff = dc_differences(dc, layout, restart)
  dc_size = nbits(diff)
  check_dc(dc_size, diff, layout)
  dc_symbol = np.asarray(dc_table, np.int32)[layout.component] * 256 + dc_size
  eob = np.ones(layout.num_blocks, bool)   # dummy blocks: DC and EOB
  parts = []
  for i, c in enumerate(layout.components):
    part, block_eob = _component(sparse[c], layout.coded[i], int(ac_table[i]), layout, i)
    eob[part.coded] = block_eob
    parts.append(part)
  eob_blocks = np.flatnonzero(eob)
  eob_symbol = np.asarray(ac_table, np.int32)[layout.component[eob_blocks]] * 256 + EOB
  return ScanSymbols(layout, restart, dc_symbol, dc_size,
                     magnitude_bits(diff, dc_size).astype(np.uint32), eob_symbol, eob_blocks,
                     parts, [int(t) * 256 for t in ac_table])


def counts(syms: ScanSymbols, num_tables: int) -> np.ndarray:
  """`(num_tables, 256)` symbol counts of the scan."""
  n = num_tables * 256
  total = np.bincount(syms.dc_symbol, minlength=n) + np.bincount(syms.eob_symbol, minlength=n)
  for part, table in zip(syms.parts, syms.zrl_table):
    total += np.bincount(part.symbol, minlength=n)
    if part.zrl is not None:
      total[table + ZRL] += int(part.zrl.sum())
  return total.reshape(num_tables, 256)


def segment(syms: ScanSymbols, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
  """The scan's entropy-coded segment.

  Args:
    syms: from `symbols`.
    shifted, total: `(num_tables * 256,)` per symbol its code shifted left over its extra bits
      (uint32) and the field's total length (code and extra bits; uint8).
  Returns:
    `(bytes,)` uint8: the segment as it goes after SOS, stuffed, with its RST markers.
  """
  # Bit positions in int32 unless the scan could reach 2**31 bits (fields are <= 32 bits, and
  # a coefficient's field with its ZRLs <= 80).
  fields = len(syms.dc_symbol) + len(syms.eob_symbol) + sum(len(p.block) for p in syms.parts)
  dt = np.int32 if 80 * fields < 2**31 else np.int64
  dc_len = np.take(total, syms.dc_symbol)
  bits = dc_len.astype(np.int64)
  eob_len = np.take(total, syms.eob_symbol)
  bits[syms.eob_blocks] += eob_len
  ac = []
  for part, table in zip(syms.parts, syms.zrl_table):
    length = np.take(total, part.symbol)
    field = length.astype(dt)
    if part.zrl is not None:
      field += part.zrl.astype(dt) * int(total[table + ZRL])
    inside = np.cumsum(field, dtype=dt)          # bits of the component's fields up to each
    before_block = inside[part.first] - field[part.first]
    bits[part.coded[part.nonempty]] += inside[part.last] - before_block
    ac.append((part, table, length, inside, before_block))
  starts, seg_end_bit, pad = bitpack.unit_starts(
      bits, layout_lib.interval_starts(syms.layout, syms.restart))

  acc = bitpack.windows(int(seg_end_bit[-1]))
  dc_end = starts + dc_len
  bitpack.add_fields(acc, np.take(shifted, syms.dc_symbol) | syms.dc_bits, dc_len,
                     dc_end.astype(dt))
  bitpack.add_fields(acc, np.take(shifted, syms.eob_symbol), eob_len,
                     (starts[syms.eob_blocks] + bits[syms.eob_blocks]).astype(dt))
  for part, table, length, inside, before_block in ac:
    # A coefficient's field ends after its block's DC and the fields up to its own.
    base = np.zeros(len(part.coded), dt)
    base[part.nonempty] = dc_end[part.coded[part.nonempty]] - before_block
    end = np.take(base, part.block)
    end += inside
    values = np.take(shifted, part.symbol)
    values |= part.bits
    bitpack.add_fields(acc, values, length, end)
    if part.zrl is not None:
      add_zrls(acc, part.zrl, end, length, int(total[table + ZRL]), shifted[table + ZRL])
  return bitpack.finish(acc, seg_end_bit, pad)
