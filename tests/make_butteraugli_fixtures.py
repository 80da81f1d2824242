"""Builds the butteraugli test fixtures in tests/data/butteraugli/, scored by Debian's program.

Usage (not needed to run the tests; they read only tests/data/):

  python tests/make_butteraugli_fixtures.py --butteraugli /usr/bin/butteraugli --kodak PATH/kodak

`--butteraugli` is Debian's `butteraugli` program (package 0~20170116-3, google/butteraugli at
290e39552e213ed352761114561f92b93c902f55), which takes two image files and prints the max-norm
distance. The pairs are the SSIMULACRA 2 fixtures' (tests/data/ssimulacra2/, the same images
and recipes) and three JPEG decodes of a larger Kodak crop (256x160, saved here), so that the
large blurs (sigma up to 14) and the block loops run over more than a few blocks. Every pair is
scored on PNG files holding exactly the pixels the tests see.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

import ssimulacra2_recipes as fr

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "butteraugli")
S2_DATA = os.path.join(HERE, "data", "ssimulacra2")
# name: (kodak image, x, y, width, height)
LARGE = {"k19_256x160": ("kodim19", 240, 300, 256, 160)}
LARGE_JPEGS = ((20, 2), (60, 0), (90, 2))


def s2_pair_images(pair: dict) -> tuple[np.ndarray, np.ndarray]:
  """uint8 (reference, distorted) of a SSIMULACRA 2 fixture pair (as its tests build them)."""
  def read(name):
    with open(os.path.join(S2_DATA, name), "rb") as f:
      return fr.decode(f.read())
  ref = read(pair["reference"])
  recipe = pair["distorted"]
  if "file" in recipe:
    dist = read(recipe["file"])
  elif recipe["kind"] == "blur":
    dist = fr.gaussian_blur(ref, recipe["sigma"])
  elif recipe["kind"] == "identical":
    dist = ref.copy()
  else:
    raise ValueError(f"unknown recipe {recipe}")
  return ref, dist


def _distance(program: str, a: np.ndarray, b: np.ndarray, tmp: str) -> float:
  pa, pb = os.path.join(tmp, "a.png"), os.path.join(tmp, "b.png")
  Image.fromarray(a).save(pa)
  Image.fromarray(b).save(pb)
  out = subprocess.run([program, pa, pb], check=True, capture_output=True, text=True)
  return float(out.stdout.split()[0])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--butteraugli", default="/usr/bin/butteraugli")
  ap.add_argument("--kodak", required=True, help="folder with kodim01.png .. kodim24.png")
  args = ap.parse_args()
  os.makedirs(DATA, exist_ok=True)
  with open(os.path.join(S2_DATA, "ssimulacra2_fixtures.json")) as f:
    s2_pairs = json.load(f)["pairs"]
  pairs = []
  with tempfile.TemporaryDirectory() as tmp:
    for pair in s2_pairs:
      ref, dist = s2_pair_images(pair)
      entry = {"id": pair["id"], "source": "ssimulacra2", "distorted_sha256":
               fr.pixels_sha256(dist), "distance": _distance(args.butteraugli, ref, dist, tmp)}
      pairs.append(entry)
      print(f"{entry['id']:36s} {entry['distance']:.6f}")
    for name, (kodak, x, y, w, h) in LARGE.items():
      with Image.open(os.path.join(args.kodak, kodak + ".png")) as im:
        ref = np.asarray(im.convert("RGB").crop((x, y, x + w, y + h))).copy()
      Image.fromarray(ref).save(os.path.join(DATA, name + ".png"), optimize=True)
      for q, s in LARGE_JPEGS:
        pid = f"{name}_jpeg_q{q:02d}_s{s}"
        data = fr.jpeg_bytes(ref, q, s)
        with open(os.path.join(DATA, pid + ".jpg"), "wb") as f:
          f.write(data)
        dist = fr.decode(data)
        entry = {"id": pid, "source": "butteraugli", "reference": name + ".png",
                 "distorted": pid + ".jpg", "distorted_sha256": fr.pixels_sha256(dist),
                 "distance": _distance(args.butteraugli, ref, dist, tmp)}
        pairs.append(entry)
        print(f"{pid:36s} {entry['distance']:.6f}")
  meta = {"description": "butteraugli max-norm distances of (reference, distorted) pairs, as "
                         "Debian's program prints them (6 decimals).",
          "reference_program": "Debian butteraugli 0~20170116-3 (google/butteraugli "
                               "290e39552e213ed352761114561f92b93c902f55)",
          "pairs": pairs}
  with open(os.path.join(DATA, "butteraugli_fixtures.json"), "w") as f:
    json.dump(meta, f, indent=1)
  print(f"{len(pairs)} pairs")


if __name__ == "__main__":
  main()
