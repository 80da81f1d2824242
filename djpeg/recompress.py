"""JPEG in, JPEG out: lossless re-optimization, and lossy recompression in the DCT domain.

Most photos people want to shrink are JPEGs already. Decoding one to pixels and encoding again
adds a second generation of loss (colour conversion, resampling, rounding) on top of the new
quantization. Here the file's own coefficients are the starting point:

* `optimize_file` (lossless): the same coefficients and quantization tables, written again with
  optimized Huffman tables and the smallest of the standard progressive scan scripts (or
  baseline when that is smaller), every APPn and COM segment copied (ICC, EXIF with its
  orientation, XMP, comments, ...). Never larger than the input: when nothing is gained, the
  input's bytes come back.
* `recompress` (lossy): the dequantized input coefficients, q * Q, are the reference; they are
  exactly what every decoder shows. New tables (the perceptual ones, `djpeg.perceptual.tables`,
  at a perceptual quality p, each step moved to a whole multiple of the input's:
  `aligned_steps`) are chosen and the perceptual trellis requantizes the reference
  directly: no inverse DCT, no colour conversion, no resampling, so the only new loss is the
  requantization. The block grid and sampling are the input's. The target is relative to the
  input: `quality` (at least the SSIMULACRA 2, against the input's decode, of libjpeg-turbo
  re-encoding that decode at Q, 4:2:0), `psnr` (dB against the input's decode) or `bpp`; p is
  searched as in the default mode (`djpeg.perceptual.search`), large images on a sample of
  tiles, then (up to `perceptual.WHOLE_CHECK_LIMIT` pixels, and for a bpp budget at any size)
  checked and corrected on the whole image, above that on a larger sample. Never larger than
  the input (nor than its lossless re-optimization).

Inputs djpeg does not read (arithmetic coding, 12-bit, lossless, hierarchical, CMYK) raise
`djpeg.JPEGError` naming what is unsupported, and so do RGB-coded JPEGs (an Adobe APP14 segment
with transform 0, or components named R, G, B), whose colours a JFIF file would misstate.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from djpeg import codec, perceptual
from djpeg.coefficients import Coefficients
from djpeg.exact import JPEGError, read_coefficients, sizes, trellis as trellis_lib
from djpeg.exact import write_coefficients
from djpeg.exact.markers import is_rgb_coded, metadata_segments
from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
from djpeg.tables import DEFAULT_QUALITY

#: Typical PSNR gained per unit of perceptual quality p (the first step of a PSNR search).
_PSNR_SLOPE = 0.15


def _input(data: bytes) -> tuple[Coefficients, list[tuple[int, bytes]]]:
  """The input's coefficients and its APPn/COM segments (APP0 JFIF left out: the writer adds
  its own), or JPEGError for inputs that cannot be rewritten faithfully."""
  data = bytes(data)
  segments = metadata_segments(data)
  coefficients = read_coefficients(data)
  if coefficients.num_components == 3 and is_rgb_coded(segments):
    raise JPEGError("RGB-coded JPEG (Adobe APP14 transform 0) is not supported: its components "
                    "are not YCbCr.")
  return coefficients, [(m, p) for m, p in segments if m != 0xE0]


def _candidates(coefficients: Coefficients, segments) -> list[bytes]:
  return [write_coefficients(coefficients, progressive=mode, segments=segments)[0]
          for mode in ("optimize", False)]


def optimize_file(data: bytes, *, strip: bool = False) -> bytes:
  """Lossless re-optimization (module docstring): the smallest rewrite of the same coefficients,
  or the input itself when no rewrite is smaller. `strip` drops the APPn and COM segments.

  Raises:
    JPEGError: a file djpeg does not read, or an RGB-coded one.
  """
  coefficients, segments = _input(data)
  best = min(_candidates(coefficients, [] if strip else segments), key=len)
  return best if len(best) < len(data) or strip else bytes(data)


@dataclasses.dataclass(frozen=True)
class Recompressed:
  """What `recompress` made.

  Attributes:
    data: the output file's bytes.
    kind: "lossy" (requantized), "lossless" (re-optimized) or "input" (the input kept).
    p: the perceptual quality of the new tables (None unless lossy).
    score: the target metric of the output against the input's decode (SSIMULACRA 2 for a
      quality target, PSNR in dB for a psnr target, bits per pixel for a bpp target); for
      "lossless" and "input", the metric's value for identical images (100 or inf) or the bpp.
    target: the value to reach (None for a quality target on an image under 8x8, which
      SSIMULACRA 2 does not measure: the output is then the lossless rewrite or the input).
    sampled: whether score and target are a sample's (a large image).
  """
  data: bytes
  kind: str
  p: float | None
  score: float
  target: float | None
  sampled: bool = False


def aligned_steps(steps, input_steps) -> np.ndarray:
  """New steps `(C, 8, 8)` moved to the nearest whole multiple of the input's (at least one,
  at most 255).

  The reference coefficients are multiples of the input's steps: a step finer than the input's
  spends bits on values that cannot occur and still rounds them, while the input's own step
  keeps them exactly; a multiple of it requantizes the lattice evenly, where a step in between
  leaves uneven errors for the same bits. On 12 training images written at q90 and q95
  (requantized at qualities 50-90; `python bench/recompress.py --alignment`), BD-rate in
  SSIMULACRA 2 against the libjpeg route went from -18.8% to -19.8% (standard error 0.3).
  """
  steps = np.asarray(steps, np.float64)
  q = np.asarray(input_steps, np.float64)[:steps.shape[0]]
  k = np.maximum(1.0, np.round(steps / q))
  k = np.minimum(k, np.maximum(1.0, np.floor(255.0 / q)))
  return k * q


class _Source:
  """The input's dequantized coefficients prepared for the perceptual trellis and scoring:
  the whole image, or a mosaic of tiles of it (`_mosaic`)."""

  def __init__(self, coefficients: Coefficients, tiles: int = 1, *, decode: bool = True):
    self.c = coefficients
    steps = np.asarray(coefficients.tables, np.float32)
    self.dct = [np.asarray(q, np.float32) * steps[i] for i, q in enumerate(coefficients.components)]
    self.weights = perceptual.masking(self.dct)
    self.tiles = tiles
    self.reference_pixels = self.decode(coefficients) if decode else None
    self._reference = None

  def trellis(self, p: float, lmbda: float = perceptual.LAMBDA) -> tuple[Coefficients, float]:
    c = self.c
    steps = aligned_steps(perceptual.tables(p, c.num_components), c.tables)
    result = trellis_lib.trellis_quantize(self.dct, steps, c.sampling, c.height, c.width,
                                          lmbda=lmbda, weights=perceptual.step_weights(steps),
                                          importance=self.weights)
    out = Coefficients(tuple(result.components), steps.astype(np.float32), c.height, c.width,
                       c.sampling)
    return out, float(sizes.baseline_file_bytes(
        result.bits, num_components=c.num_components,
        distinct_tables=sizes.distinct_tables(steps)))

  def _split(self, pixels: np.ndarray) -> np.ndarray:
    return pixels if self.tiles == 1 else pixels.reshape((self.tiles, -1) + pixels.shape[1:])

  def decode(self, coefficients: Coefficients) -> np.ndarray:
    return codec.decode_samples(coefficients)

  def ssimulacra2(self, decoded: np.ndarray) -> float:
    if self._reference is None:           # the reference's half of the metric, once
      self._reference = ssimulacra2_reference(self._split(self.reference_pixels))
    return float(np.mean(np.asarray(ssimulacra2_against(self._reference, self._split(decoded)))))

  def psnr(self, decoded: np.ndarray) -> float:
    mse = float(np.mean((decoded.astype(np.float64) - self.reference_pixels) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _mosaic(coefficients: Coefficients, tiles: int, size: int) -> Coefficients:
  """`tiles` tiles of `size` pixels (a multiple of the MCU) cut from the coefficient grid on a
  grid over the image and stacked vertically: a small image whose blocks are the input's."""
  h_max = max(h for h, _ in coefficients.sampling)
  v_max = max(v for _, v in coefficients.sampling)
  mcu_w, mcu_h = 8 * h_max, 8 * v_max
  height, width = coefficients.height, coefficients.width
  across = max(1, min(tiles, round(math.sqrt(tiles * width / height))))
  while tiles % across:
    across -= 1
  down = tiles // across
  parts = [[] for _ in coefficients.components]
  for i in range(down):
    for j in range(across):
      top = int(np.clip(round(((i + 0.5) * height / down - size / 2) / mcu_h) * mcu_h, 0,
                        (height - size) // mcu_h * mcu_h))
      left = int(np.clip(round(((j + 0.5) * width / across - size / 2) / mcu_w) * mcu_w, 0,
                         (width - size) // mcu_w * mcu_w))
      for c, comp in enumerate(coefficients.components):
        h, v = coefficients.sampling[c]
        r0, c0 = top * v // (8 * v_max), left * h // (8 * h_max)
        rows, cols = size * v // (8 * v_max), size * h // (8 * h_max)
        parts[c].append(np.asarray(comp)[r0:r0 + rows, c0:c0 + cols])
  return Coefficients(tuple(np.concatenate(p, axis=0) for p in parts),
                      np.asarray(coefficients.tables), tiles * size, size, coefficients.sampling)


def _search(source: _Source, kind: str, target: float, *, start: float | None = None,
            budget: int = 8):
  """(p, (score, bytes, coefficients), goal) of the perceptual search on `source` for a
  `kind` target (`recompress`), from `start` (None: the usual first guess); p is None when no
  candidate meets the goal."""
  if kind == "quality":
    anchor = codec.encode_pixels(source.reference_pixels, quality=target, subsampling="4:2:0")
    goal = source.ssimulacra2(source.decode(anchor))
    measure, slope = source.ssimulacra2, perceptual.ssimulacra2_slope
  elif kind == "psnr":
    goal, measure, slope = target, source.psnr, (lambda p: _PSNR_SLOPE)
  else:
    # The most bits that fit: search in p for the largest file at most the budget.
    goal = target * source.c.height * source.c.width / 8

  def evaluate(p):
    candidate, size = source.trellis(p)
    if kind == "bpp":
      return -size, size, candidate
    return measure(source.decode(candidate)), size, candidate

  tolerance = 0.75 if start is None else 1.0
  if kind == "bpp":
    p, value, _ = perceptual.search(lambda q: evaluate(101 - q), -goal,
                                    25.0 if start is None else 101 - start,
                                    slope=lambda q: 0.02 * goal, prefer="most", budget=budget,
                                    tolerance=tolerance)
    return (None if p is None else 101 - p), value, goal
  if start is None:
    start = perceptual.guess(target) if kind == "quality" else 75.0
  p, value, _ = perceptual.search(evaluate, goal, start, slope=slope, budget=budget,
                                  tolerance=tolerance)
  return p, value, goal


def recompress(data: bytes, *, quality: float | None = None, psnr: float | None = None,
               bpp: float | None = None, strip: bool = False) -> Recompressed:
  """Lossy recompression of a JPEG file in the DCT domain (module docstring).

  Args:
    data: the input JPEG file's bytes.
    quality: at least libjpeg-turbo's SSIMULACRA 2 when it re-encodes the input's decode at
      this IJG quality (default 75 when no target is given).
    psnr: at least this PSNR (dB) against the input's decode.
    bpp: at most this many bits per pixel, as good as the tables allow.
    strip: drop the APPn and COM segments (kept by default).
  Raises:
    ValueError: several targets, or one out of range.
    JPEGError: a file djpeg does not read, or an RGB-coded one.
  """
  targets = {k: v for k, v in (("quality", quality), ("psnr", psnr), ("bpp", bpp))
             if v is not None}
  if len(targets) > 1:
    raise ValueError(f"give one of quality, psnr and bpp; got {sorted(targets)}.")
  kind, target = next(iter(targets.items())) if targets else ("quality", DEFAULT_QUALITY)
  if kind == "quality" and not 1 <= target <= 100:
    raise ValueError(f"quality must be in [1, 100]; got {target!r}.")
  if kind != "quality" and not (math.isfinite(target) and target > 0):
    raise ValueError(f"{kind} must be a positive finite number; got {target!r}.")
  coefficients, segments = _input(data)
  segments = [] if strip else segments
  lossless = min(_candidates(coefficients, segments) + ([] if strip else [bytes(data)]), key=len)
  pixels = coefficients.height * coefficients.width
  if kind == "quality" and min(coefficients.height, coefficients.width) < 8:
    # SSIMULACRA 2 measures nothing under 8x8, so no requantization can be shown to meet the
    # target: the lossless rewrite, which loses nothing (target None).
    return Recompressed(lossless, "lossless" if lossless != bytes(data) else "input", None,
                        100.0, None)
  sampled = (pixels > perceptual.EXACT_LIMIT
             and min(coefficients.height, coefficients.width) >= 2 * perceptual.SAMPLE_TILE)
  source = (_Source(_mosaic(coefficients, perceptual.SAMPLE_TILES, perceptual.SAMPLE_TILE),
                     perceptual.SAMPLE_TILES) if sampled else _Source(coefficients))
  p, value, goal = _search(source, kind, target)
  # As in the default mode (`djpeg.perceptual`): a sample's choice is checked and corrected on
  # the whole image up to WHOLE_CHECK_LIMIT pixels; a size budget, which needs no scoring, at
  # every size. The goal then becomes the whole image's.
  if sampled and p is not None and (pixels <= perceptual.WHOLE_CHECK_LIMIT or kind == "bpp"):
    whole = _Source(coefficients, decode=kind != "bpp")
    budget = 8 if kind == "bpp" else perceptual.WHOLE_CHECK_BUDGET   # sizes need no scoring
    p, value, goal = _search(whole, kind, target, start=p, budget=budget)
    sampled = False
  elif sampled and p is not None and min(coefficients.height, coefficients.width) >= \
      perceptual.CHECK_TILE:
    # Larger images: the same short search on a larger sample (`perceptual.CHECK_TILES`).
    check = _Source(_mosaic(coefficients, perceptual.CHECK_TILES, perceptual.CHECK_TILE),
                    perceptual.CHECK_TILES)
    p, value, goal = _search(check, kind, target, start=p, budget=perceptual.WHOLE_CHECK_BUDGET)
  if p is None:
    return Recompressed(lossless, "lossless" if lossless != bytes(data) else "input", None,
                        math.inf if kind == "psnr" else 100.0, goal, sampled)
  chosen = value[2] if not sampled else _Source(coefficients, decode=False).trellis(p)[0]
  best = min(_candidates(chosen, segments), key=len)
  score = value[0] if kind != "bpp" else 8 * len(best) / pixels
  if len(best) >= len(lossless):
    return Recompressed(lossless, "lossless" if lossless != bytes(data) else "input", None,
                        math.inf if kind == "psnr" else (100.0 if kind == "quality" else
                                                         8 * len(lossless) / pixels),
                        goal, sampled)
  return Recompressed(best, "lossy", p, score, goal if kind != "bpp" else target, sampled)
