"""The `djpeg` command line.

  djpeg demo      the differentiable codec on the bundled samples: agreement with libjpeg-turbo
                  (Pillow) at several qualities, and the gradients it gives.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np


def _pillow_round_trip(pixels: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
  """libjpeg-turbo's encode then decode of uint8 `(H, W, C)` pixels, through Pillow."""
  from PIL import Image
  image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
  buf = io.BytesIO()
  image.save(buf, "JPEG", quality=quality, subsampling=subsampling)
  decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
  return decoded.reshape(pixels.shape)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
  """PSNR in dB between two arrays in [0, peak]; inf when they are identical."""
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def demo(args: argparse.Namespace) -> int:
  import jax
  import jax.numpy as jnp

  import djpeg
  from djpeg import samples

  qualities = [int(q) for q in args.qualities.split(",")]
  print(f"djpeg {djpeg.__version__} on {jax.default_backend()}: the differentiable codec against "
        "libjpeg-turbo (Pillow), subsampling", args.subsampling)
  print("PSNR vs libjpeg: jpeg(x) against Pillow's decode of Pillow's encode (inf = bit exact).\n")

  def loss(image, quality, tables_scale):
    tables = djpeg.quality_tables(quality) * tables_scale
    out = djpeg.jpeg(image, tables=tables, subsampling=args.subsampling)
    return jnp.mean((out - jax.lax.stop_gradient(image)) ** 2)

  grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  header = (f"{'sample':10s} {'q':>3s} {'PSNR vs libjpeg':>15s} {'PSNR vs source':>14s} "
            f"{'|dL/dx|':>9s} {'dL/dq':>10s} {'|dL/dT|':>9s} {'ms':>6s}")
  print(header)
  print("-" * len(header))
  for name in samples.NAMES:
    pixels = samples.load(name, uint8=True)
    image = pixels.astype(np.float32) / 255.0
    for quality in qualities:
      start = time.perf_counter()
      ours = np.asarray(djpeg.jpeg(image, quality=quality, subsampling=args.subsampling))
      elapsed = 1e3 * (time.perf_counter() - start)
      ours = np.round(ours * 255.0) / 255.0   # the 8-bit values a decoder hands out
      theirs = _pillow_round_trip(pixels, quality, args.subsampling).astype(np.float32) / 255.0
      gx, gq, gt = grad_fn(image, jnp.float32(quality), jnp.ones((2, 8, 8), jnp.float32))
      print(f"{name:10s} {quality:3d} {psnr(ours, theirs):15.2f} {psnr(ours, image):14.2f} "
            f"{float(jnp.linalg.norm(gx)):9.2e} {float(gq):10.2e} {float(jnp.linalg.norm(gt)):9.2e} "
            f"{elapsed:6.1f}")
  print("\nL is the MSE between jpeg(x) and the (fixed) source image; dL/dx, dL/dq and dL/dT are "
        "its gradients with respect to the\nimage, the quality and a per-entry scale of the tables "
        "(straight-through rounding). The first row of each sample\nincludes compilation.")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="djpeg", description="Differentiable JPEG in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("demo", help="the differentiable codec on the bundled samples vs libjpeg-turbo")
  p.add_argument("--qualities", default="10,50,75,95", help="comma-separated qualities (1..100)")
  p.add_argument("--subsampling", default="4:2:0", choices=["4:4:4", "4:2:2", "4:2:0"])
  p.set_defaults(func=demo)
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
