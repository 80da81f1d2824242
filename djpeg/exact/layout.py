"""Which blocks a scan codes, in which order: MCU interleaving and libjpeg's dummy blocks.

A scan with one component is non-interleaved: it codes that component's real blocks
(`height_in_blocks x width_in_blocks`) in raster order, one block per MCU. A scan with several
components codes MCUs in raster order; each MCU holds, per component in scan order, `v` rows of
`h` blocks. Where the image does not fill the last MCU column or row, the MCU is completed with
dummy blocks, which libjpeg (`jccoefct.c`) fills with zero AC and a DC copied from the last real
block to the left; dummy block rows at the bottom copy the DC of the block above at the MCU's
right edge. Reproducing that makes our scans byte-identical to libjpeg's.

Layouts depend only on geometry, so they are cached.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from djpeg import sampling as sampling_lib

Sampling = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: layouts are cached
class ScanLayout:
  """Block order of one scan.

  Attributes:
    components: the frame's component indices in this scan, in scan order.
    source: `(N,)` for each coded block, a row of the scan's source array: the real blocks of
      each scan component in raster order, concatenated, followed by one all-zero row (which
      every dummy block points at).
    dummy: `(K,)` coded positions of dummy blocks; `dummy_dc`: `(K,)` the source rows whose DC
      each one copies.
    component: `(N,)` index into `components` of each coded block.
    blocks_per_mcu: blocks in one MCU (1 for a non-interleaved scan).
    block_rows, block_cols: `(len(components),)` real blocks of each component.
    coded: per scan component, `(rows_c * cols_c,)` coded position of each real block (raster
      order): where `source` points back at it.
  """

  components: tuple[int, ...]
  source: np.ndarray
  dummy: np.ndarray
  dummy_dc: np.ndarray
  component: np.ndarray
  blocks_per_mcu: int
  block_rows: tuple[int, ...]
  block_cols: tuple[int, ...]
  coded: tuple[np.ndarray, ...]

  @property
  def num_blocks(self) -> int:
    return len(self.source)

  @property
  def num_mcus(self) -> int:
    return self.num_blocks // self.blocks_per_mcu

  def describe(self, position: int) -> str:
    """'component c block (row r, col k)' (or 'a dummy block') for a coded position."""
    i = int(self.component[position])
    row = int(self.source[position])
    offset = sum(r * c for r, c in zip(self.block_rows[:i], self.block_cols[:i]))
    if row >= offset + self.block_rows[i] * self.block_cols[i]:
      return f"component {self.components[i]} (a dummy block padding an MCU)"
    r, c = divmod(row - offset, self.block_cols[i])
    return f"component {self.components[i]} block (row {r}, col {c})"


def mcu_grid(height: int, width: int, factors: Sampling) -> tuple[int, int]:
  """(MCU rows, MCU columns) of an interleaved scan: libjpeg's MCU_rows_in_scan, MCUs_per_row."""
  h_max = max(h for h, _ in factors)
  v_max = max(v for _, v in factors)
  return math.ceil(height / (8 * v_max)), math.ceil(width / (8 * h_max))


@functools.lru_cache(maxsize=16)  # a few image sizes at a time; layouts of big ones are big
def scan_layout(height: int, width: int, factors: Sampling, components: tuple[int, ...]) -> ScanLayout:
  """The coded block order of a scan of `components` in a `height x width` frame."""
  blocks = [sampling_lib.component_blocks(height, width, factors, c) for c in components]
  rows = tuple(b[0] for b in blocks)
  cols = tuple(b[1] for b in blocks)
  empty = np.zeros(0, np.int64)
  if len(components) == 1:
    n = rows[0] * cols[0]
    identity = np.arange(n, dtype=np.int64)
    return ScanLayout(components, identity, empty, empty, np.zeros(n, np.int64), 1, rows, cols,
                      (identity,))
  mcu_rows, mcu_cols = mcu_grid(height, width, factors)
  zero_row = sum(r * c for r, c in zip(rows, cols))
  per_component, dummy_parts, dc_parts, comp_parts = [], [], [], []
  offset = 0
  for i, c in enumerate(components):
    h, v = factors[c]
    pr, pc = mcu_rows * v, mcu_cols * h  # padded grid
    r_idx, c_idx = np.meshgrid(np.arange(pr), np.arange(pc), indexing="ij")
    real = (r_idx < rows[i]) & (c_idx < cols[i])
    src = np.where(real, offset + r_idx * cols[i] + c_idx, zero_row)
    # DC source: right dummies copy the last real block of their row; bottom dummy rows copy the
    # block at their MCU's right edge in the last real row (itself possibly a right dummy).
    dc_r = np.minimum(r_idx, rows[i] - 1)
    edge_c = (c_idx // h) * h + h - 1
    dc_c = np.where(r_idx < rows[i], c_idx, edge_c)
    dc_c = np.minimum(dc_c, cols[i] - 1)
    dc_src = offset + dc_r * cols[i] + dc_c
    # (mcu_rows, v, mcu_cols, h) -> (mcu_rows, mcu_cols, v * h): MCU-major order.
    def mcu_major(a):
      return a.reshape(mcu_rows, v, mcu_cols, h).transpose(0, 2, 1, 3).reshape(mcu_rows * mcu_cols, v * h)
    per_component.append(mcu_major(src))
    dummy_parts.append(mcu_major(~real))
    dc_parts.append(mcu_major(dc_src))
    comp_parts.append(np.full((mcu_rows * mcu_cols, v * h), i))
    offset += rows[i] * cols[i]
  source = np.concatenate(per_component, axis=1).ravel()
  is_dummy = np.concatenate(dummy_parts, axis=1).ravel()
  dc_src = np.concatenate(dc_parts, axis=1).ravel()
  component = np.concatenate(comp_parts, axis=1).ravel()
  dummy = np.flatnonzero(is_dummy)
  bpm = sum(factors[c][0] * factors[c][1] for c in components)
  inverse = np.empty(zero_row + 1, np.int64)
  inverse[source] = np.arange(len(source))  # dummies all land on the zero row; it is unused
  bounds = np.cumsum([0] + [r * c for r, c in zip(rows, cols)])
  coded = tuple(inverse[bounds[i]:bounds[i + 1]] for i in range(len(components)))
  return ScanLayout(components, source, dummy, dc_src[dummy], component, bpm, rows, cols, coded)


def gather_dc(layout: ScanLayout, dc: list[np.ndarray]) -> np.ndarray:
  """The DC coefficients of a scan's blocks in coding order, dummies included.

  Args:
    layout: from `scan_layout`.
    dc: per frame component, `(rows_c * cols_c,)` DC values in raster order.
  Returns:
    `(N,)` int64.
  """
  parts = [np.asarray(dc[c], np.int64) for c in layout.components]
  if len(parts) == 1:
    return parts[0]
  source = np.concatenate(parts + [np.zeros(1, np.int64)])
  out = source[layout.source]
  out[layout.dummy] = source[layout.dummy_dc]
  return out


@functools.lru_cache(maxsize=16)
def dc_predecessors(layout: ScanLayout, restart_interval: int) -> np.ndarray:
  """`(N,)` coded position of the block whose DC predicts each block's DC, -1 where it is 0.

  The predictor is the previous block of the same component; it restarts at 0 at the start of
  the scan and of every restart interval (`restart_interval` MCUs; 0 for none).
  """
  n = layout.num_blocks
  pred = np.full(n, -1, np.int64)
  mcu = np.arange(n) // layout.blocks_per_mcu
  interval = mcu // restart_interval if restart_interval else np.zeros(n, np.int64)
  for i in range(len(layout.components)):
    pos = np.flatnonzero(layout.component == i)
    prev = np.concatenate([[-1], pos[:-1]])
    same = np.concatenate([[False], interval[pos[1:]] == interval[pos[:-1]]])
    pred[pos] = np.where(same, prev, -1)
  return pred


def interval_starts(layout: ScanLayout, restart_interval: int) -> np.ndarray:
  """Coded block positions where restart intervals begin (after the first), `(m - 1,)`."""
  if not restart_interval:
    return np.zeros(0, np.int64)
  step = restart_interval * layout.blocks_per_mcu
  return np.arange(step, layout.num_blocks, step, dtype=np.int64)
