"""Speed of trellis export beside mozjpeg's (its trellis) and libjpeg-turbo's, in one run.

  python bench/trellis_speed.py [--images DIR] [--limit N] [--quality 75] [--repeats 5]

Export: megapixels per second from 8-bit RGB pixels to JPEG bytes at one quality (4:2:0):

  djpeg trellis            djpeg.dumps(pixels, quality=q, trellis=True): the JAX transform, the
                           tables' slope, two trellis rounds and the entropy coder (baseline)
  djpeg trellis prog.      the same, progressive (libjpeg's scan script)
  djpeg trellis opt. scans the same, progressive with the smallest of a family of scripts
  djpeg (no trellis)       djpeg.dumps(pixels, quality=q)
  mozjpeg 4.0.3            jpeglib's bundled mozjpeg, defaults (trellis, progressive), to a file
                           in a temporary directory and read back, as bench/rd.py calls it
  libjpeg-turbo            Pillow, optimize=True

Our time is also split into the transform, the trellis (slope, rounds, cost evaluations) and
the entropy coding. The JAX compile of each image shape is done first and left out. Times are the
median of `--repeats` runs per image, summed over images; megapixels count image pixels. The
machine is shared: compare rows from the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from common import KODAK, load_rgb, median_time, png_paths


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", default=KODAK)
  parser.add_argument("--limit", type=int, default=None)
  parser.add_argument("--quality", type=int, default=75)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  import jax
  import djpeg
  from djpeg import encoder
  from common import pillow_jpeg as pillow
  from rd import mozjpeg

  images = [load_rgb(p) for p in png_paths(args.images, args.limit)]
  q = args.quality

  start = time.perf_counter()
  for shape in sorted({x.shape for x in images}):
    djpeg.dumps(np.zeros(shape, np.uint8), quality=q, trellis=True)
  compile_s = time.perf_counter() - start

  rows = {"djpeg trellis": lambda x: djpeg.dumps(x, quality=q, trellis=True),
          "djpeg trellis progressive": lambda x: djpeg.dumps(x, quality=q, trellis=True,
                                                             progressive=True),
          "djpeg trellis progressive, optimized scans": lambda x: djpeg.dumps(
              x, quality=q, trellis=True, progressive="optimize"),
          "djpeg (no trellis)": lambda x: djpeg.dumps(x, quality=q),
          "mozjpeg 4.0.3 (trellis, progressive)": lambda x: mozjpeg(x, q),
          "libjpeg-turbo (Pillow, optimize)": lambda x: pillow(x, quality=q, subsampling=2,
                                                              optimize=True)}
  totals = dict.fromkeys(rows, 0.0)
  sizes = dict.fromkeys(rows, 0)
  parts = dict.fromkeys(["transform", "trellis", "entropy"], 0.0)
  pixels = 0
  r = args.repeats
  for x in images:
    pixels += x.shape[0] * x.shape[1]
    for name, fn in rows.items():
      sizes[name] += len(fn(x))
      totals[name] += median_time(lambda: fn(x), r)
    # Where the time goes, for the baseline trellis export.
    tables = np.asarray(djpeg.resolve_tables(q, None, (), 3))
    problem = encoder.TrellisImage(x.astype(np.float32) / 255, "4:2:0", None, x)
    parts["transform"] += median_time(
        lambda: encoder.TrellisImage(x.astype(np.float32) / 255, "4:2:0", None, x), r)
    chosen = problem.trellis(tables, None, 2)
    parts["trellis"] += median_time(lambda: problem.trellis(tables, None, 2), r)
    c = problem.coefficients(tables, chosen)
    parts["entropy"] += median_time(lambda: djpeg.dumps(c), r)

  mp = pixels / 1e6
  print(f"{len(images)} images from {args.images}, {mp:.2f} MP in all, quality {q}, 4:2:0; "
        f"median of {r} runs each")
  print(f"jax {jax.__version__} ({jax.default_backend()}), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; one-off JAX compile (excluded): {compile_s:.1f} s\n")
  print("| encoder | MP/s | ms per image | bytes (all images) |")
  print("|---|---|---|---|")
  for name in rows:
    print(f"| {name} | {mp / totals[name]:.2f} | {1e3 * totals[name] / len(images):.0f} | "
          f"{sizes[name]} |")
  total = sum(parts.values())
  print("\ndjpeg trellis, baseline, per image: " + " + ".join(
      f"{k} {1e3 * v / len(images):.0f} ms ({100 * v / total:.0f}%)" for k, v in parts.items()))
  print("djpeg trellis vs mozjpeg speed: "
        f"{totals['mozjpeg 4.0.3 (trellis, progressive)'] / totals['djpeg trellis']:.2f}x "
        f"(baseline), {totals['mozjpeg 4.0.3 (trellis, progressive)'] / totals['djpeg trellis progressive']:.2f}x (progressive)")


if __name__ == "__main__":
  main()
