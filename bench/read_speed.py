"""Speed of reading a JPEG's quantized coefficients, beside libjpeg's, measured in one run.

  python bench/read_speed.py [--images DIR] [--limit N] [--quality 85] [--repeats 5] [--large]
                             [--write]

The images (default: the 24 Kodak PNGs, 768x512, in ../shared/data/kodak) are encoded with
Pillow (libjpeg-turbo) at `--quality` with 4:2:0 subsampling, once as baseline and once as
progressive files, written to a temporary folder. Each file is then read from its path by
`djpeg.load_coefficients` and by `jpeglib.read_dct` (libjpeg's `jpeg_read_coefficients`; its
arrays are loaded lazily, so the timed call also touches Y, Cb, Cr and the tables); Pillow's full
decode to pixels (`Image.open(path).load()`) is shown for reference: it does more work (inverse
DCT, upsampling, colour conversion). Before timing, djpeg's coefficients are checked equal to
jpeglib's on every file.

Times are the median of `--repeats` warm calls per file, summed over the files; megapixels
count image pixels (H x W). djpeg's decoding loops are compiled by numba, all of them at a
program's first read (`cache=True`: the machine code is cached on disk, next to the modules in
`__pycache__`, and later processes load it instead of compiling); that first read is measured
separately, in fresh processes, once with an empty numba cache (NUMBA_CACHE_DIR pointing at a
new folder) and once with the cache the first one filled.

`--large` also reads one 24-megapixel (6000x4000) progressive file tiled from the images and
reports the peak memory the read allocates (tracemalloc: numpy and Python allocations) beside
the size of the coefficient arrays it returns.

`--write` also times the other direction, coefficients to a baseline file with optimized
Huffman tables: `djpeg.dumps` (its compiled sequential coder), the same with the array-pass
coder it replaced (`djpeg.exact.sequential`, still the progressive path's), and libjpeg's
`jpeg_write_coefficients` (`jpeglib`'s `write_dct` with OPTIMIZE_CODING, to a file), on the
baseline files' coefficients (and the 24-MP file's with `--large`).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np
from PIL import Image, features

from common import KODAK, load_rgb, median_time, png_paths

# Run in a fresh process: the first read of a baseline and of a progressive file (numba compiles
# or loads its cache then), after importing djpeg (timed apart).
_FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
import djpeg
t1 = time.perf_counter()
djpeg.load_coefficients(sys.argv[1])
t2 = time.perf_counter()
djpeg.load_coefficients(sys.argv[2])
t3 = time.perf_counter()
djpeg.load_coefficients(sys.argv[1])
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def _pillow_file(image: Image.Image, path: str, **options) -> None:
  buf = io.BytesIO()
  image.save(buf, "JPEG", **options)
  with open(path, "wb") as f:
    f.write(buf.getvalue())


def _jpeglib_read(path: str):
  import jpeglib
  dct = jpeglib.read_dct(path)
  comps = [dct.Y] + ([dct.Cb, dct.Cr] if dct.has_chrominance else [])
  return comps, dct.qt


def _first_call(baseline: str, progressive: str, cache_dir: str) -> list[float]:
  """(import, first baseline read, first progressive read, second baseline read) seconds."""
  env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
  out = subprocess.run([sys.executable, "-c", _FIRST_CALL, baseline, progressive], env=env,
                       check=True, capture_output=True, text=True).stdout
  return [float(x) for x in out.split()]


def _check_equal(path: str) -> None:
  import djpeg
  ours = djpeg.load_coefficients(path)
  theirs, _ = _jpeglib_read(path)
  for i, (a, b) in enumerate(zip(ours.components, theirs)):
    if not np.array_equal(np.asarray(a), np.asarray(b)):
      sys.exit(f"{path}: component {i} differs from jpeglib's")


def _large(images: list[np.ndarray], folder: str, quality: int, write: bool = False) -> None:
  import djpeg
  tiles = [x[:500, :500] for x in images]  # Kodak has landscape and portrait images
  rows = [np.concatenate([tiles[(r * 12 + c) % len(tiles)] for c in range(12)], axis=1)
          for r in range(8)]
  big = np.concatenate(rows, axis=0)  # 4000 x 6000
  path = os.path.join(folder, "large.jpg")
  _pillow_file(Image.fromarray(big), path, quality=quality, subsampling=2, progressive=True)
  mp = big.shape[0] * big.shape[1] / 1e6
  djpeg.load_coefficients(path)  # warm
  ours = median_time(lambda: djpeg.load_coefficients(path), 3)
  theirs = median_time(lambda: _jpeglib_read(path), 3)
  tracemalloc.start()
  c = djpeg.load_coefficients(path)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  coef_bytes = sum(np.asarray(a).nbytes for a in c.components)
  print(f"\nlarge progressive file: {big.shape[1]}x{big.shape[0]} ({mp:.1f} MP, "
        f"{os.path.getsize(path) / 1e6:.1f} MB): djpeg {mp / ours:.1f} MP/s, jpeglib "
        f"{mp / theirs:.1f} MP/s (ratio {theirs / ours:.2f})")
  print(f"  peak memory of the read (tracemalloc) {peak / 1e6:.0f} MB; the int16 coefficient "
        f"arrays it returns {coef_bytes / 1e6:.0f} MB ({peak / coef_bytes:.2f}x)")
  if write:
    ours, arrays, theirs = _write_times(c, 3, folder)
    print(f"  writing it as a baseline file: djpeg {ours:.2f} s, djpeg's array-pass coder "
          f"{arrays:.2f} s, libjpeg (jpeglib write_dct) {theirs:.2f} s")


def _write_times(coefficients, r: int, folder: str) -> tuple[float, float, float]:
  """Seconds (median of `r`) to write `coefficients` as a baseline file: djpeg, djpeg's array
  coder, libjpeg (jpeglib)."""
  import jpeglib
  import djpeg
  from djpeg.exact import sequential_compiled
  compiled = median_time(lambda: djpeg.dumps(coefficients), r, warmup=True)
  original = sequential_compiled.scan
  sequential_compiled.scan = lambda *args, **kwargs: None
  try:
    arrays = median_time(lambda: djpeg.dumps(coefficients), r, warmup=True)
  finally:
    sequential_compiled.scan = original
  comps = [np.asarray(c) for c in coefficients.components]
  dct = jpeglib.from_dct(Y=comps[0], Cb=comps[1] if len(comps) > 1 else None,
                         Cr=comps[2] if len(comps) > 1 else None,
                         qt=np.asarray(coefficients.tables, np.uint16)[:2])
  path = os.path.join(folder, "written.jpg")
  theirs = median_time(lambda: dct.write_dct(path, flags=["+OPTIMIZE_CODING"]), r, warmup=True)
  return compiled, arrays, theirs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", default=KODAK,
                      help="folder of PNG images (default: ../shared/data/kodak)")
  parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
  parser.add_argument("--quality", type=int, default=85)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--large", action="store_true",
                      help="also read a 24-megapixel progressive file and report its memory")
  parser.add_argument("--write", action="store_true",
                      help="also time writing the coefficients (module docstring)")
  args = parser.parse_args()

  import jpeglib

  images = [load_rgb(p) for p in png_paths(args.images, args.limit)]
  with tempfile.TemporaryDirectory() as folder:
    files = {"baseline": [], "progressive": []}
    for i, x in enumerate(images):
      image = Image.fromarray(x)
      for kind in files:
        path = os.path.join(folder, f"{i:03d}_{kind}.jpg")
        _pillow_file(image, path, quality=args.quality, subsampling=2,
                     progressive=kind == "progressive")
        files[kind].append(path)

    cache = os.path.join(folder, "numba_cache")
    cold = _first_call(files["baseline"][0], files["progressive"][0], cache)
    cached = _first_call(files["baseline"][0], files["progressive"][0], cache)

    import djpeg
    for path in files["baseline"] + files["progressive"]:
      _check_equal(path)

    pixels = sum(x.shape[0] * x.shape[1] for x in images)
    mp = pixels / 1e6
    r = args.repeats
    totals = {}
    for kind, paths in files.items():
      totals[kind] = [
          sum(median_time(lambda: djpeg.load_coefficients(p), r, warmup=True) for p in paths),
          sum(median_time(lambda: _jpeglib_read(p), r, warmup=True) for p in paths),
          sum(median_time(lambda: Image.open(p).load(), r, warmup=True) for p in paths),
      ]

    print(f"{len(images)} images from {args.images}, {mp:.2f} MP in all, Pillow quality "
          f"{args.quality} 4:2:0; median of {r} warm runs each")
    print(f"numpy {np.__version__}, jpeglib {jpeglib.__version__}, Pillow {Image.__version__} "
          f"(libjpeg-turbo {features.version('libjpeg_turbo')}), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"coefficients equal to jpeglib's on all {2 * len(images)} files\n")
    print(f"{'':14s}{'djpeg MP/s':>11s}{'jpeglib MP/s':>14s}{'djpeg/jpeglib':>15s}"
          f"{'Pillow decode MP/s':>20s}")
    for kind, (ours, theirs, pil) in totals.items():
      print(f"{kind:14s}{mp / ours:11.1f}{mp / theirs:14.1f}{theirs / ours:15.2f}{mp / pil:20.1f}")
    print("\nfirst calls in a fresh process (seconds): import djpeg, first read (a baseline "
          "file), first progressive read, a second baseline read")
    print(f"  empty numba cache (compiles): {cold[0]:.2f}, {cold[1]:.2f}, {cold[2]:.2f}, "
          f"{cold[3]:.4f}")
    print(f"  numba cache filled (loads):   {cached[0]:.2f}, {cached[1]:.2f}, {cached[2]:.2f}, "
          f"{cached[3]:.4f}")

    if args.write:
      sums = np.zeros(3)
      for path in files["baseline"]:
        sums += _write_times(djpeg.load_coefficients(path), r, folder)
      print("\nwriting a baseline file with optimized Huffman tables, MP/s: djpeg "
            f"{mp / sums[0]:.1f}, djpeg's array-pass coder {mp / sums[1]:.1f}, libjpeg "
            f"(jpeglib write_dct) {mp / sums[2]:.1f}")

    if args.large:
      _large(images, folder, args.quality, args.write)


if __name__ == "__main__":
  main()
