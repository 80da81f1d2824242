"""What libjpeg's accurate integer DCTs (jfdctint.c, jidctint.c) share, for numba loops.

`djpeg.encode_compiled` and `djpeg.decode_compiled` state the forward and inverse transforms
as compiled loops (`djpeg.dct` states them for XLA). Both use the same 13-bit fixed-point
constants and the same odd part of the Loeffler-Ligtenberg-Moschytz butterfly (LL&M figure 8).
"""

from __future__ import annotations

import numba

#: 13-bit fixed point; 2 extra bits of precision after the first pass.
CONST_BITS = 13
PASS1_BITS = 2
#: FIX(x) for the constants of the even and odd parts.
F0298, F0390, F0541 = 2446, 3196, 4433
F0765, F0899, F1175 = 6270, 7373, 9633
F1501, F1847, F1961 = 12299, 15137, 16069
F2053, F2562, F3072 = 16819, 20995, 25172


@numba.njit(cache=True, nogil=True, inline="always")
def odd_part(t0, t1, t2, t3):
  """The odd part on four differences, before descaling: the forward DCT's tmp4..tmp7 give its
  outputs 7, 5, 3, 1; the inverse's z7, z5, z3, z1 give its terms for outputs (3, 4), (2, 5),
  (1, 6), (0, 7). Integers in int64 or float64 alike (libjpeg's values stay below 2**31)."""
  z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
  z5 = (z3 + z4) * F1175
  z1 = z1 * -F0899
  z2 = z2 * -F2562
  z3 = z3 * -F1961 + z5
  z4 = z4 * -F0390 + z5
  return t0 * F0298 + z1 + z3, t1 * F2053 + z2 + z4, t2 * F3072 + z2 + z3, t3 * F1501 + z1 + z4
