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

Both keep what the file carries beside its image: every APPn and COM segment, the JFIF
density (print resolution), and whatever follows the image's EOI marker (the other pictures of
a multi-picture file, such as a phone's depth or gain map, with the MPF index's offsets moved to
where they now lie; a motion photo's video); `strip` drops all of it but the density (as
jpegtran -copy none keeps it) and the EXIF orientation, alone in a minimal EXIF (a portrait
photo would otherwise display sideways). Quantization steps above
255 (libjpeg's 16-bit tables, below quality 25) are kept as 16-bit DQT entries.

Inputs djpeg does not read (arithmetic coding, 12-bit, lossless, hierarchical, CMYK) raise
`djpeg.JPEGError` naming what is unsupported, and so do RGB-coded JPEGs (by libjpeg's rule: an
Adobe APP14 segment with transform 0, or, with neither JFIF nor Adobe segment, components named
R, G, B), whose colours a JFIF file would misstate. A progressive file whose scans leave
low-frequency coefficients not fully coded is shown by libjpeg-turbo with its blocks smoothed,
not as its coefficients say: `optimize_file` keeps it as it is, and `recompress` raises
`SmoothedInput` (a `JPEGError`), since its coefficients are not the image people see; decode
it to pixels instead.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from djpeg import codec, perceptual
from djpeg.checks import is_real_number
from djpeg.coefficients import Coefficients
from djpeg.exact import JPEGError, Metadata, sizes, trellis as trellis_lib
from djpeg.exact import write_coefficients
from djpeg.exact.markers import header_segments, is_rgb_coded, metadata_segments
from djpeg.exact.metadata import (jfif_density, orientation_segments, segment_bytes,
                                  with_trailing)
from djpeg.exact.reader import FileInfo, read_file
from djpeg.files import file_bytes
from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
from djpeg.tables import DEFAULT_QUALITY

#: Typical PSNR gained per unit of perceptual quality p (the first step of a PSNR search).
_PSNR_SLOPE = 0.15


class SmoothedInput(JPEGError):
  """A progressive file that libjpeg-turbo decodes with block smoothing (module docstring): its
  coefficients are not the image its viewers see, so it is not recompressed in the DCT domain."""


@dataclasses.dataclass(frozen=True)
class _Input:
  """A JPEG input: its bytes, coefficients, what is copied into a rewrite (`segments`, the JFIF
  density in `metadata`, the bytes after its EOI in `trailing`) and `FileInfo`."""
  data: bytes
  coefficients: Coefficients
  segments: list
  metadata: Metadata | None
  trailing: bytes
  info: FileInfo

  def stripped(self) -> _Input:
    """Without segments and trailing bytes; the JFIF density (print resolution) stays, as
    with jpegtran -copy none, and the EXIF orientation, alone (`orientation_segments`)."""
    return dataclasses.replace(self, segments=orientation_segments(self.segments), trailing=b"")

  def overhead(self) -> int:
    """Bytes a rewrite spends on the copied segments, beyond the image's own."""
    return sum(len(p) + 4 for m, p in self.segments if not (m == 0xE0 and p[:5] == b"JFIF\x00"))


def _check_layout(layout) -> None:
  if not isinstance(layout, Layout):
    raise ValueError(f"layout must be a recompress.Layout (such as Layout(progressive=True)); "
                     f"got {layout!r}.")


def _input(data, *, strip: bool = False) -> _Input:
  """The input read and checked, or JPEGError for inputs that cannot be rewritten faithfully."""
  data = file_bytes(data, "data")
  segments = metadata_segments(data)
  coefficients, info = read_file(data)
  if coefficients.num_components == 3 and is_rgb_coded(segments, info.component_ids):
    raise JPEGError("RGB-coded JPEG (" + (
        "Adobe APP14 transform 0" if any(m == 0xEE for m, _ in segments) else
        "components named R, G, B") + ") is not supported: its components are not YCbCr.")
  density = jfif_density(segments)
  out = _Input(data, coefficients, segments, Metadata(density=density) if density else None,
               data[info.end:], info)
  return out.stripped() if strip else out


def _with_trailing(image: bytes, source: _Input) -> bytes:
  return with_trailing(image, source.data, source.info.end) if source.trailing else image


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a rewrite is laid out: `progressive` None (the smaller of optimized progressive scans
  and baseline), True (libjpeg's script), "optimize" or False (baseline); `restart_interval`
  (MCUs, None for none); `optimize_huffman` False for the Annex K Huffman tables; `compact`
  the fewest header bytes (`write_coefficients(..., compact=True)`, and no JFIF APP0 unless
  the input has a print density). Only the automatic layout (the default, compact or not) may
  keep an input as it is, since another layout is what was asked for."""
  progressive: bool | str | None = None
  restart_interval: int | None = None
  optimize_huffman: bool = True
  compact: bool = False

  @property
  def automatic(self) -> bool:
    return dataclasses.replace(self, compact=False) == Layout()

  def modes(self) -> tuple:
    if self.progressive is not None:
      return (self.progressive,)
    return ("optimize", False) if self.optimize_huffman else (True, False)


def header_options(compact: bool, metadata: Metadata | None) -> dict:
  """`write_coefficients`' `compact` and `jfif`: a compact file carries a JFIF APP0 only for a
  print density."""
  return {"compact": compact, "jfif": not compact or bool(metadata and metadata.density)}


def _candidates(coefficients: Coefficients, source: _Input, layout: Layout) -> list[bytes]:
  return [_with_trailing(write_coefficients(
      coefficients, progressive=mode, optimize=layout.optimize_huffman,
      restart_interval=layout.restart_interval, segments=source.segments,
      metadata=source.metadata, share_equal_tables=source.info.shares_table_slots,
      **header_options(layout.compact, source.metadata))[0], source)
          for mode in layout.modes()]


def _stripped_bytes(source: _Input) -> bytes:
  """The input's own bytes without its APPn (but JFIF APP0 and Adobe APP14, which say how to
  read it) and COM segments, nor anything after its EOI: `strip` for an input kept as it is."""
  keep, pos, jfif = [source.data[:2]], 2, False
  for marker, start, payload in header_segments(source.data):
    end = start + 4 + len(payload)
    if not ((0xE1 <= marker <= 0xEF and marker != 0xEE) or marker == 0xFE):
      keep.append(source.data[start:end])
      jfif = jfif or (len(keep) == 2 and marker == 0xE0 and payload[:5] == b"JFIF\x00")
    pos = end
  # The orientation stays (`_Input.stripped`), after the JFIF APP0, which must come first.
  orientation = [segment_bytes(m, p)
                 for m, p in orientation_segments(metadata_segments(source.data))]
  keep[2 if jfif else 1:2 if jfif else 1] = orientation
  return b"".join(keep) + source.data[pos:source.info.end]


def _kept_input(source: _Input, strip: bool) -> bytes:
  return _stripped_bytes(source) if strip else source.data


def optimize_file(data, *, strip: bool = False, layout: Layout = Layout()) -> bytes:
  """Lossless re-optimization (module docstring): the smallest rewrite of the same coefficients,
  or the input itself when no rewrite is smaller. `strip` drops the APPn and COM segments (and
  whatever follows the image).

  Args:
    data: the JPEG file: bytes, a path or a binary file object.
    strip: drop the segments and what follows the image (the density and the EXIF
      orientation stay).
    layout: progressive or baseline, restart markers, Huffman tables (`Layout`); a layout asked
      for is written even when the input, laid out otherwise, is smaller.
  Raises:
    JPEGError: a file djpeg does not read, or an RGB-coded one.
    ValueError: `data` is none of those.
  """
  _check_layout(layout)
  source = _input(data, strip=strip)
  kept = _kept_input(source, strip)
  if source.info.smoothed_by_libjpeg:
    return kept           # a rewrite would code every coefficient and turn the smoothing off
  best = min(_candidates(source.coefficients, source, layout), key=len)
  return best if len(best) < len(kept) or not layout.automatic else kept


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
            budget: int = 8, overhead: float = 0.0):
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
    # The most bits that fit: search in p for the largest file at most the budget, less the
    # bytes of the copied segments (`overhead`, for the part of the image `source` holds).
    goal = target * source.c.height * source.c.width / 8 - overhead

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


def recompress(data, *, quality: float | None = None, psnr: float | None = None,
               bpp: float | None = None, strip: bool = False,
               layout: Layout = Layout()) -> Recompressed:
  """Lossy recompression of a JPEG file in the DCT domain (module docstring).

  Args:
    data: the input JPEG file: bytes, a path or a binary file object.
    quality: at least libjpeg-turbo's SSIMULACRA 2 when it re-encodes the input's decode at
      this IJG quality (default 75 when no target is given).
    psnr: at least this PSNR (dB) against the input's decode.
    bpp: at most this many bits per pixel, as good as the tables allow: the image's file,
      its copied APPn and COM segments included (not what follows the image: another
      picture of a multi-picture file, a video). When even the coarsest tables do not fit, the
      result is the lossless rewrite (or the input), with its own bpp as `score`.
    strip: drop the APPn and COM segments and whatever follows the image (kept by default;
      the density and the EXIF orientation stay).
    layout: progressive or baseline, restart markers, Huffman tables (`Layout`); with one
      asked for, the input itself is never the result (its lossless rewrite may be).
  Raises:
    ValueError: several targets, one out of range, or `data` neither bytes, a path nor a
      binary file object.
    JPEGError: a file djpeg does not read, or an RGB-coded one; `SmoothedInput` for a
      progressive file libjpeg-turbo decodes with block smoothing (module docstring).
  """
  targets = {k: v for k, v in (("quality", quality), ("psnr", psnr), ("bpp", bpp))
             if v is not None}
  if len(targets) > 1:
    raise ValueError(f"give one of quality, psnr and bpp; got {sorted(targets)}.")
  kind, target = next(iter(targets.items())) if targets else ("quality", DEFAULT_QUALITY)
  if not is_real_number(target):
    raise ValueError(f"{kind} must be a number; got {target!r}.")
  target = float(target)
  if kind == "quality" and not 1 <= target <= 100:
    raise ValueError(f"quality must be in [1, 100]; got {target!r}.")
  if kind != "quality" and not (math.isfinite(target) and target > 0):
    raise ValueError(f"{kind} must be a positive finite number; got {target!r}.")
  _check_layout(layout)
  source = _input(data, strip=strip)
  if source.info.smoothed_by_libjpeg:
    raise SmoothedInput(
        "progressive JPEG whose scans leave low-frequency coefficients not fully coded: "
        "libjpeg-turbo smooths its blocks when decoding, so its coefficients are not the image "
        "people see; it is not recompressed in the DCT domain. Encode it from its pixels "
        "instead (djpeg-cli encode --pixels, at a --quality).")
  coefficients = source.coefficients
  kept = _kept_input(source, strip)
  lossless = min(_candidates(coefficients, source, layout)
                 + ([kept] if layout.automatic else []), key=len)
  pixels = coefficients.height * coefficients.width
  image_bpp = lambda out: 8 * (len(out) - len(source.trailing)) / pixels

  def unchanged(score, goal, sampled=False):
    kind_ = "lossless" if lossless != source.data else "input"
    if kind == "bpp":
      score, goal = image_bpp(lossless), target
    return Recompressed(lossless, kind_, None, score, goal, sampled)

  if kind == "quality" and min(coefficients.height, coefficients.width) < 8:
    # SSIMULACRA 2 measures nothing under 8x8, so no requantization can be shown to meet the
    # target: the lossless rewrite, which loses nothing (target None).
    return unchanged(100.0, None)
  overhead = source.overhead()
  sampled = (pixels > perceptual.EXACT_LIMIT
             and min(coefficients.height, coefficients.width) >= 2 * perceptual.SAMPLE_TILE)
  part = lambda c: overhead * c.height * c.width / pixels
  sample = _mosaic(coefficients, perceptual.SAMPLE_TILES, perceptual.SAMPLE_TILE) if sampled \
      else coefficients
  source_ = _Source(sample, perceptual.SAMPLE_TILES) if sampled else _Source(coefficients)
  p, value, goal = _search(source_, kind, target, overhead=part(sample))
  # As in the default mode (`djpeg.perceptual`): a sample's choice is checked and corrected on
  # the whole image up to WHOLE_CHECK_LIMIT pixels; a size budget, which needs no scoring, at
  # every size. The goal then becomes the whole image's.
  if sampled and p is not None and (pixels <= perceptual.WHOLE_CHECK_LIMIT or kind == "bpp"):
    whole = _Source(coefficients, decode=kind != "bpp")
    budget = 8 if kind == "bpp" else perceptual.WHOLE_CHECK_BUDGET   # sizes need no scoring
    p, value, goal = _search(whole, kind, target, start=p, budget=budget, overhead=overhead)
    sampled = False
  elif sampled and p is not None and min(coefficients.height, coefficients.width) >= \
      perceptual.CHECK_TILE:
    # Larger images: the same short search on a larger sample (`perceptual.CHECK_TILES`).
    check = _mosaic(coefficients, perceptual.CHECK_TILES, perceptual.CHECK_TILE)
    p, value, goal = _search(_Source(check, perceptual.CHECK_TILES), kind, target, start=p,
                             budget=perceptual.WHOLE_CHECK_BUDGET, overhead=part(check))
  if p is None:
    return unchanged(math.inf if kind == "psnr" else 100.0, goal, sampled)
  chosen = value[2] if not sampled else _Source(coefficients, decode=False).trellis(p)[0]
  best = min(_candidates(chosen, source, layout), key=len)
  if len(best) >= len(lossless):
    return unchanged(math.inf if kind == "psnr" else 100.0, goal, sampled)
  score = value[0] if kind != "bpp" else image_bpp(best)
  return Recompressed(best, "lossy", p, score, goal if kind != "bpp" else target, sampled)
