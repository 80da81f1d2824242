"""How closely the differentiable dead-zone tracks the exporter's trellis (training images).

  python bench/deadzone.py [--limit 8] [--qualities 50,75,90]

For each image and quality (Annex K tables) the trellis runs with the tables' own lambda, once
with uniform block weights and once with a mask (a centred quarter of the image, background
weight 0.1). The dead-zone stand-in (`djpeg.encode(..., deadzone=djpeg.roi.deadzone(...))`) gets
the same lambda and weights. Both choices are priced alike: exact baseline bits with optimal
Huffman tables, and the DCT-domain weighted distortion. The table gives dead-zone / trellis
ratios (1 = identical); plain rounding's ratio is shown for scale. The images are the training
sets (BSDS and DIV2K), where `djpeg.roi.DEADZONE_BITS` was fitted.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "..", "shared", "data", "train")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--limit", type=int, default=8)
  parser.add_argument("--qualities", default="50,75,90")
  args = parser.parse_args()

  import djpeg
  from djpeg import roi
  from djpeg.encoder import TrellisImage
  from djpeg.exact import trellis as trellis_lib

  paths = (sorted(glob.glob(os.path.join(TRAIN, "div2k256", "*.png")))[10::20]
           + sorted(glob.glob(os.path.join(TRAIN, "bsd200", "*.png")))[10::40])[:args.limit]
  rows = {"uniform": [], "mask": []}
  for path in paths:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    image = pixels.astype(np.float32) / 255
    height, width, _ = image.shape
    mask = np.zeros((height, width), bool)
    mask[height // 4:3 * height // 4, width // 4:3 * width // 4] = True
    for case, weights_map in (("uniform", None), ("mask", roi.pixel_weights(mask))):
      problem = TrellisImage(image, "4:2:0", weights_map, pixels)
      blocks = problem.blocks or [np.ones(d.shape[:2]) for d in problem.dct]
      for q in (int(v) for v in args.qualities.split(",")):
        tables = np.asarray(djpeg.quality_tables(q))[[0, 1, 1]].astype(np.float64)
        chosen = problem.trellis(tables, None, 2)
        lmbda = chosen.lmbda
        theta = roi.deadzone(blocks, tables, lmbda=lmbda, height=height, width=width)
        c = djpeg.encode(image, tables=tables, deadzone=theta)
        # Price the dead-zone's coefficients exactly as the trellis prices its own.
        priced = trellis_lib.TrellisProblem(problem.dct, tables, problem.factors, height, width,
                                            problem.weights, problem.blocks)
        zz = np.concatenate([np.abs(np.asarray(comp, np.int32)).reshape(-1, 64)[:, djpeg.ZIGZAG[1:]]
                             for comp in c.components])
        _, bits, distortion = priced.evaluate(zz)
        rows[case].append((bits / chosen.bits, distortion / chosen.distortion,
                           chosen.rounding_bits / chosen.bits,
                           chosen.rounding_distortion / chosen.distortion))
  print(f"{len(paths)} training images, qualities {args.qualities}, Annex K tables, the tables' own "
        f"lambda; dead-zone bits b = {roi.DEADZONE_BITS}.\n")
  print("| block weights | dead-zone bits / trellis | dead-zone distortion / trellis | "
        "rounding bits / trellis | rounding distortion / trellis |")
  print("|---|---|---|---|---|")
  for case, values in rows.items():
    a = np.array(values)
    cells = [f"{a[:, i].mean():.3f} ({a[:, i].min():.3f}..{a[:, i].max():.3f})" for i in range(4)]
    print(f"| {case} | " + " | ".join(cells) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
