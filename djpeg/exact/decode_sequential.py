"""Decoding a sequential (baseline) scan: Huffman-coded DC differences and AC run/size symbols.

The reader's side of `sequential` (libjpeg-turbo's `jdhuff.c`, `decode_mcu`): per block, one DC
size category and its magnitude bits (added to the component's predictor, reset at each restart
interval), then (run, size) AC symbols with ZRL and EOB. Values are collected in lists and
scattered into the coefficient store once per scan (`bitreader.ScanTarget`).
"""

from __future__ import annotations

from djpeg.exact.bitreader import Bits, ScanTarget, corrupt
from djpeg.exact.errors import JPEGError


def decode_sequential(bits: Bits, target: ScanTarget, layout, tables) -> None:
  """Decodes one sequential scan into `target`; `tables` are the (DC, AC) decoder lookups of
  each scan component (`bitreader.decoder_lut`)."""
  dest = target.dest
  bpm = layout.blocks_per_mcu
  comp_of = layout.component[:bpm].tolist()
  dcs = [tables[i][0] for i in comp_of]
  acs = [tables[i][1] for i in comp_of]
  W = bits.windows
  per_interval = target.per_interval
  idx, vals = [], []
  put_i, put_v = idx.append, vals.append
  n = layout.num_blocks
  for interval, b0 in enumerate(range(0, n, per_interval)):
    p = 8 * bits.interval_bytes[interval]
    limit = 8 * bits.interval_bytes[interval + 1]
    pred = [0] * len(layout.components)
    for b in range(b0, min(b0 + per_interval, n)):
      j = b % bpm
      base = dest[b]
      dclut, aclut = dcs[j], acs[j]
      x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
      e = dclut[x >> 16]
      if e < 0:
        raise corrupt("invalid DC Huffman code", b, p, limit)
      ln = e & 31
      s = e >> 5
      if s:
        if s > 11:
          raise corrupt(f"DC difference of {s} bits", b, p, limit)
        v = (x >> (32 - ln - s)) & ((1 << s) - 1)
        if v < (1 << (s - 1)):
          v -= (1 << s) - 1
        c = comp_of[j]
        pred[c] += v
      p += ln + s
      put_i(base)
      put_v(pred[comp_of[j]])
      k = 1
      while k < 64:
        x = (W[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF
        e = aclut[x >> 16]
        if e < 0:
          raise corrupt("invalid AC Huffman code", b, p, limit)
        ln = e & 31
        rs = e >> 5
        s = rs & 15
        if s:
          k += rs >> 4
          if k > 63 or s > 10:
            raise corrupt(f"AC coefficient beyond the block (k={k}) or of {s} bits",
                           b, p, limit)
          v = (x >> (32 - ln - s)) & ((1 << s) - 1)
          if v < (1 << (s - 1)):
            v -= (1 << s) - 1
          put_i(base + k)
          put_v(v)
          p += ln + s
          k += 1
        else:
          p += ln
          if rs != 0xF0:
            break
          k += 16
          if k > 64:
            raise corrupt("zero run beyond the block end", b, p, limit)
      if p > limit:
        raise JPEGError(f"entropy-coded data is truncated (block {b} of a scan ends past "
                        "its data).")
  target.scatter(idx, vals, 0)
