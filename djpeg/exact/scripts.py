"""Progressive scan scripts chosen per image: the smallest of a family of standard scripts.

libjpeg's default progressive script (successive approximation on every band, ten scans, each
with its own Huffman tables) is tuned for display, not size: on small or sparse images (trellis
output) its table and refinement overhead makes the file larger than the baseline one. Like
mozjpeg's `optimize_scans`, `choose` prices candidate scans one by one (exact symbol counts with
each scan's optimal tables, extra and correction bits, DHT and SOS bytes; byte stuffing left
out) and picks, independently for the DC and for each component's AC coefficients, the cheapest
of a few structures:

  DC:          one interleaved scan, or Al = 1 plus a refinement scan;
  luma AC:     bands 1-63, or split after coefficient 2, 5, 8, 12 or 18 (mozjpeg's split
               points), at Al = 0..3 (with refinements);
  chroma AC:   1-63, or split after 2, 5 or 8, at Al = 0..2.

libjpeg's own script is one of the combinations, so the choice is never larger than it by the
estimate. Large images choose on evenly spaced MCU rows (`SAMPLE_BLOCKS` blocks), which have
the image's statistics at a fraction of the pricing time. Every script is a valid progressive JPEG: DC scans first, then spectral bands, each
successive-approximation chain refined down to Al = 0.
"""

from __future__ import annotations

import numpy as np

from djpeg.exact import (layout as layout_lib, progressive, progressive_compiled, scans, sizes,
                         writer)

Scan = scans.Scan

#: Spectral splits tried (1..k, k+1..63; mozjpeg's optimize_scans tries the same split points)
#: and the successive-approximation depths, for luma and for chroma.
_LUMA_BANDS = ((1, 63), (1, 2, 63), (1, 5, 63), (1, 8, 63), (1, 12, 63), (1, 18, 63))
_LUMA_DEPTHS = (0, 1, 2, 3)
_CHROMA_BANDS = ((1, 63), (1, 2, 63), (1, 5, 63), (1, 8, 63))
_CHROMA_DEPTHS = (0, 1, 2)
#: Images with more blocks than this choose their script on evenly spaced MCU rows.
SAMPLE_BLOCKS = 1 << 12


def _scan_bytes(scan: Scan, sparse, starts, height: int, width: int, factors) -> float:
  """Estimated bytes of one optimized progressive scan: entropy-coded data, its DHT and SOS
  (`sizes`; byte stuffing left out). AC scans are counted by compiled loops
  (`progressive_compiled`: the writer's counts; `starts` its block starts of `sparse`), DC
  scans by the writer's coders."""
  used, dc_local, ac_local = writer.scan_tables(scan, True)
  if scan.is_dc:
    layout = layout_lib.scan_layout(height, width, factors, scan.components)
    coded = writer.code_scan(scan, sparse, layout, 0, dc_local, ac_local, progressive.MAX_EOBRUN)
    counts, raw_bits = coded.counts(len(used)), coded.raw_bits()
  elif scan.ah == 0:
    c = scan.components[0]
    counts = [progressive_compiled.ac_first_counts(
        starts[c], sparse[c].k, sparse[c].magnitude, scan.ss, scan.se, scan.al,
        progressive.MAX_EOBRUN)]
    raw_bits = 0
  else:
    c = scan.components[0]
    first, raw_bits = progressive_compiled.ac_refine_counts(
        starts[c], sparse[c].k, sparse[c].magnitude, scan.ss, scan.se, scan.al,
        progressive.MAX_EOBRUN)
    counts = [first]
  bits = 0.0
  header = sizes.sos_bytes(len(scan.components))
  for (table_class, _), c in zip(used, counts):
    if c.any():
      table_bits, symbols = sizes.optimal_code_bits(table_class, c)
      bits += table_bits
      header += sizes.dht_bytes(1, symbols)
  return header + (bits + raw_bits) / 8


def _chain(component: int, bands, al: int) -> tuple[list[Scan], list[Scan]]:
  """First scans of `bands` at `al`, and the refinement scans over 1-63 down to Al = 0."""
  edges = list(bands)
  first = [Scan((component,), lo, hi, 0, al)
           for lo, hi in zip([edges[0]] + [e + 1 for e in edges[1:-1]], edges[1:])]
  refine = [Scan((component,), 1, 63, a + 1, a) for a in range(al - 1, -1, -1)]
  return first, refine


def _options(component: int, luma: bool):
  """Candidate (first scans, refinement scans) for one component's AC coefficients."""
  bands, depths = (_LUMA_BANDS, _LUMA_DEPTHS) if luma else (_CHROMA_BANDS, _CHROMA_DEPTHS)
  return [_chain(component, b, al) for b in bands for al in depths]


def _sample_rows(components, height: int, width: int, factors):
  """Evenly spaced MCU rows of a large image, as a smaller image with the same statistics
  (components, height, width), or the image itself when it is small enough."""
  total = sum(np.shape(c)[0] * np.shape(c)[1] for c in components)
  if total <= SAMPLE_BLOCKS:
    return components, height
  v_max = max(v for _, v in factors)
  full_rows = height // (8 * v_max)          # whole MCU rows (a partial last one is left out)
  if full_rows < 2:
    return components, height
  keep = max(1, int(full_rows * SAMPLE_BLOCKS / total))
  rows = np.unique(np.linspace(0, full_rows - 1, keep).round().astype(int))
  sampled = []
  for c, (_, v) in zip(components, factors):
    block_rows = (rows[:, None] * v + np.arange(v)[None, :]).ravel()
    sampled.append(np.asarray(c)[block_rows[block_rows < np.shape(c)[0]]])
  return sampled, len(rows) * 8 * v_max


def choose(components, height: int, width: int, factors) -> tuple[Scan, ...]:
  """The cheapest script of the family for these coefficients (module docstring).

  Args:
    components: per component, `(rows_c, cols_c, 8, 8)` integer coefficients.
    height, width, factors: frame geometry and sampling factors.
  """
  factors = tuple(map(tuple, factors))
  components, height = _sample_rows(components, height, width, factors)
  sparse = [scans.sparse_component(np.asarray(c)) for c in components]
  starts = [progressive_compiled.block_starts(s) for s in sparse]
  every = tuple(range(len(components)))
  cache = {}

  def cost(scan_list):
    total = 0.0
    for scan in scan_list:
      if scan not in cache:
        cache[scan] = _scan_bytes(scan, sparse, starts, height, width, factors)
      total += cache[scan]
    return total

  dc_options = [([Scan(every, 0, 0, 0, 0)], []),
                ([Scan(every, 0, 0, 0, 1)], [Scan(every, 0, 0, 1, 0)])]
  dc_first, dc_refine = min(dc_options, key=lambda o: cost(o[0] + o[1]))
  firsts, refines = [], []
  for c in range(len(components)):
    first, refine = min(_options(c, c == 0), key=lambda o: cost(o[0] + o[1]))
    firsts.append(first)
    refines.append(refine)
  # libjpeg's order: DC, the luma's low band, chroma (Cr before Cb), the other luma bands, then
  # the refinements from the coarsest bit down, the DC's last.
  luma_first = firsts[0]
  order = [dc_first, luma_first[:1]] + firsts[1:][::-1] + [luma_first[1:]]
  script = [s for part in order for s in part]
  tail = sorted((s for r in refines for s in r), key=lambda s: (-s.ah, s.components[0] != 0))
  return tuple(script + tail + dc_refine)
