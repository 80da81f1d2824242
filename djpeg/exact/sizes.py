"""How many bytes the writer's files take: the one file-size model of the package.

Everything but the entropy-coded data is fixed by the layout `writer` produces (`jcmarker.c`'s):

  SOI 2 + JFIF APP0 18 + DQT 69 per distinct table + SOF 10 + 3 C + DHT 21 + (symbols) per table
  + SOS 8 + 2 C (per scan) + EOI 2

and the entropy-coded data is the symbols' code lengths plus their extra (magnitude) bits, plus
a 0x00 stuffed after every 0xFF byte and the padding of the last byte. Stuffing depends on the
bit pattern; `STUFFING` is its mean share, measured on the writer's files.

The arithmetic functions take numbers or arrays of any kind (numpy or JAX, traced or not), so
the rate proxy (`djpeg.rate`), the trellis, the scan-script search and the encoder's targets all
price files with this one model.
"""

from __future__ import annotations

import numpy as np

from djpeg.exact import huffman, writer

#: Mean share of stuffed zero bytes (after 0xFF) in the entropy-coded data of the writer's files,
#: measured on the training images (0.04%..0.55% per file).
STUFFING = 0.0032

_EXTRA_BITS = (huffman.extra_bits(0), huffman.extra_bits(1))


def frame_bytes(num_components, distinct_tables):
  """SOI, JFIF APP0, the DQT segments, SOF and EOI: bytes of a file besides its scans."""
  return 2 + 18 + 69 * distinct_tables + (10 + 3 * num_components) + 2


def dht_bytes(num_tables, used_symbols):
  """DHT segments for `num_tables` tables listing `used_symbols` symbols in all."""
  return 21 * num_tables + used_symbols


def sos_bytes(num_components):
  """One SOS segment for a scan of `num_components` components."""
  return 8 + 2 * num_components


def data_bytes(bits):
  """Entropy-coded bytes for `bits` bits: mean stuffing and half a byte of final padding."""
  return bits / 8 * (1 + STUFFING) + 0.5


def baseline_file_bytes(data_bits, *, num_components, distinct_tables, huffman_tables=0,
                        used_symbols=0):
  """Bytes of a baseline file: frame, `huffman_tables` DHT tables with `used_symbols` symbols,
  one SOS and `data_bits` bits of entropy-coded data."""
  return (frame_bytes(num_components, distinct_tables)
          + dht_bytes(huffman_tables, used_symbols) + sos_bytes(num_components)
          + data_bytes(data_bits))


def optimal_code_bits(table_class: int, counts: np.ndarray) -> tuple[float, int]:
  """Bits of the symbols counted in `counts` `(256,)` coded with libjpeg's optimal table for them
  (codes and extra bits), and the number of symbols that table lists (its DHT's length)."""
  counts = np.asarray(counts, np.int64)
  _, values, length = huffman.optimal_lengths(counts)
  bits = float(np.sum(counts * (length + _EXTRA_BITS[table_class])))
  return bits, len(values)


def coded_bits(counts: dict) -> float:
  """Bits of a scan coded with the optimal tables for `counts` `{(class, slot): (256,)}`, plus
  the bits of those tables' DHT segments."""
  total = 0.0
  for (table_class, _), c in counts.items():
    bits, symbols = optimal_code_bits(table_class, c)
    total += bits + 8 * dht_bytes(1, symbols)
  return total


def distinct_tables(tables) -> int:
  """How many DQT segments per-component tables `(C, 8, 8)` need (`writer.quant_slots`)."""
  return len(writer.quant_slots(np.asarray(tables, np.int64))[0])
