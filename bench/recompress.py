"""JPEG in, JPEG out: lossless and lossy recompression of camera-like JPEGs, beside the tools
people use.

  python bench/recompress.py [--limit N] [--qualities 50,65,80,90]

Inputs: the 24 Kodak images and 24 training images (BSDS, DIV2K), written by libjpeg-turbo
(Pillow) at quality 90 and 95 alternately, 4:2:0, with an EXIF block (camera, date,
orientation 6): camera-like JPEGs.

1. Lossless: djpeg (`djpeg.recompress.optimize_file`, every APPn/COM segment kept) against
   Debian's `jpegtran -optimize -progressive -copy all` (libjpeg-turbo) and
   mozjpeg-lossless-optimization (mozjpeg's jpegtran, markers copied). Bytes against the input,
   never-larger checked, and the coefficients checked unchanged (jpeglib).
2. Lossy, quality measured against the input's own decode (what the user sees today), for each
   of `--qualities` Q:
     djpeg DCT domain   `recompress(data, quality=Q)`: the file's coefficients requantized
     djpeg pixel route  decode, then djpeg's default mode at Q (`compress(pixels, quality=Q)`)
     libjpeg route      decode, then libjpeg-turbo at Q (what jpeg-recompress's binary search
                        over the quality walks along)
   BD-rate in SSIMULACRA 2 and PSNR against the libjpeg route, per image, averaged.
3. The coefficient reader: `bench/read_speed.py` measures it beside jpeglib.

  python bench/recompress.py --alignment

How `djpeg.recompress.aligned_steps` was chosen: on 12 other training images (BSDS and DIV2K,
written at q90 and q95 alternately), the DCT-domain route's BD-rate in SSIMULACRA 2 against the
libjpeg route, with the new steps as the perceptual tables give them, and moved to whole
multiples of the input's.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from common import KODAK, TRAIN, load_rgb, png_paths
from rd import bd_rate


def camera_jpegs(limit: int | None) -> list[tuple[str, bytes]]:
  exif = Image.Exif()
  exif[0x010F] = "bench camera"
  exif[0x0132] = "2026:12:04 12:00:00"
  exif[0x0112] = 6
  paths = png_paths(KODAK) + png_paths(os.path.join(TRAIN, "bsd200"))[:12] + png_paths(
      os.path.join(TRAIN, "div2k256"))[:12]
  out = []
  for i, path in enumerate(paths[:limit or None]):
    buf = io.BytesIO()
    Image.fromarray(load_rgb(path)).save(buf, "JPEG", quality=90 if i % 2 else 95,
                                         subsampling=2, exif=exif.tobytes())
    out.append((os.path.basename(path), buf.getvalue()))
  return out


def jpegtran(data: bytes) -> bytes | None:
  if not shutil.which("jpegtran"):
    return None
  out = subprocess.run(["jpegtran", "-optimize", "-progressive", "-copy", "all"], input=data,
                       capture_output=True, check=True)
  return out.stdout


def mozjpeg_lossless(data: bytes) -> bytes | None:
  try:
    import mozjpeg_lossless_optimization as m
  except ImportError:
    return None
  return m.optimize(data, copy=m.COPY_MARKERS.ALL)


def same_coefficients(a: bytes, b: bytes) -> bool:
  import jpeglib
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for name, data in (("a.jpg", a), ("b.jpg", b)):
      paths.append(os.path.join(tmp, name))
      with open(paths[-1], "wb") as f:
        f.write(data)
    x, y = jpeglib.read_dct(paths[0]), jpeglib.read_dct(paths[1])
    return all(np.array_equal(getattr(x, c), getattr(y, c)) for c in ("Y", "Cb", "Cr")) and \
        np.array_equal(x.qt, y.qt)


def alignment(qualities) -> None:
  """The `--alignment` run (module docstring)."""
  from djpeg import metrics, recompress
  aligned = recompress.aligned_steps
  paths = png_paths(os.path.join(TRAIN, "bsd200"))[30:36] + png_paths(
      os.path.join(TRAIN, "div2k256"))[30:36]
  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  variants = {"perceptual tables as they are": lambda steps, input_steps: steps,
              "moved to multiples of the input's": aligned}
  bd = {name: [] for name in variants}
  try:
    for i, path in enumerate(paths):
      buf = io.BytesIO()
      Image.fromarray(load_rgb(path)).save(buf, "JPEG", quality=90 if i % 2 else 95,
                                           subsampling=2)
      data = buf.getvalue()
      decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

      def point(out):
        d = np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))
        return 8 * len(out) / decoded[..., 0].size, float(metrics.ssimulacra2(f(decoded), f(d)))
      anchor = []
      for q in qualities:
        b = io.BytesIO()
        Image.fromarray(decoded).save(b, "JPEG", quality=q, optimize=True)
        anchor.append(point(b.getvalue()))
      for name, rule in variants.items():
        recompress.aligned_steps = rule
        ours = [point(recompress.recompress(data, quality=q).data) for q in qualities]
        bd[name].append(bd_rate([a[0] for a in anchor], [a[1] for a in anchor],
                                [p[0] for p in ours], [p[1] for p in ours]))
      print(f"  {os.path.basename(path)} (q{90 if i % 2 else 95}): " + ", ".join(
          f"{name} {bd[name][-1]:+.2f}%" for name in variants), flush=True)
  finally:
    recompress.aligned_steps = aligned
  first, second = variants
  d = np.array(bd[second]) - np.array(bd[first])
  for name in variants:
    print(f"{name}: BD-rate in SSIMULACRA 2 against the libjpeg route {np.mean(bd[name]):+.2f}%")
  print(f"difference {d.mean():+.2f} points (standard error {d.std(ddof=1) / np.sqrt(len(d)):.2f}),"
        f" {len(paths)} training images")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--limit", type=int, default=0)
  parser.add_argument("--qualities", default="50,65,80,90")
  parser.add_argument("--alignment", action="store_true",
                      help="only the comparison that chose recompress.aligned_steps")
  args = parser.parse_args()
  if args.alignment:
    alignment([int(q) for q in args.qualities.split(",")])
    return 0
  import djpeg
  from djpeg import metrics, recompress
  from djpeg.encoder import compress
  qualities = [int(q) for q in args.qualities.split(",")]
  inputs = camera_jpegs(args.limit)
  print(f"{len(inputs)} camera-like JPEGs (libjpeg-turbo q90/q95, 4:2:0, EXIF), "
        f"{sum(len(d) for _, d in inputs):,} bytes in all.\n")

  lossless = {"djpeg": [], "jpegtran -optimize -progressive": [], "mozjpeg lossless": []}
  exact, larger = True, 0
  for _, data in inputs:
    ours = recompress.optimize_file(data)
    exact &= same_coefficients(data, ours)
    larger += len(ours) > len(data)
    lossless["djpeg"].append(len(ours) / len(data))
    for name, tool in (("jpegtran -optimize -progressive", jpegtran),
                       ("mozjpeg lossless", mozjpeg_lossless)):
      out = tool(data)
      if out is not None:
        lossless[name].append(len(out) / len(data))
  print("| lossless | bytes against the input (mean) | best | worst |")
  print("|---|---|---|---|")
  for name, ratios in lossless.items():
    if ratios:
      r = np.array(ratios) - 1
      print(f"| {name} | {100 * r.mean():+.2f}% | {100 * r.min():+.2f}% | {100 * r.max():+.2f}% |")
  print(f"\ndjpeg lossless: coefficients unchanged on every file: {exact}; larger than the input: "
        f"{larger} files.\n")

  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  curves = {"djpeg DCT domain": [], "djpeg pixel route": [], "libjpeg route": []}
  for name, data in inputs:
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    per = {k: [] for k in curves}
    for q in qualities:
      files = {
          "djpeg DCT domain": recompress.recompress(data, quality=q).data,
          "djpeg pixel route": djpeg.dumps(compress(decoded, quality=q).coefficients,
                                           progressive="optimize"),
      }
      buf = io.BytesIO()
      Image.fromarray(decoded).save(buf, "JPEG", quality=q, optimize=True)
      files["libjpeg route"] = buf.getvalue()
      for key, out in files.items():
        dec = np.asarray(Image.open(io.BytesIO(out)).convert("RGB"))
        mse = np.mean((dec.astype(np.float64) - decoded) ** 2)
        per[key].append((8 * len(out) / decoded[..., 0].size,
                         float(metrics.ssimulacra2(f(decoded), f(dec))),
                         10 * np.log10(255 ** 2 / max(mse, 1e-9)), len(out) / len(data)))
    for key in curves:
      curves[key].append(per[key])
    print(f"  {name}: " + " | ".join(f"{k} {np.mean([p[0] for p in per[k]]):.3f} bpp S2 "
                                      f"{np.mean([p[1] for p in per[k]]):.1f}" for k in curves),
          flush=True)
  anchor = curves["libjpeg route"]
  print(f"\nLossy, qualities {qualities}, BD-rate against the libjpeg route (quality against "
        "the input's decode; negative = fewer bytes):\n")
  print("| route | BD-rate (SSIMULACRA 2) | BD-rate (PSNR) | mean bpp | bytes against the input |")
  print("|---|---|---|---|---|")
  for key, curve in curves.items():
    bd = [[bd_rate([p[0] for p in a], [p[m] for p in a], [p[0] for p in c], [p[m] for p in c])
           for a, c in zip(anchor, curve)] for m in (1, 2)]
    ratio = np.mean([p[3] for c in curve for p in c]) - 1
    print(f"| {key} | {np.nanmean(bd[0]):+.2f}% | {np.nanmean(bd[1]):+.2f}% | "
          f"{np.mean([p[0] for c in curve for p in c]):.3f} | {100 * ratio:+.1f}% |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
