"""Learned saliency: MS-SSIM BD-rate of the encoder with SaliencyNet's map against a uniform map.

  python bench/saliency.py [--images ../shared/data/kodak] [--limit N] [--qualities 30,50,70,85]
                           [--maps learned,ms-ssim,inverse-std]

Per image, the rate points are libjpeg-turbo's files at `--qualities` (Pillow, 4:2:0,
optimize=True): their sizes are the bpp targets. At each target, in one run:

  uniform        djpeg.encoder.compress(bpp=target): per-image tables + trellis, no map
  learned        compress(bpp=target, saliency="auto"): the same with SaliencyNet's map
                 (models/data/saliency_net.npz, trained by `djpeg-train saliency` on BSDS/DIV2K)
  ms-ssim        (reference) compress(bpp=target, saliency="ms-ssim"): MS-SSIM's per-block
                 sensitivity measured on the image, the quantity the network learns to predict
  inverse-std    (reference) the same with a hand-made map, 1 / (1 + local std of luma),
                 normalised to [0, 1], at the network's background

`--maps` picks the rows besides the uniform map (all by default).

Every file is decoded by Pillow; MS-SSIM (RGB, `djpeg.metrics.ms_ssim`) is read in dB
(-10 log10(1 - MS-SSIM)) and RGB PSNR beside it. BD-rates are per image against the uniform
map (cubic fit of log rate over quality, as bench/rd.py), then averaged; the worst image is
shown too. Target: learned MS-SSIM BD-rate <= -10%. Nothing is tuned on Kodak: it is the report
set.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.rd import bd_rate  # noqa: E402


MAPS = ("learned", "ms-ssim", "inverse-std")


def pillow_bytes(pixels, quality) -> int:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=int(quality), optimize=True)
  return len(buf.getvalue())


def inverse_std_map(pixels: np.ndarray, tau: float = 1.0, size: int = 8) -> np.ndarray:
  """1 / (1 + local std of luma / tau) over `size` x `size` windows, scaled to [0, 1]."""
  from scipy.ndimage import uniform_filter
  y = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  mean = uniform_filter(y, size)
  std = np.sqrt(np.maximum(uniform_filter(y * y, size) - mean * mean, 0.0))
  w = 1.0 / (1.0 + std / tau)
  return ((w - w.min()) / max(w.max() - w.min(), 1e-9)).astype(np.float32)


def measure(data: bytes, pixels: np.ndarray) -> tuple[float, float, float]:
  """(bits per pixel, MS-SSIM dB, PSNR dB) of a file decoded by Pillow."""
  import djpeg
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  score = float(djpeg.metrics.ms_ssim(decoded.astype(np.float32) / 255,
                                      pixels.astype(np.float32) / 255))
  mse = np.mean((decoded.astype(np.float64) - pixels) ** 2)
  return (8 * len(data) / (pixels.shape[0] * pixels.shape[1]),
          -10 * np.log10(max(1 - score, 1e-10)), 10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--limit", type=int, default=None)
  parser.add_argument("--qualities", default="30,50,70,85")
  parser.add_argument("--maps", default=",".join(MAPS),
                      help=f"rows besides the uniform map, comma-separated from {', '.join(MAPS)}")
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "out", "saliency.json"))
  args = parser.parse_args()

  import djpeg  # noqa: F401
  from djpeg.encoder import compress
  from djpeg.models import saliency as saliency_model

  qualities = [int(q) for q in args.qualities.split(",")]
  paths = sorted(glob.glob(os.path.join(args.images, "*.png")))[:args.limit]
  if not paths:
    raise SystemExit(f"no PNG images in {args.images}")
  background = saliency_model.BACKGROUND
  maps = [m.strip() for m in args.maps.split(",") if m.strip()]
  unknown = sorted(set(maps) - set(MAPS))
  if unknown or not maps:
    raise SystemExit(f"--maps: choose from {', '.join(MAPS)}; got {args.maps!r}")
  rows = ["uniform"] + [m for m in MAPS if m in maps]
  print(f"{len(paths)} images, rate points: libjpeg-turbo sizes at qualities {qualities}; "
        f"map background {background}", flush=True)
  curves = {name: [] for name in rows}     # per image: (bpp, msssim dB, psnr) per rate point
  seconds = {name: 0.0 for name in rows}
  for index, path in enumerate(paths):
    pixels = np.asarray(Image.open(path).convert("RGB"))
    n = pixels.shape[0] * pixels.shape[1]
    targets = [8 * pillow_bytes(pixels, q) / n for q in qualities]
    for name in rows:
      options = {}
      if name == "learned":
        options = {"saliency": "auto"}
      elif name == "ms-ssim":
        options = {"saliency": "ms-ssim"}
      elif name == "inverse-std":
        options = {"saliency": inverse_std_map(pixels), "background": background}
      points = []
      for target in targets:
        start = time.perf_counter()
        result = compress(pixels, bpp=target, measure=False, **options)
        data = djpeg.dumps(result.coefficients)
        seconds[name] += time.perf_counter() - start
        points.append(measure(data, pixels))
      curves[name].append(points)
    line = [f"{os.path.basename(path)}"]
    for name in rows:
      if name == "uniform":
        continue
      a, t = np.array(curves["uniform"][-1]), np.array(curves[name][-1])
      line.append(f"{name} {bd_rate(a[:, 0], a[:, 1], t[:, 0], t[:, 1]):+.1f}%")
    print("  " + ", ".join(line), flush=True)

  print("\nBD-rate against the uniform map (mean over images; worst image), negative = smaller "
        "files at equal quality")
  print(f"{'map':14s} {'MS-SSIM':>9s} {'worst':>7s} {'PSNR':>8s}   {'s/file':>6s}")
  summary = {"images": len(paths), "qualities": qualities, "background": background, "rows": {}}
  for name in rows:
    if name == "uniform":
      print(f"{name:14s} {'0.00%':>9s} {'':>7s} {'0.00%':>8s}   "
            f"{seconds[name] / (len(paths) * len(qualities)):6.2f}")
      continue
    ms, ps = [], []
    for a, t in zip(curves["uniform"], curves[name]):
      a, t = np.array(a), np.array(t)
      ms.append(bd_rate(a[:, 0], a[:, 1], t[:, 0], t[:, 1]))
      ps.append(bd_rate(a[:, 0], a[:, 2], t[:, 0], t[:, 2]))
    # PSNR curves that do not overlap the uniform map's (the map gives up PSNR for MS-SSIM)
    # have no BD-rate: left out of the mean and counted.
    missing = int(np.sum(~np.isfinite(ps)))
    summary["rows"][name] = {"msssim_bd": float(np.mean(ms)), "msssim_worst": float(np.max(ms)),
                             "psnr_bd": float(np.nanmean(ps)), "psnr_missing": missing,
                             "per_image": ms}
    note = f" ({missing} image(s) without overlap left out)" if missing else ""
    print(f"{name:14s} {np.mean(ms):8.2f}% {np.max(ms):6.1f}% {np.nanmean(ps):7.2f}%   "
          f"{seconds[name] / (len(paths) * len(qualities)):6.2f}{note}")
  if "learned" in summary["rows"]:
    learned = summary["rows"]["learned"]["msssim_bd"]
    print(f"\ntarget: learned MS-SSIM BD-rate <= -10%: {learned:+.2f}% "
          f"{'MET' if learned <= -10 else 'NOT MET'}")
  summary["curves"] = {k: v for k, v in curves.items()}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(summary, f, indent=1)


if __name__ == "__main__":
  main()
