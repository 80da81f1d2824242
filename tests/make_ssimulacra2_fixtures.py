"""Builds the SSIMULACRA 2 test fixtures in tests/data/ssimulacra2/, scored by the reference.

Usage (not needed to run the tests; they read only tests/data/ssimulacra2/):

  python tests/make_ssimulacra2_fixtures.py --ssimulacra2 PATH/ssimulacra2 --kodak PATH/kodak

`--ssimulacra2` is Cloudinary's reference program (github.com/cloudinary/ssimulacra2), which
takes two image files and prints the score. Reference crops are saved as PNG; JPEG-distorted
images are saved as the .jpg files Pillow wrote (the tests decode them with Pillow); noisy
images are saved as PNG too (numpy's Generator streams are not guaranteed forever); blurred
images are rebuilt by the tests from the recipe. Every pair is scored on PNG files holding
exactly the pixels the tests will see (Pillow's decode of the JPEG), so the reference's own
JPEG decoder plays no part.
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

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ssimulacra2")
ALL_Q = (5, 10, 20, 35, 50, 65, 80, 90, 95)

# name: (kodak image, x, y, width, height, gray)
CROPS = {
    "k08_96": ("kodim08", 420, 180, 96, 96, False),
    "k23_96": ("kodim23", 130, 90, 96, 96, False),
    "k08_128": ("kodim08", 100, 300, 128, 128, False),
    "k03_97x75": ("kodim03", 300, 200, 97, 75, False),
    "k15_33x50": ("kodim15", 330, 170, 33, 50, False),
    "k23g_33x50": ("kodim23", 480, 150, 33, 50, True),
    "k03_8x8": ("kodim03", 350, 250, 8, 8, False),
    "k15_9x13": ("kodim15", 360, 200, 9, 13, False),
}


def _jpeg(q, s):
  return {"kind": "jpeg", "quality": q, "subsampling": s}


PAIRS = (
    [("k08_96", _jpeg(q, s)) for s in (0, 2) for q in ALL_Q]
    + [("k23_96", _jpeg(q, s)) for s in (0, 2) for q in ALL_Q]
    + [("k23_96", {"kind": "blur", "sigma": 0.7}), ("k23_96", {"kind": "blur", "sigma": 1.5}),
       ("k23_96", {"kind": "noise", "sigma": 3.0, "seed": 1}),
       ("k23_96", {"kind": "noise", "sigma": 10.0, "seed": 2}),
       ("k23_96", {"kind": "identical"})]
    + [("k08_128", _jpeg(q, 2)) for q in (10, 50, 95)]
    + [("k03_97x75", _jpeg(q, s)) for s in (0, 2) for q in (20, 65, 95)]
    + [("k03_97x75", {"kind": "blur", "sigma": 1.0}),
       ("k03_97x75", {"kind": "noise", "sigma": 5.0, "seed": 3})]
    + [("k15_33x50", _jpeg(35, 2)), ("k15_33x50", _jpeg(90, 2)), ("k15_33x50", _jpeg(50, 0)),
       ("k15_33x50", {"kind": "blur", "sigma": 1.2}),
       ("k15_33x50", {"kind": "noise", "sigma": 4.0, "seed": 4})]
    + [("k23g_33x50", _jpeg(30, 2)), ("k23g_33x50", {"kind": "blur", "sigma": 1.0})]
    + [("k03_8x8", _jpeg(50, 2)), ("k03_8x8", {"kind": "blur", "sigma": 0.8}),
       ("k03_8x8", {"kind": "noise", "sigma": 6.0, "seed": 5})]
    + [("k15_9x13", _jpeg(80, 0)), ("k15_9x13", {"kind": "blur", "sigma": 1.0}),
       ("k15_9x13", {"kind": "noise", "sigma": 3.0, "seed": 6}),
       ("k15_9x13", {"kind": "identical"})]
)


def _pair_id(crop: str, recipe: dict) -> str:
  kind = recipe["kind"]
  if kind == "jpeg":
    return f"{crop}_jpeg_q{recipe['quality']:02d}_s{recipe['subsampling']}"
  if kind == "blur":
    return f"{crop}_blur_{recipe['sigma']:g}"
  if kind == "noise":
    return f"{crop}_noise_{recipe['sigma']:g}_seed{recipe['seed']}"
  return f"{crop}_identical"


def _score(program: str, ref_png: str, dist_png: str) -> float:
  out = subprocess.run([program, ref_png, dist_png], check=True, capture_output=True, text=True)
  return float(out.stdout.strip())


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--ssimulacra2", required=True, help="reference program")
  ap.add_argument("--kodak", required=True, help="folder with kodim01.png .. kodim24.png")
  args = ap.parse_args()
  os.makedirs(DATA, exist_ok=True)
  usage = subprocess.run([args.ssimulacra2], capture_output=True, text=True).stderr
  version = usage.splitlines()[0]
  crops = {}
  for name, (kodak, x, y, w, h, gray) in CROPS.items():
    with Image.open(os.path.join(args.kodak, kodak + ".png")) as im:
      im = im.convert("RGB").crop((x, y, x + w, y + h))
      if gray:
        im = im.convert("L")
      img = np.asarray(im).copy()
    fname = f"{name}.png"
    Image.fromarray(img).save(os.path.join(DATA, fname), optimize=True)
    crops[name] = (img, fname, dict(image=kodak, x=x, y=y, width=w, height=h, gray=gray))
  pairs = []
  with tempfile.TemporaryDirectory() as tmp:
    for crop, recipe in PAIRS:
      img, ref_name, _ = crops[crop]
      pid = _pair_id(crop, recipe)
      entry = {"id": pid, "reference": ref_name, "distorted": dict(recipe)}
      kind = recipe["kind"]
      if kind == "jpeg":
        data = fr.jpeg_bytes(img, recipe["quality"], recipe["subsampling"])
        entry["distorted"]["file"] = pid + ".jpg"
        with open(os.path.join(DATA, pid + ".jpg"), "wb") as f:
          f.write(data)
        dist = fr.decode(data)
      elif kind == "blur":
        dist = fr.gaussian_blur(img, recipe["sigma"])
      elif kind == "noise":
        dist = fr.gaussian_noise(img, recipe["sigma"], recipe["seed"])
        entry["distorted"]["file"] = pid + ".png"
        Image.fromarray(dist).save(os.path.join(DATA, pid + ".png"), optimize=True)
      else:
        dist = img.copy()
      entry["distorted_sha256"] = fr.pixels_sha256(dist)
      ref_png = os.path.join(DATA, ref_name)
      dist_png = os.path.join(tmp, pid + ".png")
      Image.fromarray(dist).save(dist_png)
      entry["score"] = _score(args.ssimulacra2, ref_png, dist_png)
      pairs.append(entry)
      print(f"{pid:36s} {entry['score']:12.8f}")
  meta = {
      "description": "SSIMULACRA 2 reference scores for (reference, distorted) image pairs; "
                     "images are fed as u8 * float32(1/255).",
      "reference_program": "github.com/cloudinary/ssimulacra2 commit "
                           "81feacf6a5b0bbd7ec11b4a881a4615033ab0b10 (" + version.strip() + ")",
      "crops": {name: info for name, (_, _, info) in crops.items()},
      "pairs": pairs,
  }
  with open(os.path.join(DATA, "ssimulacra2_fixtures.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main()
