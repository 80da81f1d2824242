"""How well rate proxies predict the real entropy-coded size, on Kodak.

  python bench/rate_accuracy.py [--images ../shared/data/kodak] [--limit N]

For every image, quality (10..95), subsampling (4:4:4, 4:2:0) and kind of table (Annex K scaled
by quality; random tables; per-image optimized tables) this writes the real baseline file with
optimized Huffman tables (`djpeg.dumps`) and compares its entropy-coded bits (the scan data
without stuffed zero bytes) with each proxy's estimate from the same coefficients:

  huffman    djpeg.rate.rate: exact symbol counts, libjpeg's optimal code lengths (no fitting)
  entropy    djpeg.rate.rate(code="entropy"): ideal code lengths -log2 p   (no fitting)
  nonzeros   djpeg.rate.rate_nonzeros: bits proportional to the non-zero count
  log        djpeg.rate.rate_log: bits proportional to sum log2(1 + |q|)

The two ablation proxies get one global scale factor each, fitted on training images
(../shared/data/train/div2k256), never on Kodak. Reported: median and worst absolute relative
error, and the Spearman rank correlation across images within each (setting, quality) group
(the worst group). `djpeg.rate.file_bytes` against the whole file is reported too.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUALITIES = (10, 20, 30, 50, 75, 95)


def scan_bits(data: bytes) -> int:
  """Entropy-coded bits of a single-scan file, without the stuffed zero bytes."""
  pos = 2
  while True:
    marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
    pos += 2 + length
    if marker == 0xDA:
      break
  scan = data[pos:data.rindex(b"\xff\xd9")]
  return 8 * (len(scan) - scan.count(b"\xff\x00"))


def random_tables(quality: int, seed: int) -> np.ndarray:
  """Annex K tables at `quality`, each entry scaled by a random factor in [1/2, 2]."""
  import djpeg
  base = np.asarray(djpeg.quality_tables(quality))[[0, 1, 1]]
  factor = np.exp(np.random.default_rng(seed).uniform(np.log(0.5), np.log(2), base.shape))
  return np.clip(np.round(base * factor), 1, 255)


def settings(pixels, image):
  """(group name, quality, Coefficients) for every setting of one image."""
  import djpeg
  for subsampling in ("4:4:4", "4:2:0"):
    for q in QUALITIES:
      yield f"Annex K {subsampling}", q, djpeg.encode(image, quality=q, subsampling=subsampling)
      yield (f"random {subsampling}", q,
             djpeg.encode(image, tables=random_tables(q, q), subsampling=subsampling))
  for q, lmbda in ((20, 0.002), (50, 0.01), (95, 0.1)):
    result = djpeg.optimize_tables(image, lmbda=lmbda, subsampling="4:2:0", steps=60)
    yield "optimized 4:2:0", q, djpeg.encode(image, tables=result.tables, subsampling="4:2:0")


def estimates(c) -> dict:
  from djpeg import rate
  return {"huffman": float(rate.rate(c)), "entropy": float(rate.rate(c, code="entropy")),
          "nonzeros": float(rate.rate_nonzeros(c, bits_per_nonzero=1.0)),
          "log": float(rate.rate_log(c, bits_per_log2=1.0))}


def collect(paths, say):
  import djpeg
  from djpeg import rate
  rows = []
  for path in paths:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    image = pixels.astype(np.float32) / 255
    for group, q, c in settings(pixels, image):
      data = djpeg.dumps(c)
      rows.append(dict(image=os.path.basename(path), group=group, quality=q,
                       truth=scan_bits(data), file=len(data),
                       file_estimate=float(rate.file_bytes(c)), **estimates(c)))
    say(f"{os.path.basename(path)}: {len(rows)} files")
  return rows


def spearman(a, b) -> float:
  ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
  return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--train", default=os.path.join(REPO, "..", "shared", "data", "train",
                                                      "div2k256"))
  parser.add_argument("--limit", type=int, default=0)
  parser.add_argument("--fit-images", type=int, default=8)
  args = parser.parse_args()
  say = lambda m: print(m, flush=True)

  train = sorted(glob.glob(os.path.join(args.train, "*.png")))[: args.fit_images]
  test = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.limit or None]
  if not test:
    print(f"no PNG images in {args.images}", file=sys.stderr)
    return 1
  say(f"fitting the ablation proxies' scale on {len(train)} training images")
  fit = collect(train, say) if train else []
  scale = {"huffman": 1.0, "entropy": 1.0}
  for name in ("nonzeros", "log"):
    ratios = [r["truth"] / r[name] for r in fit if r[name] > 0]
    scale[name] = float(np.exp(np.mean(np.log(ratios)))) if ratios else 1.0
  say(f"scales: nonzeros {scale['nonzeros']:.3f} bits per non-zero, log {scale['log']:.3f} bits "
      "per log2(1+|q|)")
  rows = collect(test, say)

  print(f"\nRate proxies against the real entropy-coded bits on {len(test)} images "
        f"({len(rows)} files: Annex K, random and optimized tables, qualities {QUALITIES}, "
        "4:4:4 and 4:2:0):\n")
  print("| proxy | median abs. error | worst abs. error | worst within-group Spearman |")
  print("|---|---|---|---|")
  groups = sorted({(r["group"], r["quality"]) for r in rows})
  for name in ("huffman", "entropy", "nonzeros", "log"):
    errors = np.array([abs(scale[name] * r[name] / r["truth"] - 1) for r in rows])
    rho = min(spearman([r[name] for r in rows if (r["group"], r["quality"]) == g],
                       [r["truth"] for r in rows if (r["group"], r["quality"]) == g])
              for g in groups)
    print(f"| {name} | {100 * np.median(errors):.2f}% | {100 * errors.max():.2f}% | {rho:.4f} |")
  errors = np.array([abs(r["file_estimate"] / r["file"] - 1) for r in rows])
  print(f"\nfile_bytes against whole files: median {100 * np.median(errors):.2f}%, "
        f"worst {100 * errors.max():.2f}%")
  return 0


if __name__ == "__main__":
  sys.exit(main())
