"""The complete encoder: quantization tables, trellis quantization, regions of interest.

`compress(image, ...)` chooses the integer coefficients of a standard JPEG file; `djpeg.dumps`
or `djpeg.save` then write them, baseline or progressive. It has three modes:

* "perceptual" (the default, for `quality` alone): a file at least as good in SSIMULACRA 2 as
  libjpeg-turbo's at that quality, in as few bytes as djpeg can make (`djpeg.perceptual`:
  tables and a trellis tuned for SSIMULACRA 2 and butteraugli, the subsampling chosen per image);
* "libjpeg": libjpeg-turbo's own coefficients at the quality (Annex K tables, plain rounding);
* "mse": the rate-distortion machinery below, for PSNR (weighted MSE) and size targets; what a
  `bpp`, `psnr` or `lmbda` target, given tables or a saliency map select.

In the "mse" mode three choices are made:

1. tables: IJG `quality` (or given `tables`), or tables optimized for this image
   (`djpeg.optimize_tables`) for a `bpp`, `psnr` or `lmbda` target;
2. coefficients: trellis quantization (`djpeg.exact.trellis`): per block, the values that
   minimise real bits + lambda * distortion, with distortion the DCT-domain model of RGB MSE.
   Lambda is the tables' own rate-distortion slope (`table_slope`) unless given;
3. targets: the trellis trades distortion for bits, so with a `bpp` or `psnr` target the
   optimized tables are scaled (finer or coarser, with the trellis lambda scaled by 1 / s^2 to
   keep its strength relative to the steps) until the trellis result meets the target, checked
   on the real file size or the decoded image.

A region of interest (`saliency`: a map, a mask file, or "auto") weighs each block's distortion
(`djpeg.roi.block_weights`): blocks that matter keep more coefficients, the rest give up bits.
With a map, the table optimization weighs its distortion the same way, and PSNR targets and
lambda refer to the importance-weighted MSE.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from djpeg import checks, codec, memory, perceptual, roi, sampling
from djpeg.coefficients import Coefficients
from djpeg.distortion import decoded_mse, rgb_mse_weights
from djpeg.exact import sizes, trellis as trellis_lib, write_coefficients
from djpeg.optimize import optimize_tables
from djpeg.tables import DEFAULT_QUALITY


MODES = ("perceptual", "mse", "libjpeg")


@dataclasses.dataclass(frozen=True)
class Compressed:
  """The result of `compress`.

  Attributes:
    mode: the mode that chose the coefficients ("perceptual", "mse" or "libjpeg").
    coefficients: `Coefficients` with int32 components, ready for `djpeg.dumps` / `djpeg.save`.
    tables: `(C, 8, 8)` int quantization tables.
    lmbda: the trellis lambda in bits per pixel per unit of (weighted) RGB MSE; None without
      the trellis.
    bits_per_pixel: bits per pixel of the baseline file (exact symbol counts and headers, mean
      byte stuffing).
    psnr: RGB PSNR (dB) of the decoded image, libjpeg-turbo's decoder (exact); None when not
      measured.
    weighted_psnr: with a saliency map, the PSNR of the importance-weighted MSE; else None.
    saliency: the `(H, W)` map used, or None.
    ssimulacra2: the perceptual mode: SSIMULACRA 2 of the decoded file; else None.
    target_ssimulacra2: the perceptual mode: libjpeg-turbo's SSIMULACRA 2 at the quality.
  """
  mode: str
  coefficients: Coefficients
  tables: np.ndarray
  lmbda: float | None
  bits_per_pixel: float
  psnr: float | None
  weighted_psnr: float | None
  saliency: np.ndarray | None
  ssimulacra2: float | None = None
  target_ssimulacra2: float | None = None


def _as_image(image, as_float: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
  """(float32 image in [0, 1], the uint8 pixels when given as such); with `as_float=False`,
  uint8 pixels come back without the float copy (None in its place)."""
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.dtype == np.uint8:
    if a.ndim != 3 or a.shape[-1] not in (1, 3) or min(a.shape[:2]) < 1:
      raise ValueError(f"compress takes one image (H, W, C) with C = 1 or 3; got shape {a.shape}.")
    return (a.astype(np.float32) / 255 if as_float else None), a
  shape = checks.check_images(a)
  if len(shape) != 3:
    raise ValueError(f"compress takes one image (H, W, C); got shape {shape}.")
  return a.astype(np.float32), None


def _file_bytes(result: trellis_lib.TrellisResult, tables) -> float:
  """Baseline file size for a trellis result (`djpeg.exact.sizes`): frame, SOS, and the
  trellis's exact bits (entropy-coded data and DHT segments) with mean stuffing."""
  num = len(tables)
  return sizes.baseline_file_bytes(result.bits, num_components=num,
                                   distinct_tables=sizes.distinct_tables(tables))


class TrellisImage:
  """One image prepared for the trellis: its DCT, frequency weights and block weights.

  Args:
    image: `(H, W, C)` float32 in [0, 1].
    subsampling: "4:2:0", "4:2:2" or "4:4:4" (ignored for gray).
    weights_map: optional `(H, W)` per-pixel importance (`djpeg.roi.pixel_weights`).
    pixels: the same image as uint8, when the caller has it (the 8-bit path moves less data).
  """

  def __init__(self, image, subsampling, weights_map=None, pixels=None):
    height, width, channels = image.shape
    self.height, self.width = height, width
    self.num_pixels = height * width
    self.factors = sampling.factors_for(subsampling, channels)
    if pixels is not None:
      dct = codec.transform_pixels(pixels, subsampling=subsampling)
    else:
      dct = codec.transform(image, subsampling=subsampling)
    self.dct = [np.asarray(d) for d in dct]
    # Per-pixel MSE weights times the pixel count: distortion per image, like bits per image.
    self.weights = [np.asarray(w, np.float64) * self.num_pixels
                    for w in rgb_mse_weights(self.factors, self.num_pixels)]
    self.blocks = None if weights_map is None else [
        np.asarray(b, np.float64) for b in roi.block_means(weights_map, height, width, self.factors)]

  def slope(self, tables) -> float:
    """The tables' slope in bits per pixel per unit of MSE (`table_slope`, per pixel)."""
    return trellis_lib.table_slope(self.dct, tables, self.factors, self.height, self.width,
                                   weights=self.weights, importance=self.blocks)

  def trellis(self, tables, lmbda, rounds) -> trellis_lib.TrellisResult:
    # lmbda is per pixel: bits + lmbda * (N * MSE) = N * (bpp + lmbda * MSE).
    return trellis_lib.trellis_quantize(self.dct, tables, self.factors, self.height, self.width,
                                        lmbda=lmbda, weights=self.weights,
                                        importance=self.blocks, rounds=rounds)

  def rounded(self, tables) -> trellis_lib.TrellisResult:
    """Plain rounding with these tables, as libjpeg quantizes (the trellis's zeroth round); its
    distortion is weighted by the blocks' importance, as the trellis's is."""
    return trellis_lib.trellis_quantize(self.dct, tables, self.factors, self.height, self.width,
                                        lmbda=0.0, weights=self.weights, importance=self.blocks,
                                        rounds=0)

  def coefficients(self, tables, chosen: trellis_lib.TrellisResult) -> Coefficients:
    """The `Coefficients` of a trellis result with these `tables`."""
    return Coefficients(tuple(chosen.components), np.asarray(tables, np.float32), self.height,
                        self.width, self.factors)


def _scaled(tables, s):
  return np.clip(np.floor(np.asarray(tables, np.float64) * s + 0.5), 1, 255)


def _search(evaluate, kind, target):
  """Scale s of the tables for which `evaluate(s)` -> (bpp, mse) meets the target.

  kind "psnr" (target: an MSE): the largest s whose MSE is at most the target (fewest bits);
  kind "bpp": the smallest s whose bpp is at most the target (best quality). Brackets the
  target by factors of 1.25 and bisects in log s; returns (s, meets).
  """
  def meets(point):
    bpp, mse = point
    return mse <= target if kind == "psnr" else bpp <= target

  def better(a, b):          # among points that meet the target
    return a[1][0] < b[1][0] if kind == "psnr" else a[1][1] < b[1][1]

  seen = {}

  def at(log_s):
    if log_s not in seen:
      seen[log_s] = evaluate(math.exp(log_s))
    return seen[log_s]

  step = math.log(1.25)
  # Coarser scales (larger s) meet a bpp target and miss an MSE target.
  coarser_meets = kind == "bpp"
  ok = meets(at(0.0))
  direction = (1 if ok else -1) if not coarser_meets else (-1 if ok else 1)
  lo = hi = 0.0
  for i in range(1, 12):
    log_s = direction * step * i
    if abs(log_s) > math.log(256):
      break
    if meets(at(log_s)) != ok:
      lo, hi = sorted((log_s, log_s - direction * step))
      break
  else:
    lo = hi = None
  if lo is not None:
    for _ in range(5):
      mid = 0.5 * (lo + hi)
      # Keep the half that still straddles the target.
      if meets(at(mid)) == meets(at(lo)):
        lo = mid
      else:
        hi = mid
  good = [(k, v) for k, v in seen.items() if meets(v)]
  if not good:
    nearest = min(seen.items(), key=lambda kv: (kv[1][1] if kind == "psnr" else kv[1][0]))
    return math.exp(nearest[0]), False
  best = good[0]
  for item in good[1:]:
    if better(item, best):
      best = item
  return math.exp(best[0]), True


def compress(image, *, quality=None, tables=None, bpp: float | None = None,
             psnr: float | None = None, lmbda: float | None = None, mode: str | None = None,
             trellis: bool = True, saliency=None, background: float | None = None,
             subsampling: str | None = None, rounds: int = 2, steps: int = 100,
             optimization=None, measure: bool = True, fast: bool = False,
             progress=None) -> Compressed:
  """Chooses tables and coefficients for one image's JPEG file.

  With `quality` alone (or nothing: `DEFAULT_QUALITY`, 75) the perceptual mode: at least
  libjpeg-turbo's SSIMULACRA 2 at that quality, in as few bytes as djpeg can make
  (`djpeg.perceptual.meet_libjpeg`). `mode="libjpeg"` gives libjpeg-turbo's own coefficients.
  Otherwise ("mse"): tables from `quality` (IJG scaling of the Annex K tables) or `tables`; or,
  with a target `bpp` (bits per pixel of the file), `psnr` (dB) or `lmbda` alone, tables
  optimized for this image (`djpeg.optimize_tables`); then the trellis for RGB MSE.

  Args:
    image: `(H, W, C)` float in [0, 1] or uint8, C = 3 or 1.
    quality, tables: as for `djpeg.encode` (one image).
    mode: "perceptual", "mse" or "libjpeg" (module docstring); None chooses "perceptual" when
      nothing but `quality` is given and "mse" otherwise.
    bpp, psnr: targets met by the final file (checked on the real size / decoded image).
    lmbda: the trade-off in bits per pixel per unit of RGB MSE (8-bit scale): alone, the
      tables are optimized for it; with `quality` or `tables` it is the trellis lambda. By
      default the trellis uses the tables' own slope.
    trellis: trellis quantization (default); False rounds as libjpeg does.
    saliency: region of interest (`djpeg.roi.saliency_map`): an `(H, W)` map in [0, 1], a mask
      image path, a callable, "auto" (the learned network) or "ms-ssim" (measured on the image,
      `djpeg.roi.msssim_map`). Needs the trellis.
    background: weight of the least important pixels relative to the most important; None
      (default): the saliency model's own for "auto", 0.001 for "ms-ssim"
      (`djpeg.roi.default_background`),
      `djpeg.roi.BACKGROUND` (0.1) for other maps.
    subsampling: "4:2:0", "4:2:2" or "4:4:4"; None: chosen per image in the perceptual mode,
      "4:2:0" otherwise.
    rounds: trellis rounds (each re-prices symbols with the previous result's Huffman tables).
    steps: gradient steps of the table optimization.
    optimization: a `TableOptimization` already run for this image and target (same
      subsampling and map): its tables are the start, and the optimization is not run again.
    measure: decode the result to report its PSNR (False: `psnr` is None; saves a decode).
    fast: the perceptual mode without butteraugli's second look (`djpeg.perceptual`): on
      images up to a megapixel several times faster, for a file that meets the same target
      with a higher butteraugli distance.
    progress: optional callable(str) for progress messages.
  Returns:
    `Compressed`: `djpeg.dumps(result.coefficients, progressive=...)` is the file.
  Raises:
    ValueError: conflicting or invalid options, a bad image or saliency map.
    NotImplementedError: saliency="auto" without a saliency model installed.
  """
  say = progress or (lambda message: None)
  checks.check_choice("mode", mode, MODES + (None,))
  custom = [name for name, value in (("tables", tables), ("bpp", bpp), ("psnr", psnr),
                                     ("lmbda", lmbda), ("saliency", saliency)) if value is not None]
  if mode is None:
    mode = "mse" if custom else "perceptual"
  # Settings of the MSE mode that another mode would silently ignore.
  custom += [name for name, given in (
      ("trellis", trellis is not True), ("background", background is not None),
      ("rounds", rounds != 2), ("steps", steps != 100), ("optimization", optimization is not None))
      if given and mode != "mse"]
  if fast and mode != "perceptual":
    raise ValueError(f"fast applies to the perceptual mode (its butteraugli look); mode is "
                     f"{mode!r}.")
  if background is not None and saliency is None:
    raise ValueError("background weighs the unimportant pixels of a saliency map: it needs "
                     "saliency=.")
  # 8-bit pixels are worked on as they are (the transform, the trellis, the measured error):
  # a float copy (12 bytes a pixel, 288 MB for a 24-MP photo) only where a saliency map is
  # computed from the image.
  image, pixels = _as_image(image, as_float=mode == "mse" and saliency is not None)
  if image is None:
    image = pixels
  if mode != "mse":
    if custom:
      raise ValueError(f"mode={mode!r} takes only a quality; {', '.join(custom)} need "
                       "mode='mse'.")
    quality = DEFAULT_QUALITY if quality is None else quality
    if not checks.is_real_number(quality):     # one image, one quality
      raise ValueError(f"quality must be a number in [1, 100]; got {quality!r}.")
    checks.concrete_range("quality", quality, 1, 100)
    if pixels is None:
      pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if mode == "libjpeg":
      coefficients = codec.encode_pixels(pixels, quality=quality,
                                         subsampling=subsampling or "4:2:0")
      return _finish_plain(image, pixels, coefficients, measure)
    return _perceptual(image, pixels, float(quality), subsampling, measure, say, fast)
  height, width, channels = image.shape
  subsampling = subsampling or "4:2:0"
  targets = {k: v for k, v in (("bpp", bpp), ("psnr", psnr)) if v is not None}
  if len(targets) > 1:
    raise ValueError(f"give at most one of bpp and psnr; got {sorted(targets)}.")
  if targets and (quality is not None or tables is not None):
    raise ValueError("a bpp or psnr target optimizes the tables: it cannot be combined with "
                     "quality or tables.")
  if targets and lmbda is not None:
    raise ValueError("give lmbda or a bpp/psnr target, not both.")
  for name, value in (("bpp", bpp), ("psnr", psnr), ("lmbda", lmbda)):
    if value is not None and not checks.positive_finite(value):
      raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
  if rounds < 0:
    raise ValueError(f"rounds must be >= 0; got {rounds}.")
  sal = roi.saliency_map(saliency, image)
  if sal is not None and background is None:
    background = roi.default_background(saliency)
  if sal is not None and not trellis:
    raise ValueError("a saliency map acts through the trellis (the only per-block control of a "
                     "standard JPEG): it needs trellis=True.")
  weights_map = None if sal is None else roi.pixel_weights(sal, background)

  def run() -> Compressed:
    optimize = bool(targets) or (lmbda is not None and quality is None and tables is None)

    if optimize:
      (kind, target), = (targets or {"lmbda": lmbda}).items()
      fit_image, fit_map = _table_fit_sample(image, weights_map)
      result = optimization or optimize_tables(fit_image, subsampling=subsampling, steps=steps,
                                               importance=fit_map, progress=progress,
                                               **{kind: target})
      base = np.asarray(result.tables, np.float64)
    else:
      kind = None
      base = np.asarray(codec.resolve_tables(
          DEFAULT_QUALITY if quality is None and tables is None else quality, tables, (),
          channels)).astype(np.float64)
    # The image's DCT (6 bytes a pixel) after the table fit, whose own memory is the peak,
    # and the fit's freed memory handed back first.
    if optimize and height * width > TABLE_FIT_LIMIT:
      memory.trim_heap()
    problem = TrellisImage(image, subsampling, weights_map, pixels)

    if not trellis:
      if kind in ("bpp", "psnr"):
        tables_out, chosen = _scale_rounded(image, problem, base, kind, target, weights_map, say)
      else:
        tables_out, chosen = base, problem.rounded(base)
      return _finish(image, problem, tables_out, chosen, None, sal, weights_map, measure)

    if kind in ("bpp", "psnr"):
      lmbda0 = problem.slope(base)
      say(f"trellis: lambda {lmbda0:.4g} (the tables' slope); meeting the {kind} target")
      tables_out, chosen, lmbda_out = _scale_with_trellis(image, problem, base, lmbda0, kind,
                                                          target, rounds, weights_map, say)
      return _finish(image, problem, tables_out, chosen, lmbda_out, sal, weights_map, measure)

    chosen = problem.trellis(base, lmbda, rounds)      # lmbda None: the tables' own slope
    say(f"trellis: lambda {chosen.lmbda:.4g}, {chosen.bits / 8:.0f} bytes of data "
        f"({chosen.rounding_bits / 8:.0f} rounded)")
    return _finish(image, problem, base, chosen, chosen.lmbda, sal, weights_map, measure)

  # The table fit and the trellis warn when their models expect to miss a target; what counts
  # is the file: those warnings are passed on only when its measured PSNR or size misses it.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = run()
  if not _target_met(result, targets, weights_map is not None):
    for w in caught:
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
  return result


def _target_met(result: Compressed, targets: dict, weighted: bool) -> bool:
  """Whether the file meets its one bpp or PSNR target, as measured (False when unmeasured or
  there is none to check)."""
  if len(targets) != 1:
    return False
  (kind, target), = targets.items()
  if kind == "bpp":
    return result.bits_per_pixel <= target
  measured = result.weighted_psnr if weighted else result.psnr
  return measured is not None and measured >= target


#: Images with more pixels than this fit their tables (`optimize_tables`, whose rate model
#: holds every coefficient's soft histogram terms: 15 GB and minutes at 24 MP) on a sample, the
#: larger sample of the perceptual mode (`perceptual.CHECK_TILES` tiles of
#: `perceptual.CHECK_TILE` pixels, one compiled shape for every large image); the trellis and
#: the check of the bpp or PSNR target then run on the whole image.
TABLE_FIT_LIMIT = perceptual.EXACT_LIMIT


def _table_fit_sample(image: np.ndarray, weights_map: np.ndarray | None):
  """(float32 image in [0, 1], per-pixel weights) the tables are fitted on: the image itself up
  to `TABLE_FIT_LIMIT` pixels, else a mosaic of tiles (the weights cut alike, mean 1 again).
  `image` is float in [0, 1] or uint8 pixels."""
  height, width = image.shape[:2]
  as_float = lambda a: a.astype(np.float32) / 255 if a.dtype == np.uint8 else a
  if height * width <= TABLE_FIT_LIMIT or min(height, width) < perceptual.CHECK_TILE:
    return as_float(image), weights_map
  cut = lambda a: perceptual.sample_mosaic(a, perceptual.CHECK_TILES, perceptual.CHECK_TILE)
  if weights_map is None:
    return as_float(cut(image)), None
  weights = cut(np.asarray(weights_map, np.float32)[..., None])[..., 0]
  return as_float(cut(image)), weights / max(float(weights.mean()), 1e-12)


def _golden(f, lo, hi, evaluations=7):
  """Minimum of `f` over [lo, hi] by golden-section search; returns (x, f(x)) of the best seen."""
  ratio = (math.sqrt(5) - 1) / 2
  a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
  fa, fb = f(a), f(b)
  seen = [(fa, a), (fb, b)]
  for _ in range(evaluations - 2):
    if fa <= fb:
      hi, b, fb = b, a, fa
      a = lo + (1 - ratio) * (hi - lo)
      fa = f(a)
      seen.append((fa, a))
    else:
      lo, a, fa = a, b, fb
      b = lo + ratio * (hi - lo)
      fb = f(b)
      seen.append((fb, b))
  best = min(seen)
  return best[1], best[0]


#: The most coefficient bytes `_Family` keeps in trellis results besides the newest one.
_FAMILY_CACHE_BYTES = 128 << 20


class _Family:
  """Tables kappa * t * base with trellis lambda lmbda0 / t^2: one scale for the target.

  Scaling the steps by t scales the tables' own slope by about 1 / t^2, so t moves along the
  rate-distortion curve keeping the trellis as strong relative to the steps. kappa is chosen
  once, at t = 1, by minimising the Lagrangian bits + lmbda0 * distortion over the table scale:
  with the trellis zeroing what does not pay, slightly finer tables than the ones optimized for
  plain rounding usually pay (and with a region of interest, much finer ones).

  Every result's bits and distortion are kept (the searches revisit points); its coefficients
  (3 bytes a pixel at 4:2:0) only while they fit in `_FAMILY_CACHE_BYTES` (all of them for
  small images), and on a large photo only the newest result's, dropped before the next pass
  starts: a pass that needs the coefficients of a dropped result runs again.
  """

  def __init__(self, problem, base, lmbda0, rounds):
    self.problem, self.base, self.lmbda0, self.rounds = problem, base, lmbda0, rounds
    self.cache = {}
    self.kappa = 1.0
    per_result = 2 * sum(int(np.prod(np.shape(d))) for d in problem.dct)
    self.keep = max(1, _FAMILY_CACHE_BYTES // per_result)
    self.large = per_result > _FAMILY_CACHE_BYTES // 4

  def _keep_coefficients(self, count):
    """Drops the coefficients of all but the newest `count` results that hold them."""
    holding = [k for k, (_, r) in self.cache.items() if r.components is not None]
    for key in holding[:max(len(holding) - count, 0)]:
      tables, result = self.cache[key]
      self.cache[key] = (tables, dataclasses.replace(result, components=None))

  def run(self, scale, lmbda, coefficients=False):
    """(tables, trellis result) at this table scale and lambda; the result's `components` may be
    None unless `coefficients`."""
    key = (round(scale, 9), round(lmbda, 12))
    entry = self.cache.get(key)
    if entry is None or (coefficients and entry[1].components is None):
      self._keep_coefficients(self.keep - 1)     # room for this pass's
      tables = _scaled(self.base, scale)
      self.cache.pop(key, None)
      entry = self.cache[key] = (tables, self.problem.trellis(tables, lmbda, self.rounds))
      if self.large:
        # Each pass of a big image frees a few hundred megabytes in pieces that later arrays
        # do not fill: hand them back (the 24-MP photo's PSNR mode reached 2.1 GB without).
        memory.trim_heap()
    return entry

  def fit_kappa(self, lo=0.3, hi=1.3):
    def lagrangian(log_kappa):
      return self.run(math.exp(log_kappa), self.lmbda0)[1].cost
    log_kappa, _ = _golden(lagrangian, math.log(lo), math.log(hi))
    if lagrangian(log_kappa) < lagrangian(0.0):
      self.kappa = math.exp(log_kappa)
    return self.kappa

  def at(self, t, coefficients=False):
    return self.run(self.kappa * t, self.lmbda0 / t ** 2, coefficients)


def _scale_rounded(image, problem, base, kind, target, weights_map, say):
  """(tables, their plain rounding): the tables scaled until plain rounding meets a bpp or PSNR
  target on the real file (its bytes as written, its decoded, weighted error); the fitted
  tables come from a model of the rate and the error, which misses the file by a few bytes or
  tenths of a dB."""
  n = problem.num_pixels
  goal = 255.0 ** 2 / 10 ** (target / 10) if kind == "psnr" else float(target)
  roundings = {}     # the latest only: each holds the image's coefficients

  def evaluate(s):
    tables = _scaled(base, s)
    roundings.clear()
    rounded = roundings[s] = problem.rounded(tables)
    coefficients = problem.coefficients(tables, rounded)
    # Both, as `_search` keeps the best of the scales that meet the target by the other.
    return (8 * len(write_coefficients(coefficients)[0]) / n,
            decoded_mse(image, coefficients, weights_map))
  s, met = _search(evaluate, kind, goal)
  say(f"  table scale {s:.3f} meets the {kind} target on the file" if met else
      f"  the {kind} target cannot be met by scaling the tables")
  if not met:
    hint = (" Subsampled chroma may be the limit: try 4:4:4." if kind == "psnr" and any(
        f != problem.factors[0] for f in problem.factors) else "")
    warnings.warn(f"the {kind} target {target} cannot be met with these tables scaled; "
                  f"returning the nearest result.{hint}", stacklevel=4)
  tables = _scaled(base, s)
  return tables, roundings[s] if s in roundings else problem.rounded(tables)


def _scale_with_trellis(image, problem, base, lmbda0, kind, target, rounds, weights_map, say):
  """Scales the tables, trellis in the loop, until the real file meets a bpp or PSNR target.

  Unlike `djpeg.optimize`'s scale search (a grid priced by the model in one compiled call),
  every point here runs the trellis, so it brackets the target and bisects (`_search`), then
  checks the pick on the real file and corrects the model's offset if it missed.
  """
  n = problem.num_pixels
  family = _Family(problem, base, lmbda0, rounds)
  kappa = family.fit_kappa()
  say(f"  table scale {kappa:.3f} minimises bits + lambda * distortion with the trellis")
  if kind == "psnr":
    goal = 255.0 ** 2 / 10 ** (target / 10)
    # The DCT-domain model misses chroma subsampling and pixel rounding: calibrate its offset
    # on the plain rounding of the starting tables, then on each result checked.
    rounded = problem.rounded(base)
    offset = decoded_mse(image, problem.coefficients(base, rounded), weights_map) \
        - rounded.distortion / n
    del rounded      # the image's coefficients: not held through the search
  else:
    goal = float(target)
    offset = 0.0
  met = False
  for attempt in range(3):
    def evaluate(t, offset=offset):
      tables, chosen = family.at(t)
      return 8 * _file_bytes(chosen, tables) / n, chosen.distortion / n + offset
    t, met = _search(evaluate, kind, goal)
    tables, chosen = family.at(t, coefficients=True)
    coefficients = problem.coefficients(tables, chosen)
    # Check on the real file / the decoded image, and correct the model if it missed.
    if kind == "bpp":
      real = 8 * len(write_coefficients(coefficients)[0]) / n
      model = evaluate(t)[0]
      say(f"  scale {kappa * t:.3f}: {real:.4f} bpp (model {model:.4f}), target {goal:.4f}")
      if real <= goal or not met:
        break
      goal -= (real - model) + 1e-4
    else:
      real = decoded_mse(image, coefficients, weights_map)
      model = evaluate(t)[1]
      say(f"  scale {kappa * t:.3f}: MSE {real:.3f} (model {model:.3f}), target {goal:.3f}")
      if real <= goal or not met:
        break
      offset += real - model
    del coefficients, chosen      # not held through the next search
  tables, chosen = family.at(t, coefficients=True)
  if not met:
    warnings.warn(f"the {kind} target {target} cannot be met with the trellis; returning the "
                  "nearest result.", stacklevel=3)
  return tables, chosen, lmbda0 / t ** 2


def _perceptual(image, pixels, quality, subsampling, measure, say, fast) -> Compressed:
  subsamplings = None if subsampling is None else (subsampling,)
  result = perceptual.meet_libjpeg(pixels, quality, subsamplings=subsamplings,
                                   second_look=not fast)
  if result.score is None:
    say("perceptual: under 8x8 pixels, not measurable by SSIMULACRA 2: libjpeg-turbo's file")
  else:
    say(f"perceptual: SSIMULACRA 2 {result.score:.2f} (libjpeg-turbo at q{quality:g}: "
        f"{result.target:.2f}), {result.subsampling}, "
        + (f"tables at p{result.p:.1f}" if result.p is not None else "libjpeg-turbo's file kept")
        + f", {result.evaluations} candidates")
  c = result.coefficients
  mse = decoded_mse(image, c) if measure else None
  # The trellis's size model, not a second write of a file the caller writes anyway (0.4 s at
  # 24 MP); libjpeg-turbo's own coefficients, when kept, are written to count them.
  file_bytes = (result.file_bytes if result.file_bytes is not None
                else len(write_coefficients(c)[0]))
  return Compressed(
      mode="perceptual", coefficients=c, tables=np.asarray(c.tables, np.int32), lmbda=None,
      bits_per_pixel=8 * file_bytes / (pixels.shape[0] * pixels.shape[1]),
      psnr=None if mse is None else 10 * math.log10(255.0 ** 2 / max(mse, 1e-12)),
      weighted_psnr=None, saliency=None, ssimulacra2=result.score,
      target_ssimulacra2=result.target)


def _finish_plain(image, pixels, coefficients, measure) -> Compressed:
  mse = decoded_mse(image, coefficients) if measure else None
  return Compressed(
      mode="libjpeg", coefficients=coefficients,
      tables=np.asarray(coefficients.tables, np.int32), lmbda=None,
      bits_per_pixel=8 * len(write_coefficients(coefficients)[0])
      / (pixels.shape[0] * pixels.shape[1]),
      psnr=None if mse is None else 10 * math.log10(255.0 ** 2 / max(mse, 1e-12)),
      weighted_psnr=None, saliency=None)


def _finish(image, problem, tables, chosen, lmbda, sal, weights_map, measure) -> Compressed:
  coefficients = problem.coefficients(tables, chosen)
  mse = decoded_mse(image, coefficients) if measure else None
  weighted = None
  if weights_map is not None and measure:
    weighted = 10 * math.log10(255.0 ** 2 / max(decoded_mse(image, coefficients, weights_map),
                                                 1e-12))
  return Compressed(
      mode="mse", coefficients=coefficients, tables=np.asarray(tables, np.int32), lmbda=lmbda,
      bits_per_pixel=8 * _file_bytes(chosen, tables) / problem.num_pixels,
      psnr=None if mse is None else 10 * math.log10(255.0 ** 2 / max(mse, 1e-12)),
      weighted_psnr=weighted, saliency=sal)
