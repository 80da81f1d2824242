"""Huffman tables: the Annex K standard tables, libjpeg's optimal tables, and code lookup.

A table is JPEG's own description (`bits`, `values`): `bits[l - 1]` codes of length l for
l = 1..16, assigned canonically (Annex C) to `values` in order. Symbols are bytes: for DC the
magnitude category of a difference, for AC `(run << 4) | size` (0x00 EOB, 0xF0 ZRL, and in
progressive scans `(n << 4)` for an end-of-band run of 2**n to 2**(n+1) - 1 blocks).
"""

from __future__ import annotations

import dataclasses
import functools

import numba
import numpy as np

from djpeg.exact.errors import JPEGError


@dataclasses.dataclass(frozen=True)
class HuffmanTable:
  """One Huffman table as a DHT segment stores it.

  Attributes:
    bits: 16 counts; `bits[l - 1]` symbols have a code of l bits.
    values: the symbols (bytes) in order of increasing code.
  """

  bits: tuple[int, ...]
  values: bytes

  def payload(self) -> bytes:
    """The table's body in a DHT segment (without the class/slot byte)."""
    return bytes(self.bits) + self.values

  @functools.cached_property
  def codes(self) -> tuple[np.ndarray, np.ndarray]:
    """`(code, length)`, each `(256,)`: the code of every symbol, length 0 where it has none."""
    return _encoder_arrays(self.bits, self.values)


def _table(bits_hex: str, values_hex: str) -> HuffmanTable:
  return HuffmanTable(tuple(bytes.fromhex(bits_hex)), bytes.fromhex(values_hex))


# ITU-T T.81 Annex K.3 (as libjpeg's jstdhuff.c and Pillow write them).
STD_DC_LUMA = _table("00010501010101010100000000000000", "000102030405060708090a0b")
STD_DC_CHROMA = _table("00030101010101010101010000000000", "000102030405060708090a0b")
STD_AC_LUMA = _table(
    "0002010303020403050504040000017d",
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728"
    "292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a83848586878889"
    "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2"
    "e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")
STD_AC_CHROMA = _table(
    "00020102040403040705040400010277",
    "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a26"
    "2728292a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a828384858687"
    "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9da"
    "e2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa")

#: Standard tables by (class, slot): class 0 is DC, 1 is AC; slot 0 luma, 1 chroma.
STANDARD = {(0, 0): STD_DC_LUMA, (0, 1): STD_DC_CHROMA, (1, 0): STD_AC_LUMA, (1, 1): STD_AC_CHROMA}


def canonical_codes(bits) -> tuple[np.ndarray, np.ndarray]:
  """Annex C code assignment: `(codes, lengths)`, one entry per value in table order.

  Raises:
    JPEGError: the counts over-subscribe the code space (more codes of some length than fit)
      or list more than 256 symbols.
  """
  bits = [int(b) for b in bits]
  if len(bits) != 16 or sum(bits) > 256:
    raise JPEGError(f"bad Huffman table: {sum(bits)} symbols (at most 256 allowed).")
  codes, lengths = [], []
  code = 0
  for length, count in enumerate(bits, start=1):
    codes.extend(range(code, code + count))
    lengths.extend([length] * count)
    code += count
    # A code may not reach 2**length: that would need more than `length` bits.
    if code > (1 << length):
      raise JPEGError(f"bad Huffman table: {count} codes of length {length} over-subscribe the "
                      "code space.")
    code <<= 1
  return np.asarray(codes, np.int64), np.asarray(lengths, np.int64)


def _encoder_arrays(bits, values) -> tuple[np.ndarray, np.ndarray]:
  codes, lengths = canonical_codes(bits)
  code = np.zeros(256, np.uint32)
  length = np.zeros(256, np.uint8)
  symbols = np.frombuffer(bytes(values), np.uint8)
  code[symbols] = codes
  length[symbols] = lengths
  return code, length


def optimal_table(freq) -> HuffmanTable:
  """libjpeg's `jpeg_gen_optimal_table` (Annex K.2), reproduced exactly.

  Huffman's algorithm with a pseudo-symbol 256 of count 1 (so no real code is all ones), ties
  broken toward the larger symbol number as libjpeg breaks them, then Annex K.2's adjustment to
  the 16-bit length limit. Equal counts give libjpeg's table bit for bit, so files match its
  `optimize_coding` output.

  Args:
    freq: `(256,)` non-negative symbol counts (at least one nonzero).
  Returns:
    The table, listing only symbols with nonzero count.
  """
  bits, values, _ = optimal_lengths(np.asarray(freq, np.int64))
  return HuffmanTable(tuple(int(b) for b in bits), values.astype(np.uint8).tobytes())


@numba.njit(cache=True, nogil=True)
def optimal_lengths(freq):
  """`optimal_table`'s work as a compiled loop: `(bits (16,), values (n,), length (256,))`, the
  table's counts per code length, its symbols in code order, and each symbol's code length (0
  where it has none).

  libjpeg's loop itself: repeatedly merge the two least frequent trees (c1, the one with the
  larger symbol number among equal counts, keeps the merged count), lengthening every code in
  both; then fold lengths over 16 back (Annex K.2) and drop the pseudo-symbol's code.
  """
  n = 1
  for s in range(256):
    if freq[s] > 0:
      n += 1
  symbol = np.empty(n, np.int64)
  count = np.empty(n, np.int64)
  i = 0
  for s in range(256):
    if freq[s] > 0:
      symbol[i] = s
      count[i] = freq[s]
      i += 1
  symbol[n - 1] = 256
  count[n - 1] = 1
  others = np.full(n, -1, np.int64)
  codesize = np.zeros(n, np.int64)
  active = np.ones(n, np.bool_)
  big = np.iinfo(np.int64).max
  while True:
    c1, v = -1, big
    for i in range(n):
      if active[i] and count[i] <= v:
        v = count[i]
        c1 = i
    c2, v = -1, big
    for i in range(n):
      if active[i] and count[i] <= v and i != c1:
        v = count[i]
        c2 = i
    if c2 < 0:
      break
    count[c1] += count[c2]
    active[c2] = False
    codesize[c1] += 1
    while others[c1] >= 0:
      c1 = others[c1]
      codesize[c1] += 1
    others[c1] = c2
    codesize[c2] += 1
    while others[c2] >= 0:
      c2 = others[c2]
      codesize[c2] += 1
  length = np.zeros(256, np.int64)
  if n == 1:                 # only the pseudo-symbol: no codes
    return np.zeros(16, np.int64), np.zeros(0, np.int64), length
  bits = np.zeros(max(codesize.max(), 16) + 1, np.int64)
  for i in range(n):
    bits[codesize[i]] += 1
  for i in range(len(bits) - 1, 16, -1):  # Annex K.2: fold lengths above 16 into the tree
    while bits[i] > 0:
      j = i - 2
      while bits[j] == 0:
        j -= 1
      bits[i] -= 2
      bits[i - 1] += 1
      bits[j + 1] += 2
      bits[j] -= 1
  i = 16
  while bits[i] == 0:
    i -= 1
  bits[i] -= 1               # the pseudo-symbol's code, from the longest length in use
  # Values by unadjusted code size, then symbol (libjpeg's order); lengths assigned in order.
  values = np.empty(n - 1, np.int64)
  v = 0
  for size in range(1, codesize.max() + 1):
    for i in range(n - 1):
      if codesize[i] == size:
        values[v] = symbol[i]
        v += 1
  v = 0
  for size in range(1, 17):
    for _ in range(bits[size]):
      length[values[v]] = size
      v += 1
  return bits[1:17].copy(), values, length


def extra_bits(table_class: int) -> np.ndarray:
  """`(256,)` extra bits that follow each symbol: DC size; AC size, or n for EOBn runs."""
  symbol = np.arange(256)
  if table_class == 0:
    return symbol
  r, s = symbol >> 4, symbol & 15
  return np.where(s > 0, s, np.where(r < 15, r, 0))
