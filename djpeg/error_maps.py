"""SSIMULACRA 2's error maps and their pooling, as one compiled loop per scale and channel.

`djpeg.ssimulacra2._scores` computes the three error maps (1 - SSIM', artifact, detail loss)
over the whole scale canvas in XLA and pools them with float32 sums: differentiable, batched,
for any device. Scoring an encoder's candidates needs none of that, and on a CPU the maps were
a third of a score's time. This module computes them sample by sample inside each scale's image
only, with the reference program's arithmetic (float32 maps, double where ssimulacra2.cc
computes in double: the SSIM error, the edge ratio and the sums) and accumulates in double, as
the reference does. Scores agree with the XLA path to about 1e-5 points (the order and width of
the sums differ) and with the reference program as closely (`tests/test_ssimulacra2.py`).

Arrays: canvas planes `(B, 3, H_c, W)` float32 (`djpeg.ssimulacra2`'s layout: scale s occupies
rows `offsets[s]` to `offsets[s] + heights[s]` and columns 0 to `widths[s]`).
"""

from __future__ import annotations

import numba
import numpy as np

_C2 = np.float32(0.0009)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _accumulate(sums, d, artifact, lost):
  """Adds a row's maps and their fourth powers to the six double sums. Reassociation lets LLVM
  vectorize them (their order is free: the reference's own is row by row); only the sums run
  under it, the maps are computed exactly as written (`_pool`)."""
  t0 = t1 = t2 = t3 = t4 = t5 = 0.0
  for x in range(d.shape[0]):
    a, b, c = d[x], artifact[x], lost[x]
    a2, b2, c2 = a * a, b * b, c * c
    t0 += a
    t1 += a2 * a2
    t2 += b
    t3 += b2 * b2
    t4 += c
    t5 += c2 * c2
  sums[0] += t0
  sums[1] += t1
  sums[2] += t2
  sums[3] += t3
  sums[4] += t4
  sums[5] += t5


@numba.njit(cache=True, nogil=True)
def _pool(img1, img2, s11, s22, s12, mu1, mu2):
  """One scale's and channel's `(h, w)` planes -> the six sums (map, map^4 for the three maps),
  the maps with ssimulacra2.cc's arithmetic, a row at a time."""
  h, w = img1.shape
  sums = np.zeros(6)
  d = np.empty(w)
  artifact = np.empty(w)
  lost = np.empty(w)
  for y in range(h):
    for x in range(w):
      m1, m2 = mu1[y, x], mu2[y, x]
      mu11, mu22, mu12 = m1 * m1, m2 * m2, m1 * m2
      diff = m1 - m2
      num_m = np.float32(1.0 - np.float64(diff * diff))
      num_s = np.float32(2.0) * (s12[y, x] - mu12) + _C2
      denom_s = (s11[y, x] - mu11) + (s22[y, x] - mu22) + _C2
      d[x] = max(1.0 - np.float64((num_m * num_s) / denom_s), 0.0)
      e1 = abs(img1[y, x] - m1)
      e2 = abs(img2[y, x] - m2)
      ratio = (1.0 + np.float64(e2)) / (1.0 + np.float64(e1)) - 1.0
      artifact[x] = max(ratio, 0.0)
      lost[x] = max(-ratio, 0.0)
    _accumulate(sums, d, artifact, lost)
  return sums


@numba.njit(cache=True, nogil=True)
def pooled_values(img1, img2, s11, s22, s12, mu1, mu2, offsets, heights, widths):
  """The pooled maps `(B, scales, 3 channels, 2 norms, 3 maps)` float64: per scale, channel and
  map the mean (1-norm) and the fourth root of the mean fourth power (4-norm) of
  ssimulacra2.cc's `SSIMMap` (1 - SSIM') and `EdgeDiffMap` (artifact, detail loss)."""
  batch = img1.shape[0]
  scales = offsets.shape[0]
  out = np.zeros((batch, scales, 3, 2, 3), np.float64)
  for b in range(batch):
    for s in range(scales):
      top, h, w = offsets[s], heights[s], widths[s]
      inv = 1.0 / (h * w)
      for c in range(3):
        sums = _pool(img1[b, c, top:top + h, :w], img2[b, c, top:top + h, :w],
                     s11[b, c, top:top + h, :w], s22[b, c, top:top + h, :w],
                     s12[b, c, top:top + h, :w], mu1[b, c, top:top + h, :w],
                     mu2[b, c, top:top + h, :w])
        for m in range(3):
          out[b, s, c, 0, m] = inv * sums[2 * m]
          out[b, s, c, 1, m] = np.sqrt(np.sqrt(inv * sums[2 * m + 1]))
  return out


def score_from_values(values: np.ndarray, weights: np.ndarray, scale: float,
                      poly: tuple[float, float, float], exponent: float) -> np.ndarray:
  """`(B, scales, 3, 2, 3)` pooled values -> `(B,)` scores, in double as ssimulacra2.cc's
  `Msssim::Score` (weights indexed over channel, scale, norm, map)."""
  values = np.asarray(values, np.float64)
  batch, scales = values.shape[:2]
  v = np.transpose(values, (0, 2, 1, 3, 4)).reshape(batch, scales * 18)
  x = np.abs(v) @ np.asarray(weights[:scales * 18], np.float64) * scale
  x = poly[0] * x + poly[1] * x * x + poly[2] * x * x * x
  with np.errstate(invalid="ignore"):
    return np.where(x > 0, 100.0 - 10.0 * np.power(np.maximum(x, 0.0), exponent), 100.0)
