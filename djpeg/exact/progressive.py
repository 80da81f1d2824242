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
from djpeg.exact.scans import (RAW, ZRL, Group, ScanTokens, Sparse, block_runs, check_ac, nbits,
                                ramp)

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


def _eobrun_group(pos: np.ndarray, run: np.ndarray, table: int) -> Group:
  n = nbits(run) - 1
  return Group(pos, table * 256 + (n << 4), run - (1 << n), n)


def _band(sparse: Sparse, ss: int, se: int, al: int):
  """Nonzero coefficients of the band after the point transform: block, band index, |c| >> Al,
  sign (True for negative)."""
  b, k, value, mag = sparse.block, sparse.k, sparse.value, sparse.magnitude
  keep = None
  if ss > 1 or se < 63:
    keep = (k >= ss) & (k <= se)
  if al:
    mag = mag >> al
    keep = mag != 0 if keep is None else keep & (mag != 0)
  if keep is not None:
    keep = np.flatnonzero(keep)
    b, k, value, mag = b[keep], k[keep], value[keep], mag[keep]
  return b, k - ss, mag, value < 0


def ac_first_tokens(sparse: Sparse, layout: layout_lib.ScanLayout, restart: int, ss: int,
                    se: int, al: int, table: int, cap: int = MAX_EOBRUN) -> ScanTokens:
  """Tokens of a progressive AC first scan of one component.

  Args:
    sparse: the component's coefficients (`scans.sparse_component`).
    layout, restart: the scan's layout and restart interval (in blocks: MCUs are blocks here).
    ss, se, al: band and point transform.
    table: the scan's AC table index.
    cap: longest EOBRUN (1 with tables that have only the EOB symbol, like Annex K's).
  """
  n = sparse.num_blocks
  width = se - ss + 1
  b, k, t, negative = _band(sparse, ss, se, al)
  size = nbits(t, t)
  check_ac(size, b, k + ss, np.where(negative, -t, t), layout, 0)
  _, last, run = block_runs(b, k, -1)
  zrl = run >> 4
  per_block = np.bincount(b, minlength=n)
  last_k = np.full(n, -1, np.int64)
  last_k[b[last]] = k[last]
  eob = last_k != width - 1
  ev = _events(eob, np.zeros(n, np.int64), per_block > 0,
               layout_lib.interval_starts(layout, restart), cap, None)
  zrl_block = np.bincount(b, weights=zrl, minlength=n).astype(np.int64) if zrl.any() else 0
  ev_tokens = (ev.run > 0).astype(np.int64)
  block_start, ev_start, total = _stream(per_block + zrl_block, ev, ev_tokens)

  first_nz = np.cumsum(per_block) - per_block
  zrl_cum = np.cumsum(zrl)
  zrl_before = np.cumsum(zrl_block) - zrl_block
  pos = (block_start - first_nz - zrl_before)[b] + np.arange(len(b)) + zrl_cum
  groups = [Group(pos, table * 256 + (((run & 15) << 4) | size),
                  t ^ (-negative.astype(np.int32) & ((1 << size) - 1)), size)]
  if zrl.any():
    with_zrl = np.flatnonzero(zrl)
    reps = zrl[with_zrl]
    groups.append(Group(np.repeat(pos[with_zrl] - reps, reps) + ramp(reps), table * 256 + ZRL))
  emit = ev.run > 0
  groups.append(_eobrun_group(ev_start[emit], ev.run[emit], table))
  return ScanTokens(total, groups, (ev_start + ev_tokens)[ev.interval_end].astype(np.int64))


def ac_refine_tokens(sparse: Sparse, layout: layout_lib.ScanLayout, restart: int, ss: int,
                     se: int, al: int, table: int, cap: int = MAX_EOBRUN) -> ScanTokens:
  """Tokens of a progressive AC refinement scan (Ah = Al + 1) of one component.

  A coefficient with |c| >> Al == 1 is newly nonzero: coded as symbol (run << 4) | 1 and a sign
  bit, where the run counts only coefficients still zero. One with |c| >> Al > 1 was nonzero
  before and gets a raw correction bit (bit Al of |c|), sent after the next symbol of its block
  (ZRL or newly-nonzero coefficient), or with the EOBRUN that covers its block if none follows.

  Arguments as for `ac_first_tokens`.
  """
  n = sparse.num_blocks
  width = se - ss + 1
  b, k, t, negative = _band(sparse, ss, se, al)
  m = len(b)
  new = t == 1
  old = ~new
  idx = np.arange(m, dtype=np.int32)
  first = np.ones(m, bool)
  first[1:] = b[1:] != b[:-1]
  first_idx = np.flatnonzero(first)
  per_block = np.bincount(b, minlength=n)
  first_in_block = np.cumsum(per_block) - per_block

  # The last newly-nonzero coefficient of each block is its end of band (EOB position).
  new_idx = np.flatnonzero(new)
  new_b = b[new_idx]
  last_new_mask = np.ones(len(new_idx), bool)
  last_new_mask[:-1] = new_b[:-1] != new_b[1:]
  last_new = np.full(n, -1, np.int64)
  last_new[new_b[last_new_mask]] = new_idx[last_new_mask]
  head = idx <= last_new[b]  # at or before the block's EOB position
  has_new = last_new >= 0
  last_new_k = np.full(n, -1, np.int64)
  last_new_k[has_new] = k[last_new[has_new]]
  eob = ~has_new | (last_new_k < width - 1)
  tail_old = old & ~head
  tail = np.bincount(b[tail_old], minlength=n)

  # Runs count zero-history coefficients only. zeros(i), the zero positions of the whole band
  # array before element i, never decreases, so the count at the start of each element's
  # segment (after the previous newly-nonzero coefficient of its block, or at the block start)
  # is a running maximum.
  zeros = (b * width + k) - idx
  after_new = new_idx[new_idx < m - 1] + 1
  segment = np.full(m, -1, np.int64)
  segment[after_new] = zeros[after_new - 1]
  segment[first_idx] = b[first_idx] * width - first_in_block[b[first_idx]]
  run = zeros - np.maximum.accumulate(segment)
  # libjpeg emits ZRLs at the nonzero coefficient where the run passes each multiple of 16
  # (only up to the EOB position: later zeros fold into the EOB).
  run16 = run >> 4
  zrl = run16.copy()
  zrl[1:] -= run16[:-1]
  zrl[after_new] = run16[after_new]
  zrl[first_idx] = run16[first_idx]
  eventful = head & ((zrl > 0) | new)

  # Correction bits before the EOB position go with the next eventful coefficient (their
  # owner): the j-th eventful one, j = number of eventful coefficients up to the bit's own.
  e = np.flatnonzero(eventful)
  head_old = np.flatnonzero(old & head)
  owner = np.cumsum(eventful)[head_old]  # index into e
  ez, enew, epend = zrl[e], new[e], np.bincount(owner, minlength=len(e))
  group = np.zeros(m, np.int64)
  group[e] = ez + enew + epend

  ev = _events(eob, tail, has_new, layout_lib.interval_starts(layout, restart), cap,
               MAX_BUFFERED_BITS if cap > 1 else None)
  emit = ev.run > 0
  tail_cum = np.concatenate([[0], np.cumsum(tail)])
  ev_tokens = np.where(emit, 1 + tail_cum[ev.pos] - tail_cum[ev.lo], 0)
  group_cum = np.cumsum(group)
  block_tokens = np.diff(np.concatenate([[0], group_cum])[first_in_block + per_block], prepend=0)
  block_start, ev_start, total = _stream(block_tokens, ev, ev_tokens)

  # Eventful coefficients: [first symbol][pending correction bits][more ZRLs][new symbol].
  group_excl = group_cum - group
  if m:
    block_base = block_start - group_excl[np.minimum(first_in_block, m - 1)]
    g0 = block_base[b[e]] + group_excl[e]
  else:
    g0 = e
  first_is_zrl = ez > 0
  new_symbol = table * 256 + (((run[e] & 15) << 4) | 1)
  sign = (~negative[e]).astype(np.int32)
  groups = [Group(g0, np.where(first_is_zrl, table * 256 + ZRL, new_symbol),
                  np.where(first_is_zrl, 0, sign), (~first_is_zrl).astype(np.int64))]
  more_zrl = np.maximum(ez - 1, 0)
  if more_zrl.any():
    with_more = np.flatnonzero(more_zrl)
    reps = more_zrl[with_more]
    groups.append(Group(np.repeat(g0[with_more] + 1 + epend[with_more], reps) + ramp(reps),
                        table * 256 + ZRL))
  late = np.flatnonzero(first_is_zrl & enew)
  if late.size:
    groups.append(Group(g0[late] + epend[late] + ez[late], new_symbol[late], sign[late], 1))
  if head_old.size:
    # Bit j (of all head correction bits) sits after its owner's first symbol, at rank j minus
    # the bits owned by earlier eventful coefficients.
    base = g0 + 1 - (np.cumsum(epend) - epend)
    groups.append(Group(base[owner] + np.arange(len(head_old)), RAW, t[head_old] & 1, 1))
  # EOBRUNs, each followed by the correction bits buffered for the blocks in its run; the first
  # event past a block covers it (later events at the same boundary emit nothing).
  groups.append(_eobrun_group(ev_start[emit], ev.run[emit], table))
  tail_idx = np.flatnonzero(tail_old)
  if tail_idx.size:
    event_of = np.searchsorted(ev.pos, b[tail_idx], side="right")
    base = ev_start + 1 - tail_cum[ev.lo]
    groups.append(Group(base[event_of] + np.arange(len(tail_idx)), RAW, t[tail_idx] & 1, 1))
  return ScanTokens(total, groups, (ev_start + ev_tokens)[ev.interval_end].astype(np.int64))


def _group_rank(group: np.ndarray) -> np.ndarray:
  """Rank of each element within its run of equal (sorted) group ids."""
  new_group = np.ones(len(group), bool)
  new_group[1:] = group[1:] != group[:-1]
  starts = np.flatnonzero(new_group)
  return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))
