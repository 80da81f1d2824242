"""The perceptual encoder: tables and a trellis for SSIMULACRA 2 and butteraugli, and the default
mode built on them (at quality Q, at least libjpeg-turbo's SSIMULACRA 2 at Q in fewer bytes,
never more).

Five choices, all fitted on the training images (`bench/perceptual_tuning.py`), never on Kodak:

* Tables: `PERCEPTUAL_TABLES`, one luma and one chroma shape scaled by IJG's quality rule
  (`tables`, a "perceptual quality" p in [1, 100], continuous). The shapes start from the
  ImageMagick tables mozjpeg uses by default and are tuned on the bytes SSIMULACRA 2 and
  butteraugli pay: a flatter luma slope, a finer DC and low band (blocking is what the metrics
  see first), coarser chroma.
* Trellis (`trellis_quantize`): mozjpeg's cost, per block
      bits + lambda * m_b * sum_k 64 (e_k / Q_k)^2,
  errors counted in quantization steps, so the tables' shape doubles as the frequency weighting,
  and an activity masking m_b = M / (1 + E_b / T): E_b is the block's mean squared AC coefficient
  (libjpeg's DCT scale), so busy blocks, where errors hide, give up more coefficients. DC is
  rounded (`djpeg.exact.trellis`).
* Samples coded for the decoder: subsampled chroma half fitted to libjpeg-turbo's upsampling
  (`CHROMA_FIT`), and luma coded for the chroma the decoder will show (`LUMA_FIT`): where the
  smoothed, quantized chroma of a colour edge would move a pixel's linear-light brightness,
  Y moves it back (`codec.luma_for_coded_chroma`, as libwebp's "sharp YUV").
* Default mode (`meet_libjpeg`): the target is the SSIMULACRA 2 of libjpeg-turbo's own file at
  Q (4:2:0, Annex K, decoded exactly as libjpeg-turbo decodes it); p is searched, from a guess
  fitted on the training images, for the coarsest tables whose trellis result still scores at
  least the target (it stops within 0.75 of p, or at a candidate within `SEARCH_SLACK` points
  of the target), each candidate scored on its exact decode. From quality `FULL_CHROMA_FROM`
  (93) 4:4:4 is tried too, and the smaller file wins. The result never scores below the
  target: if no p reaches it (a flat image the anchor codes nearly losslessly), libjpeg-turbo's
  own coefficients are returned, as they are whenever their file is no larger.
* Butteraugli's second look (images searched whole, up to `EXACT_LIMIT` pixels): SSIMULACRA 2
  averages its errors over the image, butteraugli reports the worst place, so a file that meets
  the first can still show one region clearly. The search's choice is decoded and butteraugli's
  distance map (`djpeg.butteraugli`, Debian's program bit for bit) scales every block's weight
  by (its largest distance / the median block's)^`BUTTERAUGLI_GAMMA`, within
  [1 / `BUTTERAUGLI_LIMIT`, `BUTTERAUGLI_LIMIT`]; the image is coded again at the same tables
  and the map of that file scales the weights once more (`BUTTERAUGLI_PASSES` maps in all),
  and p is searched again from the choice with the new weights, for the fewest bytes that still
  meet the target. Bits move from blocks whose errors nobody sees to the worst ones, as
  guetzli does with its own butteraugli loop (here two maps, not dozens of iterations).

Large images (over `EXACT_LIMIT` pixels: phone photos) are searched on a sample: `SAMPLE_TILES`
tiles of `SAMPLE_TILE` pixels spread over the image on the MCU grid, coded as one mosaic and
scored tile by tile (the mean of their scores, anchor and candidates alike); the whole image is
then coded once at the chosen tables, and every image size compiles the same search programs.
A sample predicts the whole image's score to within about a point either way, so images up to
`WHOLE_CHECK_LIMIT` pixels (1920x1080, 1200x1600) go on from the sample's choice to a short
search on the whole image against the whole image's target (`WHOLE_CHECK_BUDGET` candidates;
none more when the sample's choice meets it within `WHOLE_CHECK_SLACK`):
the guarantee holds for them as for small images, and an overshoot on the sample is taken back.
Above that (phone photos) the whole image is not scored: on a 12-MP image here the image's half
of SSIMULACRA 2 took 0.9 s and each candidate 1.3 s, and scoring needed about 2 GB (some 0.17
GB per megapixel: a 24-MP photo would pass the 2 GB the exporter keeps to). The same short
search runs instead on a larger sample,
`CHECK_TILES` tiles of `CHECK_TILE` pixels (a megapixel), which predicts the whole image's
choice far better than the small one; the target then holds on that sample, not necessarily to
the last digit on the whole image. (The whole image is then coded once, strip by strip, in
memory that does not grow with it: `_coded_in_strips`.) Every size above
`WHOLE_CHECK_LIMIT` compiles the same programs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from djpeg import butteraugli, codec, sampling
from djpeg.coefficients import Coefficients
from djpeg.exact import sizes, trellis as trellis_lib, write_coefficients
from djpeg.metrics import Ssimulacra2Reference, ssimulacra2_against, ssimulacra2_reference
from djpeg.tables import DEFAULT_QUALITY, concrete_quality_tables

#: The tuned base tables `(2, 8, 8)` (luma, chroma), natural order, before quality scaling
#: (p = 50 uses them as they are). Tuned from mozjpeg's default (ImageMagick) shape: the luma
#: log-slope flattened by 30%, the chroma shape 6% flatter and 40% coarser, the low band
#: (u + v <= 2) 23% finer and the DC a further 41% finer than that.
PERCEPTUAL_TABLES = np.array([
    [
     [10.85, 18.37, 18.37, 26.01, 32.73, 43.07, 57.56, 77.09],
     [18.37, 19.17, 28.00, 34.54, 40.59, 45.48, 55.39, 70.62],
     [18.37, 28.00, 31.81, 38.05, 47.85, 61.81, 80.86, 106.57],
     [26.01, 34.54, 38.05, 45.48, 55.39, 69.96, 89.98, 117.92],
     [32.73, 40.59, 47.85, 55.39, 66.62, 82.72, 104.35, 134.88],
     [43.07, 45.48, 61.81, 69.96, 82.72, 100.42, 124.72, 158.50],
     [57.56, 55.39, 80.86, 89.98, 104.35, 124.72, 152.86, 191.14],
     [77.09, 70.62, 106.57, 117.92, 134.88, 158.50, 191.14, 235.10]],
    [
     [10.95, 18.54, 18.54, 27.01, 36.81, 53.26, 78.70, 116.61],
     [18.54, 19.64, 29.83, 39.58, 49.18, 57.32, 74.72, 103.64],
     [18.54, 29.83, 35.42, 45.08, 61.36, 86.62, 124.35, 180.33],
     [27.01, 39.58, 45.08, 57.32, 74.72, 102.34, 143.58, 206.65],
     [36.81, 49.18, 61.36, 74.72, 95.81, 128.21, 175.29, 247.60],
     [53.26, 57.32, 86.62, 102.34, 128.21, 166.45, 222.83, 307.67],
     [78.70, 74.72, 124.35, 143.58, 175.29, 222.83, 293.03, 395.88],
     [116.61, 103.64, 180.33, 206.65, 247.60, 307.67, 395.88, 523.08]],
])
#: Trellis lambda (bits per unit of masked, step-normalized squared error) and masking: the
#: block weight is MASKING_WEIGHT / (1 + E_b / MASKING_THRESHOLD) (E_b in libjpeg's DCT units,
#: 8 times the orthonormal ones, squared). mozjpeg's defaults are lambda 1 and 2^16.5.
LAMBDA = 2.5324
#: Subsampled chroma fitted to the decoder's fancy upsampling, mixed with libjpeg's box average
#: in this proportion (`codec.transform_pixels`, `encode_compiled.fitted_component_plane`). On
#: 12 training images (`bench/perceptual_tuning.py chroma-fit`) half of each gained 1.2 points of
#: BD-rate in SSIMULACRA 2 and 1.4 in butteraugli over the box average; the fit alone 1.3 and 1.1.
CHROMA_FIT = 0.5
#: Luma coded for the chroma the decoder will show (`codec.luma_for_coded_chroma`): each pixel's
#: linear-light brightness, which subsampled and quantized chroma moves at colour edges, brought
#: back through Y. "rounded": the chroma as plain rounding quantizes it at the candidate's
#: tables; "trellis": as the candidate's own trellis does (one more trellis pass per candidate);
#: None: libjpeg's Y. On 16 training images (`bench/perceptual_tuning.py luma-fit`) "rounded"
#: gained 0.6 points of BD-rate in SSIMULACRA 2 and 0.9 in butteraugli, "trellis" 0.85 and 0.9.
LUMA_FIT = "rounded"
MASKING_WEIGHT = 2.0 ** (14.75 - 16.5)
MASKING_THRESHOLD = 2.0 ** 17.2143
#: Perceptual quality p that meets libjpeg-turbo's SSIMULACRA 2 at quality Q (4:2:0), median
#: over 12 training images: piecewise linear in Q through these points (the search starts there).
GUESS_QUALITIES = np.array([1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 98, 100.0])
GUESS_P = np.array([1, 4.9, 10.75, 23, 35.75, 48.75, 58, 65.75, 74.25, 78, 82.5, 86.25, 90.5,
                    97.25, 98.5, 100.0])
#: Butteraugli in the loop (`_butteraugli_weighted`): images searched whole (up to
#: `EXACT_LIMIT` pixels) are coded again with each block's weight scaled by (its butteraugli
#: distance / the median block's)^BUTTERAUGLI_GAMMA, clipped to [1 / BUTTERAUGLI_LIMIT,
#: BUTTERAUGLI_LIMIT], from the distance map of the search's choice and then of that file
#: (BUTTERAUGLI_PASSES maps), and p is searched again. On 12 training images
#: (`bench/perceptual_tuning.py butteraugli-loop`, seed 5) 2 passes at gamma 3 gained 4.0
#: points of BD-rate in butteraugli (se 0.65) and 0.4 in SSIMULACRA 2 (se 0.12); gamma 2, 2.9
#: and 0.4; gamma 4, 4.4 and 0.2; one pass at gamma 2 or 4, 2.0 and 3.0 in butteraugli. On
#: 12 other training images (seed 9) 2 passes at gamma 3 gained 4.2 (se 0.55) and 0.1 (0.21).
BUTTERAUGLI_PASSES = 2
BUTTERAUGLI_GAMMA = 3.0
BUTTERAUGLI_LIMIT = 4.0
#: Images with more pixels than this are searched on a sample of tiles (module docstring).
EXACT_LIMIT = 1 << 20
SAMPLE_TILE = 128
SAMPLE_TILES = 8
#: Sampled images up to this many pixels are checked and corrected on the whole image, with at
#: most this many whole-image candidates (module docstring).
WHOLE_CHECK_LIMIT = 2_500_000
WHOLE_CHECK_BUDGET = 4
#: Larger images are checked the same way on a larger sample (`CHECK_TILES` tiles of
#: `CHECK_TILE` pixels, a megapixel): on the 3- and 12-MP library photos (training images) the
#: small sample's p was 0.3 to 2.5 above the whole image's, the large sample's 0.1 to 0.6.
CHECK_TILE = 256
CHECK_TILES = 16
#: The sample's choice is kept when the whole image scores at most this far above its target
#: (about 1% of the bytes); otherwise the short search runs.
WHOLE_CHECK_SLACK = 0.3
#: A photo checked on a sample is coded whole at the chosen tables, and its file compared with
#: libjpeg-turbo's whole file (which wins when no larger) unless on the check sample it was
#: smaller by more than this fraction: on 5 real photos and 4 library photos (3-24 MP) at
#: qualities 50, 75 and 90 the whole file's size ratio to libjpeg-turbo's came within 0.023 of
#: the sample's. (The comparison costs libjpeg-turbo's coding and file, 0.46 s at 20 MP.)
SAMPLE_BYTES_MARGIN = 0.05
#: The default mode's search aims SEARCH_AIM above the target and stops at a candidate that meets
#: it by less than SEARCH_SLACK (SSIMULACRA 2 points). Simulated on the measured score and size
#: curves of 16 training images at qualities 30, 50, 75 and 90 (`search`'s other settings:
#: bracketing by a quarter unit of p, stopping only on the bracket): 2.9 candidates per image
#: instead of 3.6, at 0.84% above the smallest file that meets the target instead of 0.89%.
SEARCH_AIM = 0.15
SEARCH_SLACK = 0.3
#: Subsamplings the default mode tries, and the quality from which it also tries 4:4:4 (a whole
#: second search, about 1.8-2.4 times the time). Since the fitted chroma and luma made 4:2:0
#: better, on 48 training images (`bench/perceptual_tuning.py full-chroma`, seeds 11 and 13)
#: 4:4:4 made the smaller file on none at quality 88, 1 at 90 and 1 at 92 (0.01-0.03% of the
#: bytes on average), 3 at 94 (0.20%, up to 5.4% on one image), 4 at 95 and 7 at 98 (0.73%, up to
#: 12%): it is tried from 93.
SUBSAMPLINGS = ("4:2:0", "4:4:4")
FULL_CHROMA_FROM = 93
#: A sampled image's one whole pass runs over strips of about this many pixels (whole MCU
#: rows), each prepared with `STRIP_CONTEXT` rows of the image above and below it, so that its
#: memory does not grow with the image (`_coded_in_strips`).
STRIP_PIXELS = 1 << 21
STRIP_CONTEXT = 32


def tables(p: float, channels: int = 3) -> np.ndarray:
  """`(C, 8, 8)` integer tables (1..255) at perceptual quality `p` in [1, 100] (continuous)."""
  if not (isinstance(p, (int, float, np.floating)) and 1 <= p <= 100):
    raise ValueError(f"perceptual quality must be a number in [1, 100]; got {p!r}.")
  scaled = concrete_quality_tables(float(p), np.asarray(PERCEPTUAL_TABLES, np.float32))
  out = np.clip(np.floor(scaled + 0.5), 1, 255).astype(np.float64)
  return out[[0, 1, 1]][:channels]


def masking(dct) -> list[np.ndarray]:
  """Per component `(rows, cols)` block weights m_b of the activity masking (module docstring).

  Args:
    dct: per component `(rows, cols, 8, 8)` orthonormal DCT coefficients (`djpeg.transform`).
  """
  out = []
  for d in dct:
    ac = np.asarray(d, np.float32).reshape(d.shape[:2] + (64,))[..., 1:]
    energy = 64.0 * np.einsum("...k,...k->...", ac, ac, dtype=np.float64) / 63.0
    out.append(MASKING_WEIGHT / (1.0 + energy / MASKING_THRESHOLD))
  return out


def step_weights(tables_: np.ndarray) -> list[np.ndarray]:
  """Per component `(8, 8)` weights 64 / Q^2: a coefficient's squared error in step units."""
  return [64.0 / np.asarray(t, np.float64) ** 2 for t in tables_]


def sample_mosaic(pixels: np.ndarray, tiles: int = SAMPLE_TILES,
                  size: int = SAMPLE_TILE) -> np.ndarray:
  """`tiles` tiles of `size` x `size` pixels from a grid over the image, stacked into a
  `(tiles * size, size, C)` mosaic. Tile corners sit on the 16-pixel MCU grid, so the tiles'
  blocks are the image's blocks."""
  height, width = pixels.shape[:2]
  across = max(1, min(tiles, round(math.sqrt(tiles * width / height))))
  while tiles % across:
    across -= 1
  down = tiles // across
  out = []
  for i in range(down):
    for j in range(across):
      top = int(np.clip(round(((i + 0.5) * height / down - size / 2) / 16) * 16, 0, height - size))
      left = int(np.clip(round(((j + 0.5) * width / across - size / 2) / 16) * 16, 0, width - size))
      out.append(pixels[top:top + size, left:left + size])
  return np.concatenate(out, axis=0)


class PerceptualImage:
  """One image prepared for the perceptual trellis: pixels, per-subsampling DCT and masking.

  Args:
    pixels: `(H, W, C)` uint8, C = 1 or 3.
    tiles: 1, or the number of square tiles stacked in `pixels` (`sample_mosaic`): scores are
      then the mean of the tiles' scores.
  """

  def __init__(self, pixels: np.ndarray, tiles: int = 1):
    self.pixels = np.ascontiguousarray(pixels, np.uint8)
    self.height, self.width, self.channels = self.pixels.shape
    self.tiles = tiles
    self._reference = None
    self._prepared = {}
    self._ac_counts = {}           # per subsampling, the last trellis result's (`trellis`)

  @property
  def reference(self) -> Ssimulacra2Reference:
    """The image's half of the metric (`ssimulacra2_reference`: computed once, not per
    candidate), made at the first score: a large image searched on a sample is never scored
    whole, and this costs about 40 bytes per pixel."""
    if self._reference is None:
      self._reference = ssimulacra2_reference(self._split(self.pixels))
    return self._reference

  def _split(self, pixels: np.ndarray) -> np.ndarray:
    """`(H, W, C)` -> `(tiles, H / tiles, W, C)` when the image is a mosaic of tiles."""
    if self.tiles == 1:
      return pixels
    return pixels.reshape((self.tiles, -1) + pixels.shape[1:])

  def _prepare(self, subsampling: str):
    if subsampling not in self._prepared:
      dct = [np.asarray(d) for d in codec.transform_pixels(self.pixels, subsampling=subsampling,
                                                            chroma_fit=CHROMA_FIT)]
      self._prepared[subsampling] = (dct, masking(dct))
    return self._prepared[subsampling]

  def trellis(self, p: float, subsampling: str = "4:2:0", *, lmbda: float = LAMBDA,
              rounds: int = 2, blocks: list[np.ndarray] | None = None
              ) -> tuple[Coefficients, float]:
    """(coefficients, estimated baseline file bytes) of the perceptual trellis at `p`, the luma
    coded for the chroma at these tables (`LUMA_FIT`). `blocks`: per component `(rows, cols)`
    block weights instead of the activity masking (`masking`; `butteraugli_weights` scales it).

    The first call for a subsampling runs `rounds` passes from plain rounding's Huffman code
    lengths; later ones (a search's next candidates, at nearby tables) run one pass priced with
    the previous result's symbol counts, which chooses as well as two from rounding at half the
    trellis time (`bench/perceptual_tuning.py warm`: on 40 candidate pairs of training images,
    file bytes +0.001% with a spread of 0.04%, SSIMULACRA 2 the same within 0.02)."""
    dct, weights = self._prepare(subsampling)
    weights = weights if blocks is None else blocks
    steps = tables(p, self.channels)
    factors = sampling.factors_for(subsampling, self.channels)
    previous = self._ac_counts.get(subsampling)
    if LUMA_FIT == "rounded" and self.channels == 3:
      rounded = [trellis_lib.round_half_away(d / s) for d, s in zip(dct[1:], steps[1:])]
      dct = self._luma_fitted(dct, rounded, steps, subsampling)
    result = trellis_lib.trellis_quantize(dct, steps, factors, self.height, self.width,
                                          lmbda=lmbda, weights=step_weights(steps),
                                          importance=weights,
                                          rounds=rounds if previous is None else min(rounds, 1),
                                          ac_counts=previous)
    if LUMA_FIT == "trellis" and self.channels == 3:
      dct = self._luma_fitted(dct, result.components[1:], steps, subsampling)
      result = trellis_lib.trellis_quantize(dct, steps, factors, self.height, self.width,
                                            lmbda=lmbda, weights=step_weights(steps),
                                            importance=weights, rounds=1,
                                            ac_counts=result.ac_counts)
    self._ac_counts[subsampling] = result.ac_counts
    coefficients = Coefficients(tuple(result.components), steps.astype(np.float32), self.height,
                                self.width, factors)
    return coefficients, float(sizes.baseline_file_bytes(
        result.bits, num_components=self.channels, distinct_tables=sizes.distinct_tables(steps)))

  def _luma_fitted(self, dct, chroma, steps, subsampling):
    """`dct` with its luma coded for `chroma` (quantized, at `steps[1:]`; `LUMA_FIT`)."""
    luma = codec.luma_for_coded_chroma(self.pixels, chroma, steps[1:], subsampling=subsampling)
    return [luma] + list(dct[1:])

  def score(self, coefficients: Coefficients) -> float:
    """SSIMULACRA 2 of the exact decode of `coefficients` against the image: the 8-bit pixels
    any decoder shows, scored as the reference program reads them from 8-bit files."""
    decoded = codec.decode_samples(coefficients)
    scores = ssimulacra2_against(self.reference, self._split(decoded))
    return float(np.mean(np.asarray(scores)))

  def libjpeg(self, quality: float, subsampling: str = "4:2:0") -> Coefficients:
    """The coefficients libjpeg-turbo writes at IJG `quality` (Annex K tables, plain rounding)."""
    return codec.encode_pixels(self.pixels, quality=quality, subsampling=subsampling)


@dataclasses.dataclass(frozen=True)
class PerceptualResult:
  """What `meet_libjpeg` chose.

  Attributes:
    coefficients: the file's coefficients (`djpeg.dumps` writes them).
    score: SSIMULACRA 2 of their exact decode (None for an image under 8x8, which the metric
      does not measure).
    target: the SSIMULACRA 2 to reach (libjpeg-turbo's at the quality; None under 8x8).
    p: the perceptual quality of the tables (None when libjpeg-turbo's own file was kept).
    subsampling: the chosen subsampling.
    evaluations: how many candidates were coded and scored.
    sampled: whether score and target are a sample's (a large image) or the whole image's.
    file_bytes: the baseline file's bytes by `djpeg.exact.sizes` (the trellis's exact symbol
      counts and optimal tables, mean stuffing); when libjpeg-turbo's file was kept, its
      written length after the comparison that kept it, else None.
    libjpeg_bytes: the bytes of libjpeg-turbo's file (baseline, optimized Huffman tables) on
      the sample a large photo was checked on, which predicts whether the whole file could be
      larger than libjpeg-turbo's (`SAMPLE_BYTES_MARGIN`); None when not measured.
  """
  coefficients: Coefficients
  score: float | None
  target: float | None
  p: float | None
  subsampling: str
  evaluations: int
  sampled: bool = False
  file_bytes: float | None = None
  libjpeg_bytes: float | None = None


def guess(quality: float) -> float:
  """The perceptual quality p that meets libjpeg-turbo's SSIMULACRA 2 at `quality` on a typical
  image (fitted on the training images)."""
  return float(np.interp(quality, GUESS_QUALITIES, GUESS_P))


def ssimulacra2_slope(p: float) -> float:
  """Typical SSIMULACRA 2 points gained per unit of perceptual quality p near `p` (training
  images): the first step of the search."""
  return 0.5 if p < 80 else 0.9


def search(evaluate, target: float, p0: float, *, slope=ssimulacra2_slope,
           tolerance: float = 0.75, budget: int = 8, prefer: str = "fewest",
           aim: float | None = None, slack: float = 0.0):
  """The smallest p in [1, 100] whose score meets `target`, by a safeguarded secant search.

  Scores rise with p (finer tables). From `p0` the first step assumes the typical slope
  (`slope(p)`, score per unit of p). It aims past the target by a quarter unit of p, to
  bracket it; with `aim` (score units) it aims at `target + aim` instead, to meet it at once.
  Later steps interpolate between the closest points on each side of the target (the secant,
  aimed the same way, kept inside the bracket and at least `tolerance / 2` from its ends;
  without `aim`, a bisection instead when the last two candidates fell on the same side).
  While one side is still missing they step outwards: by doubling (at least a unit), or with
  `aim`, by the first step's slope and then the secant through the two points nearest that
  side (at least a quarter unit of p: a unit is 0.5-0.9 points, more than the `slack`). It
  stops when the bracket is narrower than `tolerance`, when a candidate meets the target by
  less than `slack` (score units; 0: never), or after `budget` evaluations. `evaluate(p) ->
  (score, bytes, payload)`. Returns (p, evaluation, count) of the candidate with the fewest
  bytes that meets the target (`prefer="most"`: the most bytes, for a size budget), or (None,
  None, count) when none does (even at p = 100).
  """
  seen = {}

  def at(p):
    p = round(float(min(max(p, 1.0), 100.0)), 3)
    if p not in seen:
      seen[p] = evaluate(p)
    return seen[p][0]

  def close_enough():
    return slack > 0 and any(target <= v[0] < target + slack for v in seen.values())

  goal = target if aim is None else target + aim
  least_step = 1.0 if aim is None else _MIN_STEP
  p = p0
  s = at(p)
  step = (goal - s) / slope(p) + (0.0 if aim is not None else 0.25 if s < target else -0.25)
  p_next = p + step
  while len(seen) < budget and not close_enough():
    ok = [q for q, v in seen.items() if v[0] >= target]
    miss = [q for q, v in seen.items() if v[0] < target]
    lo, hi = (max(miss) if miss else None), (min(ok) if ok else None)
    if lo is not None and hi is not None:
      if hi - lo < tolerance:
        break
      s_lo, s_hi = seen[lo][0], seen[hi][0]
      if math.isfinite(s_lo) and math.isfinite(s_hi):
        secant = lo + (goal - s_lo) * (hi - lo) / max(s_hi - s_lo, 1e-6)
      else:                                  # e.g. PSNR of a lossless candidate: bisect
        secant = 0.5 * (lo + hi)
      # At least an eighth of the bracket from either end, so that it always shrinks.
      margin = max(tolerance / 2, (hi - lo) / 8)
      p_next = min(max(secant, lo + margin), hi - margin)
      # The bracketing search (no aim) bisects when its last two candidates fell on the same
      # side: on a curved score the secant then creeps from one end (a size budget from a far
      # start had used up its candidates an eighth of the bracket at a time).
      last = list(seen)[-2:]
      if aim is None and len(last) == 2 and (seen[last[0]][0] >= target) == (
          seen[last[1]][0] >= target):
        p_next = 0.5 * (lo + hi)
    elif hi is None:                       # everything misses: finer
      if lo >= 100.0:
        break
      if aim is not None and len(seen) >= 2:
        p_next = _extrapolated(seen, sorted(seen)[-2:], goal)
      p_next = max(p_next, lo + least_step)
    elif hi <= 1.0:                        # even the coarsest meets it
      break
    else:                                  # everything meets: coarser
      if aim is not None and len(seen) >= 2:
        p_next = _extrapolated(seen, sorted(seen)[:2], goal)
      p_next = min(p_next, hi - least_step)
    at(p_next)
    known = sorted(seen)
    if aim is None:                        # doubling outwards while one side is missing
      p_next = p_next + 2 * (p_next - known[0] if hi is None else p_next - known[-1])
  meeting = [(q, v) for q, v in seen.items() if v[0] >= target]
  if not meeting:
    return None, None, len(seen)
  pick = max if prefer == "most" else min
  q, value = pick(meeting, key=lambda item: item[1][1])    # fewest (or most) bytes
  return q, value, len(seen)


#: With an aim, the least step outwards (units of p). Chosen by simulating the search on measured
#: score curves of 32 training images at q30-q90 (`bench/perceptual_tuning.py`'s images): from
#: the one unit the bracketing search steps, 2.75 -> 2.53 candidates per image at 0.94% above
#: the smallest meeting file on the held-out half (2.88 -> 2.63, 0.84 -> 0.77% on the other).
_MIN_STEP = 0.25


def _extrapolated(seen: dict, pair: list[float], goal: float) -> float:
  """The p where the line through two evaluated points reaches `goal` (their slope taken as
  at least 0.2 score per unit of p, so that a flat stretch cannot send it far)."""
  a, b = pair
  slope = max((seen[b][0] - seen[a][0]) / (b - a), 0.2)
  near = b if seen[b][0] < goal else a
  return near + (goal - seen[near][0]) / slope


def meet_libjpeg(pixels: np.ndarray, quality: float = DEFAULT_QUALITY, *,
                 subsamplings=None, second_look: bool = True) -> PerceptualResult:
  """The default mode: at least libjpeg-turbo's SSIMULACRA 2 at `quality`, in as few bytes as
  the perceptual tables and trellis make (module docstring).

  Args:
    pixels: `(H, W, C)` uint8, C = 1 or 3. Below 8x8, where SSIMULACRA 2 is not defined, the
      result is libjpeg-turbo's own file at `quality` (score and target None).
    quality: IJG quality 1..100 of the libjpeg-turbo file to match.
    subsamplings: the subsamplings to try (None: 4:2:0, and 4:4:4 too from quality
      `FULL_CHROMA_FROM`; gray images have one). When they leave 4:2:0 out and none of them
      meets the target, the result is libjpeg-turbo's own file at `quality` in the first of
      them (its own score, which may then be below the target), not the 4:2:0 anchor.
    second_look: butteraugli's second look at images searched whole (module docstring;
      False: several times faster on them, for a higher butteraugli distance).
  """
  pixels = np.asarray(pixels)
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
    raise ValueError(f"pixels must be uint8 (H, W, C) with C = 1 or 3; got {pixels.dtype} "
                     f"{pixels.shape}.")
  if not 1 <= quality <= 100:
    raise ValueError(f"quality must be in [1, 100]; got {quality!r}.")
  if min(pixels.shape[:2]) < 8:
    # SSIMULACRA 2 measures nothing smaller (nor does the reference program): libjpeg-turbo's
    # own file, which meets the mode's target by definition, rather than no file at all.
    subsampling = subsamplings[0] if subsamplings and len(subsamplings) == 1 else "4:2:0"
    return PerceptualResult(codec.encode_pixels(pixels, quality=quality, subsampling=subsampling),
                            None, None, None, subsampling, 0)
  full = PerceptualImage(pixels)
  sampled = (pixels.shape[0] * pixels.shape[1] > EXACT_LIMIT
             and min(pixels.shape[:2]) >= SAMPLE_TILE)
  image = PerceptualImage(sample_mosaic(pixels), SAMPLE_TILES) if sampled else full
  anchor = image.libjpeg(quality)
  target = image.score(anchor)
  if image.channels == 1:
    subsamplings = ("4:2:0",)
  elif subsamplings is None:
    subsamplings = SUBSAMPLINGS if quality >= FULL_CHROMA_FROM else ("4:2:0",)
  # libjpeg-turbo's own file, the fallback, in a subsampling the caller allows.
  fallback = "4:2:0" if "4:2:0" in subsamplings else subsamplings[0]
  best, best_bytes, evaluations = None, math.inf, 0
  curves = {}                          # per subsampling, the (p, score) points seen
  for subsampling in subsamplings:
    curve = curves.setdefault(subsampling, [])

    def evaluate(p, subsampling=subsampling, curve=curve):
      coefficients, size = image.trellis(p, subsampling)
      curve.append((p, image.score(coefficients)))
      return curve[-1][1], size, coefficients
    start = guess(quality) if best is None else best.p
    p, value, count = search(evaluate, target, start, aim=SEARCH_AIM, slack=SEARCH_SLACK)
    evaluations += count
    if p is not None and value[1] < best_bytes:
      best = PerceptualResult(value[2], value[0], target, p, subsampling, 0,
                              file_bytes=value[1])
      best_bytes = value[1]
  slope = _local_slope(curves[best.subsampling], best.p) if best is not None else None
  if sampled and pixels.shape[0] * pixels.shape[1] <= WHOLE_CHECK_LIMIT:
    return _checked(full, quality, best, evaluations, slope, fallback)
  checked_on_sample = sampled and best is not None and min(pixels.shape[:2]) >= CHECK_TILE
  if checked_on_sample:
    check = PerceptualImage(sample_mosaic(pixels, CHECK_TILES, CHECK_TILE), CHECK_TILES)
    checked = _checked(check, quality, best, evaluations, slope, fallback)
    evaluations, target = checked.evaluations, checked.target
    best = checked if checked.p is not None else None
  if best is None:
    if fallback != "4:2:0":
      coefficients = full.libjpeg(quality, fallback)
      score = None if sampled else full.score(coefficients)
      return PerceptualResult(coefficients, score, target, None, fallback, evaluations, sampled)
    coefficients = full.libjpeg(quality) if sampled else anchor
    return PerceptualResult(coefficients, target, target, None, "4:2:0", evaluations, sampled)
  if sampled:        # the whole image, once, at the tables chosen on the sample
    if LUMA_FIT == "trellis":          # a variant for the benchmarks: the whole image at once
      coefficients, size = full.trellis(best.p, best.subsampling)
    else:
      counts = (check if checked_on_sample else image)._ac_counts.get(best.subsampling)
      coefficients, size = _coded_in_strips(pixels, best.p, best.subsampling, counts)
    result = dataclasses.replace(best, coefficients=coefficients, file_bytes=size,
                                 evaluations=evaluations, sampled=True)
    if fallback != "4:2:0" or (best.libjpeg_bytes is not None and best.file_bytes
                               < (1 - SAMPLE_BYTES_MARGIN) * best.libjpeg_bytes):
      return result
    # The sample chose the tables, but the file is the whole image's: it is compared with
    # libjpeg-turbo's whole file, which meets the target by definition (on real photos the
    # sample can ask for finer tables than the image needs, and the file came out larger).
    return _no_larger_than_libjpeg(result, full.libjpeg(quality), whole=True)
  best = dataclasses.replace(best, evaluations=evaluations)
  if second_look and BUTTERAUGLI_PASSES and best.p is not None:
    best = _butteraugli_weighted(image, best)
  if fallback != "4:2:0":              # the anchor's 4:2:0 is not the caller's choice
    return best
  return _no_larger_than_libjpeg(best, anchor)


def butteraugli_weights(blocks: list[np.ndarray], distances: np.ndarray, factors,
                        gamma: float | None = None, limit: float | None = None
                        ) -> list[np.ndarray]:
  """Block weights `blocks` (per component `(rows, cols)`) scaled where butteraugli sees the
  errors: each block's weight times (d_b / median d)^gamma, clipped to [1 / limit, limit], with
  d_b the largest of the `(H, W)` butteraugli `distances` over the block's pixels (8 x 8 at full
  resolution, 16 x 16 for 4:2:0 chroma; the map edge-padded over partial blocks).
  `BUTTERAUGLI_GAMMA` and `BUTTERAUGLI_LIMIT` by default."""
  gamma = BUTTERAUGLI_GAMMA if gamma is None else gamma
  limit = BUTTERAUGLI_LIMIT if limit is None else limit
  # The program's map has NaNs on images 8 pixels across (a division by zero it skips): no
  # weight is taken from them.
  distances = np.nan_to_num(np.asarray(distances, np.float64), nan=0.0)
  out = []
  for c, weights in enumerate(blocks):
    rh, rv = sampling.ratios(factors, c)
    rows, cols = weights.shape
    padded = np.pad(distances, ((0, max(rows * 8 * rv - distances.shape[0], 0)),
                                (0, max(cols * 8 * rh - distances.shape[1], 0))), mode="edge")
    per_block = padded[:rows * 8 * rv, :cols * 8 * rh].reshape(
        rows, 8 * rv, cols, 8 * rh).max(axis=(1, 3))
    middle = np.median(per_block)
    if not middle > 0:                 # no visible error anywhere: nothing to move
      out.append(weights)
      continue
    out.append(weights * np.clip((per_block / middle) ** gamma, 1.0 / limit, limit))
  return out


def _butteraugli_weighted(image: PerceptualImage, best: PerceptualResult) -> PerceptualResult:
  """`best` (a whole image's search result) coded again with its blocks weighted where
  butteraugli finds the errors (`butteraugli_weights` of its decode's distance map, then of
  the next pass's, `BUTTERAUGLI_PASSES` maps in all), and p searched again from `best.p` for
  the fewest bytes that still meet `best.target` (module docstring). `best` itself when no
  candidate with the new weights meets the target."""
  subsampling = best.subsampling
  factors = sampling.factors_for(subsampling, image.channels)
  blocks = image._prepare(subsampling)[1]
  reference = butteraugli.ButteraugliReference(image.pixels)
  coefficients = best.coefficients
  for n in range(BUTTERAUGLI_PASSES):
    distances = butteraugli.butteraugli_diffmap(reference, codec.decode_samples(coefficients))
    blocks = butteraugli_weights(blocks, distances, factors)
    if n + 1 < BUTTERAUGLI_PASSES:
      coefficients = image.trellis(best.p, subsampling, blocks=blocks)[0]

  def evaluate(p):
    coefficients, size = image.trellis(p, subsampling, blocks=blocks)
    return image.score(coefficients), size, coefficients
  p, value, count = search(evaluate, best.target, best.p, aim=SEARCH_AIM, slack=SEARCH_SLACK)
  evaluations = best.evaluations + count
  if p is None:
    return dataclasses.replace(best, evaluations=evaluations)
  return dataclasses.replace(best, coefficients=value[2], score=value[0], p=p,
                             evaluations=evaluations, file_bytes=value[1])


def _coded_in_strips(pixels: np.ndarray, p: float, subsampling: str,
                     ac_counts: np.ndarray | None) -> tuple[Coefficients, float]:
  """`PerceptualImage(pixels).trellis(p, subsampling)` strip by strip: (coefficients, estimated
  baseline file bytes), in memory bounded by the strip, not the image.

  Every step of the trellis path is local except two: the chroma fit solves along whole
  columns, and the decoder's upsampling of the coded chroma reads the next chroma row. Each
  strip (whole MCU rows, about `STRIP_PIXELS` pixels) is therefore transformed and luma-fitted
  with `STRIP_CONTEXT` rows of the image above and below it, and only its own blocks go to the
  trellis. The fit's reach falls off fast: with 16 rows of context one chroma sample in five
  million came out otherwise than in one piece (a 12-MP library photo), with 32 none. The
  trellis's choices are per block once its prices are fixed. The trellis prices
  its symbols with `ac_counts` (a sample's result at nearby tables: one pass, as a search's later
  candidates; None: two passes from plain rounding's, per strip)."""
  height, width, channels = pixels.shape
  factors = sampling.factors_for(subsampling, channels)
  v_max = max(v for _, v in factors)
  mcu = 8 * v_max
  rows = max(mcu, STRIP_PIXELS // width // mcu * mcu)
  context = -(-STRIP_CONTEXT // mcu) * mcu
  steps = tables(p, channels)
  weights = step_weights(steps)
  components = tuple(np.empty(sampling.component_blocks(height, width, factors, c) + (8, 8),
                              np.int16) for c in range(channels))
  counts = {}
  for top in range(0, height, rows):
    bottom = min(height, top + rows)
    first, last = max(0, top - context), min(height, bottom + context)
    region = pixels[first:last]
    dct = [np.asarray(d) for d in codec.transform_pixels(region, subsampling=subsampling,
                                                          chroma_fit=CHROMA_FIT)]
    importance = masking(dct)
    if LUMA_FIT == "rounded" and channels == 3:
      rounded = [trellis_lib.round_half_away(d / s) for d, s in zip(dct[1:], steps[1:])]
      dct[0] = codec.luma_for_coded_chroma(region, rounded, steps[1:], subsampling=subsampling)
    own, into = [], []        # each component's block rows: in the region, in the image
    for c, (_, v) in enumerate(factors):
      count = sampling.component_blocks(bottom - top, width, factors, c)[0]
      own.append(slice((top - first) * v // mcu, (top - first) * v // mcu + count))
      into.append(slice(top * v // mcu, top * v // mcu + count))
    result = trellis_lib.trellis_quantize(
        [d[s] for d, s in zip(dct, own)], steps, factors, bottom - top, width, lmbda=LAMBDA,
        weights=weights, importance=[m[s] for m, s in zip(importance, own)],
        rounds=2 if ac_counts is None else 1, ac_counts=ac_counts)
    for whole, part, rows_into in zip(components, result.components, into):
      whole[rows_into] = part
    for key, value in result.counts.items():
      counts[key] = counts.get(key, 0) + np.asarray(value, np.int64)
  coefficients = Coefficients(components, steps.astype(np.float32), height, width, factors)
  return coefficients, float(sizes.baseline_file_bytes(
      sizes.coded_bits(counts), num_components=channels,
      distinct_tables=sizes.distinct_tables(steps)))


def _no_larger_than_libjpeg(result: PerceptualResult, anchor: Coefficients, *,
                            whole: bool = False) -> PerceptualResult:
  """`result`, or libjpeg-turbo's own coefficients `anchor` (the whole image's, at the target's
  quality) when their baseline file is no larger than `result`'s estimate: they meet the target
  by definition. (It happens on tiny images at high qualities, and on large photos whose sample
  asked for finer tables than the whole image needs.) A sampled result is compared only when
  `whole` says that its coefficients are the whole image's (a check sample's are not). When
  libjpeg-turbo's file is kept, `file_bytes` is its written length."""
  if result.p is None or result.file_bytes is None or (result.sampled and not whole):
    return result
  written = len(write_coefficients(anchor, optimize=True)[0])
  if written <= result.file_bytes:
    return dataclasses.replace(result, coefficients=anchor, score=result.target, p=None,
                               subsampling="4:2:0", file_bytes=float(written))
  return result


def _local_slope(curve: list[tuple[float, float]], p: float) -> float | None:
  """The score's slope per unit of p near `p` on a search's points: the secant through `p`
  and the nearest other point (at least 0.2, as `_extrapolated` takes it); None with one point."""
  others = [(q, v) for q, v in curve if q != p]
  at_p = [v for q, v in curve if q == p]
  if not others or not at_p:
    return None
  q, v = min(others, key=lambda item: abs(item[0] - p))
  return max((at_p[0] - v) / (p - q), 0.2)


def _checked(image: PerceptualImage, quality: float, from_sample: PerceptualResult | None,
             evaluations: int, slope: float | None = None,
             fallback: str = "4:2:0") -> PerceptualResult:
  """The sample's choice checked on `image` (the whole image, or a larger sample) and corrected
  by a short search there: the target becomes `image`'s (libjpeg-turbo's file at `quality`),
  the search starts at the sample's p (its subsampling kept), aimed as the main search is
  (`SEARCH_AIM`, `SEARCH_SLACK`) with the sample's `slope` near p (score per unit of p; None:
  the typical one), and takes the fewest bytes that meet it; when none of `WHOLE_CHECK_BUDGET`
  candidates does, libjpeg-turbo's own coefficients (p None; in the `fallback` subsampling,
  `meet_libjpeg`'s). `sampled` says whether `image` is a sample."""
  sampled = image.tiles > 1
  anchor = image.libjpeg(quality)
  target = image.score(anchor)

  def libjpeg_file(evaluations):
    if fallback == "4:2:0":
      return PerceptualResult(anchor, target, target, None, "4:2:0", evaluations, sampled)
    own = image.libjpeg(quality, fallback)
    return PerceptualResult(own, image.score(own), target, None, fallback, evaluations, sampled)

  def no_larger(result):
    if sampled:        # its file is the sample's: `meet_libjpeg` compares the whole image's
      return dataclasses.replace(result, libjpeg_bytes=float(len(write_coefficients(
          anchor, optimize=True)[0])))
    return _no_larger_than_libjpeg(result, anchor) if fallback == "4:2:0" else result

  if from_sample is None:             # the sample found nothing better than libjpeg-turbo's file
    return libjpeg_file(evaluations)
  subsampling = from_sample.subsampling

  seen = {}

  def evaluate(p):
    if p not in seen:
      coefficients, size = image.trellis(p, subsampling)
      seen[p] = (image.score(coefficients), size, coefficients)
    return seen[p]
  start = round(float(from_sample.p), 3)
  first = evaluate(start)
  if target <= first[0] < target + WHOLE_CHECK_SLACK:       # the sample was right: done
    return no_larger(PerceptualResult(first[2], first[0], target, start, subsampling,
                                      evaluations + 1, sampled, file_bytes=first[1]))
  p, value, _ = search(evaluate, target, start, budget=WHOLE_CHECK_BUDGET, tolerance=1.0,
                       slope=ssimulacra2_slope if slope is None else (lambda _: slope),
                       aim=SEARCH_AIM, slack=SEARCH_SLACK)
  evaluations += len(seen)
  if p is None:
    return libjpeg_file(evaluations)
  return no_larger(PerceptualResult(value[2], value[0], target, p, subsampling, evaluations,
                                    sampled, file_bytes=value[1]))
