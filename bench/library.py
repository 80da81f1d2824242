"""A photo library as a user meets it: many sizes, phone-photo sizes, one folder, the CLI.

  python bench/library.py [--out bench/out/library] [--jobs 2] [--large-only]

Builds a folder of 40 PNG images in 12 sizes, from 256x256 to 24 megapixels, cut and tiled from
the training images (`../shared/data/train`: BSDS and DIV2K; the photos of 1 MP and more are
mosaics of them, not real camera photos). Then, on this machine:

1. `djpeg-cli encode FOLDER -o OUT` in the default mode and with `--libjpeg`, `--jobs N`, a
   fresh persistent compilation cache; then the default mode again over a second folder of new
   images of the same sizes, a second CLI run that finds the programs in the cache; and the
   default mode with `--fast` (no butteraugli look) over the first folder again;
2. in one process, the default mode over the folder twice (`djpeg.batch.run`, freed memory
   kept for reuse as the CLI keeps it): the first pass compiles, the second is warm;
3. the anchors over the same files: mozjpeg 4.0.3 (jpeglib) as a CLI would run it, file to
   file in `--jobs` processes (Pillow reads each PNG), timed as the CLI is; then
   libjpeg-turbo (Pillow, 4:2:0, optimize) at the same quality and mozjpeg, one process, from
   decoded pixels to bytes, and djpeg's default mode the same way (`compress` and `dumps`,
   warm), beside them;
4. every file decoded by libjpeg-turbo (Pillow) and scored: SSIMULACRA 2 and RGB PSNR;
5. the 24-megapixel photo alone: the default mode and libjpeg-identical q75, first call and
   warm, file to file, with the process's peak memory (each in its own process); then the
   encode alone, pixels in memory to bytes, beside libjpeg-turbo (Pillow) on the same array;
   then the MSE modes from pixels in memory: `compress(psnr=36)` (per-image tables, the
   trellis) and `compress(quality=75, mode="mse")` (Annex K tables, the trellis); then all of
   it again on a 48-megapixel photo (the 24-MP one beside its mirror image, 4000x12000), to
   show how peak memory grows with the image.

Throughput per core is megapixels per second divided by the processes used (mozjpeg and Pillow
are single-threaded). Figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
from PIL import Image

from common import REPO, TRAIN

SIZES = ((256, 256), (321, 481), (481, 321), (512, 768), (768, 512), (600, 800), (1024, 1536),
         (1200, 1600), (1536, 2048), (3000, 4000), (3024, 4032), (4000, 6000))
COUNTS = (4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 1, 1)          # 40 images


def _sources():
  paths = sorted(glob.glob(os.path.join(TRAIN, "bsd200", "*.png"))) + sorted(
      glob.glob(os.path.join(TRAIN, "div2k256", "*.png")))
  if not paths:
    sys.exit(f"no training images in {TRAIN}")
  return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _picture(sources, height, width, rng) -> np.ndarray:
  """A crop of one source when it is large enough, else a mosaic of sources."""
  fits = [s for s in sources if s.shape[0] >= height and s.shape[1] >= width]
  if fits:
    s = fits[rng.integers(len(fits))]
    top = rng.integers(s.shape[0] - height + 1)
    left = rng.integers(s.shape[1] - width + 1)
    return s[top:top + height, left:left + width]
  out = np.zeros((height, width, 3), np.uint8)
  for y in range(0, height, 256):
    for x in range(0, width, 256):
      s = sources[rng.integers(len(sources))]
      h, w = min(256, height - y), min(256, width - x)
      out[y:y + h, x:x + w] = s[:h, :w]
  return out


def build(folder: str, seed: int) -> list[str]:
  sources = _sources()
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  # Nothing but the library's PNGs: an earlier version of this script wrote the 24-MP photo's
  # JPEGs beside it, and the CLI would encode those too.
  for stale in glob.glob(os.path.join(folder, "*.jpg")):
    os.remove(stale)
  paths = []
  for (height, width), count in zip(SIZES, COUNTS):
    for k in range(count):
      path = os.path.join(folder, f"{height}x{width}_{k}.png")
      if not os.path.exists(path):
        Image.fromarray(_picture(sources, height, width, rng)).save(path, compress_level=1)
      paths.append(path)
  return paths


def _cli(args, env) -> float:
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "djpeg", "encode", *args, "--quiet"], check=True, env=env)
  return time.perf_counter() - start


def _score(pixels: np.ndarray, data: bytes) -> tuple[float, float]:
  from djpeg import metrics
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  mse = np.mean((decoded.astype(np.float64) - pixels) ** 2)
  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  return float(metrics.ssimulacra2(f(pixels), f(decoded))), float(10 * np.log10(255 ** 2 / mse))


def _mozjpeg(pixels, quality) -> bytes:
  import jpeglib
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "m.jpg")
    with jpeglib.version("mozjpeg403"):
      jpeglib.from_spatial(np.ascontiguousarray(pixels)).write_spatial(path, qt=int(quality))
    with open(path, "rb") as f:
      return f.read()


def _mozjpeg_folder(paths: list[str], out: str, jobs: int, quality: int) -> float:
  """mozjpeg as a CLI over the folder: a fresh Python process with `jobs` worker processes,
  each reading a PNG (Pillow) and writing its JPEG file (jpeglib's mozjpeg 4.0.3), timed as
  `_cli` times djpeg-cli (process start included)."""
  os.makedirs(out, exist_ok=True)
  code = textwrap.dedent(f"""
      import os, sys, multiprocessing
      import numpy as np
      from PIL import Image
      def one(path):
        import jpeglib
        pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        name = os.path.join({out!r}, os.path.splitext(os.path.basename(path))[0] + ".jpg")
        with jpeglib.version("mozjpeg403"):
          jpeglib.from_spatial(pixels).write_spatial(name, qt={int(quality)})
      if __name__ == "__main__":
        paths = sorted({paths!r}, key=lambda p: -os.path.getsize(p))    # largest first
        with multiprocessing.get_context("fork").Pool({jobs}) as pool:
          list(pool.imap_unordered(one, paths))
      """)
  start = time.perf_counter()
  subprocess.run([sys.executable, "-c", code], check=True)
  return time.perf_counter() - start


def _one_photo(path: str, mode: str) -> dict:
  """The 24-MP photo in a child process: first call, warm call, peak memory."""
  out = os.path.join(tempfile.mkdtemp(prefix="djpeg-large-"), f"{mode}.jpg")  # not in the library
  code = textwrap.dedent(f"""
      import json, time
      from djpeg.export import ExportOptions, export_file
      options = ExportOptions(mode={mode!r}, quality=75)
      times = []
      for i in range(2):
        start = time.perf_counter()
        export_file({path!r}, {out!r}, options, measure=False)
        times.append(time.perf_counter() - start)
      # The encode alone, from the decoded pixels to the file's bytes, beside libjpeg-turbo
      # (Pillow, 4:2:0, optimize) on the same array: the file-to-file time above includes
      # reading the PNG (about 0.7 s of zlib for 72 MB here).
      import io, numpy as np, djpeg
      from djpeg.encoder import compress
      from PIL import Image
      pixels = np.asarray(Image.open({path!r}).convert("RGB"))
      memory, pillow = [], []
      for i in range(2):
        start = time.perf_counter()
        if {mode!r} == "libjpeg":
          djpeg.dumps(pixels, quality=75)
        else:
          djpeg.dumps(compress(pixels, quality=75, measure=False).coefficients,
                      progressive="optimize")
        memory.append(time.perf_counter() - start)
        start = time.perf_counter()
        Image.fromarray(pixels).save(io.BytesIO(), "JPEG", quality=75, subsampling=2,
                                     optimize=True)
        pillow.append(time.perf_counter() - start)
      # VmHWM: the peak resident memory of this program. (ru_maxrss would carry over the
      # benchmark process's own peak: Linux keeps it across fork and exec.)
      with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
      print(json.dumps(dict(first=times[0], warm=times[1], peak_mb=hwm / 1024,
                            memory_warm=memory[1], pillow_warm=pillow[1])))
      """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _other_mode(path: str, options: str) -> dict:
  """The 24-MP photo in a child process, `compress(pixels, **options)` from pixels in memory:
  first call, warm call, peak memory."""
  code = textwrap.dedent(f"""
      import json, time
      import numpy as np
      from PIL import Image
      from djpeg.encoder import compress
      pixels = np.asarray(Image.open({path!r}).convert("RGB"))
      times = []
      for i in range(2):
        start = time.perf_counter()
        result = compress(pixels, measure=False, {options})
        times.append(time.perf_counter() - start)
      with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
      print(json.dumps(dict(first=times[0], warm=times[1], peak_mb=hwm / 1024,
                            bpp=result.bits_per_pixel)))
      """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _large(first: list[str]) -> None:
  big = [p for p in first if "4000x6000" in p][0]
  double = os.path.join(os.path.dirname(os.path.dirname(big)), "large", "4000x12000.png")
  if not os.path.exists(double):
    os.makedirs(os.path.dirname(double), exist_ok=True)
    pixels = np.asarray(Image.open(big).convert("RGB"))
    Image.fromarray(np.concatenate([pixels, pixels[:, ::-1]], 1)).save(double, compress_level=1)
  for path, name in ((big, "24-MP"), (double, "48-MP")):
    print(f"{name} photo: its pixels take {3 * np.prod(Image.open(path).size) / 1e6:.0f} MB",
          flush=True)
    for mode in ("perceptual", "libjpeg"):
      r = _one_photo(path, mode)
      print(f"{name} photo, {mode}: first call {r['first']:.2f} s, warm {r['warm']:.2f} s (PNG "
            f"file to JPEG file), peak memory {r['peak_mb']:.0f} MB; pixels to bytes in memory, "
            f"warm: {r['memory_warm']:.2f} s, libjpeg-turbo (Pillow) {r['pillow_warm']:.2f} s",
            flush=True)
    # The other modes, from pixels in memory (the "any mode at most 2 GB").
    for options in ("psnr=36.0", "quality=75, mode='mse'"):
      r = _other_mode(path, options)
      print(f"{name} photo, compress({options}): first call {r['first']:.2f} s, warm "
            f"{r['warm']:.2f} s, peak memory {r['peak_mb']:.0f} MB, {r['bpp']:.3f} bpp",
            flush=True)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "out", "library"))
  parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--quality", type=int, default=75)
  parser.add_argument("--large-only", action="store_true",
                      help="only step 5, the 24- and 48-megapixel photos")
  args = parser.parse_args()
  q = args.quality
  first = build(os.path.join(args.out, "photos"), 0)
  if args.large_only:
    _large(first)
    return 0
  second = build(os.path.join(args.out, "photos2"), 1)
  pixels_mp = sum(np.prod(Image.open(p).size) for p in first) / 1e6
  print(f"Library: {len(first)} images in {len(SIZES)} sizes (256x256 .. 4000x6000), "
        f"{pixels_mp:.1f} MP in all; the large ones are mosaics of training images.\n")

  cache = tempfile.mkdtemp(prefix="djpeg-cache-")
  env = dict(os.environ, DJPEG_CACHE_DIR=cache)
  runs = {}
  for name, folder, extra in (("default, first CLI run (empty cache)", first, []),
                              ("default, second CLI run, new files of the same sizes", second,
                               []),
                              ("libjpeg-identical (--libjpeg)", first, ["--libjpeg"]),
                              ("default --fast (no butteraugli look), the first folder again",
                               first, ["--fast"])):
    out = os.path.join(args.out, "cli", name.split(",")[0].split(" ")[0] + str(len(runs)))
    shutil.rmtree(out, ignore_errors=True)
    runs[name] = _cli([os.path.dirname(folder[0]), "-o", out, "--jobs", str(args.jobs),
                       "--quality", str(q)] + extra, env)
  shutil.rmtree(cache, ignore_errors=True)
  moz_out = os.path.join(args.out, "cli", "mozjpeg")
  shutil.rmtree(moz_out, ignore_errors=True)
  mozjpeg_folder = _mozjpeg_folder(first, moz_out, args.jobs, q)

  # In one process: the default mode twice over the folder (first pass compiles).
  from djpeg import batch
  from djpeg.export import ExportOptions
  batch.reuse_freed_memory()
  jobs = batch.plan([os.path.dirname(first[0])], os.path.join(args.out, "inprocess"))
  passes = []
  for _ in range(2):
    start = time.perf_counter()
    batch.run(jobs, ExportOptions(quality=q), processes=1, progress=False)
    passes.append(time.perf_counter() - start)

  # Anchors, and the scores of every file.
  rows = []
  import djpeg
  from djpeg.encoder import compress
  anchor_time = {"libjpeg-turbo": 0.0, "mozjpeg": 0.0, "djpeg default, pixels to bytes": 0.0}
  default_dir = os.path.join(args.out, "cli", "default0")
  libjpeg_dir = os.path.join(args.out, "cli", "libjpeg-identical2")
  fast_dir = os.path.join(args.out, "cli", "default3")
  for path in first:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    start = time.perf_counter()
    turbo = io.BytesIO()
    Image.fromarray(pixels).save(turbo, "JPEG", quality=q, subsampling=2, optimize=True)
    anchor_time["libjpeg-turbo"] += time.perf_counter() - start
    start = time.perf_counter()
    moz = _mozjpeg(pixels, q)
    anchor_time["mozjpeg"] += time.perf_counter() - start
    start = time.perf_counter()
    djpeg.dumps(compress(pixels, quality=q, measure=False).coefficients, progressive="optimize")
    anchor_time["djpeg default, pixels to bytes"] += time.perf_counter() - start
    name = os.path.splitext(os.path.basename(path))[0] + ".jpg"
    ours = open(os.path.join(default_dir, name), "rb").read()
    identical = open(os.path.join(libjpeg_dir, name), "rb").read() == turbo.getvalue()
    row = {"image": os.path.basename(path), "mp": pixels.shape[0] * pixels.shape[1] / 1e6,
           "identical": identical}
    fast = open(os.path.join(fast_dir, name), "rb").read()
    for key, data in (("turbo", turbo.getvalue()), ("moz", moz), ("djpeg", ours), ("fast", fast)):
      s2, psnr = _score(pixels, data)
      row.update({f"{key}_bytes": len(data), f"{key}_s2": s2, f"{key}_psnr": psnr})
    rows.append(row)
    print(f"  {row['image']:22s} djpeg {row['djpeg_bytes'] / row['turbo_bytes'] - 1:+.1%} bytes, "
          f"S2 {row['djpeg_s2']:.2f} vs {row['turbo_s2']:.2f}; mozjpeg "
          f"{row['moz_bytes'] / row['turbo_bytes'] - 1:+.1%}, S2 {row['moz_s2']:.2f}", flush=True)

  saving = np.array([1 - r["djpeg_bytes"] / r["turbo_bytes"] for r in rows])
  below = [r["image"] for r in rows if r["djpeg_s2"] < r["turbo_s2"]]
  per_core = lambda seconds, processes: pixels_mp / seconds / processes
  default_first = runs["default, first CLI run (empty cache)"]
  print("\n| run | seconds | MP/s | MP/s per core |")
  print("|---|---|---|---|")
  for name, seconds in runs.items():
    print(f"| djpeg-cli {name}, --jobs {args.jobs} | {seconds:.1f} | {pixels_mp / seconds:.2f} | "
          f"{per_core(seconds, args.jobs):.2f} |")
  print(f"| mozjpeg 4.0.3 file to file (PNG read by Pillow, jpeglib), --jobs {args.jobs} | "
        f"{mozjpeg_folder:.1f} | {pixels_mp / mozjpeg_folder:.2f} | "
        f"{per_core(mozjpeg_folder, args.jobs):.2f} |")
  for name, seconds in anchor_time.items():
    print(f"| {name} (one process) | {seconds:.1f} | {pixels_mp / seconds:.2f} | "
          f"{per_core(seconds, 1):.2f} |")
  print(f"\nIn one process: first pass {passes[0]:.1f} s, warm pass {passes[1]:.1f} s: "
        f"{passes[0] / passes[1]:.2f}x. Second CLI run over new files of the same sizes: "
        f"{runs['default, second CLI run, new files of the same sizes']:.1f} s against the first "
        f"run's {default_first:.1f} s.")
  print(f"\nDefault mode against libjpeg-turbo at q{q}: bytes {-100 * saving.mean():+.1f}% on "
        f"average (worst image {-100 * saving.min():+.1f}%, best {-100 * saving.max():+.1f}%); "
        f"SSIMULACRA 2 below libjpeg-turbo's on {len(below)} of {len(rows)} images "
        f"{below}; mean PSNR {np.mean([r['djpeg_psnr'] for r in rows]):.2f} dB against "
        f"{np.mean([r['turbo_psnr'] for r in rows]):.2f}. mozjpeg: bytes "
        f"{100 * np.mean([r['moz_bytes'] / r['turbo_bytes'] - 1 for r in rows]):+.1f}%, "
        f"SSIMULACRA 2 {np.mean([r['moz_s2'] for r in rows]):.2f} against "
        f"{np.mean([r['turbo_s2'] for r in rows]):.2f}.")
  fast_saving = np.array([1 - r["fast_bytes"] / r["turbo_bytes"] for r in rows])
  print(f"--fast: bytes {-100 * fast_saving.mean():+.1f}% on average (worst image "
        f"{-100 * fast_saving.min():+.1f}%); SSIMULACRA 2 below libjpeg-turbo's on "
        f"{sum(r['fast_s2'] < r['turbo_s2'] for r in rows)} of {len(rows)} images.")
  print(f"libjpeg-identical files equal to Pillow's: {sum(r['identical'] for r in rows)} of "
        f"{len(rows)}.")
  _large(first)
  with open(os.path.join(args.out, "library.json"), "w") as f:
    json.dump({"rows": rows, "runs": runs, "passes": passes, "anchors": anchor_time,
               "mozjpeg_folder": mozjpeg_folder}, f)
  return 0


if __name__ == "__main__":
  sys.exit(main())
