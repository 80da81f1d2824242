"""Speed of per-image table optimization and of the learned table predictor, on Kodak.

  python bench/optimize_speed.py [--images ../shared/data/kodak] [--limit 6]

Times `djpeg.optimize_tables` (100 Adam steps in the DCT domain, plus the target search) for a
bits-per-pixel, a PSNR and a lambda target on each image, after a first call that compiles for
the image size (reported separately), and `djpeg.models.qtable_net.predict_tables` (the shipped
QTableNet) for the same targets. libjpeg-turbo's encode time (Pillow, optimize=True) is printed
beside them as a yardstick.
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


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--limit", type=int, default=6)
  args = parser.parse_args()

  import djpeg

  paths = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.limit or None]
  images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  images = [x for x in images if x.shape == images[0].shape]   # one size: one compilation
  if not images:
    print(f"no PNG images in {args.images}", file=sys.stderr)
    return 1
  h, w = images[0].shape[:2]
  targets = {"bpp=1.0": dict(bpp=1.0), "psnr=35": dict(psnr=35.0), "lmbda=0.01": dict(lmbda=0.01)}

  try:
    from djpeg.models.qtable_net import predict_tables
  except ImportError:
    predict_tables = None

  first = images[0].astype(np.float32) / 255
  compile_s = {}
  for name, target in targets.items():
    compile_s[name] = _timed(lambda: djpeg.optimize_tables(first, **target))[1]
    if predict_tables is not None:
      _timed(lambda: predict_tables(first, **target))

  rows = {name: [] for name in targets}
  rows_net = {name: [] for name in targets}
  pillow = []
  for pixels in images:
    image = pixels.astype(np.float32) / 255
    for name, target in targets.items():
      rows[name].append(_timed(lambda: djpeg.optimize_tables(image, **target))[1])
      if predict_tables is not None:
        rows_net[name].append(_timed(lambda: predict_tables(image, **target))[1])
    buf = io.BytesIO()
    pillow.append(_timed(lambda: Image.fromarray(pixels).save(buf, "JPEG", quality=75,
                                                             optimize=True))[1])

  print(f"{len(images)} images of {w}x{h} from {args.images}; median seconds per image "
        "(compiled; first-call compile time apart).\n")
  print("| target | optimize_tables | compile (first call) | QTableNet predict_tables | speed-up |")
  print("|---|---|---|---|---|")
  for name in targets:
    opt = float(np.median(rows[name]))
    net = float(np.median(rows_net[name])) if rows_net[name] else float("nan")
    print(f"| {name} | {opt:.2f} s | {compile_s[name]:.1f} s | {net:.3f} s | {opt / net:.0f}x |")
  print(f"\nlibjpeg-turbo (Pillow, q75, optimize=True) encode: {1e3 * float(np.median(pillow)):.1f} ms "
        "per image, for scale.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
