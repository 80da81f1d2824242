"""Progressive AC scans: first scans and successive-approximation refinement.

Both code one component's real blocks, band Ss..Se, with end-of-band runs: a block whose band
ends in zeros adds one to a pending run (EOBRUN), emitted as one symbol just before the next
block that codes something, at the end of each restart interval, or when libjpeg would force it
out (the run reaching 0x7FFF; in refinement scans also more than 937 buffered correction bits).
Correction bits of a refinement scan follow the symbol they belong to, exactly as libjpeg's
`jcphuff.c` orders them, so an optimized progressive file is byte-identical to libjpeg's.

As in `sequential`, no stream of symbols is ordered: blocks and EOBRUN events are units whose
lengths in bits follow from their symbols once the table is known (`_stream` interleaves them,
`_padded` adds restart padding), and every field is placed at its own bit position.
Everything is vectorized over the nonzero coefficients of the band. Only the forced flushes of
long runs need a loop, and it runs once per forced flush, not per block.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from djpeg.exact import bitpack, layout as layout_lib
from djpeg.exact.scans import (ZRL, Sparse, add_zrls, block_runs, check_ac, nbits, ramp,
                               run_size_symbols)

#: libjpeg forces a pending EOBRUN out when it reaches this many blocks.
MAX_EOBRUN = 0x7FFF
#: ... or, in refinement scans, when more than this many correction bits are buffered
#: (MAX_CORR_BITS - DCTSIZE2 + 1 in jcphuff.c).
MAX_BUFFERED_BITS = 1000 - 64 + 1


@dataclasses.dataclass
class _Events:
  """EOBRUN flush points in stream order.

  pos: `(E,)` block boundary of each event (it is emitted before block `pos`'s own fields);
  run: `(E,)` blocks in the run it emits (0: nothing to emit); lo: `(E,)` first block of the
  run (its blocks are lo..pos-1); interval_end: `(E,)` whether it closes a restart interval;
  up_to: `(N,)` per block, the events at or before its boundary (the index of the first event
  past it).
  """

  pos: np.ndarray
  run: np.ndarray
  lo: np.ndarray
  interval_end: np.ndarray
  up_to: np.ndarray


def _sorted_events(pos: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Events ordered by boundary, then kind (one sort of a combined integer key)."""
  key = np.sort(pos * 4 + kind)
  return key >> 2, key & 3


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
  coding = np.flatnonzero(codes)
  base_pos = np.concatenate([coding, starts, [n]]).astype(np.int64)
  base_kind = np.concatenate([np.full(len(coding), 2), np.ones(len(starts) + 1, np.int64)])
  if len(starts):
    base_pos, base_kind = _sorted_events(base_pos, base_kind)
  prev = np.concatenate([[0], base_pos[:-1]])
  if cap == 1:
    forced = np.flatnonzero(eob) + 1  # every EOB block flushes at once
  else:
    forced = _forced_flushes(prev, base_pos, eob_cum, bit_cum, cap, bit_limit)
  if len(forced):
    pos, kind = _sorted_events(np.concatenate([base_pos, forced]),
                               np.concatenate([base_kind, np.zeros(len(forced), np.int64)]))
  else:
    pos, kind = base_pos, base_kind
  lo = np.concatenate([[0], pos[:-1]])
  run = eob_cum[pos] - eob_cum[lo]
  up_to = np.cumsum(np.bincount(pos, minlength=n + 1)[:n])
  return _Events(pos, run, lo, kind == 1, up_to)


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


def _stream(block_bits: np.ndarray, ev: _Events, ev_bits: np.ndarray):
  """Start bit of every block's own fields and of every event (events at a boundary come before
  the block's fields), and the total, before any restart padding."""
  blk_cum = np.concatenate([[0], np.cumsum(block_bits)])
  ev_cum = np.concatenate([[0], np.cumsum(ev_bits)])
  block_start = blk_cum[:-1] + ev_cum[ev.up_to]
  ev_start = ev_cum[:-1] + blk_cum[ev.pos]
  return block_start, ev_start, int(blk_cum[-1] + ev_cum[-1])


def _eobruns(ev: _Events, table: int):
  """EOBRUN symbols and extra bits of the events that emit one, and which those are."""
  emit = ev.run > 0
  nb = nbits(ev.run[emit]) - 1
  return table * 256 + (nb << 4), (ev.run[emit] - (1 << nb)).astype(np.uint32), emit


def _band(sparse: Sparse, ss: int, se: int, al: int):
  """Nonzero coefficients of the band after the point transform: block, band index, |c| >> Al,
  value."""
  b, k, value, t = sparse.shifted_list(al)
  if ss > 1 or se < 63:
    keep = np.flatnonzero((k >= ss) & (k <= se))
    b, k, value, t = (np.take(a, keep) for a in (b, k, value, t))
  return b, k - ss, t, value


@dataclasses.dataclass
class FirstScan:
  """A progressive AC first scan: per block, its band's (run, size) symbols (and ZRLs) as in a
  sequential scan, but no DC, and EOBRUN events instead of each block's EOB.

  Attributes (M band coefficients, B blocks that have some, n blocks):
    table: the scan's AC table index.
    block: `(M,)` block of each coefficient; `symbol`: `(M,)` int32 `table * 256 + (run << 4 |
      size)`; `bits`: `(M,)` uint32 extra bits; `zrl`: `(M,)` ZRLs before each, or None.
    nonempty, first, last: `(B,)` the blocks with coefficients, their first and last index.
    ev: EOBRUN events.
  """

  table: int
  block: np.ndarray
  symbol: np.ndarray
  bits: np.ndarray
  zrl: np.ndarray | None
  nonempty: np.ndarray
  first: np.ndarray
  last: np.ndarray
  ev: _Events

  def counts(self, num_tables: int) -> np.ndarray:
    """`(num_tables, 256)` symbol counts."""
    n = num_tables * 256
    counts = (np.bincount(self.symbol, minlength=n)
              + np.bincount(_eobruns(self.ev, self.table)[0], minlength=n))
    if self.zrl is not None:
      counts[self.table * 256 + ZRL] += int(self.zrl.sum())
    return counts.reshape(num_tables, 256)

  def raw_bits(self) -> int:
    return 0

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The entropy-coded segment, given per symbol its shifted code and field length."""
    eob_symbol, eob_extra, emit = _eobruns(self.ev, self.table)
    n = len(self.ev.up_to)
    # Bit positions in int32 unless the scan could reach 2**31 bits (a coefficient's field
    # with its ZRLs is <= 80 bits).
    dt = np.int32 if 80 * (len(self.block) + len(emit)) < 2**31 else np.int64
    zrl_symbol = self.table * 256 + ZRL
    length = np.take(total, self.symbol)
    field = length.astype(dt)
    if self.zrl is not None:
      field += self.zrl.astype(dt) * int(total[zrl_symbol])
    inside = np.cumsum(field, dtype=dt)       # bits of the scan's fields up to each
    before_block = inside[self.first] - field[self.first]
    block_bits = np.zeros(n, np.int64)
    block_bits[self.nonempty] = inside[self.last] - before_block
    eob_field = np.take(total, eob_symbol)
    eob_len = np.zeros(len(emit), np.int64)
    eob_len[emit] = eob_field
    block_start, ev_start, _ = _stream(block_bits, self.ev, eob_len)
    block_start, ev_start, seg_end_bit, pad = _padded(block_start, ev_start, eob_len, self.ev)

    acc = bitpack.windows(int(seg_end_bit[-1]))
    base = np.zeros(n, dt)
    base[self.nonempty] = block_start[self.nonempty] - before_block
    end = np.take(base, self.block)
    end += inside
    values = np.take(shifted, self.symbol)
    values |= self.bits
    bitpack.add_fields(acc, values, length, end)
    if self.zrl is not None:
      add_zrls(acc, self.zrl, end, length, int(total[zrl_symbol]), shifted[zrl_symbol])
    bitpack.add_fields(acc, np.take(shifted, eob_symbol) | eob_extra, eob_field,
                       ev_start[emit] + eob_field)
    return bitpack.finish(acc, seg_end_bit, pad)


def ac_first(sparse: Sparse, layout: layout_lib.ScanLayout, restart: int, ss: int, se: int,
             al: int, table: int, cap: int = MAX_EOBRUN) -> FirstScan:
  """A progressive AC first scan of one component.

  Args:
    sparse: the component's coefficients (`scans.sparse_component`).
    layout, restart: the scan's layout and restart interval (in blocks: MCUs are blocks here).
    ss, se, al: band and point transform.
    table: the scan's AC table index.
    cap: longest EOBRUN (1 with tables that have only the EOB symbol, like Annex K's).
  """
  n = sparse.num_blocks
  width = se - ss + 1
  b, k, t, value = _band(sparse, ss, se, al)
  size = nbits(t, t)
  check_ac(size, b, k + ss, np.where(value < 0, -t, t), layout, 0)
  first, last, run = block_runs(b, k, -1)
  run, zrl = run_size_symbols(run, size, table)
  nonempty = b[first]
  last_k = np.full(n, -1, np.int64)
  last_k[nonempty] = k[last]
  codes = np.zeros(n, bool)
  codes[nonempty] = True
  ev = _events(last_k != width - 1, np.zeros(n, np.int64), codes,
               layout_lib.interval_starts(layout, restart), cap, None)
  # Extra bits: |c| >> Al, or its ones' complement for negative c, in `size` bits.
  bits = t ^ ((value >> 31) & ((1 << size) - 1))
  return FirstScan(table, b, run, bits.view(np.uint32), zrl if zrl.any() else None, nonempty,
                   first, last, ev)


def _padded(block_start, ev_start, ev_bits, ev: _Events):
  """Unit starts moved right by the 1-padding that ends each restart interval at a byte.

  The events that close an interval (`ev.interval_end`, the last one closing the scan) end it;
  an interval's padding shifts every later block and event.
  Returns:
    `(block_start, ev_start, seg_end_bit, pad)`.
  """
  closing = np.flatnonzero(ev.interval_end)
  seg_end = ev_start[closing] + ev_bits[closing]
  pad = -np.diff(seg_end, prepend=0) % 8
  if len(closing) == 1:
    return block_start, ev_start, seg_end + pad, pad
  shift = np.cumsum(pad) - pad                                    # per interval
  ev_interval = np.cumsum(ev.interval_end) - ev.interval_end
  block_interval = np.cumsum(np.bincount(ev.pos[closing], minlength=len(block_start) + 1)[:-1])
  return (block_start + shift[block_interval], ev_start + shift[ev_interval],
          seg_end + np.cumsum(pad), pad)


@dataclasses.dataclass
class RefineScan:
  """A progressive AC refinement scan, coded as eventful coefficients and correction bits.

  Eventful coefficients are those that emit symbols: every newly-nonzero one (|c| >> Al == 1),
  and the rare previously-nonzero ones where a run passes 16 zeros (ZRL). Each has a *chunk* in
  the stream: [new symbol and sign bit][pending correction bits] when it emits no ZRL, else
  [ZRL][pending correction bits][its other ZRLs][its new symbol, if it is new]. The pending bits
  are those of the previously-nonzero coefficients since the block's previous eventful one; the
  ones after the block's last newly-nonzero coefficient (its EOB position), its *tail*, go with
  the EOBRUN that covers the block instead. Either way a run of consecutive coefficients sends
  its bits to consecutive stream bits, so each bit's position is its coefficient's index plus an
  offset of its run.

  Attributes (M band coefficients, E eventful ones, n blocks):
    table: the scan's AC table index.
    t: `(M,)` |c| >> Al (1 for newly nonzero, more for previously nonzero).
    eventful: `(E,)` indices of the eventful coefficients; `block`: their blocks.
    symbol: `(E,)` int32 `table * 256 + (run << 4 | 1)` for new ones, -1 for the others.
    sign: `(E,)` uint32 sign bit of new ones (1 positive), else 0.
    zrl: `(E,)` ZRLs each emits, or None when none does.
    pending: `(E,)` its pending correction bits, those of coefficients eventful - pending ...
      eventful - 1.
    ev: EOBRUN events; `tail`, `tail_first`: `(n,)` each block's tail length and first index.
  """

  table: int
  t: np.ndarray
  eventful: np.ndarray
  block: np.ndarray
  symbol: np.ndarray
  sign: np.ndarray
  zrl: np.ndarray | None
  pending: np.ndarray
  ev: _Events
  tail: np.ndarray
  tail_first: np.ndarray

  def counts(self, num_tables: int) -> np.ndarray:
    """`(num_tables, 256)` symbol counts."""
    n = num_tables * 256
    counts = (np.bincount(self.symbol[self.symbol >= 0], minlength=n)
              + np.bincount(_eobruns(self.ev, self.table)[0], minlength=n))
    if self.zrl is not None:
      counts[self.table * 256 + ZRL] += int(self.zrl.sum())
    return counts.reshape(num_tables, 256)

  def raw_bits(self) -> int:
    """Correction bits: one per previously-nonzero coefficient."""
    return int(len(self.t) - np.count_nonzero(self.symbol >= 0))

  def segment(self, shifted: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The entropy-coded segment, given per symbol its shifted code and field length."""
    eob_symbol, eob_extra, emit = _eobruns(self.ev, self.table)
    n, e = len(self.tail), len(self.eventful)
    # Bit positions in int32 unless the scan could reach 2**31 bits: a chunk's symbols take at
    # most 17 + 3 * 16 bits (a block has room for three ZRLs), a correction bit one, an EOBRUN
    # at most 30.
    dt = np.int32 if 80 * e + 32 * (len(self.t) + len(emit)) < 2**31 else np.int64
    zrl_symbol = self.table * 256 + ZRL
    z_len = int(total[zrl_symbol])
    sym_len = np.take(np.append(total, 0), self.symbol)          # -1: no symbol, no bits
    sym_value = np.take(np.append(shifted, 0), self.symbol) | self.sign
    chunk = sym_len + self.pending.astype(dt)
    zi = np.flatnonzero(self.zrl > 0) if self.zrl is not None else np.zeros(0, np.int64)
    if zi.size:
      chunk[zi] += self.zrl[zi].astype(dt) * z_len
    after = np.cumsum(chunk, dtype=dt)            # bits of all chunks up to each one's end
    # Per block: the chunks' bits, and those of the chunks of earlier blocks.
    first = np.ones(e, bool)
    first[1:] = self.block[1:] != self.block[:-1]
    first = np.flatnonzero(first)
    last = np.append(first[1:] - 1, e - 1) if e else first
    block_before = np.zeros(n, np.int64)
    block_before[self.block[first]] = after[first] - chunk[first]
    block_bits = np.zeros(n, np.int64)
    block_bits[self.block[last]] = after[last]
    block_bits -= block_before
    # EOBRUN events: the symbol and its extra bits, then the tail bits of the blocks they cover.
    tail_cum = np.concatenate([[0], np.cumsum(self.tail)])
    eob_field = np.take(total, eob_symbol)
    eob_len = np.zeros(len(emit), np.int64)
    eob_len[emit] = eob_field
    ev_bits = eob_len.copy()
    ev_bits[emit] += tail_cum[self.ev.pos[emit]] - tail_cum[self.ev.lo[emit]]
    block_start, ev_start, _ = _stream(block_bits, self.ev, ev_bits)
    block_start, ev_start, seg_end_bit, pad = _padded(block_start, ev_start, ev_bits, self.ev)

    acc = bitpack.windows(int(seg_end_bit[-1]))
    chunk_start = np.take((block_start - block_before).astype(dt), self.block)
    chunk_start += after
    chunk_start -= chunk
    # The new symbol opens its chunk, or closes it after ZRLs; pending bits follow the first
    # symbol.
    sym_end = chunk_start + sym_len
    sym_end[zi] = chunk_start[zi] + chunk[zi]
    bitpack.add_fields(acc, sym_value, sym_len, sym_end)
    pending_at = chunk_start + sym_len
    pending_at[zi] = chunk_start[zi] + z_len
    if zi.size:
      reps = self.zrl[zi]
      zrl_start = np.repeat(pending_at[zi] + self.pending[zi] - z_len, reps) + ramp(reps) * z_len
      zrl_start[np.cumsum(reps) - reps] = chunk_start[zi]
      bitpack.add_fields(acc, np.full(len(zrl_start), shifted[zrl_symbol]), z_len,
                         zrl_start + z_len)
    bitpack.add_fields(acc, np.take(shifted, eob_symbol) | eob_extra, eob_field,
                       ev_start[emit] + eob_field)
    # Correction bits, as runs of consecutive coefficients at consecutive bits: the pending
    # ones of each chunk, and each block's tail after the EOBRUN that covers it (the first event
    # past the block; later ones at that boundary emit nothing) and the tails of the earlier
    # blocks it covers. In coefficient order, block by block (its chunks, then its tail), the
    # runs list every previously-nonzero coefficient once, in order.
    covering = self.ev.up_to
    tail_at = (ev_start[covering] + eob_len[covering] + tail_cum[:-1]
               - tail_cum[self.ev.lo[covering]])
    chunk_rank = np.arange(e) + self.block
    tail_rank = np.cumsum(np.bincount(self.block, minlength=n)) + np.arange(n)
    at = np.empty(e + n, dt)
    at[chunk_rank] = pending_at
    at[tail_rank] = tail_at
    length = np.empty(e + n, dt)
    length[chunk_rank] = self.pending
    length[tail_rank] = self.tail
    at -= np.cumsum(length, dtype=dt) - length     # minus the bits of the earlier runs
    position = np.repeat(at, length)
    position += np.arange(len(position), dtype=dt)
    bits = np.take(self.t, np.flatnonzero(self.t != 1))
    bits &= 1
    bitpack.add_bits(acc, bits.astype(np.uint8), position)
    return bitpack.finish(acc, seg_end_bit, pad)


def ac_refine(sparse: Sparse, layout: layout_lib.ScanLayout, restart: int, ss: int, se: int,
              al: int, table: int, cap: int = MAX_EOBRUN) -> RefineScan:
  """A progressive AC refinement scan (Ah = Al + 1) of one component.

  A coefficient with |c| >> Al == 1 is newly nonzero: coded as symbol (run << 4) | 1 and a sign
  bit, where the run counts only coefficients still zero. One with |c| >> Al > 1 was nonzero
  before and gets a raw correction bit (bit Al of |c|), sent after the next symbol of its block
  (ZRL or newly-nonzero coefficient), or with the EOBRUN that covers its block if none follows.

  Arguments as for `ac_first`.
  """
  n = sparse.num_blocks
  width = se - ss + 1
  b, k, t, value = _band(sparse, ss, se, al)
  per_block = np.bincount(b, minlength=n)
  first_b = np.cumsum(per_block) - per_block
  ni = np.flatnonzero(t == 1).astype(np.int32)   # the newly-nonzero coefficients
  nb = np.take(b, ni)
  nk = np.take(k, ni)
  first_new = np.ones(len(ni), bool)
  first_new[1:] = nb[1:] != nb[:-1]
  starts = np.flatnonzero(first_new)
  ends = np.append(starts[1:] - 1, len(ni) - 1) if len(ni) else starts
  # Zero-history positions before each new coefficient since the previous new one of its block
  # (or the band's start): d = k - index grows by one per such position.
  d = nk - ni
  anchor = np.empty_like(d)
  anchor[1:] = d[:-1]
  anchor[starts] = -first_b[nb[starts]]
  zeros = d - anchor
  # The last new coefficient of each block is its EOB position; after it comes the tail.
  has_new = np.zeros(n, bool)
  has_new[nb[ends]] = True
  tail_first = first_b.copy()
  tail_first[nb[ends]] = ni[ends] + 1
  last_new_k = np.full(n, -1, np.int64)
  last_new_k[nb[ends]] = nk[ends]
  eob = ~has_new | (last_new_k < width - 1)
  tail = first_b + per_block - tail_first

  symbol = table * 256 + ((zeros & 15) << 4) + 1
  sign = (np.take(value, ni) > 0).astype(np.uint32)
  big = np.flatnonzero(zeros >= 16)
  if not big.size:
    eventful, block, zrl = ni, nb, None
  else:
    eventful, zrl = _zrl_events(b, k, t, ni, first_new, first_b, anchor, big)
    block = np.take(b, eventful)
    is_new = np.take(t, eventful) == 1
    symbol, sign = _spread(symbol, is_new, -1), _spread(sign, is_new, 0)
  # Pending bits of an eventful coefficient start after the previous one of its block (at it,
  # if that one was not new: its own bit is pending), or at the block's first coefficient.
  pstart = np.empty_like(eventful)
  pstart[:1] = 0
  pstart[1:] = eventful[:-1] + (symbol[:-1] >= 0)
  first_e = np.ones(len(eventful), bool)
  first_e[1:] = block[1:] != block[:-1]
  first_e = np.flatnonzero(first_e)
  pstart[first_e] = first_b[block[first_e]]
  ev = _events(eob, tail, has_new, layout_lib.interval_starts(layout, restart), cap,
               MAX_BUFFERED_BITS if cap > 1 else None)
  return RefineScan(table, t, eventful, block, symbol.astype(np.int32), sign, zrl,
                    eventful - pstart, ev, tail, tail_first)


def _spread(values: np.ndarray, where: np.ndarray, fill) -> np.ndarray:
  """`values` at the True entries of `where`, `fill` elsewhere."""
  out = np.full(len(where), fill, values.dtype)
  out[where] = values
  return out


def _zrl_events(b, k, t, ni, first_new, first_b, anchor, big):
  """Eventful coefficients and their ZRLs when some runs reach 16 zeros.

  Only the segments (the coefficients after the previous new one of a block, up to a new one)
  whose run reaches 16 are walked: at each coefficient, as many ZRLs as the run has passed new
  multiples of 16 since the last coefficient (libjpeg emits them there, before the EOB position).
  Returns:
    `(eventful (E,), zrl (E,))`.
  """
  after_previous = ni[np.maximum(big - 1, 0)] + 1
  seg_first = np.where(first_new[big], first_b[b[ni[big]]], after_previous)
  lens = ni[big] - seg_first + 1
  idx = np.repeat(seg_first, lens) + ramp(lens)
  passed = ((k[idx] - idx) - np.repeat(anchor[big], lens)) >> 4
  here = passed.copy()
  here[1:] -= passed[:-1]
  seg_start = np.cumsum(lens) - lens
  here[seg_start] = passed[seg_start]
  hit = here > 0
  mask = t == 1
  mask[idx[hit]] = True
  eventful = np.flatnonzero(mask)
  zrl = np.zeros(len(eventful), np.int64)
  zrl[np.searchsorted(eventful, idx[hit])] = here[hit]
  return eventful, zrl
