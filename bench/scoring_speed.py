"""What the compiled loops save: SSIMULACRA 2 scoring and the default mode, with the candidate
side as numba loops (`djpeg.error_maps`, `djpeg.recursive_gaussian`: the library's path on a
CPU) and as XLA with the scans (the differentiable path), and the default mode without its
butteraugli look (`--fast`), beside mozjpeg's encode of the same images, in one run.

  python bench/scoring_speed.py [--limit 6] [--quality 75]

Warm figures (each image size compiled before timing), medians over the images.
"""

from __future__ import annotations

import argparse
import numpy as np

from common import KODAK, load_rgb, median_time, png_paths
from rd import mozjpeg


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--limit", type=int, default=6)
  parser.add_argument("--quality", type=float, default=75)
  args = parser.parse_args()
  from djpeg import perceptual, ssimulacra2
  images = [load_rgb(p) for p in png_paths(KODAK, args.limit)]
  compiled = ssimulacra2._use_compiled
  paths = {"compiled loops": compiled, "XLA and scans": lambda *arrays: False}
  rows = {name: {"score": [], "default": []} for name in paths}
  largest = 0.0
  for image in images:
    scores = {}
    for name, path in paths.items():
      ssimulacra2._use_compiled = path
      try:
        prepared = perceptual.PerceptualImage(image)
        candidate, _ = prepared.trellis(perceptual.guess(args.quality))
        prepared.score(candidate)                       # compile this size
        perceptual.meet_libjpeg(image, args.quality)
        rows[name]["score"].append(median_time(lambda: prepared.score(candidate), 3))
        rows[name]["default"].append(
            median_time(lambda: perceptual.meet_libjpeg(image, args.quality), 3))
        scores[name] = prepared.score(candidate)
      finally:
        ssimulacra2._use_compiled = compiled
    largest = max(largest, abs(scores["compiled loops"] - scores["XLA and scans"]))
  # The default mode without butteraugli's second look (`--fast`), on the library's path.
  fast = [median_time(lambda: perceptual.meet_libjpeg(image, args.quality, second_look=False), 3)
          for image in images]
  moz = [median_time(lambda: mozjpeg(image, int(args.quality)), 3) for image in images]
  megapixels = float(np.median([i.shape[0] * i.shape[1] / 1e6 for i in images]))
  print(f"{len(images)} Kodak images ({megapixels:.2f} MP), quality {args.quality:g}, warm, "
        f"medians; largest score difference between the paths: {largest:.1e}")
  print(f"{'':24s} {'score one candidate':>20s} {'default mode':>14s} {'MP/s':>8s}")
  for name, row in rows.items():
    score, default = np.median(row["score"]), np.median(row["default"])
    print(f"djpeg, {name:17s} {score * 1e3:17.0f} ms {default:12.2f} s {megapixels / default:8.2f}")
  print(f"{'djpeg, --fast':24s} {'':>20s} {np.median(fast):12.2f} s "
        f"{megapixels / np.median(fast):8.2f}")
  print(f"{'mozjpeg 4.0.3':24s} {'':>20s} {np.median(moz):12.3f} s "
        f"{megapixels / np.median(moz):8.2f}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
