"""Tokens of progressive AC scans: first scans and successive-approximation refinement.

Both code one component's real blocks, band Ss..Se, with end-of-band runs: a block whose band
ends in zeros adds one to a pending run (EOBRUN), emitted as one symbol just before the next
block that codes something, at the end of each restart interval, or when libjpeg would force it
out (the run reaching 0x7FFF; in refinement scans also more than 937 buffered correction bits).
Correction bits of a refinement scan follow the symbol they belong to, exactly as libjpeg's
`jcphuff.c` orders them, so an optimized progressive file is byte-identical to libjpeg's.

Everything is vectorized over the nonzero coefficients of the band. Only the forced flushes of
long runs need a loop, and it runs once per forced flush, not per block.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import layout as layout_lib
from djpeg.exact.scans import EOB, RAW, ZRL, Tokens, nbits

#: libjpeg forces a pending EOBRUN out when it reaches this many blocks.
MAX_EOBRUN = 0x7FFF
#: ... or, in refinement scans, when more than this many correction bits are buffered
#: (MAX_CORR_BITS - DCTSIZE2 + 1 in jcphuff.c).
MAX_BUFFERED_BITS = 1000 - 64 + 1


@dataclasses.dataclass
class _Events:
  """EOBRUN flush points in stream order.

  pos: `(E,)` block boundary of each event (it is emitted before block `pos`'s own tokens);
  run: `(E,)` blocks in the run it emits (0: nothing to emit); lo: `(E,)` first block of the
  run (its blocks are lo..pos-1); interval_end: `(E,)` whether it closes a restart interval.
  """

  pos: np.ndarray
  run: np.ndarray
  lo: np.ndarray
  interval_end: np.ndarray


def _events(eob: np.ndarray, tail: np.ndarray, codes: np.ndarray, starts: np.ndarray,
            cap: int, bit_limit: int | None) -> _Events:
  """Where EOBRUNs are emitted.

  Args:
    eob: `(N,)` bool, block ends its band with an EOB (joins the pending run).
    tail: `(N,)` correction bits the block adds to the run's buffer (zeros for first scans).
    codes: `(N,)` bool, block emits a symbol (flushing the pending run before it).
    starts: block positions where restart intervals after the first begin.
    cap: longest run before a forced flush (0x7FFF, or 1 with tables that lack EOBn symbols).
    bit_limit: forced flush when the buffered correction bits exceed this (refinement only).
  """
  n = len(eob)
  eob_cum = np.concatenate([[0], np.cumsum(eob)])       # eob_cum[p]: EOB blocks before p
  bit_cum = np.concatenate([[0], np.cumsum(tail)])
  # Base events: before every coding block, and at every interval end (kind 1 sorts before a
  # coding block's kind 2 at the same boundary; forced flushes, kind 0, come first).
  base_pos = np.concatenate([np.flatnonzero(codes), starts, [n]]).astype(np.int64)
  base_kind = np.concatenate([np.full(int(codes.sum()), 2), np.ones(len(starts) + 1, np.int64)])
  order = np.lexsort((base_kind, base_pos))
  base_pos, base_kind = base_pos[order], base_kind[order]
  prev = np.concatenate([[0], base_pos[:-1]])
  if cap == 1:
    forced = np.flatnonzero(eob) + 1  # every EOB block flushes at once
  else:
    forced = _forced_flushes(prev, base_pos, eob_cum, bit_cum, cap, bit_limit)
  pos = np.concatenate([base_pos, forced])
  kind = np.concatenate([base_kind, np.zeros(len(forced), np.int64)])
  order = np.lexsort((kind, pos))
  pos, kind = pos[order], kind[order]
  lo = np.concatenate([[0], pos[:-1]])
  run = eob_cum[pos] - eob_cum[lo]
  return _Events(pos, run, lo, kind == 1)


def _forced_flushes(seg_lo, seg_hi, eob_cum, bit_cum, cap, bit_limit) -> np.ndarray:
  """Boundaries (block + 1) where libjpeg forces a run out between base events."""
  runs = eob_cum[seg_hi] - eob_cum[seg_lo]
  bits = bit_cum[seg_hi] - bit_cum[seg_lo]
  heavy = runs >= cap
  if bit_limit is not None:
    heavy |= bits > bit_limit
  out = []
  for lo, hi in zip(seg_lo[heavy].tolist(), seg_hi[heavy].tolist()):
    base_run, base_bits = eob_cum[lo], bit_cum[lo]
    while True:
      # First block (index b, boundary b + 1) after which the run or the buffer is too big.
      b = int(np.searchsorted(eob_cum, base_run + cap, side="left")) - 1
      if bit_limit is not None:
        b = min(b, int(np.searchsorted(bit_cum, base_bits + bit_limit, side="right")) - 1)
      if b + 1 > hi or b < lo:
        break
      out.append(b + 1)
      base_run, base_bits = eob_cum[b + 1], bit_cum[b + 1]
  return np.asarray(out, np.int64)


def _stream(block_tokens: np.ndarray, ev: _Events, ev_tokens: np.ndarray):
  """Token start of every block and every event, and the total."""
  n = len(block_tokens)
  blk_cum = np.concatenate([[0], np.cumsum(block_tokens)])
  ev_cum = np.concatenate([[0], np.cumsum(ev_tokens)])
  events_up_to = np.searchsorted(ev.pos, np.arange(n), side="right")
  block_start = blk_cum[:-1] + ev_cum[events_up_to]
  ev_start = ev_cum[:-1] + blk_cum[ev.pos]
  return block_start, ev_start, int(blk_cum[-1] + ev_cum[-1])


def _eobrun_symbols(run: np.ndarray, table: int):
  n = nbits(run) - 1
  return table * 256 + (n << 4), run, n


def _band(blocks: np.ndarray, ss: int, se: int, al: int):
  band = blocks[:, ss:se + 1]
  mag = np.abs(band.astype(np.int32)) >> al
  return band, mag


def _runs(b: np.ndarray, k: np.ndarray):
  """Per nonzero: first in its block, last in its block, zero run before it (band-relative k)."""
  first = np.ones(len(b), bool)
  first[1:] = b[1:] != b[:-1]
  last = np.ones(len(b), bool)
  last[:-1] = first[1:]
  prevk = np.empty_like(k)
  prevk[1:] = k[:-1]
  prevk[first] = -1
  return first, last, k - prevk - 1


def ac_first_tokens(blocks: np.ndarray, layout: layout_lib.ScanLayout, restart: int, ss: int,
                    se: int, al: int, table: int, cap: int = MAX_EOBRUN) -> Tokens:
  """Tokens of a progressive AC first scan of one component.

  Args:
    blocks: `(N, 64)` zigzag coefficients of the component's real blocks, raster order.
    layout, restart: the scan's layout and restart interval (blocks, as MCUs are blocks here).
    ss, se, al: band and point transform.
    table: the scan's AC table index.
    cap: longest EOBRUN (1 when the table has only the EOB symbol, as Annex K tables).
  """
  n = len(blocks)
  width = se - ss + 1
  band, mag = _band(blocks, ss, se, al)
  nz = np.flatnonzero(mag)
  b, k = np.divmod(nz, width)
  t = mag.reshape(-1)[nz].astype(np.int64)
  size = nbits(t)
  if size.size and size.max() > 10:
    i = int(np.argmax(size > 10))
    raise ValueError(f"{layout.describe(int(b[i]))}: AC coefficient {ss + int(k[i])} (zigzag) "
                     "needs more than 10 bits; 8-bit JPEG codes |AC| <= 1023.")
  negative = band.reshape(-1)[nz] < 0
  first, last, run = _runs(b, k)
  zrl = run >> 4
  per_block = np.bincount(b, minlength=n)
  last_k = np.full(n, -1, np.int64)
  last_k[b[last]] = k[last]
  eob = last_k != width - 1
  codes = per_block > 0
  ev = _events(eob, np.zeros(n, np.int64), codes, layout_lib.interval_starts(layout, restart),
               cap, None)
  zrl_block = np.bincount(b, weights=zrl, minlength=n).astype(np.int64) if zrl.any() else 0
  block_tokens = per_block + zrl_block
  ev_tokens = (ev.run > 0).astype(np.int64)
  block_start, ev_start, total = _stream(block_tokens, ev, ev_tokens)

  first_nz = np.cumsum(per_block) - per_block
  zrl_cum = np.cumsum(zrl)
  zrl_at_block_start = zrl_cum[first_nz[b]] - zrl[first_nz[b]]
  pos = block_start[b] + (np.arange(len(b)) - first_nz[b]) + (zrl_cum - zrl_at_block_start)

  symbol = np.empty(total, np.int64)
  extra = np.zeros(total, np.int64)
  nextra = np.zeros(total, np.int64)
  symbol[pos] = table * 256 + (((run & 15) << 4) | size)
  extra[pos] = np.where(negative, ~t, t)
  nextra[pos] = size
  if zrl.any():
    with_zrl = np.flatnonzero(zrl)
    reps = zrl[with_zrl]
    symbol[np.repeat(pos[with_zrl] - reps, reps) + _ramp(reps)] = table * 256 + ZRL
  emit = ev.run > 0
  at = ev_start[emit]
  symbol[at], extra[at], nextra[at] = _eobrun_symbols(ev.run[emit], table)
  ends = (ev_start + ev_tokens)[ev.interval_end].astype(np.int64)
  return Tokens(symbol, extra, nextra, ends)


def ac_refine_tokens(blocks: np.ndarray, layout: layout_lib.ScanLayout, restart: int, ss: int,
                     se: int, al: int, table: int, cap: int = MAX_EOBRUN) -> Tokens:
  """Tokens of a progressive AC refinement scan (Ah = Al + 1) of one component.

  A coefficient with |c| >> Al == 1 is newly nonzero: coded as symbol (run << 4) | 1 and a sign
  bit, where the run counts only coefficients still zero. One with |c| >> Al > 1 was nonzero
  before and gets a raw correction bit (bit Al of |c|), sent after the next symbol of its block
  (ZRL or newly-nonzero coefficient), or with the EOBRUN that covers its block if none follows.

  Arguments as for `ac_first_tokens`.
  """
  n = len(blocks)
  width = se - ss + 1
  band, mag = _band(blocks, ss, se, al)
  nz = np.flatnonzero(mag)
  m = len(nz)
  b, k = np.divmod(nz, width)
  t = mag.reshape(-1)[nz]
  new = t == 1
  old = ~new
  positive = band.reshape(-1)[nz] > 0
  idx = np.arange(m)
  first, _, _ = _runs(b, k)
  per_block = np.bincount(b, minlength=n)
  first_in_block = np.cumsum(per_block) - per_block

  # The last newly-nonzero coefficient of each block is its end of band (EOB position).
  new_idx = idx[new]
  new_b = b[new]
  last_new_mask = np.ones(len(new_idx), bool)
  last_new_mask[:-1] = new_b[:-1] != new_b[1:]
  last_new = np.full(n, -1, np.int64)
  last_new[new_b[last_new_mask]] = new_idx[last_new_mask]
  head = idx <= last_new[b]  # at or before the block's EOB position
  has_new = last_new >= 0
  last_new_k = np.where(has_new, k[np.maximum(last_new, 0)] if m else 0, -1)
  eob = ~has_new | (last_new_k < width - 1)
  tail_old = old & ~head
  tail = np.bincount(b[tail_old], minlength=n)

  # Zero-history run lengths and the ZRLs that libjpeg emits at each nonzero coefficient.
  zeros_before = k - (idx - first_in_block[b])
  last_new_upto = np.maximum.accumulate(np.where(new, idx, -1)) if m else idx
  prev_new = np.concatenate([[-1], last_new_upto[:-1]])
  in_block = prev_new >= first_in_block[b]
  run = zeros_before - np.where(in_block, zeros_before[np.maximum(prev_new, 0)], 0)
  same_segment = np.concatenate([[False], ~first[1:] & ~new[:-1]])
  run_prev = np.where(same_segment, np.concatenate([[0], run[:-1]]), 0)
  zrl = np.where(head, run // 16 - run_prev // 16, 0)
  eventful = head & ((zrl > 0) | new)

  # Correction bits before the EOB position go with the next eventful coefficient.
  ev_idx = idx[eventful]
  head_old = np.flatnonzero(old & head)
  owner = ev_idx[np.searchsorted(ev_idx, head_old, side="right")] if head_old.size else head_old
  pending = np.bincount(owner, minlength=m) if m else np.zeros(0, np.int64)
  group = np.where(eventful, zrl + new + pending, 0)

  ev = _events(eob, tail, has_new, layout_lib.interval_starts(layout, restart), cap,
               MAX_BUFFERED_BITS if cap > 1 else None)
  emit = ev.run > 0
  tail_cum = np.concatenate([[0], np.cumsum(tail)])
  ev_bits = np.where(emit, tail_cum[ev.pos] - tail_cum[ev.lo], 0)
  ev_tokens = emit + ev_bits
  block_tokens = np.bincount(b, weights=group, minlength=n).astype(np.int64) if m else np.zeros(n, np.int64)
  block_start, ev_start, total = _stream(block_tokens, ev, ev_tokens)

  symbol = np.empty(total, np.int64)
  extra = np.zeros(total, np.int64)
  nextra = np.zeros(total, np.int64)
  # Eventful coefficients: [first symbol][pending correction bits][remaining ZRLs][new symbol].
  group_cum = np.cumsum(group)
  group_start = block_start[b] + (group_cum - group) - (group_cum - group)[first_in_block[b]]
  e = ev_idx
  g0 = group_start[e]
  ez, enew, epend = zrl[e], new[e], pending[e]
  first_is_zrl = ez > 0
  new_sym = table * 256 + (((run[e] & 15) << 4) | 1)
  symbol[g0] = np.where(first_is_zrl, table * 256 + ZRL, new_sym)
  extra[g0] = np.where(first_is_zrl, 0, positive[e])
  nextra[g0] = np.where(first_is_zrl, 0, 1)
  more_zrl = np.maximum(ez - 1, 0)
  if more_zrl.any():
    with_more = np.flatnonzero(more_zrl)
    reps = more_zrl[with_more]
    symbol[np.repeat(g0[with_more] + 1 + epend[with_more], reps) + _ramp(reps)] = table * 256 + ZRL
  late_new = np.flatnonzero(first_is_zrl & enew)
  if late_new.size:
    at = g0[late_new] + epend[late_new] + ez[late_new]
    symbol[at] = new_sym[late_new]
    extra[at] = positive[e][late_new]
    nextra[at] = 1
  if head_old.size:
    rank = _group_rank(owner)
    at = group_start[owner] + 1 + rank
    symbol[at] = RAW
    extra[at] = t[head_old] & 1
    nextra[at] = 1
  # EOBRUNs, each followed by the correction bits buffered for the blocks in its run.
  at = ev_start[emit]
  symbol[at], extra[at], nextra[at] = _eobrun_symbols(ev.run[emit], table)
  tail_idx = np.flatnonzero(tail_old)
  if tail_idx.size:
    # The first event past the block covers it (later events at that boundary emit nothing).
    event_of = np.searchsorted(ev.pos, b[tail_idx], side="right")
    rank = _group_rank(event_of)
    at = ev_start[event_of] + 1 + rank
    symbol[at] = RAW
    extra[at] = t[tail_idx] & 1
    nextra[at] = 1
  ends = (ev_start + ev_tokens)[ev.interval_end].astype(np.int64)
  return Tokens(symbol, extra, nextra, ends)


def _group_rank(group: np.ndarray) -> np.ndarray:
  """Rank of each element within its run of equal (sorted) group ids."""
  if group.size == 0:
    return group
  new_group = np.ones(len(group), bool)
  new_group[1:] = group[1:] != group[:-1]
  starts = np.flatnonzero(new_group)
  return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def _ramp(reps: np.ndarray) -> np.ndarray:
  total = int(reps.sum())
  starts = np.cumsum(reps) - reps
  return np.arange(total) - np.repeat(starts, reps)
