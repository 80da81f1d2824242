"""Region-of-interest benchmark: PSNR inside a mask at equal file size, on real files.

  python bench/roi.py [--images ../shared/data/kodak] [--limit N] [--qualities 50,75]
                      [--background 0.1]

Each image gets a mask covering a quarter of it: a centred ellipse (even-numbered images) or an
off-centre rectangle (odd ones), defined here. The byte budget is libjpeg-turbo's uniform file
at each quality (Pillow, 4:2:0, optimize=True). At that budget (every file at most as large):

  libjpeg-turbo          the uniform file itself
  djpeg uniform          djpeg.encoder.compress(bpp=budget): optimized tables + trellis, no map
  MS-ROI                 Prakash et al. 2017: mosaic of Q100 (saliency >= median) and Q80 decodes,
                         re-encoded once by libjpeg-turbo at the highest quality that fits
  djpeg ROI              compress(bpp=budget, saliency=mask): the same with the mask

PSNR (RGB, 8-bit) is measured on Pillow's decode, inside the mask, outside it and overall. Sizes
are whole files. Nothing is tuned on Kodak: it is the report set.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS = ("libjpeg-turbo", "djpeg uniform", "MS-ROI", "djpeg ROI")


def mask_for(index: int, height: int, width: int) -> np.ndarray:
  """A bool mask covering a quarter of the image: ellipse for even index, rectangle for odd."""
  rows, cols = np.mgrid[0:height, 0:width]
  if index % 2 == 0:
    k = np.sqrt(0.25 / np.pi)   # pi * (k H) * (k W) = H W / 4
    return ((rows - height / 2) / (k * height)) ** 2 + ((cols - width / 2) / (k * width)) ** 2 <= 1
  top, left = height // 6, width // 5
  return (rows >= top) & (rows < top + height // 2) & (cols >= left) & (cols < left + width // 2)


def pillow(pixels, **options) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", **options)
  return buf.getvalue()


def psnr(a, b) -> float:
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(data: bytes, pixels: np.ndarray, mask: np.ndarray) -> tuple:
  """(bits per pixel, PSNR inside, PSNR outside, PSNR overall) of a file decoded by Pillow."""
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  return (8 * len(data) / mask.size, psnr(decoded[mask], pixels[mask]),
          psnr(decoded[~mask], pixels[~mask]), psnr(decoded, pixels))


def largest_quality_within(encode, budget: int) -> bytes:
  """The file from `encode(q)` at the highest quality 1..100 whose size is at most `budget`."""
  lo, hi, best = 1, 100, encode(1)
  while lo <= hi:
    mid = (lo + hi) // 2
    data = encode(mid)
    if len(data) <= budget:
      best, lo = data, mid + 1
    else:
      hi = mid - 1
  return best


def run_image(index, pixels, qualities, background, say):
  import djpeg
  from djpeg import roi
  from djpeg.encoder import compress
  height, width, _ = pixels.shape
  mask = mask_for(index, height, width)
  out = {name: [] for name in ROWS}
  timing = []
  for q in qualities:
    anchor = pillow(pixels, quality=q, subsampling=2, optimize=True)
    budget = len(anchor)
    bpp = 8 * budget / (height * width)
    files = {"libjpeg-turbo": anchor}
    files["djpeg uniform"] = djpeg.dumps(compress(pixels, bpp=bpp).coefficients)
    mosaic = roi.msroi_mosaic(pixels, mask)
    files["MS-ROI"] = largest_quality_within(
        lambda g: pillow(mosaic, quality=g, subsampling=2, optimize=True), budget)
    start = time.perf_counter()
    result = compress(pixels, bpp=bpp, saliency=mask, background=background)
    timing.append(time.perf_counter() - start)
    files["djpeg ROI"] = djpeg.dumps(result.coefficients)
    for name, data in files.items():
      assert len(data) <= budget, (name, len(data), budget)
      out[name].append(measure(data, pixels, mask))
    say(f"  q{q} budget {budget} B: " + " | ".join(
        f"{name} {out[name][-1][1]:.2f}/{out[name][-1][2]:.2f} dB" for name in ROWS))
  return out, timing


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--limit", type=int, default=0)
  parser.add_argument("--qualities", default="50,75")
  parser.add_argument("--background", type=float, default=None,
                      help="djpeg ROI's background weight (default: djpeg.roi.BACKGROUND)")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args()
  from djpeg import roi
  background = roi.BACKGROUND if args.background is None else args.background
  paths = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.limit or None]
  if not paths:
    print(f"no PNG images in {args.images}", file=sys.stderr)
    return 1
  qualities = [int(q) for q in args.qualities.split(",")]
  say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
  results, timing = [], []
  for i, path in enumerate(paths):
    say(os.path.basename(path))
    pixels = np.asarray(Image.open(path).convert("RGB"))
    r, t = run_image(i, pixels, qualities, background, say)
    results.append(r)
    timing += t
  print(f"\nRegion of interest on {len(paths)} images from {args.images}: masks of a quarter of "
        f"each image (ellipses and rectangles); budget: libjpeg-turbo 4:2:0 optimize at each "
        f"quality; every file at most that size. djpeg ROI background weight {background}.\n")
  for qi, q in enumerate(qualities):
    print(f"quality {q} budget:\n")
    print("| encoder | mean bpp | PSNR inside mask | PSNR outside | PSNR overall | inside vs "
          "libjpeg-turbo |")
    print("|---|---|---|---|---|---|")
    base = np.array([r["libjpeg-turbo"][qi] for r in results])
    for name in ROWS:
      pts = np.array([r[name][qi] for r in results])
      gain = pts[:, 1] - base[:, 1]
      print(f"| {name} | {pts[:, 0].mean():.3f} | {pts[:, 1].mean():.2f} dB | "
            f"{pts[:, 2].mean():.2f} dB | {pts[:, 3].mean():.2f} dB | {gain.mean():+.2f} dB "
            f"(min {gain.min():+.2f}) |")
    ours = np.array([r["djpeg ROI"][qi][1] for r in results])
    for name in ("djpeg uniform", "MS-ROI"):
      other = np.array([r[name][qi][1] for r in results])
      print(f"\ndjpeg ROI inside the mask vs {name}: {np.mean(ours - other):+.2f} dB "
            f"(min over images {np.min(ours - other):+.2f} dB)")
    print()
  print(f"djpeg ROI encode time: median {np.median(timing):.1f} s per file (table optimization, "
        "trellis, target search; the first call per image size includes compilation).")
  return 0


if __name__ == "__main__":
  sys.exit(main())
