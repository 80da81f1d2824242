"""Rate-distortion benchmark: real files from each encoder, decoded by libjpeg-turbo, on Kodak.

  python bench/rd.py [--images ../shared/data/kodak] [--limit N] [--qualities 20,35,50,65,80,95]
                     [--codecs ...] [--json bench/out/rd.json] [--plot bench/results/rd_kodak.png]

For every image and quality this writes real JPEG files with each encoder:

  libjpeg-turbo              Pillow, 4:2:0, optimize=True                       (the anchor)
  libjpeg-turbo progressive  Pillow, 4:2:0, progressive=True
  mozjpeg                    jpeglib's bundled mozjpeg 4.0.3, defaults (trellis, table 3,
                             progressive with optimized scans)
  jpegli                     pyjpegli, defaults
  djpeg standard             djpeg.dumps at the quality: Annex K, optimized Huffman (must equal
                             the anchor byte for byte)
  djpeg default              `djpeg-cli encode --quality Q`: the perceptual mode
                             (`djpeg.perceptual`: at least the anchor's SSIMULACRA 2 at Q, the
                             subsampling chosen per image), progressive with optimized scans
  djpeg PSNR mode            per-image tables + trellis at the anchor's PSNR, progressive with
                             optimized scans (`djpeg-cli encode --optimize-tables --psnr P
                             --trellis --optimize-scans`)
  and, on request (--codecs): djpeg perceptual 4:2:0 (the default mode without 4:4:4),
  djpeg learned family (every level), djpeg QTableNet (tables per image at the anchor's PSNR).

Every file is decoded by libjpeg-turbo (Pillow) and measured: bits per pixel of the whole file,
RGB PSNR, SSIM and MS-SSIM (djpeg.metrics), SSIMULACRA 2 (djpeg.metrics.ssimulacra2, a faithful
port of Cloudinary's program) and butteraugli's max-norm distance (Debian's `butteraugli`
program; without it the column is left out and the script says so). BD-rate is Bjontegaard's
delta rate (cubic fit of log rate against the quality axis, over the overlapping range) against
the anchor, per image, then averaged; negative is fewer bytes at equal quality. butteraugli is a
distance (lower is better); its BD-rate runs over the same fit. The report also gives each
row's BD-rates at each quality pair (per-rate points) and the spread over images. Nothing here
is tuned on Kodak: it is the report, not the training set.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from common import KODAK, REPO, load_rgb, pillow_jpeg, png_paths

METRICS = ("psnr", "ssim", "ms_ssim", "ssimulacra2", "butteraugli")
LABELS = {"psnr": "RGB PSNR", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "ssimulacra2": "SSIMULACRA 2",
          "butteraugli": "butteraugli"}
DEFAULT_CODECS = ("libjpeg-turbo", "libjpeg-turbo progressive", "mozjpeg", "jpegli",
                  "djpeg standard", "djpeg default", "djpeg PSNR mode")
EXTRA_CODECS = ("djpeg perceptual 4:2:0", "djpeg learned family", "djpeg QTableNet")
ANCHOR = "libjpeg-turbo"


def bd_rate(rate_anchor, quality_anchor, rate_test, quality_test) -> float:
  """Bjontegaard delta rate in percent (cubic fit of log rate over quality, overlap interval)."""
  qa, qt = np.asarray(quality_anchor, float), np.asarray(quality_test, float)
  if len(qa) < 4 or len(qt) < 4 or not (np.all(np.isfinite(qa)) and np.all(np.isfinite(qt))):
    return float("nan")
  pa = np.polyfit(qa, np.log(rate_anchor), 3)
  pt = np.polyfit(qt, np.log(rate_test), 3)
  lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
  if hi <= lo:
    return float("nan")
  ia, it = np.polyint(pa), np.polyint(pt)
  mean_a = (np.polyval(ia, hi) - np.polyval(ia, lo)) / (hi - lo)
  mean_t = (np.polyval(it, hi) - np.polyval(it, lo)) / (hi - lo)
  return float((np.exp(mean_t - mean_a) - 1) * 100)


def mozjpeg(pixels, quality) -> bytes:
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


class Meter:
  """Measures files against one image: every metric, butteraugli in a thread pool."""

  def __init__(self, butteraugli: str | None, workers: int = 2):
    import jax
    from djpeg import metrics
    self.butteraugli = butteraugli
    self.pool = ThreadPoolExecutor(workers)
    self._ssimulacra2 = jax.jit(metrics.ssimulacra2)
    self._ms_ssim = jax.jit(metrics.ms_ssim)
    self._ssim = jax.jit(metrics.ssim)

  def _butteraugli(self, reference_png: str, decoded: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "d.png")
      Image.fromarray(decoded).save(path)
      out = subprocess.run([self.butteraugli, reference_png, path], capture_output=True,
                           text=True, check=True)
      return float(out.stdout.split()[0])

  def measure(self, pixels: np.ndarray, files: list[bytes]) -> list[dict]:
    """`{bpp, psnr, ssim, ms_ssim, ssimulacra2, butteraugli}` of each file."""
    decoded = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in files]
    with tempfile.TemporaryDirectory() as tmp:
      reference_png = os.path.join(tmp, "r.png")
      Image.fromarray(pixels).save(reference_png)
      pending = [self.pool.submit(self._butteraugli, reference_png, d) for d in decoded] \
          if self.butteraugli else None
      ref = pixels.astype(np.float32) * np.float32(1 / 255)
      out = []
      for data, dec in zip(files, decoded):
        d = dec.astype(np.float32) * np.float32(1 / 255)
        mse = np.mean((dec.astype(np.float64) - pixels) ** 2)
        out.append(dict(bpp=8 * len(data) / (pixels.shape[0] * pixels.shape[1]),
                        psnr=float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse),
                        ssim=float(self._ssim(d, ref)), ms_ssim=float(self._ms_ssim(d, ref)),
                        ssimulacra2=float(self._ssimulacra2(ref, d))))
      for point, future in zip(out, pending or []):
        point["butteraugli"] = future.result()
    return out


def run_image(pixels, qualities, codecs, meter, say) -> dict:
  import djpeg
  from djpeg import perceptual
  from djpeg.encoder import compress
  image = pixels.astype(np.float32) / 255
  files = {name: [] for name in codecs}
  timing = {}
  anchors = [pillow_jpeg(pixels, quality=q, subsampling=2, optimize=True) for q in qualities]
  anchor_points = meter.measure(pixels, anchors)
  for q, anchor, point in zip(qualities, anchors, anchor_points):
    target_psnr = float(point["psnr"])
    for name in codecs:
      start = time.perf_counter()
      if name == ANCHOR:
        data = anchor
      elif name == "libjpeg-turbo progressive":
        data = pillow_jpeg(pixels, quality=q, subsampling=2, progressive=True)
      elif name == "mozjpeg":
        data = mozjpeg(pixels, q)
      elif name == "jpegli":
        data = jpegli(pixels, q)
      elif name == "djpeg standard":
        data = djpeg.dumps(pixels, quality=q)
      elif name == "djpeg default":
        data = djpeg.dumps(compress(pixels, quality=q).coefficients, progressive="optimize")
      elif name == "djpeg perceptual 4:2:0":
        result = perceptual.meet_libjpeg(pixels, q, subsamplings=("4:2:0",))
        data = djpeg.dumps(result.coefficients, progressive="optimize")
      elif name == "djpeg PSNR mode":
        result = compress(pixels, psnr=target_psnr)
        data = djpeg.dumps(result.coefficients, progressive="optimize")
      elif name == "djpeg QTableNet":
        from djpeg.models.qtable_net import predict_tables
        data = djpeg.dumps(djpeg.encode(image, tables=predict_tables(image, psnr=target_psnr)))
      else:
        continue
      timing.setdefault(name, []).append(time.perf_counter() - start)
      files[name].append(data)
  points = {name: meter.measure(pixels, files[name]) for name in codecs
            if files[name] and name != ANCHOR}
  points[ANCHOR] = anchor_points
  if "djpeg learned family" in codecs:
    family = djpeg.tables.load_table_family("learned")
    points["djpeg learned family"] = meter.measure(pixels, [
        djpeg.dumps(pixels, qtables=t, subsampling=family["subsampling"])
        for t in family["tables"]])
  if "djpeg standard" in codecs and files["djpeg standard"] != anchors:
    say("  WARNING: djpeg standard differs from libjpeg-turbo's files")
  say("  " + " | ".join(f"{n}: {np.mean([p['bpp'] for p in points[n]]):.3f} bpp "
                        f"S2 {np.mean([p['ssimulacra2'] for p in points[n]]):.1f}"
                        for n in codecs if n in points))
  return {"points": points, "timing": timing}


def _axis(points, metric):
  values = [p.get(metric, float("nan")) for p in points]
  return [-v for v in values] if metric == "butteraugli" else values


def summarize(results, codecs, metrics, qualities) -> dict:
  """Per codec and metric: mean BD-rate, per-image BD-rates, per-rate BD-rates."""
  out = {}
  for name in codecs:
    row = {}
    for metric in metrics:
      per_image = []
      per_rate = []
      for r in results:
        a, t = r["points"][ANCHOR], r["points"].get(name)
        if t is None:
          continue
        ra, rt = [p["bpp"] for p in a], [p["bpp"] for p in t]
        per_image.append(bd_rate(ra, _axis(a, metric), rt, _axis(t, metric)))
        if len(t) == len(a):   # BD-rate over each window of 4 consecutive qualities
          per_rate.append([bd_rate(ra[i:i + 4], _axis(a, metric)[i:i + 4], rt[i:i + 4],
                                   _axis(t, metric)[i:i + 4]) for i in range(len(a) - 3)])
      row[metric] = {"mean": float(np.nanmean(per_image)) if per_image else float("nan"),
                     "per_image": per_image,
                     "per_rate": np.nanmean(np.asarray(per_rate, float), axis=0).tolist()
                     if per_rate else []}
    out[name] = row
  return out


def plot(results, codecs, metrics, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4))
  for ax, metric in zip(np.atleast_1d(axes), metrics):
    for name in codecs:
      if name == "djpeg learned family":
        continue
      curves = np.array([[[p["bpp"], p.get(metric, np.nan)] for p in r["points"][name]]
                         for r in results])
      mean = np.nanmean(curves, axis=0)
      ax.plot(mean[:, 0], mean[:, 1], "-" if name.startswith("djpeg") else "--", marker=".",
              label=name)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel(LABELS[metric] + (" (lower is better)" if metric == "butteraugli" else ""))
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[0].legend(fontsize=7)
  fig.suptitle(f"Rate-distortion on {len(results)} Kodak images, mean over images per quality")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=80)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=KODAK)
  parser.add_argument("--limit", type=int, default=0)
  parser.add_argument("--qualities", default="20,35,50,65,80,95")
  parser.add_argument("--codecs", default=",".join(DEFAULT_CODECS),
                      help=f"comma-separated; also {', '.join(EXTRA_CODECS)}")
  parser.add_argument("--plot", default=os.path.join(REPO, "bench", "results", "rd_kodak.png"))
  parser.add_argument("--json", default=os.path.join(REPO, "bench", "out", "rd.json"),
                      help="all points and the summary")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args()

  paths = png_paths(args.images, args.limit)
  qualities = [int(q) for q in args.qualities.split(",")]
  codecs = [c for c in args.codecs.split(",") if c]
  unknown = set(codecs) - set(DEFAULT_CODECS) - set(EXTRA_CODECS)
  if unknown:
    sys.exit(f"unknown codecs {sorted(unknown)}; choose from {DEFAULT_CODECS + EXTRA_CODECS}")
  if ANCHOR not in codecs:
    codecs.insert(0, ANCHOR)
  butteraugli = shutil.which("butteraugli")
  metrics = METRICS if butteraugli else METRICS[:-1]
  if not butteraugli:
    print("butteraugli not found: install Debian's `butteraugli` package (apt-get install "
          "butteraugli) for the butteraugli column; it is left out of this run.\n")
  say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
  meter = Meter(butteraugli)
  results = []
  for path in paths:
    say(os.path.basename(path))
    results.append(run_image(load_rgb(path), qualities, codecs, meter, say))

  summary = summarize(results, codecs, metrics, qualities)
  print(f"\nRate-distortion on {len(paths)} images from {args.images}, qualities {qualities}. "
        "BD-rate against libjpeg-turbo 4:2:0 optimize (Pillow), per image then averaged "
        "(negative = fewer bytes at equal quality):\n")
  print("| encoder | " + " | ".join(f"BD-rate ({LABELS[m]})" for m in metrics)
        + " | mean bpp | mean SSIMULACRA 2 |")
  print("|---" * (len(metrics) + 3) + "|")
  for name in codecs:
    pts = [p for r in results for p in r["points"].get(name, [])]
    print(f"| {name} | " + " | ".join(f"{summary[name][m]['mean']:+.2f}%" for m in metrics)
          + f" | {np.mean([p['bpp'] for p in pts]):.3f} | "
            f"{np.mean([p['ssimulacra2'] for p in pts]):.2f} |")
  windows = [f"q{qualities[i]}-{qualities[i + 3]}" for i in range(len(qualities) - 3)]
  for metric in ("ssimulacra2", "butteraugli"):
    if metric not in metrics:
      continue
    print(f"\nBD-rate ({LABELS[metric]}) over windows of four qualities (per-rate points), and "
          "the spread over images (min / median / max):\n")
    print("| encoder | " + " | ".join(windows) + " | min | median | max |")
    print("|---" * (len(windows) + 4) + "|")
    for name in codecs:
      s = summary[name][metric]
      spread = np.asarray(s["per_image"], float)
      print(f"| {name} | " + " | ".join(f"{v:+.1f}%" for v in s["per_rate"])
            + f" | {np.nanmin(spread):+.1f}% | {np.nanmedian(spread):+.1f}% | "
              f"{np.nanmax(spread):+.1f}% |")
  print("\nSeconds per file (median; the first call of each size compiles):")
  for name in codecs:
    times = [t for r in results for t in r["timing"].get(name, [])]
    if times:
      print(f"  {name}: {np.median(times):.3f} s")
  if args.plot:
    plot(results, [c for c in codecs], [m for m in ("psnr", "ssimulacra2", "butteraugli")
                                        if m in metrics], args.plot)
    print(f"\nplot: {args.plot}")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump({"paths": paths, "qualities": qualities, "results": results,
                 "summary": summary}, f)
  return 0


if __name__ == "__main__":
  sys.exit(main())
