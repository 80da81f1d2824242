"""Huffman tables: the Annex K standard tables, libjpeg's optimal tables, and code lookup.

A table is JPEG's own description (`bits`, `values`): `bits[l - 1]` codes of length l for
l = 1..16, assigned canonically (Annex C) to `values` in order. Symbols are bytes: for DC the
magnitude category of a difference, for AC `(run << 4) | size` (0x00 EOB, 0xF0 ZRL, and in
progressive scans `(n << 4)` for an end-of-band run of 2**n to 2**(n+1) - 1 blocks).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq

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
  freq = np.asarray(freq, np.int64)
  symbols = [int(s) for s in np.flatnonzero(freq)] + [256]
  counts = [int(freq[s]) for s in symbols[:-1]] + [1]
  # Heap keys (count, -symbol): the smallest count, and among equal counts the largest symbol,
  # is libjpeg's c1; the next one is c2. A merged tree keeps c1's symbol as its tie-breaker.
  heap = [(c, -s, i) for i, (c, s) in enumerate(zip(counts, symbols))]
  heapq.heapify(heap)
  parent = list(range(len(symbols)))  # leaves and internal nodes; a root is its own parent
  while len(heap) > 1:
    c1, key1, n1 = heapq.heappop(heap)
    c2, _, n2 = heapq.heappop(heap)
    node = len(parent)
    parent.append(node)
    parent[n1] = parent[n2] = node
    heapq.heappush(heap, (c1 + c2, key1, node))
  # Depth of every node, from the root down (parents are created after their children).
  depth = [0] * len(parent)
  for node in range(len(parent) - 2, -1, -1):
    depth[node] = depth[parent[node]] + 1
  codesize = depth[:len(symbols)]
  if len(symbols) == 1:  # only the pseudo-symbol: libjpeg never gets here; give it nothing
    return HuffmanTable((0,) * 16, b"")

  max_clen = max(codesize)
  bits = [0] * (max(max_clen, 16) + 1)
  for size in codesize:
    bits[size] += 1
  # Annex K.2 / libjpeg: fold lengths above 16 back into the tree.
  for i in range(len(bits) - 1, 16, -1):
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
  bits[i] -= 1  # drop the pseudo-symbol from the longest length in use
  # Values sorted by their unadjusted code size, then by symbol (libjpeg does the same).
  order = sorted(range(len(symbols) - 1), key=lambda n: (codesize[n], symbols[n]))
  values = bytes(symbols[n] for n in order)
  return HuffmanTable(tuple(bits[1:17]), values)


def extra_bits(table_class: int) -> np.ndarray:
  """`(256,)` extra bits that follow each symbol: DC size; AC size, or n for EOBn runs."""
  symbol = np.arange(256)
  if table_class == 0:
    return symbol
  r, s = symbol >> 4, symbol & 15
  return np.where(s > 0, s, np.where(r < 15, r, 0))
