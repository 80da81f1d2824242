"""Trellis quantization: per block, the AC values that minimise real bits + lambda * distortion.

For each 8x8 block a dynamic program over the zigzag positions chooses, for every coefficient
whose rounded value is non-zero, one of three values: the rounded value r, its neighbour toward
zero r - sign(r), or zero (mozjpeg's candidates; values are never moved away from zero), and
with them where the block ends (its EOB). Costs are real bits: the Huffman code length of each
(run, size) symbol, of the ZRLs a long run needs and of the EOB, plus the magnitude bits, with
the code lengths of the tables the writer will build. Distortion is the squared coefficient
error times a weight per component and frequency (`djpeg.optimize`'s model of RGB MSE) and an
optional importance per block, so lambda may differ from block to block.

Symbols interact through the Huffman tables, so the program runs a few rounds: price symbols
with the optimal tables of the current choice (plain rounding first), solve every block, rebuild
the tables. The result is the best of the candidates by their real cost (exact symbol counts
priced with libjpeg's optimal tables, DHT bytes included), plain rounding among them, so the
trellis never does worse than rounding by that measure.

DC coefficients stay rounded as libjpeg rounds them: a DC difference couples neighbouring
blocks, and its share of the rate is small.

Images of more than `STRIP_BLOCKS` blocks are solved strip by strip (whole MCU rows): a block's
choice depends only on the prices, which come from the whole image's symbol counts, so each
round is one pass over the strips, whose counts are summed to price the next, and the
per-coefficient arrays (some 20 bytes a coefficient) take a strip's memory, not the image's.
The result is the one-piece result.

The state of the program is the last non-zero candidate. `cost[j]` is the cheapest way to code a
block up to and including its j-th candidate as its last non-zero coefficient, relative to
zeroing every candidate: a min over the previous non-zero candidate (or the DC) of its cost plus
the (run, size) symbol, ZRLs and the candidate's own magnitude bits and distortion change. The
program and the symbol counts run as loops over blocks compiled by numba
(`djpeg.exact.trellis_compiled`); preparing the problem and choosing among rounds are arrays.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import huffman, layout as layout_lib, scans, sequential, sizes, trellis_compiled
from djpeg.exact import writer
from djpeg.tables import ZIGZAG

_EOB, _ZRL = 0x00, 0xF0
_SIZE = scans.SIZE_LUT  # bit length of 0..32767
_ZIGZAG = np.asarray(ZIGZAG, np.int64)

#: AC symbols a baseline coder may use: EOB, ZRL and (run, size) for size 1..10.
AC_VALID = np.zeros(256, bool)
AC_VALID[[_EOB, _ZRL]] = True
AC_VALID[(np.arange(16)[:, None] * 16 + np.arange(1, 11)[None, :]).ravel()] = True


@dataclasses.dataclass(frozen=True)
class TrellisResult:
  """What `trellis_quantize` chose and what it costs.

  Attributes:
    components: per component, `(rows, cols, 8, 8)` int16 quantized values (natural order).
    bits: entropy-coded bits of the baseline scan with optimal Huffman tables, plus the bits of
      the DHT segments (exact symbol counts; byte stuffing and final padding excluded).
    distortion: sum over coefficients of lambda-free weighted squared error (weights times
      importance), in the units of the weights.
    cost: `bits + lmbda * distortion`, the objective.
    lmbda: the lambda used (bits per unit of distortion).
    rounding_bits, rounding_distortion, rounding_cost: the same for plain rounding.
    rounds: trellis rounds run; `chosen`: the round whose result was kept (0 = plain rounding).
    ac_counts: `(2, 256)` AC symbol counts of the kept result per Huffman table (luma, chroma;
      zeros for a table no component uses): `trellis_quantize`'s `ac_counts` for a next call.
    counts: the kept result's symbol counts `{(class, slot): (256,)}` (DC and AC), from which
      `bits` is computed: counts of parts of an image coded separately add up.
  """
  components: list[np.ndarray]
  bits: float
  distortion: float
  cost: float
  lmbda: float
  rounding_bits: float
  rounding_distortion: float
  rounding_cost: float
  rounds: int
  chosen: int
  ac_counts: np.ndarray | None = None
  counts: dict | None = None


def round_half_away(x: np.ndarray) -> np.ndarray:
  """libjpeg's rounding of quantized values, ties away from zero, as int32."""
  return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int32)


def _ac_table(num_components: int) -> np.ndarray:
  """AC Huffman table slot of each component: 0 (luma) for Y or gray, 1 shared by Cb and Cr."""
  return np.array([0] + [1] * (num_components - 1))


def symbol_counts(components, height: int, width: int, sampling) -> dict:
  """Symbol histograms of the baseline scan the writer would code: `{(class, slot): (256,)}`.

  Args:
    components: per component, `(rows, cols, 8, 8)` integer coefficients.
  """
  sparse = [scans.sparse_component(np.asarray(c, np.int32)) for c in components]
  scan = scans.sequential_script(len(components))[0]
  layout = layout_lib.scan_layout(height, width, tuple(map(tuple, sampling)), scan.components)
  used, dc_local, ac_local = writer.scan_tables(scan, False)
  counts = sequential.symbols(sparse, layout, 0, dc_local, ac_local).counts(len(used))
  return dict(zip(used, counts))


def _pricing_lengths(counts: np.ndarray) -> np.ndarray:
  """`(256,)` AC code lengths to price symbols with: the optimal table of the counts, every
  valid symbol counted at least once so that symbols the current choice does not use have a
  (long) finite length; invalid symbols cost infinity."""
  prior = np.where(AC_VALID, 1, 0)
  _, _, length = huffman.optimal_lengths(np.asarray(counts, np.int64) * 4 + prior)
  return np.where(AC_VALID, length.astype(np.float64), np.inf)


# Costs are fixed-point integers (1/2**16 bit) shifted left by 6 bits, leaving room to pack the
# index of a predecessor (< 64) into the low bits: one comparison then yields both the cheapest
# predecessor's cost and its index, ties going to the earliest (`trellis_compiled`).
_ONE = float(1 << 22)
_SHIFT = 6


def _fixed(bits) -> np.ndarray:
  """Costs in bits to packed fixed-point int64. Costs are clipped to +-2**30 bits: one that
  large (an invalid symbol, a missing option) decides nothing, and sums stay far from overflow."""
  clipped = np.clip(np.nan_to_num(np.asarray(bits, np.float64), nan=np.inf), -2.0 ** 30, 2.0 ** 30)
  return np.rint(clipped * (_ONE / 64)).astype(np.int64) << _SHIFT


def _transition_table(lengths: np.ndarray) -> np.ndarray:
  """`(2 * 64 * 16,)` fixed-point cost of coding a non-zero of size s after d - 1 zeros, per
  table: entry `t * 1024 + d * 16 + s` is the (run mod 16, s) code plus one ZRL per 16 zeros."""
  d = np.arange(64)[:, None]
  s = np.arange(16)[None, :]
  run = np.maximum(d - 1, 0)
  out = np.full((2, 64, 16), np.inf)
  for t in range(2):
    zrl = np.where(run >= 16, np.maximum(run >> 4, 1) * lengths[t][_ZRL], 0.0)  # no inf * 0
    cost = lengths[t][((run & 15) << 4) + s] + zrl
    out[t] = np.where((d >= 1) & (s >= 1), cost, np.inf)
  return _fixed(out.reshape(-1))


def solve_blocks(x, rounded, dmul, table, lengths) -> np.ndarray:
  """The dynamic program over all blocks: `(N, 63)` int16 chosen magnitudes.

  Args:
    x: `(N, 63)` |coefficient| / step of the AC coefficients in zigzag order.
    rounded: `(N, 63)` round(x), >= 0.
    dmul: `(N, 63)` the bits a squared step of error costs (lambda * weight * importance *
      step^2).
    table: `(N,)` AC Huffman table of each block (0 or 1).
    lengths: `(2, 256)` AC code lengths to price symbols with (inf: not codable).
  """
  n = np.shape(x)[0]
  # Each block its own group of weights: dmul row b is group b's.
  return trellis_compiled.solve(
      np.ascontiguousarray(x), np.ascontiguousarray(rounded), np.ones(n),
      np.ascontiguousarray(dmul, np.float64), np.arange(n), 1.0, np.ascontiguousarray(table),
      _transition_table(lengths), _fixed(lengths[:, _EOB]))


def _ac_histograms(magnitudes: np.ndarray, table: np.ndarray) -> np.ndarray:
  """`(2, 256)` AC symbol counts per table of blocks `(N, 63)` (zigzag magnitudes)."""
  return trellis_compiled.ac_histograms(np.ascontiguousarray(magnitudes), table)


class _Counter:
  """Exact symbol counts of the baseline scan for any choice of AC magnitudes, fast.

  The DC coefficients are fixed, so their symbols and the EOBs of libjpeg's dummy blocks (which
  pad interleaved MCUs) are counted once from the scan layout; AC symbols come from the non-zero
  magnitudes, `(N, 63)` in zigzag order, with the blocks of all components stacked.
  """

  def __init__(self, dc, table, height, width, sampling):
    num = len(dc)
    self.table = table
    self.keys = [(0, 0), (1, 0), (0, 1), (1, 1)] if num > 1 else [(0, 0), (1, 0)]
    scan = scans.sequential_script(num)[0]
    layout = layout_lib.scan_layout(height, width, tuple(map(tuple, sampling)), scan.components)
    coded = layout_lib.gather_dc(layout, [d.reshape(-1) for d in dc])
    diff = scans.dc_differences(coded, layout, 0)
    size = scans.nbits(diff)
    scans.check_dc(size, diff, layout)
    slot = np.minimum(layout.component, 1)           # Y (or gray) 0, Cb and Cr 1
    self.dc = np.bincount(slot * 256 + size, minlength=512).reshape(2, 256)
    self.dummy_eob = np.bincount(slot[layout.dummy], minlength=2)

  def counts(self, magnitudes: np.ndarray) -> dict:
    ac = _ac_histograms(magnitudes, self.table)
    ac[:, _EOB] += self.dummy_eob
    by_key = {(0, 0): self.dc[0], (1, 0): ac[0], (0, 1): self.dc[1], (1, 1): ac[1]}
    return {key: by_key[key] for key in self.keys}


class TrellisProblem:
  """One image's coefficients and tables, prepared for rounding, the trellis and their costs.

  AC coefficients of all components are stacked as `(N, 63)` rows in zigzag order (float32:
  coefficients are multiples of 1/8 and steps integers, so |F| / Q and its rounding are exact);
  DC values are rounded once.
  """

  def __init__(self, dct, tables, sampling, height, width, weights, importance,
               count: bool = True):
    num = len(dct)
    self.shapes = [np.shape(d) for d in dct]
    blocks = [int(np.prod(shape[:-2])) for shape in self.shapes]
    total = sum(blocks)
    # Per block F / Q; the weighted error per squared step is importance[b] * step_weights[c]
    # (one row per component, not one per block: at 24 MP each (N, 63) array is 140 MB).
    self.signed = np.empty((total, 63), np.float32)
    self.importance = np.empty(total, np.float32)
    self.step_weights = np.empty((num, 63), np.float32)
    # Magnitudes are at most 1023 (8-bit JPEG), so int16 halves the largest arrays.
    self.rounded = np.empty((total, 63), np.int16)
    self.table = np.repeat(_ac_table(num), blocks)
    self.component = np.repeat(np.arange(num), blocks)
    self.ac_steps = np.empty((num, 63), np.float32)
    self.dc = []
    self.distortion_const = 0.0
    start = 0
    for c in range(num):
      flat = np.ascontiguousarray(np.asarray(dct[c], np.float32).reshape(-1, 64))
      steps = np.asarray(tables[c], np.float32).reshape(64)[ZIGZAG]
      w = np.asarray(weights[c], np.float32).reshape(64)[ZIGZAG]
      imp = (np.ones(blocks[c], np.float32) if importance is None
             else np.asarray(importance[c], np.float32).reshape(-1))
      trellis_compiled.prepare_ac(flat, _ZIGZAG, steps, start, self.signed, self.rounded)
      self.importance[start:start + blocks[c]] = imp
      self.step_weights[c] = (w * steps ** 2)[1:]
      ratio_dc = flat[:, 0] / steps[0]
      dc = round_half_away(ratio_dc)
      self.dc.append(dc.reshape(self.shapes[c][:-2]))
      # The DC's distortion is the same for every choice: counted, never optimized.
      self.distortion_const += float(np.sum(
          imp * (w[0] * steps[0] ** 2) * (ratio_dc - dc) ** 2, dtype=np.float64))
      self.ac_steps[c] = steps[1:]
      start += blocks[c]
    # A strip of a larger image (`count` False) is counted with the whole image's DC.
    self.counter = _Counter(self.dc, self.table, height, width, sampling) if count else None

  def distortion(self, magnitudes) -> float:
    return self.distortion_const + trellis_compiled.weighted_error(
        self.signed, np.ascontiguousarray(magnitudes), self.importance, self.step_weights,
        self.component)

  def evaluate(self, magnitudes):
    """(symbol counts, bits, distortion) of a choice of AC magnitudes `(N, 63)`."""
    counts = self.counter.counts(magnitudes)
    return counts, sizes.coded_bits(counts), self.distortion(magnitudes)

  def solve(self, lmbda: float, lengths: np.ndarray) -> np.ndarray:
    """`(N, 63)` int16 AC magnitudes minimising bits + lmbda * distortion per block, symbols
    priced with AC code lengths `(2, 256)` (`trellis_compiled.solve`)."""
    return trellis_compiled.solve(self.signed, self.rounded, self.importance, self.step_weights,
                                  self.component, float(lmbda), self.table,
                                  _transition_table(lengths), _fixed(lengths[:, _EOB]))

  def slope(self, sample: int = 2048) -> float:
    """Bits saved per unit of distortion added by coarser AC steps (`table_slope`).

    Measured on AC coefficients of a subsample of blocks (every k-th, at least `sample`
    blocks), rounded with every AC step moved 10% (at least 1) down and up, and priced with the
    optimal Huffman tables of each choice's own symbol counts.
    """
    rows = np.arange(0, self.signed.shape[0], max(1, self.signed.shape[0] // sample))
    component = self.component[rows]
    return _slope(np.abs(self.signed[rows]), self.table[rows], self.ac_steps[component],
                  self.importance[rows, None] * self.step_weights[component])

  def components(self, magnitudes) -> list[np.ndarray]:
    """Per component, `(rows, cols, 8, 8)` int16 quantized values in natural order: the
    rounded DC and the AC `magnitudes` `(N, 63)` with their coefficients' signs."""
    magnitudes = np.ascontiguousarray(magnitudes, np.int16)
    out, start = [], 0
    for c, shape in enumerate(self.shapes):
      natural = np.empty((int(np.prod(shape[:-2])), 64), np.int16)
      trellis_compiled.natural_blocks(magnitudes, self.signed, self.dc[c].reshape(-1),
                                      _ZIGZAG, start, natural)
      out.append(natural.reshape(shape))
      start += natural.shape[0]
    return out


#: Images of more blocks than this are solved strip by strip (module docstring).
STRIP_BLOCKS = 1 << 16


def _strips(shapes, sampling, height: int) -> list[tuple[list[slice], int]]:
  """Whole MCU rows of about `STRIP_BLOCKS` blocks: per strip, each component's block rows and
  the strip's height in pixels."""
  v_max = max(v for _, v in sampling)
  mcu = 8 * v_max
  mcu_rows = -(-height // mcu)
  total = sum(int(np.prod(shape[:2])) for shape in shapes)
  per = max(1, int(STRIP_BLOCKS * mcu_rows // max(total, 1)))
  out = []
  for a in range(0, mcu_rows, per):
    b = min(a + per, mcu_rows)
    rows = [slice(a * v, shape[0] if b == mcu_rows else b * v)
            for shape, (_, v) in zip(shapes, sampling)]
    out.append((rows, min(b * mcu, height) - a * mcu))
  return out


def _striped(dct, tables, sampling, height, width, weights, importance, strips, lmbda, rounds,
             ac_counts) -> TrellisResult:
  """`trellis_quantize` strip by strip (module docstring): each pass prepares one strip at a
  time; the symbol counts that price the next round are the strips' sums, and the DC's (and
  libjpeg's dummy blocks') are counted once on the whole image."""
  num = len(dct)
  shapes = [np.shape(d) for d in dct]
  blocks = [int(np.prod(shape[:-2])) for shape in shapes]

  def problem(rows, height_):
    return TrellisProblem([d[r] for d, r in zip(dct, rows)], tables, sampling, height_, width,
                          weights, None if importance is None else
                          [m[r] for m, r in zip(importance, rows)], count=False)

  steps_dc = [np.float32(np.asarray(t, np.float32).reshape(64)[0]) for t in tables]
  dc = [round_half_away(np.asarray(d[..., 0, 0], np.float32) / q) for d, q in zip(dct, steps_dc)]
  counter = _Counter(dc, np.repeat(_ac_table(num), blocks), height, width, sampling)
  if lmbda is None:
    lmbda = _sampled_slope(dct, tables, sampling, weights, importance)

  def counts_of(ac):
    ac[:, _EOB] += counter.dummy_eob
    by_key = {(0, 0): counter.dc[0], (1, 0): ac[0], (0, 1): counter.dc[1], (1, 1): ac[1]}
    return {key: by_key[key] for key in counter.keys}

  def one_pass(solve, out):
    """(counts, distortion) of a choice over all strips, written into `out`."""
    ac, distortion = np.zeros((2, 256), np.int64), 0.0
    for rows, height_ in strips:
      p = problem(rows, height_)
      magnitudes = solve(p)
      ac += _ac_histograms(magnitudes, p.table)
      distortion += p.distortion(magnitudes)
      for whole, part, r in zip(out, p.components(magnitudes), rows):
        whole[r] = part
    return counts_of(ac), distortion

  best_out = [np.empty(shape, np.int16) for shape in shapes]
  spare = [np.empty(shape, np.int16) for shape in shapes]
  counts, distortion = one_pass(lambda p: p.rounded, best_out)
  bits = sizes.coded_bits(counts)
  rounding = (bits, distortion, bits + lmbda * distortion)
  best = (rounding[2], bits, distortion, 0, counts)
  pricing = counts if ac_counts is None else {(1, s): ac_counts[s] for s in (0, 1)}
  for r in range(1, rounds + 1):
    lengths = np.stack([_pricing_lengths(pricing[(1, s)]) if (1, s) in counts
                        else np.full(256, np.inf) for s in (0, 1)])
    pricing, distortion = one_pass(lambda p: p.solve(lmbda, lengths), spare)
    bits = sizes.coded_bits(pricing)
    cost = bits + lmbda * distortion
    if cost < best[0]:
      best = (cost, bits, distortion, r, pricing)
      best_out, spare = spare, best_out
  kept = np.stack([np.asarray(best[4].get((1, s), np.zeros(256)), np.int64) for s in (0, 1)])
  return TrellisResult(components=best_out, bits=best[1], distortion=best[2], cost=best[0],
                       lmbda=lmbda, rounding_bits=rounding[0], rounding_distortion=rounding[1],
                       rounding_cost=rounding[2], rounds=rounds, chosen=best[3], ac_counts=kept,
                       counts=best[4])


def _sampled_slope(dct, tables, sampling, weights, importance, sample: int = 2048) -> float:
  """`TrellisProblem(...).slope(sample)` without preparing the whole image: the same blocks
  (every k-th of the stacked components), prepared alone."""
  blocks = [int(np.prod(np.shape(d)[:-2])) for d in dct]
  stacked = np.arange(0, sum(blocks), max(1, sum(blocks) // sample))
  starts = np.cumsum([0] + blocks)
  picked = [stacked[(stacked >= a) & (stacked < b)] - a for a, b in zip(starts, starts[1:])]
  problem = TrellisProblem(
      [np.asarray(d).reshape(-1, 1, 8, 8)[i] for d, i in zip(dct, picked)], tables, sampling,
      0, 0, weights, None if importance is None else
      [np.asarray(m).reshape(-1, 1)[i] for m, i in zip(importance, picked)], count=False)
  return problem.slope(sample=problem.signed.shape[0])


def _slope(x, table, steps, scale) -> float:
  """`TrellisProblem.slope` of sampled blocks: `(n, 63)` |F| / Q, their AC tables `(n,)`,
  steps `(n, 63)` and distortion weights `(n, 63)` (importance times frequency weight,
  per squared step)."""
  weight = scale / steps ** 2                        # importance * frequency weight
  points = []
  for direction in (-1.0, 1.0):
    new = np.clip(steps + direction * np.maximum(1.0, np.round(0.1 * steps)), 1.0, 255.0)
    y = x * (steps / new)
    r = np.floor(y + np.float32(0.5))
    counts = _ac_histograms(r.astype(np.int32), table)
    bits = sizes.coded_bits({(1, t): counts[t] for t in range(2) if counts[t].any()})
    points.append((bits, float(np.sum(weight * new ** 2 * (y - r) ** 2, dtype=np.float64))))
  (r_fine, d_fine), (r_coarse, d_coarse) = points
  if d_coarse <= d_fine or r_fine <= r_coarse:
    return 0.0
  return (r_fine - r_coarse) / (d_coarse - d_fine)


def _check_lmbda(lmbda) -> float:
  if not (isinstance(lmbda, (int, float, np.floating, np.integer)) and np.isfinite(lmbda)
          and lmbda >= 0):
    raise ValueError(f"lmbda must be a finite number >= 0 (bits per unit of weighted squared "
                     f"error); got {lmbda!r}.")
  return float(lmbda)


def _check_importance(importance, shapes):
  if importance is None:
    return None
  if len(importance) != len(shapes):
    raise ValueError(f"importance needs one array per component ({len(shapes)}); got "
                     f"{len(importance)}.")
  out = []
  for c, (imp, shape) in enumerate(zip(importance, shapes)):
    imp = np.asarray(imp, np.float64)
    if imp.shape != tuple(shape[:-2]):
      raise ValueError(f"importance of component {c} must have shape {tuple(shape[:-2])} (one "
                       f"value per block); got {imp.shape}.")
    if not np.all(np.isfinite(imp)):
      raise ValueError(f"importance of component {c} holds NaN or infinite values.")
    if np.any(imp < 0):
      raise ValueError(f"importance of component {c} holds negative values (min {imp.min():g}); "
                       "block weights must be >= 0.")
    out.append(imp)
  return out


def table_slope(dct, tables, sampling, height: int, width: int, *, weights,
                importance=None) -> float:
  """The rate-distortion slope the tables already balance, in bits per unit of distortion.

  Plain rounding of the AC coefficients (of a subsample of blocks) is priced with every AC step
  moved down and up by 10% (at least one unit): exact bits with each choice's optimal Huffman
  tables; the slope is the bits saved per unit of distortion added between the two. A table
  optimized for bits + lambda * distortion has this slope lambda, and for a quality-scaled
  table it is the lambda that quality trades at, which makes it the trellis's natural lambda
  for given tables. Arguments as for `trellis_quantize`.
  """
  importance = _check_importance(importance, [np.shape(d) for d in dct])
  if len(_strips([np.shape(d) for d in dct], sampling, height)) > 1:
    return _sampled_slope(dct, tables, sampling, weights, importance)
  return TrellisProblem(dct, tables, sampling, height, width, weights, importance).slope()


def trellis_quantize(dct, tables, sampling, height: int, width: int, *, lmbda=None, weights,
                     importance=None, rounds: int = 2,
                     ac_counts: np.ndarray | None = None) -> TrellisResult:
  """Chooses quantized values for DCT coefficients by minimising bits + lmbda * distortion.

  Args:
    dct: per component, `(rows, cols, 8, 8)` DCT coefficients in orthonormal units (what
      `djpeg.transform` returns for one image).
    tables: `(C, 8, 8)` integer quantization steps, 1..255.
    sampling: `((h, v), ...)` sampling factors; `height`, `width`: the image size in pixels.
    lmbda: bits per unit of weighted squared error (>= 0; 0 zeroes every AC coefficient), or
      None for the tables' own slope (`table_slope`).
    weights: per component `(8, 8)` distortion weight of a squared coefficient error.
    importance: optional per component `(rows, cols)` non-negative multiplier of each block's
      distortion (an importance map: larger keeps more of the block).
    rounds: trellis passes, each with the Huffman tables of the previous result (0: rounding).
    ac_counts: optional `(2, 256)` AC symbol counts to price the first pass with instead of
      plain rounding's: a previous result's (`TrellisResult.ac_counts`) at nearby tables of the
      same image, with which one pass does what two do from rounding (a search over tables).
  Returns:
    `TrellisResult`; its components carry the rounded DC and the chosen AC values.
  Raises:
    ValueError: a negative or non-finite lmbda; importance of the wrong shape, NaN or negative.
  """
  importance = _check_importance(importance, [np.shape(d) for d in dct])
  if lmbda is not None:
    lmbda = _check_lmbda(lmbda)
  if ac_counts is not None:
    ac_counts = np.asarray(ac_counts)
    if ac_counts.shape != (2, 256):
      raise ValueError(f"ac_counts must be (2, 256) AC symbol counts; got {ac_counts.shape}.")
  strips = _strips([np.shape(d) for d in dct], sampling, height)
  if len(strips) > 1:
    return _striped(dct, tables, sampling, height, width, weights, importance, strips, lmbda,
                    rounds, ac_counts)
  problem = TrellisProblem(dct, tables, sampling, height, width, weights, importance)
  if lmbda is None:
    lmbda = problem.slope()
  counts, bits, distortion = problem.evaluate(problem.rounded)
  rounding = (bits, distortion, bits + lmbda * distortion)
  best = (rounding[2], problem.rounded, bits, distortion, 0, counts)
  pricing = counts
  if ac_counts is not None:
    pricing = {(1, s): ac_counts[s] for s in (0, 1)}
  for r in range(1, rounds + 1):
    lengths = np.stack([_pricing_lengths(pricing[(1, s)]) if (1, s) in counts
                        else np.full(256, np.inf) for s in (0, 1)])
    magnitudes = problem.solve(lmbda, lengths)
    pricing, bits, distortion = problem.evaluate(magnitudes)
    cost = bits + lmbda * distortion
    if cost < best[0]:
      best = (cost, magnitudes, bits, distortion, r, pricing)
  kept = np.stack([np.asarray(best[5].get((1, s), np.zeros(256)), np.int64) for s in (0, 1)])
  return TrellisResult(components=problem.components(best[1]), bits=best[2],
                       distortion=best[3], cost=best[0], lmbda=lmbda, rounding_bits=rounding[0],
                       rounding_distortion=rounding[1], rounding_cost=rounding[2], rounds=rounds,
                       chosen=best[4], ac_counts=kept, counts=best[5])
