"""The process's memory, through glibc's malloc (no-ops elsewhere).

The encoder allocates and frees arrays of the same large sizes for every candidate it scores.
By default glibc maps each one over 32 MB afresh and returns it on free, paid for in page faults
(on the photo library of `bench/library.py`, a quarter of the time, most of it in the kernel);
and after a big image's passes, freed pieces that later arrays do not fill keep the resident
memory high. `reuse_freed_memory` suits a worker that encodes one image after another;
`trim_heap` hands free pages back between the passes of one big image.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4          # glibc's malloc.h


@functools.cache
def _libc():
  """The C library, if it has glibc's malloc controls; else None."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt, libc.malloc_trim    # both, or neither is used
  except (OSError, AttributeError):
    return None
  return libc


def reuse_freed_memory() -> bool:
  """Makes malloc keep freed memory for reuse instead of handing it back to the system: no
  allocation by mmap (`M_MMAP_MAX` 0), no trimming of the heap below 2 GB (`M_TRIM_THRESHOLD`).
  The process then keeps its peak memory until it exits. Returns whether it took effect (False
  off glibc)."""
  libc = _libc()
  if libc is None:
    return False
  return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))


def trim_heap() -> None:
  """Hands the heap's free pages back to the system (`malloc_trim`)."""
  libc = _libc()
  if libc is not None:
    libc.malloc_trim(0)
