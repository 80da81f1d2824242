"""Real photographs, not mosaics: the default mode beside libjpeg-turbo and mozjpeg, every file
scored on the whole image, and how well the sample a large photo is searched on stands for it.

  python bench/photos.py [--folder bench/out/photos] [--qualities 50,75,90]

The library benchmark's large images are mosaics of 256-pixel training crops. These are real
photographs: the five of Debian's KDE Plasma wallpapers (`plasma-workspace-wallpapers`) that
are photos (ColdRipple, ColorfulCups, EveningGlow, FallenLeaf, Path), 2560x1600 (4.1 MP) each,
shipped as JPEGs and decoded here to PNG. With an empty folder the script fetches them
(`apt-get download`, then `dpkg-deb -x`; Debian with network access). They are neither
training nor Kodak images, and nothing in djpeg was fitted on them.

At 4.1 MP the default mode searches its tables on a sample of tiles and checks the choice on a
larger sample (a megapixel), then codes the whole photo once (`djpeg.perceptual`); its promise
(at least libjpeg-turbo's SSIMULACRA 2 at the quality, never a larger file) then holds on the
sample. Here each file is scored on the whole photo: SSIMULACRA 2 by djpeg's compiled metric
(the reference program's scores within about 1e-5), bytes against libjpeg-turbo (Pillow, 4:2:0,
optimize). Seconds are warm, pixels in memory to bytes, one process; mozjpeg 4.0.3 through
jpeglib. Figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from common import REPO, load_rgb, pillow_jpeg
from library import _mozjpeg

WALLPAPERS = {"coldripple": "ColdRipple", "cups": "ColorfulCups", "boats": "EveningGlow",
              "leaf": "FallenLeaf", "path": "Path"}


def fetch(folder: str) -> None:
  """The five photos as PNGs in `folder`, from Debian's package (its largest size of each)."""
  os.makedirs(folder, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    try:
      subprocess.run(["apt-get", "download", "plasma-workspace-wallpapers"], cwd=tmp, check=True,
                     capture_output=True)
      deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
      subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
    except (OSError, IndexError, subprocess.CalledProcessError) as e:
      sys.exit(f"could not fetch Debian's plasma-workspace-wallpapers ({e}); put photos (PNG) "
               f"in {folder} instead")
    for name, wallpaper in WALLPAPERS.items():
      found = glob.glob(os.path.join(tmp, "x", "usr", "share", "wallpapers", wallpaper,
                                     "contents", "images", "*"))
      largest = max(found, key=lambda p: np.prod(Image.open(p).size))
      Image.open(largest).convert("RGB").save(os.path.join(folder, f"{name}.png"))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--folder", default=os.path.join(REPO, "bench", "out", "photos"))
  parser.add_argument("--qualities", default="50,75,90")
  args = parser.parse_args()
  if not glob.glob(os.path.join(args.folder, "*.png")):
    fetch(args.folder)
  paths = sorted(glob.glob(os.path.join(args.folder, "*.png")))
  qualities = [int(q) for q in args.qualities.split(",")]

  import djpeg
  from djpeg import codec
  from djpeg.encoder import compress
  from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference

  def decoded(data: bytes) -> np.ndarray:
    return codec.decode_samples(djpeg.load_coefficients(data))

  warm = load_rgb(paths[0])[:512, :512]
  djpeg.dumps(compress(warm, measure=False).coefficients, progressive="optimize")
  print(f"{len(paths)} photos, {', '.join(os.path.basename(p) for p in paths)}; qualities "
        f"{qualities}. Bytes against libjpeg-turbo's file; SSIMULACRA 2 of the whole photo.")
  print(f"{'photo':<11}{'q':>3} | {'libjpeg':>8} {'S2':>6} | {'djpeg':>7} {'S2':>6} "
        f"{'diff':>6} {'sample':>7} {'s':>5} | {'mozjpeg':>7} {'S2':>6} {'diff':>6} {'s':>5}")
  rows = []
  for path in paths:
    pixels = load_rgb(path)
    reference = ssimulacra2_reference(pixels)
    score = lambda data: float(ssimulacra2_against(reference, decoded(data)))
    for q in qualities:
      theirs = pillow_jpeg(pixels, quality=q, subsampling=2, optimize=True)
      start = time.perf_counter()
      result = compress(pixels, quality=q, measure=False)
      ours = djpeg.dumps(result.coefficients, progressive="optimize")
      ours_s = time.perf_counter() - start
      start = time.perf_counter()
      moz = _mozjpeg(pixels, q)
      moz_s = time.perf_counter() - start
      target, s_ours, s_moz = score(theirs), score(ours), score(moz)
      # The sample's own margin: the score it promised over its own target.
      sample = result.ssimulacra2 - result.target_ssimulacra2
      anchor = codec.encode_pixels(pixels, quality=q)
      same = result.coefficients.sampling == anchor.sampling and all(
          np.array_equal(a, b) for a, b in zip(anchor.components, result.coefficients.components))
      kept = " (libjpeg-turbo's coefficients kept)" if same else ""
      rows.append(dict(ours=len(ours) / len(theirs) - 1, moz=len(moz) / len(theirs) - 1,
                       diff=s_ours - target, moz_diff=s_moz - target, ours_s=ours_s,
                       moz_s=moz_s, kept=bool(kept)))
      print(f"{os.path.basename(path)[:-4]:<11}{q:>3} | {len(theirs):>8} {target:>6.2f} | "
            f"{100 * rows[-1]['ours']:>+6.1f}% {s_ours:>6.2f} {s_ours - target:>+6.2f} "
            f"{sample:>+7.2f} {ours_s:>5.2f} | {100 * rows[-1]['moz']:>+6.1f}% {s_moz:>6.2f} "
            f"{s_moz - target:>+6.2f} {moz_s:>5.2f}{kept}", flush=True)
  mean = lambda key: float(np.mean([r[key] for r in rows]))
  below = [r["diff"] for r in rows if r["diff"] < -1e-3]
  print(f"\nMean bytes against libjpeg-turbo: djpeg default {100 * mean('ours'):+.1f}% (worst "
        f"{100 * max(r['ours'] for r in rows):+.1f}%), mozjpeg {100 * mean('moz'):+.1f}%.")
  print(f"SSIMULACRA 2 against libjpeg-turbo's, whole photo: djpeg {mean('diff'):+.2f} on "
        f"average ({min(r['diff'] for r in rows):+.2f} to {max(r['diff'] for r in rows):+.2f}); "
        f"below it on {len(below)} of {len(rows)} files"
        + (f" (by {-min(below):.2f} at most)" if below else "")
        + f"; mozjpeg {mean('moz_diff'):+.2f}. libjpeg-turbo's coefficients kept on "
        f"{sum(r['kept'] for r in rows)} files.")
  print(f"Seconds per photo (warm): djpeg {mean('ours_s'):.2f}, mozjpeg {mean('moz_s'):.2f} "
        f"({mean('ours_s') / mean('moz_s'):.2f}x).")
  return 0


if __name__ == "__main__":
  sys.exit(main())
