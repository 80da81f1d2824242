"""Speed of the file backend beside libjpeg-turbo (Pillow), measured in one run.

  python bench/export_speed.py [--images DIR] [--limit N] [--quality 75] [--repeats 3]

Export: megapixels per second from an 8-bit RGB image to JPEG bytes. Ours is `djpeg.dumps` of
the pixels: the JAX transform (`djpeg.encode`'s exact path for 8-bit input, faithful to
libjpeg-turbo) followed by the numpy entropy coder; the anchor is Pillow's `save(optimize=True)` for baseline
and `save(progressive=True)` for progressive files. Our time is split into the transform and the
entropy coding (which includes checking and converting the coefficients), so it shows where time
goes. Import: bytes to quantized coefficients with `djpeg.load_coefficients`, beside Pillow's
full decode to pixels (libjpeg-turbo does not expose coefficients; its decode does more work).

The JAX compile of each image shape is done first and reported separately. Times are the median
of `--repeats` runs per image, summed over the images; megapixels count image pixels (H x W).
The default images are the 24 Kodak PNGs (768x512) in ../shared/data/kodak.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time

import numpy as np
from PIL import Image, features

from common import KODAK, load_rgb, median_time, png_paths


def _pillow_save(image: Image.Image, **options) -> bytes:
  buf = io.BytesIO()
  image.save(buf, "JPEG", **options)
  return buf.getvalue()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", default=KODAK,
                      help="folder of PNG images (default: ../shared/data/kodak)")
  parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
  parser.add_argument("--quality", type=int, default=75)
  parser.add_argument("--subsampling", default="4:2:0", choices=["4:4:4", "4:2:2", "4:2:0"])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  import jax
  import djpeg

  images = [load_rgb(p) for p in png_paths(args.images, args.limit)]
  pil_sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[args.subsampling]
  q, sub = args.quality, args.subsampling

  from djpeg.codec import encode_pixels

  def transform(x):
    # What `djpeg.dumps(x)` does for 8-bit pixels before entropy coding.
    return jax.block_until_ready(encode_pixels(x, quality=q, subsampling=sub))

  start = time.perf_counter()
  for shape in sorted({x.shape for x in images}):
    transform(np.zeros(shape, np.uint8))
  compile_s = time.perf_counter() - start

  totals = dict.fromkeys(["transform", "entropy_base", "entropy_prog", "pil_base", "pil_prog",
                          "load_base", "load_prog", "pil_dec_base", "pil_dec_prog"], 0.0)
  sizes = dict.fromkeys(["ours_base", "pil_base", "ours_prog", "pil_prog"], 0)
  pixels = 0
  for x in images:
    pixels += x.shape[0] * x.shape[1]
    pil_image = Image.fromarray(x)
    c = transform(x)
    ours_base, ours_prog = djpeg.dumps(c), djpeg.dumps(c, progressive=True)
    pil_base = _pillow_save(pil_image, quality=q, subsampling=pil_sub, optimize=True)
    pil_prog = _pillow_save(pil_image, quality=q, subsampling=pil_sub, progressive=True)
    for key, data in (("ours_base", ours_base), ("pil_base", pil_base), ("ours_prog", ours_prog),
                      ("pil_prog", pil_prog)):
      sizes[key] += len(data)
    r = args.repeats
    totals["transform"] += median_time(lambda: transform(x), r)
    totals["entropy_base"] += median_time(lambda: djpeg.dumps(c), r)
    totals["entropy_prog"] += median_time(lambda: djpeg.dumps(c, progressive=True), r)
    totals["pil_base"] += median_time(
        lambda: _pillow_save(pil_image, quality=q, subsampling=pil_sub, optimize=True), r)
    totals["pil_prog"] += median_time(
        lambda: _pillow_save(pil_image, quality=q, subsampling=pil_sub, progressive=True), r)
    totals["load_base"] += median_time(lambda: djpeg.load_coefficients(ours_base), r)
    totals["load_prog"] += median_time(lambda: djpeg.load_coefficients(ours_prog), r)
    totals["pil_dec_base"] += median_time(lambda: Image.open(io.BytesIO(pil_base)).load(), r)
    totals["pil_dec_prog"] += median_time(lambda: Image.open(io.BytesIO(pil_prog)).load(), r)

  mp = pixels / 1e6
  n = len(images)

  def rate(seconds):
    return mp / seconds

  print(f"{n} images from {args.images}, {mp:.2f} MP in all, quality {q}, {sub}; "
        f"median of {args.repeats} runs each")
  print(f"jax {jax.__version__} ({jax.default_backend()}), Pillow {Image.__version__} "
        f"(libjpeg-turbo {features.version('libjpeg_turbo')}), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs")
  print(f"one-off JAX compile (per image shape, excluded below): {compile_s:.1f} s\n")
  header = f"{'':34s}{'djpeg MP/s':>11s}{'Pillow MP/s':>13s}{'ratio':>8s}   djpeg ms/image: transform + entropy"
  print(header)
  for label, ent, anchor in (("export baseline (optimize=True)", "entropy_base", "pil_base"),
                             ("export progressive", "entropy_prog", "pil_prog")):
    ours = totals["transform"] + totals[ent]
    print(f"{label:34s}{rate(ours):11.1f}{rate(totals[anchor]):13.1f}"
          f"{totals[anchor] / ours:8.2f}   {1e3 * ours / n:6.1f} = {1e3 * totals['transform'] / n:.1f}"
          f" + {1e3 * totals[ent] / n:.1f} ({100 * totals[ent] / ours:.0f}% entropy)")
  print(f"{'  entropy coding alone, baseline':34s}{rate(totals['entropy_base']):11.1f}")
  print(f"{'  entropy coding alone, progressive':34s}{rate(totals['entropy_prog']):11.1f}")
  print(f"{'  transform alone (djpeg.encode)':34s}{rate(totals['transform']):11.1f}")
  print(f"\n{'':34s}{'djpeg MP/s':>11s}{'Pillow MP/s':>13s}{'ratio':>8s}   (Pillow: full decode to pixels)")
  for label, ours, anchor in (("import baseline (bytes -> coefs)", "load_base", "pil_dec_base"),
                              ("import progressive", "load_prog", "pil_dec_prog")):
    print(f"{label:34s}{rate(totals[ours]):11.1f}{rate(totals[anchor]):13.1f}"
          f"{totals[anchor] / totals[ours]:8.2f}")
  print(f"\nbytes: ours {sizes['ours_base']} vs Pillow {sizes['pil_base']} (baseline), "
        f"ours {sizes['ours_prog']} vs Pillow {sizes['pil_prog']} (progressive)")


if __name__ == "__main__":
  main()
