"""Zoomed crops a person can judge: djpeg's default mode, mozjpeg, jpegli and libjpeg-turbo at
equal bytes, on a few Kodak images.

  python bench/crops.py [--images kodim05,kodim14,kodim23] [--quality 40]
                        [--out bench/results/crops_kodak.png]

For each image the byte budget is libjpeg-turbo's file at `--quality` (Pillow, 4:2:0, optimize);
every encoder's quality setting is then searched (bisection over 1..100) for the largest file
within the budget, so all four files have about the same size (each at most the budget). A
crop of each decode (the 128x128 region with the most detail, found on the original) is shown
3x enlarged, pixel for pixel, with the bytes and SSIMULACRA 2 of the whole image.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

from common import KODAK, REPO, load_rgb, pillow_jpeg
from rd import jpegli, mozjpeg


def _djpeg(pixels, quality) -> bytes:
  import djpeg
  from djpeg.encoder import compress
  return djpeg.dumps(compress(pixels, quality=quality).coefficients, progressive="optimize")


ENCODERS = {
    "libjpeg-turbo": lambda px, q: pillow_jpeg(px, quality=q, subsampling=2, optimize=True),
    "mozjpeg 4.0.3": mozjpeg,
    "jpegli": jpegli,
    "djpeg default": _djpeg,
}


def within(encode, pixels, budget: int) -> tuple[int, bytes]:
  """The quality (and file) of the largest file of `encode` at most `budget` bytes."""
  lo, hi = 1, 100
  best = (1, encode(pixels, 1))
  while lo <= hi:
    q = (lo + hi) // 2
    data = encode(pixels, q)
    if len(data) <= budget:
      best = (q, data)
      lo = q + 1
    else:
      hi = q - 1
  return best


def detail_crop(pixels: np.ndarray, size: int = 128) -> tuple[int, int]:
  """Top-left corner of the size x size window with the most local detail (gradient energy)."""
  gray = pixels.astype(np.float64).mean(axis=-1)
  energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
  integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  h, w = energy.shape
  sums = (integral[size:h + 1:8, size:w + 1:8] - integral[:h - size + 1:8, size:w + 1:8]
          - integral[size:h + 1:8, :w - size + 1:8] + integral[:h - size + 1:8, :w - size + 1:8])
  i, j = np.unravel_index(np.argmax(sums), sums.shape)
  return 8 * i, 8 * j


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default="kodim05,kodim14,kodim23")
  parser.add_argument("--quality", type=int, default=40)
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "crops_kodak.png"))
  args = parser.parse_args()
  from djpeg import metrics
  zoom, size, pad = 3, 128, 28
  rows = []
  for name in args.images.split(","):
    pixels = load_rgb(os.path.join(KODAK, name + ".png"))
    budget = len(ENCODERS["libjpeg-turbo"](pixels, args.quality))
    top, left = detail_crop(pixels, size)
    cells = []
    for label, encode in ENCODERS.items():
      quality, data = within(encode, pixels, budget)
      decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
      f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
      score = float(metrics.ssimulacra2(f(pixels), f(decoded)))
      crop = Image.fromarray(decoded[top:top + size, left:left + size]).resize(
          (zoom * size, zoom * size), Image.NEAREST)
      cells.append((f"{label} q{quality}: {len(data):,} B, SSIMULACRA 2 {score:.1f}", crop))
      print(f"{name} {label:14s} q{quality:3d} {len(data):7d} bytes (budget {budget}), "
            f"SSIMULACRA 2 {score:.2f}", flush=True)
    original = Image.fromarray(pixels[top:top + size, left:left + size]).resize(
        (zoom * size, zoom * size), Image.NEAREST)
    rows.append([(f"{name} original ({left},{top})", original)] + cells)
  width = zoom * size
  sheet = Image.new("RGB", (len(rows[0]) * (width + 8), len(rows) * (width + pad + 8)), "white")
  draw = ImageDraw.Draw(sheet)
  for r, row in enumerate(rows):
    for c, (label, image) in enumerate(row):
      x, y = c * (width + 8), r * (width + pad + 8)
      sheet.paste(image, (x, y + pad))
      draw.text((x + 2, y + 2), label[:60], fill="black")
      if len(label) > 60:
        draw.text((x + 2, y + 14), label[60:], fill="black")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  sheet.save(args.out)
  print(f"\n{args.out}: crops 3x enlarged, each encoder at most libjpeg-turbo's bytes at "
        f"q{args.quality}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
