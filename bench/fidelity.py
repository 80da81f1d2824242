"""How closely differentiable JPEG codecs reproduce real libjpeg-turbo, on the Kodak images.

  python bench/fidelity.py [--images ../shared/data/kodak] [--qualities 1,5,10,25,50,75,90,95]

For every image, quality and subsampling, the reference is Pillow's decode of Pillow's encode
(libjpeg-turbo, default islow DCT and fancy upsampling). The table gives the mean PSNR of each
differentiable codec's output against it (inf when identical), and for djpeg also the share of
quantized coefficients equal to libjpeg's own (read from Pillow's file with jpeglib). kornia's
`jpeg_codec_differentiable` supports only 4:2:0 and needs sizes divisible by 16 (Kodak's are).
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import tempfile

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def libjpeg(pixels: np.ndarray, quality: int, subsampling: str):
  """Pillow's encode + decode, and the quantized coefficients jpeglib reads from the file."""
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
  decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
  coefficients = None
  try:
    import jpeglib
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
      f.write(buf.getvalue())
      f.flush()
      d = jpeglib.read_dct(f.name)
      coefficients = [np.array(d.Y), np.array(d.Cb), np.array(d.Cr)]
  except ImportError:
    pass
  return decoded, coefficients


def kornia_codec():
  try:
    import kornia
    import torch
  except ImportError:
    return None

  def run(pixels: np.ndarray, quality: int) -> np.ndarray:
    x = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
      y = kornia.enhance.jpeg_codec_differentiable(x, torch.tensor([float(quality)]))
    return np.round(y[0].permute(1, 2, 0).numpy().clip(0, 1) * 255).astype(np.uint8)

  return run


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", default=os.path.join(REPO, "..", "shared", "data", "kodak"))
  parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
  parser.add_argument("--qualities", default="1,5,10,25,50,75,90,95")
  parser.add_argument("--subsamplings", default="4:4:4,4:2:0")
  args = parser.parse_args()

  import jax

  import djpeg

  paths = sorted(glob.glob(os.path.join(args.images, "*.png")))[: args.limit or None]
  if not paths:
    print(f"no PNG images in {args.images}", file=sys.stderr)
    return 1
  images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  qualities = [int(q) for q in args.qualities.split(",")]
  kornia_run = kornia_codec()
  encode = jax.jit(djpeg.encode, static_argnames=("subsampling",))

  print(f"Fidelity to libjpeg-turbo (Pillow decode of Pillow encode) on {len(images)} images from "
        f"{args.images}: mean PSNR in dB (inf = identical).\n")
  print("| subsampling | quality | djpeg PSNR | djpeg coefficients equal | djpeg float PSNR "
        "| kornia PSNR |")
  print("|---|---|---|---|---|---|")
  for subsampling in args.subsamplings.split(","):
    for quality in qualities:
      ours, ours_float, theirs, equal, total = [], [], [], 0, 0
      for pixels in images:
        reference, ref_coefficients = libjpeg(pixels, quality, subsampling)
        x = pixels.astype(np.float32) / 255
        coefficients = encode(x, quality=float(quality), subsampling=subsampling)
        ours.append(psnr(np.round(np.asarray(djpeg.decode(coefficients)) * 255), reference))
        float_out = djpeg.jpeg(x, quality=quality, subsampling=subsampling, faithful=False)
        ours_float.append(psnr(np.round(np.asarray(float_out) * 255), reference))
        if ref_coefficients is not None:
          for mine, ref in zip(coefficients.components, ref_coefficients):
            equal += int(np.sum(np.asarray(mine) == ref))
            total += ref.size
        if kornia_run is not None and subsampling == "4:2:0":
          theirs.append(psnr(kornia_run(pixels, quality), reference))
      agreement = f"{100 * equal / total:.4f}%" if total else "n/a"
      kornia_cell = f"{np.mean(theirs):.2f}" if theirs else "n/a"
      print(f"| {subsampling} | {quality} | {np.mean(ours):.2f} | {agreement} "
            f"| {np.mean(ours_float):.2f} | {kornia_cell} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
