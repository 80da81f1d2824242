"""The perceptual default mode against libjpeg-turbo itself (Pillow), scored by SSIMULACRA 2.

The reference files are Pillow's (libjpeg-turbo's) at each quality, decoded by Pillow; djpeg's
files are decoded by Pillow too. Scores come from `djpeg.metrics.ssimulacra2`, which
tests/test_ssimulacra2.py holds to Cloudinary's reference program within 1e-4 points.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

import djpeg
from djpeg import cli, metrics, perceptual, samples
from djpeg.encoder import compress
from conftest import pillow_decode, pillow_encode

SAMPLES = ("limes", "houses", "castle", "bear_gray")


def score(pixels: np.ndarray, data: bytes) -> float:
  """SSIMULACRA 2 of a file's Pillow decode against `pixels` (gray repeated to RGB)."""
  decoded = pillow_decode(data)
  if pixels.shape[-1] == 1:
    pixels, decoded = np.repeat(pixels, 3, -1), np.repeat(decoded, 3, -1)
  as_float = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  return float(metrics.ssimulacra2(as_float(pixels), as_float(decoded)))


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("quality", [30, 75, 95])
def test_default_mode_is_never_below_libjpeg_turbo(name, quality):
  pixels = samples.load(name, uint8=True)
  theirs = pillow_encode(pixels, quality=quality, optimize=True)          # libjpeg-turbo, 4:2:0
  result = compress(pixels, quality=quality)
  assert result.mode == "perceptual"
  ours = djpeg.dumps(result.coefficients, progressive="optimize")
  assert score(pixels, ours) >= score(pixels, theirs)
  assert abs(result.target_ssimulacra2 - score(pixels, theirs)) < 1e-3
  assert len(ours) < len(theirs)                                          # fewer bytes too
  simplejpeg.decode_jpeg(ours, strict=True) if pixels.shape[-1] == 3 else None


def test_libjpeg_mode_is_libjpeg_turbos_file():
  pixels = samples.load("castle", uint8=True)
  for quality in (20, 75, 95):
    result = compress(pixels, quality=quality, mode="libjpeg")
    assert djpeg.dumps(result.coefficients) == pillow_encode(pixels, quality=quality,
                                                             optimize=True)


def test_the_cli_default_and_libjpeg_flag(tmp_path):
  pixels = samples.load("limes", uint8=True)
  source = tmp_path / "in.png"
  Image.fromarray(pixels).save(source)
  assert cli.main(["encode", str(source), str(tmp_path / "d.jpg"), "--quiet"]) == 0
  assert cli.main(["encode", str(source), str(tmp_path / "l.jpg"), "--libjpeg", "--quiet"]) == 0
  default, plain = (tmp_path / "d.jpg").read_bytes(), (tmp_path / "l.jpg").read_bytes()
  assert plain == pillow_encode(pixels, quality=75, optimize=True)
  assert Image.open(io.BytesIO(default)).info.get("progressive")        # optimized scans
  assert score(pixels, default) >= score(pixels, plain) and len(default) < len(plain)
  with pytest.raises(SystemExit, match="--libjpeg"):
    cli.main(["encode", str(source), str(tmp_path / "x.jpg"), "--libjpeg", "--trellis"])


def test_perceptual_trellis_is_better_than_rounding_its_tables():
  # At equal tables the trellis gives up bytes for SSIMULACRA 2 points at a better rate than
  # moving along the tables' own rounding curve.
  pixels = samples.load("houses", uint8=True)
  image = perceptual.PerceptualImage(pixels)
  coefficients, _ = image.trellis(70)
  trellis_bytes = len(djpeg.dumps(coefficients))
  rounded_bytes = [len(djpeg.dumps(pixels, qtables=perceptual.tables(p)[:2])) for p in (60, 70)]
  assert trellis_bytes < rounded_bytes[1]
  assert image.score(coefficients) > score(pixels, djpeg.dumps(pixels,
                                                                qtables=perceptual.tables(60)[:2]))


def test_bad_input_and_conflicting_options():
  pixels = samples.load("limes", uint8=True)
  with pytest.raises(ValueError, match="at least 8x8"):
    perceptual.meet_libjpeg(pixels[:6, :6])
  with pytest.raises(ValueError, match="quality"):
    compress(pixels, quality=0)
  with pytest.raises(ValueError, match="mode='mse'"):
    compress(pixels, quality=75, mode="perceptual", psnr=30.0)
  with pytest.raises(ValueError, match="mode"):
    compress(pixels, mode="fast")
  with pytest.raises(ValueError, match="perceptual quality"):
    perceptual.tables(0.5)
