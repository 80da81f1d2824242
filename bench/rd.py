"""Rate-distortion benchmark: real files from each encoder, decoded by libjpeg-turbo, on Kodak.

  python bench/rd.py [--images ../shared/data/kodak] [--limit N] [--qualities 20,30,...,95]
                     [--plot bench/results/rd_kodak.png]

For every image and quality this writes real JPEG files with:

  libjpeg-turbo          Pillow, 4:2:0, optimize=True                    (the anchor)
  libjpeg-turbo prog.    Pillow, 4:2:0, progressive=True
  mozjpeg 4.0.3          jpeglib's bundled mozjpeg, defaults (trellis, table 3, progressive)
  jpegli                 pyjpegli, defaults
  djpeg standard         djpeg.dumps, Annex K tables, optimized Huffman (must equal the anchor)
  djpeg optimized        djpeg.optimize_tables per image (PSNR target = the anchor's PSNR at that
                         quality), baseline, optimized Huffman
  djpeg optimized prog.  the same tables, progressive
  djpeg standard + trellis  Annex K tables at the anchor's quality, trellis quantization with the
                         tables' own lambda (djpeg.dumps(..., trellis=True)), baseline
  djpeg optimized + trellis  djpeg.encoder.compress(psnr=the anchor's PSNR): the optimized tables
                         above, then the trellis with the tables' slope, the table scale fitted to
                         the Lagrangian and moved until the decoded PSNR meets the target, baseline
  djpeg optimized + trellis prog.  the same coefficients, progressive with the smallest of a
                         family of standard scan scripts (progressive="optimize")
  djpeg learned family   the table family shipped with djpeg (learned on the training images by
                         `djpeg-train tables family`), every level: a curve of its own
  djpeg QTableNet        tables predicted per image by the shipped network (`djpeg-train tables
                         net`), PSNR target = the anchor's; baseline, and progressive

Bits per pixel count the whole file; PSNR (RGB, 8-bit) and SSIM (RGB, scikit-image convention)
are measured on Pillow's decode of the file. BD-rate is Bjontegaard's delta rate (cubic fit of
log-rate against quality over the overlapping quality range) against the anchor, computed per
image and averaged over images; negative is better. Nothing here is tuned on Kodak: it is the
report, not the training set.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test) -> float:
  """Bjontegaard delta rate in percent (cubic fit of log rate over quality, overlap interval)."""
  qa, qt = np.asarray(quality_anchor, float), np.asarray(quality_test, float)
  pa = np.polyfit(qa, np.log(rate_anchor), 3)
  pt = np.polyfit(qt, np.log(rate_test), 3)
  lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
  if hi <= lo:
    return float("nan")
  ia, it = np.polyint(pa), np.polyint(pt)
  mean_a = (np.polyval(ia, hi) - np.polyval(ia, lo)) / (hi - lo)
  mean_t = (np.polyval(it, hi) - np.polyval(it, lo)) / (hi - lo)
  return float((np.exp(mean_t - mean_a) - 1) * 100)


def pillow(pixels, **options) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", **options)
  return buf.getvalue()


def mozjpeg(pixels, quality) -> bytes:
  import tempfile

  import jpeglib
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "m.jpg")
    with jpeglib.version("mozjpeg403"):
      jpeglib.from_spatial(np.ascontiguousarray(pixels)).write_spatial(path, qt=int(quality))
    with open(path, "rb") as f:
      return f.read()


def jpegli(pixels, quality) -> bytes:
  import pyjpegli
  h, w, _ = pixels.shape
  return pyjpegli.encode(np.ascontiguousarray(pixels).tobytes(), w, h, int(quality))


def measure(data: bytes, pixels: np.ndarray, metrics) -> tuple[float, float, float]:
  """(bits per pixel, RGB PSNR, SSIM) of a file, decoded by libjpeg-turbo."""
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  mse = np.mean((decoded.astype(np.float64) - pixels) ** 2)
  psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
  ssim = float(metrics.ssim(decoded.astype(np.float32) / 255, pixels.astype(np.float32) / 255))
  return 8 * len(data) / (pixels.shape[0] * pixels.shape[1]), psnr, ssim


CODECS = ("libjpeg-turbo", "libjpeg-turbo progressive", "mozjpeg", "jpegli", "djpeg standard",
          "djpeg optimized", "djpeg optimized progressive", "djpeg standard + trellis",
          "djpeg optimized + trellis", "djpeg optimized + trellis progressive",
          "djpeg learned family", "djpeg QTableNet", "djpeg QTableNet progressive")


def run_image(pixels, qualities, codecs, say) -> dict:
  import djpeg
  from djpeg import metrics
  from djpeg.encoder import compress
  image = pixels.astype(np.float32) / 255
  points = {name: [] for name in codecs}
  timing = {}
  for q in qualities:
    anchor = measure(pillow(pixels, quality=q, subsampling=2, optimize=True), pixels, metrics)
    files = {}
    if "libjpeg-turbo" in codecs:
      points["libjpeg-turbo"].append(anchor)
    if "libjpeg-turbo progressive" in codecs:
      files["libjpeg-turbo progressive"] = pillow(pixels, quality=q, subsampling=2, progressive=True)
    if "mozjpeg" in codecs:
      files["mozjpeg"] = mozjpeg(pixels, q)
    if "jpegli" in codecs:
      files["jpegli"] = jpegli(pixels, q)
    if "djpeg standard" in codecs:
      files["djpeg standard"] = djpeg.dumps(pixels, quality=q)
    if "djpeg standard + trellis" in codecs:
      files["djpeg standard + trellis"] = djpeg.dumps(pixels, quality=q, trellis=True)
    trellis_rows = ("djpeg optimized + trellis", "djpeg optimized + trellis progressive")
    if any(name.startswith("djpeg optimized") for name in codecs):
      start = time.perf_counter()
      result = djpeg.optimize_tables(image, psnr=float(anchor[1]))
      timing.setdefault("optimize_s", []).append(time.perf_counter() - start)
      c = djpeg.encode(image, tables=result.tables, subsampling=result.subsampling)
      if "djpeg optimized" in codecs:
        files["djpeg optimized"] = djpeg.dumps(c)
      if "djpeg optimized progressive" in codecs:
        files["djpeg optimized progressive"] = djpeg.dumps(c, progressive=True)
      if any(name in codecs for name in trellis_rows):
        start = time.perf_counter()
        trellis = compress(pixels, psnr=float(anchor[1]), optimization=result, measure=False)
        timing.setdefault("trellis_s", []).append(time.perf_counter() - start)
        if "djpeg optimized + trellis" in codecs:
          files["djpeg optimized + trellis"] = djpeg.dumps(trellis.coefficients)
        if "djpeg optimized + trellis progressive" in codecs:
          files["djpeg optimized + trellis progressive"] = djpeg.dumps(
              trellis.coefficients, progressive="optimize")
    if "djpeg QTableNet" in codecs or "djpeg QTableNet progressive" in codecs:
      from djpeg.models.qtable_net import predict_tables
      start = time.perf_counter()
      tables = predict_tables(image, psnr=float(anchor[1]))
      timing.setdefault("qtablenet_s", []).append(time.perf_counter() - start)
      c = djpeg.encode(image, tables=tables)
      if "djpeg QTableNet" in codecs:
        files["djpeg QTableNet"] = djpeg.dumps(c)
      if "djpeg QTableNet progressive" in codecs:
        files["djpeg QTableNet progressive"] = djpeg.dumps(c, progressive=True)
    for name, data in files.items():
      points[name].append(measure(data, pixels, metrics))
    say(f"  q{q}: anchor {anchor[0]:.3f} bpp {anchor[1]:.2f} dB" + "".join(
        f" | {name} {points[name][-1][0]:.3f} bpp {points[name][-1][1]:.2f} dB"
        for name in files if name.startswith("djpeg opt")))
  if "djpeg learned family" in codecs:
    family = djpeg.tables.load_table_family("learned")
    for tables in family["tables"]:
      points["djpeg learned family"].append(
          measure(djpeg.dumps(pixels, qtables=tables, subsampling=family["subsampling"]), pixels,
                  metrics))
  return {"points": {k: np.asarray(v).tolist() for k, v in points.items()}, "timing": timing}


def plot(results, codecs, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(12, 5))
  for name in codecs:
    curves = np.array([r["points"][name] for r in results])      # (images, points, 3)
    mean = curves.mean(axis=0)
    style = "-" if name.startswith("djpeg") else "--"
    axes[0].plot(mean[:, 0], mean[:, 1], style, marker=".", label=name)
    axes[1].plot(mean[:, 0], mean[:, 2], style, marker=".", label=name)
  axes[0].set_ylabel("RGB PSNR (dB)")
  axes[1].set_ylabel("SSIM")
  for ax in axes:
    ax.set_xlabel("bits per pixel (whole file)")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"Rate-distortion on {len(results)} images, mean over images per quality")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=80)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--limit", type=int, default=0)
  parser.add_argument("--qualities", default="20,30,40,50,60,70,80,90,95")
  parser.add_argument("--codecs", default=",".join(CODECS))
  parser.add_argument("--plot", default=os.path.join(REPO, "bench", "results", "rd_kodak.png"))
  parser.add_argument("--json", default="", help="also save all points to this file")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args()

  paths = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.limit or None]
  if not paths:
    print(f"no PNG images in {args.images}", file=sys.stderr)
    return 1
  qualities = [int(q) for q in args.qualities.split(",")]
  codecs = [c for c in args.codecs.split(",") if c]
  unknown = set(codecs) - set(CODECS)
  if unknown:
    print(f"unknown codecs {sorted(unknown)}; choose from {CODECS}", file=sys.stderr)
    return 1
  say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
  results = []
  for path in paths:
    say(os.path.basename(path))
    pixels = np.asarray(Image.open(path).convert("RGB"))
    results.append(run_image(pixels, qualities, codecs, say))

  anchor = "libjpeg-turbo"
  print(f"\nRate-distortion on {len(paths)} images from {args.images}, qualities {qualities}.")
  print("BD-rate against libjpeg-turbo 4:2:0 optimize (Pillow), per image then averaged "
        "(negative = smaller files at equal quality):\n")
  print("| encoder | BD-rate (RGB PSNR) | BD-rate (SSIM) | mean bpp | mean PSNR |")
  print("|---|---|---|---|---|")
  summary = {}
  for name in codecs:
    bd_psnr, bd_ssim, bpp, psnr = [], [], [], []
    for r in results:
      a, t = np.asarray(r["points"][anchor]), np.asarray(r["points"][name])
      bd_psnr.append(bd_rate(a[:, 0], a[:, 1], t[:, 0], t[:, 1]))
      bd_ssim.append(bd_rate(a[:, 0], a[:, 2], t[:, 0], t[:, 2]))
      bpp.append(t[:, 0].mean())
      psnr.append(t[:, 1].mean())
    summary[name] = (np.nanmean(bd_psnr), np.nanmean(bd_ssim))
    print(f"| {name} | {summary[name][0]:+.2f}% | {summary[name][1]:+.2f}% | {np.mean(bpp):.3f} "
          f"| {np.mean(psnr):.2f} |")
  for key, label in (("optimize_s", "djpeg.optimize_tables"),
                     ("trellis_s", "trellis with the PSNR target met (after the table optimization)"),
                     ("qtablenet_s", "QTableNet predict_tables")):
    times = [t for r in results for t in r["timing"].get(key, [])]
    if times:
      print(f"\n{label}: median {np.median(times):.3f} s per call ({len(times)} calls; the first "
            "of each image size includes compilation).")
  if args.plot:
    plot(results, codecs, args.plot)
    print(f"plot: {args.plot}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"paths": paths, "qualities": qualities, "results": results}, f)
  return 0


if __name__ == "__main__":
  sys.exit(main())
