"""How djpeg.perceptual's constants were fitted, on training images only (never Kodak).

  python bench/perceptual_tuning.py tune  [--images 8] [--evaluations 70]
  python bench/perceptual_tuning.py guess [--images 12]
  python bench/perceptual_tuning.py lambda [--images 12] [--seed 5] [--factors 1,0.3]
  python bench/perceptual_tuning.py warm [--images 10] [--seed 21]
  python bench/perceptual_tuning.py chroma-fit [--images 12] [--seed 5] [--fits 0,1,0.5]
  python bench/perceptual_tuning.py luma-fit --images 16 [--seed 5]
      [--fits none,rounded,trellis]
  python bench/perceptual_tuning.py pooling [--images 12] [--seed 5] [--gammas -1,-0.5]
  python bench/perceptual_tuning.py brightness [--images 12] [--seed 5] [--exponents -1]
      [--lambda-factors 1]
  python bench/perceptual_tuning.py butteraugli-map [--images 6] [--seed 3] [--gammas 0.5,1,2]
      [--iterations 1] [--map butteraugli|ssimulacra2] [--tile 64]
  python bench/perceptual_tuning.py dering [--images 16] [--seed 5] [--modes none,white,both]
  python bench/perceptual_tuning.py parts [--images 12] [--seed 7] [--qualities 35,65]
  python bench/perceptual_tuning.py luma-slope [--images 12] [--seed 5] [--slopes 1,1.2,0.85]
  python bench/perceptual_tuning.py trellis-weights [--images 12] [--seed 5] [--gammas 1,0.7,1.3]
  python bench/perceptual_tuning.py low-lambda [--images 16] [--seed 5] [--factors 1,0.7,1.4]
      [--below 45]

`tune`: Nelder-Mead over seven numbers: the table shape (luma log-slope a, chroma offset b,
chroma log-slope c, DC offset d, low-band offset e, all relative to mozjpeg's default ImageMagick
tables), the trellis lambda and the masking threshold. The objective is the sum of two BD-rates
against libjpeg-turbo 4:2:0 (optimize) over the qualities 20, 35, 50, 65, 80, 95: SSIMULACRA 2
(`djpeg.metrics.ssimulacra2`) and butteraugli (Debian's program; needed), each the mean over the
images, 4 BSDS and 4 DIV2K training images (seed 1). Files are the trellis result with the
tables at each quality, progressive with optimized scans. The shipped constants came from two
runs. The first minimised the SSIMULACRA 2 BD-rate alone, over the shape and mozjpeg's coupled
lambda and threshold (70 evaluations from mozjpeg's own settings: -13.8% -> -18.5% on 12
training images); `tune --start round1` is the second, both metrics over all seven numbers from
there (70 evaluations: SSIMULACRA 2 -18.1%, butteraugli -9.3% on its 8 images; mozjpeg on
held-out training images: -13.3% and -8.7%).

`lambda`: the trellis lambda scaled by each of `--factors` at the default mode's operating
points (the smallest file meeting libjpeg-turbo's SSIMULACRA 2 at each quality), BD-rates in
SSIMULACRA 2 and butteraugli on 12 other training images (seed 5).

`warm`: a search's next candidate as one trellis pass priced by the previous candidate's
symbol counts, against two passes from plain rounding (what `PerceptualImage.trellis` does
from its second call on), on 10 other training images (seed 21).

`chroma-fit`: subsampled chroma as libjpeg's box average (0) or fitted to libjpeg-turbo's fancy
upsampling and mixed with the box average in each proportion of `--fits` (`CHROMA_FIT`), at the
default mode's operating points, BD-rates on 12 other training images (seed 5).

`luma-fit`: Y as libjpeg computes it (none) or coded for the chroma the decoder will show
(`LUMA_FIT`: that chroma as plain rounding or the candidate's own trellis quantizes it), at the
default mode's operating points, BD-rates on 16 other training images (seed 5).

`pooling` and `brightness`: block weights (`perceptual.masking`) scaled by each block's expected
quantization error (`_pooled_masking`) or redistributed by its brightness
(`_brightness_masking`, the trellis lambda scaled too), at the default mode's operating points;
tried for butteraugli, not shipped (bench/README.md).

`butteraugli-map`: an upper bound for butteraugli-driven block weights (guetzli's idea, once):
each image coded at p = 45 and 70, butteraugli (Debian's program) measured on every 64x64 tile
of the decode, every block's masking weight scaled by (its tile's distance / the median
tile's)^gamma (clipped to [1/4, 4]), the image coded again at p - 4 .. p + 4, and its
butteraugli interpolated at the first file's bytes (with `--iterations N`, N passes, each
re-weighting from the map of the previous pass's file at p; with `--map ssimulacra2`, the
tiles' 100 - SSIMULACRA 2 by djpeg's own scorer instead of butteraugli). Tried for
butteraugli; not shipped.

`butteraugli-loop`: butteraugli in the loop as the default mode runs it (`perceptual.
BUTTERAUGLI_PASSES`), at the default mode's operating points: for each image and quality the
smallest file meeting libjpeg-turbo's SSIMULACRA 2 with the masking weights (p on a grid of a
quarter unit), then `--passes` distance maps (`djpeg.butteraugli`, equal to Debian's program)
of that file and of each re-coded one, each scaling the block weights (`perceptual.
butteraugli_weights` at each gamma of `--gammas`, clipped to [1 / `--limit`, `--limit`]), and
the grid search again with the final weights; BD-rates of both against libjpeg-turbo in
SSIMULACRA 2 and butteraugli (Debian's program), on `--images` training images (seed `--seed`).

`dering`: mozjpeg's overshoot deringing (on by default in mozjpeg): in every luma block with
some but not all samples at 255, the runs of 255 (in zigzag order) replaced by a Catmull-Rom
curve that rises above 255 (at most 31 above, and twice the DC step), which the decoder clips
back to 255 while the block needs less high frequency; `both` does the same below 0. Applied
to the luma the trellis codes (after `LUMA_FIT`), at the default mode's operating points, on
training images with white areas (over 0.2% of pixels at 255 in all channels). Tried for
butteraugli; not shipped.

`luma-slope` and `trellis-weights`: the luma base table's log-slope scaled, or the trellis's
per-frequency weights 64 / Q^2 raised to a power (each keeping its geometric mean), at the
default mode's operating points. Tried for butteraugli; not shipped.

`low-lambda`: the trellis lambda scaled by each of `--factors` only where p is below `--below`
(rd.py's lowest qualities, where butteraugli's lead over mozjpeg is smallest), at the default
mode's operating points. Tried for butteraugli; not shipped.

`parts`: where butteraugli's distance comes from, djpeg's default mode against mozjpeg at the
same bytes: each image at each of `--qualities` in the default mode, mozjpeg's butteraugli
interpolated (in log bytes) between its two qualities whose files bracket djpeg's, and each
decode scored whole, with its chroma replaced by the original's (luma errors only) and with
its luma replaced (chroma errors only; full-range YCbCr in floating point); and the share of
each file's bytes its luma takes.

`guess`: for 12 other training images (seed 3) and qualities 5..98, the perceptual quality p the
default mode's search lands on (4:2:0), and how often 4:4:4 wins; the medians are
`GUESS_QUALITIES` / `GUESS_P`.

`full-chroma`: at each of `--qualities`, the default mode with 4:4:4 tried beside 4:2:0 against
4:2:0 alone, on `--images` training images (seed `--seed`): how often 4:4:4 wins, the bytes of
the written files (progressive), and the time of each; what `FULL_CHROMA_FROM` rests on.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from common import TRAIN, pillow_jpeg
from rd import bd_rate

QUALITIES = (20, 35, 50, 65, 80, 95)
#: mozjpeg's default quantization table (index 3, "ImageMagick" by N. Robidoux), natural order.
IMAGEMAGICK = np.array([
    [16, 16, 16, 18, 25, 37, 56, 85], [16, 17, 20, 27, 34, 40, 53, 75],
    [16, 20, 24, 31, 43, 62, 91, 135], [18, 27, 31, 40, 53, 74, 106, 156],
    [25, 34, 43, 53, 69, 94, 131, 189], [37, 40, 62, 74, 94, 124, 169, 238],
    [56, 53, 91, 106, 131, 169, 226, 311], [85, 75, 135, 156, 189, 238, 311, 418]], np.float64)
STARTS = {"round1": np.array([-0.4115, 0.2553, -0.0801, -0.9009, 0.0, 0.1856 + np.log(2),
                              0.7633])}


def training_images(count_each: int, seed: int) -> list[np.ndarray]:
  import glob
  rng = np.random.default_rng(seed)
  out = []
  for folder in ("bsd200", "div2k256"):
    paths = sorted(glob.glob(os.path.join(TRAIN, folder, "*.png")))
    out += [np.asarray(Image.open(p).convert("RGB"))
            for p in rng.choice(paths, count_each, replace=False)]
  return out


def base_tables(theta) -> np.ndarray:
  """`(2, 8, 8)` base tables (luma, chroma) for the shape numbers theta[:5]."""
  a, b, c, d, e = theta[:5]
  log_t = np.log(IMAGEMAGICK)
  low = np.add.outer(np.arange(8), np.arange(8)) <= 2
  luma = log_t.mean() + (1 + a) * (log_t - log_t.mean()) + e * low
  chroma = log_t.mean() + (1 + c) * (log_t - log_t.mean()) + b + e * low
  luma[0, 0] += d - e
  chroma[0, 0] += d - e
  return np.exp(np.stack([luma, chroma]))


def encode(pixels, theta, quality) -> bytes:
  """The perceptual trellis with the tables, lambda and masking theta stand for."""
  import djpeg
  from djpeg import perceptual
  perceptual.PERCEPTUAL_TABLES = base_tables(theta)
  perceptual.MASKING_THRESHOLD = 2.0 ** (16.5 + theta[6])
  coefficients, _ = perceptual.PerceptualImage(pixels).trellis(quality,
                                                               lmbda=float(np.exp(theta[5])))
  return djpeg.dumps(coefficients, progressive="optimize")


class Scorer:
  def __init__(self):
    import jax
    from djpeg import metrics
    self.ssimulacra2 = jax.jit(metrics.ssimulacra2)
    self.pool = ThreadPoolExecutor(2)

  @staticmethod
  def _butteraugli(pixels, decoded) -> float:
    with tempfile.TemporaryDirectory() as tmp:
      a, b = os.path.join(tmp, "a.png"), os.path.join(tmp, "b.png")
      Image.fromarray(pixels).save(a)
      Image.fromarray(decoded).save(b)
      out = subprocess.run(["butteraugli", a, b], capture_output=True, text=True, check=True)
      return float(out.stdout.split()[0])

  def curve(self, pixels, files) -> list[tuple[float, float, float]]:
    """(bpp, SSIMULACRA 2, butteraugli) of each file."""
    decoded = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in files]
    distances = list(self.pool.map(lambda d: self._butteraugli(pixels, d), decoded))
    f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
    return [(8 * len(data) / pixels[..., 0].size, float(self.ssimulacra2(f(pixels), f(dec))), ba)
            for data, dec, ba in zip(files, decoded, distances)]


def tune(args) -> None:
  from scipy.optimize import minimize
  images = training_images(args.images // 2, seed=1)
  scorer = Scorer()
  anchors = [scorer.curve(px, [pillow_jpeg(px, quality=q, subsampling=2, optimize=True)
                               for q in QUALITIES]) for px in images]

  def objective(theta):
    s2, ba = [], []
    for px, anchor in zip(images, anchors):
      ours = scorer.curve(px, [encode(px, theta, q) for q in QUALITIES])
      ra, rt = [p[0] for p in anchor], [p[0] for p in ours]
      s2.append(bd_rate(ra, [p[1] for p in anchor], rt, [p[1] for p in ours]))
      ba.append(bd_rate(ra, [-p[2] for p in anchor], rt, [-p[2] for p in ours]))
    value = float(np.mean(s2) + np.mean(ba))
    print(f"{value:8.3f}  SSIMULACRA 2 {np.mean(s2):7.2f}%  butteraugli {np.mean(ba):7.2f}%  "
          + " ".join(f"{t:+.3f}" for t in theta), flush=True)
    return value

  x0 = STARTS[args.start]
  simplex = np.vstack([x0] + [x0 + 0.25 * np.eye(7)[i] for i in range(7)])
  result = minimize(objective, x0, method="Nelder-Mead",
                    options=dict(maxfev=args.evaluations, initial_simplex=simplex, xatol=0.02,
                                 fatol=0.1))
  np.set_printoptions(precision=2, suppress=True)
  print("best", result.fun, list(result.x))
  print("PERCEPTUAL_TABLES =", np.round(base_tables(result.x), 2).tolist())
  print(f"LAMBDA = {np.exp(result.x[5]):.4f}; MASKING_THRESHOLD = 2.0 ** {16.5 + result.x[6]:.4f}")


def guess(args) -> None:
  from djpeg import perceptual
  qualities = (5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 98)
  found = {q: [] for q in qualities}
  full_chroma = {q: 0 for q in qualities}
  images = training_images(args.images // 2, seed=3)
  for px in images:
    for q in qualities:
      both = perceptual.meet_libjpeg(px, q, subsamplings=("4:2:0", "4:4:4"))
      found[q].append(perceptual.meet_libjpeg(px, q, subsamplings=("4:2:0",)).p)
      full_chroma[q] += both.subsampling == "4:4:4"
  for q in qualities:
    ps = [p for p in found[q] if p is not None]
    print(f"quality {q:3d}: median p {np.median(ps):6.2f} ({len(ps)} images); 4:4:4 smaller on "
          f"{full_chroma[q]} of {len(images)}")


def full_chroma(args) -> None:
  import time
  import djpeg
  from djpeg import perceptual
  images = training_images(args.images // 2, seed=args.seed)
  for q in (int(x) for x in args.qualities.split(",")):
    seconds, changes, wins = [0.0, 0.0], [], 0
    for px in images:
      files = []
      for i, subsamplings in enumerate((("4:2:0", "4:4:4"), ("4:2:0",))):
        start = time.perf_counter()
        result = perceptual.meet_libjpeg(px, q, subsamplings=subsamplings)
        seconds[i] += time.perf_counter() - start
        files.append(len(djpeg.dumps(result.coefficients, progressive="optimize")))
        wins += i == 0 and result.subsampling == "4:4:4"
      changes.append(100 * (files[0] / files[1] - 1))
    print(f"quality {q:3d}: 4:4:4 chosen on {wins} of {len(images)}; bytes with both against "
          f"4:2:0 alone {np.mean(changes):+.2f}% on average, {min(changes):+.2f}% at best; "
          f"{seconds[0]:.1f} s against {seconds[1]:.1f} s ({len(images)} training images, seed "
          f"{args.seed})", flush=True)


def lambda_factors(args) -> None:
  """The trellis lambda scaled by each of `--factors`, at the default mode's operating points
  (`_operating_points`)."""
  from djpeg import perceptual
  factors = tuple(float(f) for f in args.factors.split(","))
  _operating_points(args, {f"lambda x {f:<5}": {"LAMBDA": perceptual.LAMBDA * f}
                           for f in factors})


def chroma_factors(args) -> None:
  """The chroma base table scaled by each of `--factors` (below 1: finer), at the default
  mode's operating points (`_operating_points`)."""
  from djpeg import perceptual
  factors = tuple(float(f) for f in args.factors.split(","))
  variants = {}
  for f in factors:
    base = np.array(perceptual.PERCEPTUAL_TABLES)
    base[1] *= f
    variants[f"chroma x {f:<5}"] = {"PERCEPTUAL_TABLES": base}
  _operating_points(args, variants)


def _with_planes(pixels: np.ndarray, luma_from: np.ndarray) -> np.ndarray:
  """`pixels` with the luma of `luma_from` (JFIF's YCbCr, the float transform of
  `djpeg.color`)."""
  from djpeg import color
  ycc = np.array(color.rgb_to_ycbcr(pixels, exact=False))
  ycc[..., 0] = np.asarray(color.rgb_to_ycbcr(luma_from, exact=False))[..., 0]
  rgb = np.asarray(color.ycbcr_to_rgb(ycc, exact=False))
  return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def parts(args) -> None:
  """The `parts` diagnostic (module docstring)."""
  import djpeg
  from djpeg import perceptual
  from rd import mozjpeg
  images = training_images(args.images // 2, seed=args.seed)
  distance = Scorer._butteraugli
  decode = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

  def luma_share(data) -> float:
    """The share of a file's bytes its luma takes: the luma alone as a gray progressive file."""
    from djpeg.coefficients import Coefficients
    c = djpeg.load_coefficients(data)
    luma = Coefficients((np.asarray(c.components[0]),), np.asarray(c.tables)[:1], c.height,
                        c.width, ((1, 1),))
    return len(djpeg.dumps(luma, progressive="optimize")) / len(
        djpeg.dumps(c, progressive="optimize"))

  def three(px, data):
    """butteraugli of the decode, of its luma errors alone, of its chroma errors alone."""
    d = decode(data)
    return np.array([distance(px, d), distance(px, _with_planes(px, d)),
                     distance(px, _with_planes(d, px))])
  for q in (int(x) for x in args.qualities.split(",")):
    ratios, shares = [], []
    for px in images:
      ours = djpeg.dumps(perceptual.meet_libjpeg(px, q).coefficients, progressive="optimize")
      files = {m: mozjpeg(px, m) for m in range(max(2, q - 40), min(100, q + 30))}
      below = max(m for m in files if len(files[m]) < len(ours))
      above = min(m for m in files if len(files[m]) >= len(ours))
      lo, hi = files[below], files[above]
      t = (np.log(len(ours)) - np.log(len(lo))) / (np.log(len(hi)) - np.log(len(lo)))
      theirs = (1 - t) * three(px, lo) + t * three(px, hi)
      mine = three(px, ours)
      ratios.append(np.log(mine / theirs))
      shares.append((luma_share(ours), (1 - t) * luma_share(lo) + t * luma_share(hi)))
      print(f"  q{q} {len(ours)} bytes: djpeg whole / luma errors / chroma errors "
            f"{mine[0]:.2f} / {mine[1]:.2f} / {mine[2]:.2f}, mozjpeg {theirs[0]:.2f} / "
            f"{theirs[1]:.2f} / {theirs[2]:.2f}", flush=True)
    r = 100 * np.array(ratios)
    se = r.std(axis=0, ddof=1) / np.sqrt(len(r))
    print(f"quality {q}: butteraugli of djpeg against mozjpeg at the same bytes (mean log ratio, "
          f"%): whole {r[:, 0].mean():+.1f} (se {se[0]:.1f}), luma errors alone "
          f"{r[:, 1].mean():+.1f} ({se[1]:.1f}), chroma errors alone {r[:, 2].mean():+.1f} "
          f"({se[2]:.1f}); {len(images)} training images, seed {args.seed}", flush=True)
    shares = 100 * np.array(shares)
    print(f"quality {q}: luma's share of the bytes: djpeg {shares[:, 0].mean():.1f}% "
          f"({shares[:, 0].min():.0f}-{shares[:, 0].max():.0f}), mozjpeg "
          f"{shares[:, 1].mean():.1f}% ({shares[:, 1].min():.0f}-{shares[:, 1].max():.0f})",
          flush=True)


def _white_images(count_each: int, seed: int) -> list[np.ndarray]:
  """`training_images`, drawn from those with white areas (over 0.2% of pixels at 255 in all
  three channels), where deringing has something to change."""
  import glob
  rng = np.random.default_rng(seed)
  out = []
  for folder in ("bsd200", "div2k256"):
    found = []
    for path in sorted(glob.glob(os.path.join(TRAIN, folder, "*.png"))):
      pixels = np.asarray(Image.open(path).convert("RGB"))
      if (pixels == 255).all(-1).mean() > 0.002:
        found.append(pixels)
    out += [found[i] for i in rng.choice(len(found), min(count_each, len(found)), replace=False)]
  return out


def _deringing_kernels():
  """numba kernels of mozjpeg's `preprocess_deringing` (jcdctmgr.c), applied to orthonormal
  luma DCT blocks: (`deringed(dct, zigzag, basis, dc_step, both)` -> new DCT)."""
  import numba

  @numba.njit(cache=True)
  def catmull_rom(v1, v2, v3, v4, t, size):
    tan1, tan2 = (v3 - v1) * size, (v4 - v2) * size
    t2 = t * t
    t3 = t2 * t
    return (v2 * (2 * t3 - 3 * t2 + 1) + tan1 * (t3 - 2 * t2 + t) + v3 * (-2 * t3 + 3 * t2)
            + tan2 * (t3 - t2))

  @numba.njit(cache=True)
  def dering_block(d, zigzag, dc_step):
    """64 centred samples (natural order), runs at 127 (255) replaced in place; whether any."""
    top, total, count = 127.0, 0.0, 0
    for i in range(64):
      total += d[i]
      count += d[i] >= top
    if count == 0 or count == 64:
      return False
    limit = top + min(31.0, 2.0 * dc_step, np.floor((top * 64 - total) / count))
    n = 0
    while n < 64:
      if d[zigzag[n]] < top:
        n += 1
        continue
      start = n
      while n + 1 < 64 and d[zigzag[n + 1]] >= top:
        n += 1
      end = n + 1
      f1, f2 = d[zigzag[max(start - 1, 0)]], d[zigzag[max(start - 2, 0)]]
      l1, l2 = d[zigzag[min(end, 63)]], d[zigzag[min(end + 1, 63)]]
      first_slope, last_slope = max(f1 - f2, top - f1), max(l1 - l2, top - l1)
      if start == 0:
        first_slope = last_slope
      if end == 64:
        last_slope = first_slope
      length = end - start
      step = 1.0 / (length + 1)
      for k in range(length):
        value = np.ceil(catmull_rom(top - first_slope, top, top, top - last_slope,
                                    (k + 1) * step, length))
        d[zigzag[start + k]] = min(value, limit)
      n += 1
    return True

  @numba.njit(cache=True)
  def deringed(dct, zigzag, basis, dc_step, both):
    out = dct.copy()
    d = np.empty(64)
    for r in range(dct.shape[0]):
      for b in range(dct.shape[1]):
        x = basis.T @ dct[r, b].astype(np.float64) @ basis      # the block's samples - 128
        high, low = False, False
        for i in range(8):
          for j in range(8):
            v = np.floor(x[i, j] + 0.5)
            d[8 * i + j] = v
            high = high or v >= 127
            low = low or v <= -128
        if not high and not (both and low):
          continue
        changed = dering_block(d, zigzag, dc_step)
        if both and low:                     # the same below 0: on -1 - d, 0 maps to 255
          for i in range(64):
            d[i] = -1.0 - d[i]
          changed = dering_block(d, zigzag, dc_step) or changed
          for i in range(64):
            d[i] = -1.0 - d[i]
        if changed:
          out[r, b] = (basis @ d.reshape(8, 8) @ basis.T).astype(np.float32)
    return out
  return deringed


def _deringing_image(both: bool):
  """`perceptual.PerceptualImage` whose coded luma is deringed (`dering`)."""
  from djpeg import perceptual
  from djpeg.tables import ZIGZAG
  deringed = _deringing_kernels()
  zigzag, basis = np.asarray(ZIGZAG, np.int64), _dct_matrix()

  class Deringed(perceptual.PerceptualImage):
    def _luma_fitted(self, dct, chroma, steps, subsampling):
      dct = super()._luma_fitted(dct, chroma, steps, subsampling)
      luma = deringed(np.ascontiguousarray(dct[0], np.float32), zigzag, basis,
                      float(steps[0][0, 0]), both)
      return [luma] + list(dct[1:])
  return Deringed


def dering_variants(args) -> None:
  """The coded luma deringed as mozjpeg does (`--modes`: none, white, both), at the default
  mode's operating points on training images with white areas (`_operating_points`)."""
  variants = {f"deringing {m:<5}": {} if m == "none" else
              {"PerceptualImage": _deringing_image(both=m == "both")}
              for m in args.modes.split(",")}
  _operating_points(args, variants, images=_white_images(args.images // 2, seed=args.seed))


def _low_lambda_image(factor: float, below: float):
  """`perceptual.PerceptualImage` whose trellis lambda is `factor` times the given one where
  p < `below` (`low-lambda`)."""
  from djpeg import perceptual

  class LowLambda(perceptual.PerceptualImage):
    def trellis(self, p, subsampling="4:2:0", *, lmbda=perceptual.LAMBDA, rounds=2):
      scale = factor if p < below else 1.0
      return super().trellis(p, subsampling, lmbda=lmbda * scale, rounds=rounds)
  return LowLambda


def low_lambda_variants(args) -> None:
  """The trellis lambda times each of `--factors` where p < `--below` only, at the default
  mode's operating points (`_operating_points`)."""
  below = float(args.below)
  _operating_points(args, {f"lambda x {f:<4} below p {below:g}":
                           {"PerceptualImage": _low_lambda_image(f, below)}
                           for f in (float(x) for x in args.factors.split(","))})


def _log_scaled(x: np.ndarray, k: float) -> np.ndarray:
  """`x` (positive) with its log-deviation from its geometric mean scaled by `k`."""
  log = np.log(x)
  return np.exp(log.mean() + k * (log - log.mean()))


def luma_slope_variants(args) -> None:
  """The luma base table's log-slope scaled by each of `--slopes` (its geometric mean kept; 1:
  the shipped table, above 1 steeper: coarser high frequencies, finer low ones), at the default
  mode's operating points (`_operating_points`)."""
  from djpeg import perceptual
  variants = {}
  for k in (float(x) for x in args.slopes.split(",")):
    base = np.array(perceptual.PERCEPTUAL_TABLES)
    base[0] = _log_scaled(base[0], k)
    variants[f"luma slope x {k:<5}"] = {"PERCEPTUAL_TABLES": base}
  _operating_points(args, variants)


def _step_weights_power(gamma: float):
  """`perceptual.step_weights` raised to `gamma` (1: errors in steps of Q, the shipped
  weighting; 0: plain squared error), each table's weights scaled back to the shipped ones'
  geometric mean so that lambda keeps its scale."""
  from djpeg import perceptual
  shipped = perceptual.step_weights

  return lambda tables_: [_log_scaled(w, gamma) for w in shipped(tables_)]


def trellis_weight_variants(args) -> None:
  """The trellis's per-frequency error weights 64 / Q^2 raised to each of `--gammas`
  (`_step_weights_power`), at the default mode's operating points (`_operating_points`)."""
  _operating_points(args, {f"weights ^ {g:<5}": {"step_weights": _step_weights_power(g)}
                           for g in (float(x) for x in args.gammas.split(","))})


def _dct_matrix() -> np.ndarray:
  k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
  c = np.sqrt(2 / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
  c[0] /= np.sqrt(2)
  return c


def _quadrant_masking(blend: float):
  """`perceptual.masking` with the block's activity taken from its flattest 4x4 quadrant (the
  least variance of the four, times 64, Parseval's scale of the block's AC energy), mixed with
  the block's own as exp((1 - blend) log E_block + blend log E_quadrant): a block with an edge
  beside a flat part is not masked as a busy one."""
  from djpeg import perceptual
  c = _dct_matrix()

  def masking(dct):
    out = []
    for d in dct:
      d = np.asarray(d, np.float64)
      ac = d.reshape(d.shape[:2] + (64,))[..., 1:]
      block = 64.0 * np.einsum("...k,...k->...", ac, ac) / 63.0
      x = np.einsum("ui,...uv,vj->...ij", c, d, c)              # the block's samples
      q = x.reshape(d.shape[:2] + (2, 4, 2, 4)).transpose(0, 1, 2, 4, 3, 5)
      quadrant = 64.0 * 64.0 / 63.0 * q.reshape(d.shape[:2] + (4, 16)).var(-1).min(-1)
      energy = np.exp((1 - blend) * np.log(block + 1e-3) + blend * np.log(quadrant + 1e-3))
      out.append(perceptual.MASKING_WEIGHT / (1.0 + energy / perceptual.MASKING_THRESHOLD))
    return out
  return masking


def masking_variants(args) -> None:
  """The activity masking's block energy from the block (shipped) or mixed with its flattest
  quadrant's (`_quadrant_masking`, each of `--blends`), at the default mode's operating points
  (`_operating_points`)."""
  variants = {"block masking   ": {}}
  for b in (float(x) for x in args.blends.split(",")):
    variants[f"quadrant x {b:<4}"] = {"masking": _quadrant_masking(b)}
  _operating_points(args, variants)


def _pooled_masking(gamma: float, p: float = 60.0):
  """`perceptual.masking` times ((D_b + eps) / (mean D + eps))^gamma, clipped to [1/2, 2]: D_b is
  the block's expected quantization error at the tables of perceptual quality `p`, in squared
  steps (per AC coefficient min(x^2, 1/12), x its value in steps). gamma > 0: the blocks that
  will be coded worst get more weight, the trellis's sum of errors moving towards a higher norm
  (the max-norm butteraugli reports); gamma < 0: less, a masking by the expected error."""
  from djpeg import perceptual
  block_masking = perceptual.masking      # the shipped one (the variant replaces it)

  def masking(dct):
    base = block_masking(dct)
    steps = perceptual.tables(p, len(dct))
    out = []
    for d, m, q in zip(dct, base, steps):
      x = np.asarray(d, np.float64) / q          # orthonormal DCT: steps of Q
      e = np.minimum(x * x, 1.0 / 12.0).reshape(d.shape[:2] + (64,))[..., 1:].sum(-1)
      eps = 0.05
      factor = np.clip(((e + eps) / (e.mean() + eps)) ** gamma, 0.5, 2.0)
      out.append(m * factor)
    return out
  return masking


def pooling_variants(args) -> None:
  """Block weights raised where the blocks' expected error is largest (`_pooled_masking`, each
  exponent of `--gammas`), at the default mode's operating points (`_operating_points`)."""
  variants = {"block masking   ": {}}
  for g in (float(x) for x in args.gammas.split(",")):
    variants[f"pooled x {g:<6}"] = {"masking": _pooled_masking(g)}
  _operating_points(args, variants)


def _brightness_masking(exponent: float):
  """`perceptual.masking` with the luma blocks' weights times (L_b / 128)^exponent, L_b the
  block's mean sample (from its DC, at least 8), then scaled back to the image's mean luma
  weight (a redistribution: exponent < 0 moves weight from bright blocks to dark ones)."""
  from djpeg import perceptual
  block_masking = perceptual.masking      # the shipped one (the variant replaces it)

  def masking(dct):
    out = block_masking(dct)
    level = np.maximum(np.asarray(dct[0], np.float64)[..., 0, 0] / 8.0 + 128.0, 8.0)
    weighted = out[0] * (level / 128.0) ** exponent
    out[0] = weighted * (out[0].mean() / weighted.mean())
    return out
  return masking


def brightness_variants(args) -> None:
  """Luma block weights redistributed by brightness (`_brightness_masking`, each of
  `--exponents`) with the trellis lambda times each of `--lambda-factors`, at the default
  mode's operating points (`_operating_points`)."""
  from djpeg import perceptual
  variants = {"block masking             ": {}}
  for k in (float(x) for x in args.exponents.split(",")):
    for f in (float(x) for x in args.lambda_factors.split(",")):
      variants[f"brightness {k:<+5} lambda x {f:<4}"] = {
          "masking": _brightness_masking(k), "LAMBDA": perceptual.LAMBDA * f}
  _operating_points(args, variants)


def chroma_fit_variants(args) -> None:
  """Subsampled chroma as libjpeg's box average (`--fits` 0) or fitted to the decoder's
  upsampling and mixed with the box average in each proportion of `--fits`
  (`perceptual.CHROMA_FIT`), at the default mode's operating points (`_operating_points`)."""
  _operating_points(args, {f"chroma fit {f:<4}": {"CHROMA_FIT": f}
                           for f in (float(x) for x in args.fits.split(","))})


def luma_fit_variants(args) -> None:
  """Y as libjpeg computes it (`--fits` none) or coded for the chroma the decoder will show, that
  chroma as plain rounding (rounded) or the candidate's trellis (trellis) quantizes it
  (`perceptual.LUMA_FIT`), at the default mode's operating points (`_operating_points`)."""
  _operating_points(args, {f"luma fit {f:<7}": {"LUMA_FIT": None if f == "none" else f}
                           for f in args.fits.split(",")})


def _smallest_meeting(image, target: float, quality: float, blocks=None):
  """(bytes, coefficients, p) of the smallest file on p's grid of a quarter unit (from the
  guess at `quality` minus 6, up to a unit past the first p that meets it) whose SSIMULACRA 2
  meets `target`, with `perceptual.LAMBDA` as it is now (a variant may have set it) and block
  weights `blocks` (None: the masking); None when no p does."""
  from djpeg import perceptual
  p, first, best = max(1.0, perceptual.guess(quality) - 6), None, None
  while p <= 100 and (first is None or p < first + 1.0):
    coefficients, size = image.trellis(p, lmbda=perceptual.LAMBDA, blocks=blocks)
    if image.score(coefficients) >= target:
      first = p if first is None else first
      best = (size, coefficients, p) if best is None or size < best[0] else best
    p += 0.25
  return best


def _operating_points(args, variants: dict, images: list[np.ndarray] | None = None) -> dict:
  """For each image and quality, the smallest file (p on a grid of a quarter unit) whose
  SSIMULACRA 2 meets libjpeg-turbo's at that quality, under each variant (name: overrides of
  `djpeg.perceptual`'s attributes); BD-rates of those files against libjpeg-turbo in SSIMULACRA 2 and butteraugli, as
  `bench/rd.py` computes them, on `--images` training images (seed `--seed`; or `images`)."""
  import djpeg
  from djpeg import perceptual
  shipped = {key: getattr(perceptual, key) for v in variants.values() for key in v}
  images = images if images is not None else training_images(args.images // 2, seed=args.seed)
  scorer = Scorer()
  bd = {name: ([], []) for name in variants}
  try:
    for px in images:
      anchor = scorer.curve(px, [pillow_jpeg(px, quality=q, subsampling=2, optimize=True)
                                 for q in QUALITIES])
      targets = None
      for name, overrides in variants.items():
        for key, value in shipped.items():
          setattr(perceptual, key, overrides.get(key, value))
        image = perceptual.PerceptualImage(px)
        targets = targets or [image.score(image.libjpeg(q)) for q in QUALITIES]
        files = []
        for q, target in zip(QUALITIES, targets):
          best = _smallest_meeting(image, target, q)
          files.append(djpeg.dumps(best[1] if best else image.libjpeg(q), progressive="optimize"))
        ours = scorer.curve(px, files)
        ra, rt = [a[0] for a in anchor], [a[0] for a in ours]
        bd[name][0].append(bd_rate(ra, [a[1] for a in anchor], rt, [a[1] for a in ours]))
        bd[name][1].append(bd_rate(ra, [-a[2] for a in anchor], rt, [-a[2] for a in ours]))
  finally:
    for key, value in shipped.items():
      setattr(perceptual, key, value)
  for name in variants:
    s2, ba = np.array(bd[name][0]), np.array(bd[name][1])
    print(f"{name}  SSIMULACRA 2 {s2.mean():7.2f}%  butteraugli {ba.mean():7.2f}%  "
          f"({len(images)} training images, seed {args.seed})")
  first = next(iter(variants))
  for name in list(variants)[1:]:
    d2 = np.array(bd[name][0]) - np.array(bd[first][0])
    da = np.array(bd[name][1]) - np.array(bd[first][1])
    print(f"{name} against {first.strip()}: SSIMULACRA 2 {d2.mean():+.2f} (se "
          f"{d2.std(ddof=1) / np.sqrt(len(d2)):.2f}), butteraugli {da.mean():+.2f} (se "
          f"{da.std(ddof=1) / np.sqrt(len(da)):.2f}) points")
  return bd


def warm_start(args) -> None:
  """One trellis pass priced by a nearby candidate's symbol counts against two passes from
  plain rounding (`PerceptualImage.trellis`), at pairs of p a search visits one after the
  other: bits and SSIMULACRA 2 of the two results."""
  from djpeg import perceptual
  images = training_images(args.images // 2, seed=args.seed)
  pairs = ((78.0, 78.6), (78.0, 77.2), (58.0, 59.5), (36.0, 34.5))
  bits, scores = [], []
  for px in images:
    for p0, p1 in pairs:
      cold = perceptual.PerceptualImage(px)
      cold_coefficients, cold_bytes = cold.trellis(p1)              # two passes, from rounding
      warm = perceptual.PerceptualImage(px)
      warm.trellis(p0)
      warm_coefficients, warm_bytes = warm.trellis(p1)              # one pass, priced at p0
      bits.append(warm_bytes / cold_bytes - 1)
      scores.append(warm.score(warm_coefficients) - cold.score(cold_coefficients))
  print(f"{len(bits)} pairs on {len(images)} training images (seed {args.seed}): file bytes "
        f"{100 * np.mean(bits):+.3f}% (sd {100 * np.std(bits):.3f}%), SSIMULACRA 2 "
        f"{np.mean(scores):+.3f} (sd {np.std(scores):.3f}), one warm pass against two cold")


def _tile_ssimulacra2_loss(reference, distorted) -> float:
  """100 - SSIMULACRA 2 of one tile (djpeg's compiled scorer): a distance, higher is worse."""
  from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
  return 100.0 - float(np.asarray(ssimulacra2_against(ssimulacra2_reference(reference),
                                                      distorted)))


def _tile_map(pixels, decoded, distance=None, tile: int = 64) -> np.ndarray:
  """`(H, W)`: `distance` (butteraugli by default) of each `tile` x `tile` tile of the decode
  (the last row and column of tiles shifted inside the image), spread over its pixels."""
  distance = distance or Scorer._butteraugli
  height, width = pixels.shape[:2]
  out = np.zeros((height, width))
  for y in range(0, height, tile):
    for x in range(0, width, tile):
      y0, x0 = min(y, max(height - tile, 0)), min(x, max(width - tile, 0))
      out[y:y + tile, x:x + tile] = distance(
          np.ascontiguousarray(pixels[y0:y0 + tile, x0:x0 + tile]),
          np.ascontiguousarray(decoded[y0:y0 + tile, x0:x0 + tile]))
  return out


def _reweighted(weights, tile_map, gamma):
  """Block weights scaled by (the block's tile distance / the median block's)^gamma, clipped to
  [1/4, 4]; 4:2:0 chroma blocks cover 16x16 pixels."""
  out = []
  for c, w in enumerate(weights):
    size = 8 if c == 0 else 16
    rows, cols = w.shape
    # The map edge-padded to the block grid (a partial block's max is unchanged), then the max
    # over each block's size x size pixels.
    padded = np.pad(tile_map, ((0, max(rows * size - tile_map.shape[0], 0)),
                               (0, max(cols * size - tile_map.shape[1], 0))), mode="edge")
    per_block = padded[:rows * size, :cols * size].reshape(rows, size, cols, size).max(axis=(1, 3))
    out.append(w * np.clip((per_block / np.median(per_block)) ** gamma, 0.25, 4.0))
  return out


def butteraugli_loop(args) -> None:
  import djpeg
  from djpeg import codec, perceptual, sampling
  from djpeg.butteraugli import ButteraugliReference, butteraugli_diffmap

  gammas = [float(g) for g in args.gammas.split(",")]
  names = ["masking"] + [f"gamma {g:g}" for g in gammas]
  images = training_images(args.images // 2, seed=args.seed)
  factors = sampling.factors_for("4:2:0", 3)
  scorer = Scorer()
  bd = {name: ([], []) for name in names}
  for n, px in enumerate(images):
    anchor = scorer.curve(px, [pillow_jpeg(px, quality=q, subsampling=2, optimize=True)
                               for q in QUALITIES])
    image = perceptual.PerceptualImage(px)
    masking = image._prepare("4:2:0")[1]
    reference = ButteraugliReference(px)
    files = {name: [] for name in names}
    for q in QUALITIES:
      target = image.score(image.libjpeg(q))
      best = _smallest_meeting(image, target, q)
      if best is None:
        for name in names:
          files[name].append(djpeg.dumps(image.libjpeg(q), progressive="optimize"))
        continue
      files["masking"].append(djpeg.dumps(best[1], progressive="optimize"))
      for g in gammas:
        blocks, coefficients = masking, best[1]
        for _ in range(args.passes):
          distances = butteraugli_diffmap(reference, codec.decode_samples(coefficients))
          blocks = perceptual.butteraugli_weights(blocks, distances, factors, g, args.limit)
          coefficients = image.trellis(best[2], blocks=blocks)[0]
        found = _smallest_meeting(image, target, q, blocks)
        files[f"gamma {g:g}"].append(djpeg.dumps(found[1] if found else image.libjpeg(q),
                                                 progressive="optimize"))
    ra = [a[0] for a in anchor]
    for name in names:
      ours = scorer.curve(px, files[name])
      rt = [a[0] for a in ours]
      bd[name][0].append(bd_rate(ra, [a[1] for a in anchor], rt, [a[1] for a in ours]))
      bd[name][1].append(bd_rate(ra, [-a[2] for a in anchor], rt, [-a[2] for a in ours]))
    print(f"image {n}: " + "; ".join(f"{name} {bd[name][0][-1]:+.2f} / {bd[name][1][-1]:+.2f}"
                                     for name in names), flush=True)
  for name in names:
    print(f"{name}: SSIMULACRA 2 {np.mean(bd[name][0]):.2f}%, butteraugli "
          f"{np.mean(bd[name][1]):.2f}% ({len(images)} training images, seed {args.seed}, "
          f"{args.passes} passes)")
  for name in names[1:]:
    d2 = np.array(bd[name][0]) - np.array(bd["masking"][0])
    da = np.array(bd[name][1]) - np.array(bd["masking"][1])
    k = np.sqrt(len(d2))
    print(f"{name} against the masking alone: SSIMULACRA 2 {d2.mean():+.2f} (se "
          f"{d2.std(ddof=1) / k:.2f}), butteraugli {da.mean():+.2f} (se {da.std(ddof=1) / k:.2f})"
          " points")


def butteraugli_map(args) -> None:
  import djpeg
  from djpeg import perceptual

  def code(pixels, p, weights=None):
    """(file, its decode, its SSIMULACRA 2) of the perceptual trellis at p."""
    image = perceptual.PerceptualImage(pixels)
    if weights is not None:
      dct, _ = image._prepare("4:2:0")
      image._prepared["4:2:0"] = (dct, weights)
    coefficients = image.trellis(p)[0]
    data = djpeg.dumps(coefficients, progressive="optimize")
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), image.score(coefficients)

  gammas = [float(g) for g in args.gammas.split(",")]
  ratios = {g: [] for g in gammas}
  s2_change = {g: [] for g in gammas}
  images = training_images(args.images // 2, seed=args.seed)
  for n, pixels in enumerate(images):
    for p in (45.0, 70.0):
      data, decoded, s2 = code(pixels, p)
      distance = Scorer._butteraugli(pixels, decoded)
      tile_distance = _tile_ssimulacra2_loss if args.map == "ssimulacra2" else None
      tiles = _tile_map(pixels, decoded, tile_distance, args.tile)
      _, weights = perceptual.PerceptualImage(pixels)._prepare("4:2:0")
      row = []
      for g in gammas:
        scaled, tile_map = weights, tiles
        for iteration in range(args.iterations):
          if iteration:              # the map of the previous pass's decode, at p
            tile_map = _tile_map(pixels, code(pixels, p, scaled)[1], tile_distance, args.tile)
          scaled = _reweighted(scaled, tile_map, g)
        points = sorted((len(d), Scorer._butteraugli(pixels, dec), score) for d, dec, score in (
            code(pixels, p + dp, scaled) for dp in (-4, -2, 0, 2, 4)))
        sizes, distances, scores = np.array(points).T
        inside = sizes[0] <= len(data) <= sizes[-1]
        at = float(np.interp(len(data), sizes, distances)) if inside else float("nan")
        s2_at = float(np.interp(len(data), sizes, scores)) if inside else float("nan")
        ratios[g].append(at / distance)
        s2_change[g].append(s2_at - s2)
        row.append(f"gamma {g:g}: {at:.3f} (SSIMULACRA 2 {s2_at - s2:+.2f})")
      print(f"image {n} p {p:g}: {len(data)} bytes, butteraugli {distance:.3f}, SSIMULACRA 2 "
            f"{s2:.2f}; at equal bytes " + ", ".join(row), flush=True)
  for g in gammas:
    r, d = np.array(ratios[g]), np.array(s2_change[g])
    count = np.isfinite(r).sum()
    print(f"gamma {g:g}: butteraugli at equal bytes / unweighted, mean {np.nanmean(r):.4f} "
          f"(se {np.nanstd(r) / np.sqrt(count):.4f}, {count} points); SSIMULACRA 2 change "
          f"{np.nanmean(d):+.2f} (se {np.nanstd(d) / np.sqrt(count):.2f})")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("tune")
  p.add_argument("--images", type=int, default=8)
  p.add_argument("--evaluations", type=int, default=70)
  p.add_argument("--start", choices=tuple(STARTS), default="round1")
  p.set_defaults(func=tune)
  p = sub.add_parser("guess")
  p.add_argument("--images", type=int, default=12)
  p.set_defaults(func=guess)
  p = sub.add_parser("full-chroma")
  p.add_argument("--images", type=int, default=24)
  p.add_argument("--seed", type=int, default=11)
  p.add_argument("--qualities", default="88,90,92,94,95,96,98")
  p.set_defaults(func=full_chroma)
  def operating_points_command(name, func, seed=5, **lists):
    """A subcommand measured at the default mode's operating points: --images, --seed, and one
    comma-separated list option per keyword (its default)."""
    q = sub.add_parser(name)
    q.add_argument("--images", type=int, default=12)
    q.add_argument("--seed", type=int, default=seed)
    for option, default in lists.items():
      q.add_argument("--" + option.replace("_", "-"), default=default)
    q.set_defaults(func=func)
  operating_points_command("lambda", lambda_factors, factors="1,0.3")
  operating_points_command("chroma", chroma_factors, factors="1,0.85")
  operating_points_command("masking", masking_variants, blends="1,0.5")
  operating_points_command("pooling", pooling_variants, gammas="-1,-0.5")
  operating_points_command("brightness", brightness_variants, exponents="-1", lambda_factors="1")
  operating_points_command("chroma-fit", chroma_fit_variants, fits="0,1,0.5")
  operating_points_command("luma-fit", luma_fit_variants, fits="none,rounded,trellis")
  p = sub.add_parser("parts")
  p.add_argument("--images", type=int, default=12)
  p.add_argument("--seed", type=int, default=7)
  p.add_argument("--qualities", default="35,65")
  p.set_defaults(func=parts)
  operating_points_command("luma-slope", luma_slope_variants, slopes="1,1.2,0.85")
  operating_points_command("trellis-weights", trellis_weight_variants, gammas="1,0.7,1.3")
  operating_points_command("dering", dering_variants, modes="none,white,both")
  operating_points_command("low-lambda", low_lambda_variants, factors="1,0.7,1.4", below="45")
  p = sub.add_parser("butteraugli-map")
  p.add_argument("--images", type=int, default=6)
  p.add_argument("--seed", type=int, default=3)
  p.add_argument("--gammas", default="0.5,1,2")
  p.add_argument("--iterations", type=int, default=1,
                 help="passes of re-weighting, each from the previous pass's map")
  p.add_argument("--tile", type=int, default=64, help="tile side in pixels")
  p.add_argument("--map", choices=("butteraugli", "ssimulacra2"), default="butteraugli",
                 help="the tiles' distance: butteraugli, or 100 - SSIMULACRA 2 (djpeg's own)")
  p.set_defaults(func=butteraugli_map)
  p = sub.add_parser("butteraugli-loop")
  p.add_argument("--images", type=int, default=12)
  p.add_argument("--seed", type=int, default=5)
  p.add_argument("--gammas", default="3")
  p.add_argument("--passes", type=int, default=2)
  p.add_argument("--limit", type=float, default=4.0)
  p.set_defaults(func=butteraugli_loop)
  p = sub.add_parser("warm")
  p.add_argument("--images", type=int, default=10)
  p.add_argument("--seed", type=int, default=21)
  p.set_defaults(func=warm_start)
  args = parser.parse_args()
  args.func(args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
