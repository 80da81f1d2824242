"""JPEG in, JPEG out: lossless re-optimization and DCT-domain recompression, against jpeglib,
Pillow and libjpeg-turbo's strict decoder."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import simplejpeg
from PIL import Image

import djpeg
from djpeg import cli, perceptual, recompress, samples
from djpeg.exact import JPEGError
from conftest import pillow_decode, read_dct

EXIF = Image.Exif()
EXIF[0x0112] = 6


def camera_jpeg(name="houses", quality=92, **options) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(samples.load(name, uint8=True)).save(
      buf, "JPEG", quality=quality, exif=EXIF.tobytes(), comment=b"from a camera", **options)
  return buf.getvalue()


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 0},
                                     {"optimize": True, "restart_marker_blocks": 2}])
def test_lossless_keeps_every_coefficient_and_is_never_larger(options):
  data = camera_jpeg(**options)
  out = recompress.optimize_file(data)
  assert len(out) <= len(data)
  for ours, theirs in zip(read_dct(out)[0], read_dct(data)[0]):
    np.testing.assert_array_equal(ours, theirs)
  assert read_dct(out)[1][0].tolist() == read_dct(data)[1][0].tolist()
  image = Image.open(io.BytesIO(out))
  assert image.getexif()[0x0112] == 6 and image.info.get("comment") == b"from a camera"
  # An input that cannot be made smaller comes back as it is.
  assert recompress.optimize_file(out) == out or len(recompress.optimize_file(out)) < len(out)


def test_lossy_recompression_meets_its_targets_and_keeps_the_grid(tmp_path):
  data = camera_jpeg("castle", 95)
  decoded = pillow_decode(data)
  ours = recompress.recompress(data, quality=75)
  assert ours.kind == "lossy" and len(ours.data) < len(data)
  # The target: libjpeg-turbo re-encoding the input's decode at 75, measured on that decode.
  reencoded = io.BytesIO()
  Image.fromarray(decoded).save(reencoded, "JPEG", quality=75)
  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  score = lambda d: float(djpeg.metrics.ssimulacra2(f(decoded), f(pillow_decode(d))))
  assert score(ours.data) >= score(reencoded.getvalue())
  c_in, c_out = djpeg.load_coefficients(data), djpeg.load_coefficients(ours.data)
  assert c_in.sampling == c_out.sampling and [a.shape for a in c_in.components] == [
      a.shape for a in c_out.components]
  psnr = recompress.recompress(data, psnr=38.0)
  assert psnr.score >= 38.0
  mse = np.mean((pillow_decode(psnr.data).astype(float) - decoded) ** 2)
  assert 10 * np.log10(255 ** 2 / mse) >= 38.0
  budget = recompress.recompress(data, bpp=1.5)
  assert 8 * len(budget.data) / decoded[..., 0].size <= 1.5
  # The new steps are whole multiples of the input's (`recompress.aligned_steps`), read back by
  # libjpeg (jpeglib); where a step is kept (many are at quality 90), the input's value is kept
  # or moved toward zero: the trellis requantizes the input's exact coefficients, which that
  # step holds without error.
  fine = recompress.recompress(data, quality=90)
  in_values, in_steps = read_dct(data)
  kept = 0
  for out in (ours.data, psnr.data, budget.data, fine.data):
    out_values, out_steps = read_dct(out)
    for a, b, qa, qb in zip(in_values, out_values, in_steps, out_steps):
      assert np.all(qb % qa == 0), (qa, qb)
      same = np.broadcast_to(qb == qa, a.shape)
      kept += int(same.sum())
      a, b = a[same].astype(np.int64), b[same].astype(np.int64)
      assert np.all(np.abs(b) <= np.abs(a)) and np.all(a * b >= 0)
  assert kept > 0
  for out in (ours.data, psnr.data, budget.data, fine.data):
    simplejpeg.decode_jpeg(out, strict=True)
    assert Image.open(io.BytesIO(out)).getexif()[0x0112] == 6
    if shutil.which("djpeg"):
      (tmp_path / "o.jpg").write_bytes(out)
      subprocess.run(["djpeg", "-strict", "-outfile", str(tmp_path / "o.ppm"),
                      str(tmp_path / "o.jpg")], check=True)


@pytest.mark.parametrize("sample", ["true", "misleading"])
def test_sampled_inputs_meet_their_targets_on_the_whole_image(sample, monkeypatch):
  # Over a megapixel the search runs on sampled tiles; up to WHOLE_CHECK_LIMIT it is checked and
  # corrected on the whole image, and a bpp budget at any size. A misleading sample (flat tiles)
  # alone would pick far too coarse tables for the quality target and too fine for the budget.
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  rows = [np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c] for c in range(6)], 1)
          for r in range(8)]
  pixels = np.ascontiguousarray(np.concatenate(rows, 0))                  # 1024 x 1152
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=95)
  data = buf.getvalue()
  if sample == "misleading":
    flat = np.full((1024, 128, 3), 128, np.uint8) + (np.arange(128)[None, :, None] // 8).astype(
        np.uint8)
    flat_coefficients = djpeg.codec.encode_pixels(flat, quality=95)
    monkeypatch.setattr(recompress, "_mosaic", lambda *args: flat_coefficients)
  decoded = pillow_decode(data)
  reencoded = io.BytesIO()
  Image.fromarray(decoded).save(reencoded, "JPEG", quality=75)
  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  score = lambda d: float(djpeg.metrics.ssimulacra2(f(decoded), f(pillow_decode(d))))
  ours = recompress.recompress(data, quality=75)
  assert ours.kind == "lossy" and not ours.sampled
  assert score(ours.data) >= score(reencoded.getvalue())
  budget = recompress.recompress(data, bpp=1.2)
  assert budget.kind == "lossy" and 1.1 <= 8 * len(budget.data) / decoded[..., 0].size <= 1.2


def test_larger_inputs_are_checked_on_a_larger_sample(monkeypatch):
  # Above WHOLE_CHECK_LIMIT the small sample's choice is checked and corrected on a larger
  # sample (perceptual.CHECK_TILES tiles), as in the default mode. The small sample misleads
  # here (flat tiles): alone it leaves the file points below the target, checked within one.
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  rows = [np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c] for c in range(8)], 1)
          for r in range(13)]
  pixels = np.ascontiguousarray(np.concatenate(rows, 0))                  # 1664 x 1536
  assert pixels.shape[0] * pixels.shape[1] > perceptual.WHOLE_CHECK_LIMIT
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, "JPEG", quality=95)
  data = buf.getvalue()
  size = perceptual.SAMPLE_TILE
  flat = np.full((perceptual.SAMPLE_TILES * size, size, 3), 128, np.uint8) + (
      np.arange(size)[None, :, None] // 8).astype(np.uint8)
  flat_coefficients = djpeg.codec.encode_pixels(flat, quality=95)
  real = recompress._mosaic
  monkeypatch.setattr(recompress, "_mosaic", lambda c, tiles, size: (
      flat_coefficients if size == perceptual.SAMPLE_TILE else real(c, tiles, size)))
  decoded = pillow_decode(data)
  reencoded = io.BytesIO()
  Image.fromarray(decoded).save(reencoded, "JPEG", quality=75)
  f = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  score = lambda d: float(djpeg.metrics.ssimulacra2(f(decoded), f(pillow_decode(d))))
  target = score(reencoded.getvalue())
  ours = recompress.recompress(data, quality=75)
  assert ours.kind == "lossy" and ours.sampled and ours.score >= ours.target
  assert score(ours.data) > target - 1.0
  monkeypatch.setattr(perceptual, "CHECK_TILE", 1 << 20)        # no check: the sample alone
  assert score(recompress.recompress(data, quality=75).data) < target - 2.0


def test_never_larger_than_the_input():
  # A small, coarse input: no requantization is smaller than its lossless rewrite.
  data = camera_jpeg("limes", 20)
  result = recompress.recompress(data, quality=95)
  assert len(result.data) <= len(data) and result.kind in ("lossless", "input")


def test_inputs_under_8x8_are_rewritten_losslessly(tmp_path):
  # SSIMULACRA 2 measures nothing under 8x8: a quality target cannot be shown met, so the
  # input's coefficients are kept (it used to fail with the metric's size error).
  buf = io.BytesIO()
  Image.fromarray(samples.load("castle", uint8=True)[:5, :6]).save(buf, "JPEG", quality=95)
  data = buf.getvalue()
  result = recompress.recompress(data, quality=75)
  assert result.kind in ("lossless", "input") and result.target is None
  ours, theirs = read_dct(result.data), read_dct(data)
  assert all(np.array_equal(a, b) for a, b in zip(ours[0], theirs[0]))
  (tmp_path / "in.jpg").write_bytes(data)
  assert cli.main(["encode", str(tmp_path / "in.jpg"), str(tmp_path / "out.jpg"), "--quiet"]) == 0
  assert len((tmp_path / "out.jpg").read_bytes()) <= len(data)


def test_gray_and_422_inputs():
  gray = io.BytesIO()
  Image.fromarray(samples.load("bear_gray", uint8=True)[..., 0]).save(gray, "JPEG", quality=95)
  result = recompress.recompress(gray.getvalue(), quality=70)
  assert djpeg.load_coefficients(result.data).num_components == 1
  data = camera_jpeg("castle", 95, subsampling=1)
  assert djpeg.load_coefficients(recompress.recompress(data, quality=70).data).sampling == \
      djpeg.load_coefficients(data).sampling


def test_unsupported_inputs_are_named(tmp_path):
  cmyk = io.BytesIO()
  Image.fromarray(samples.load("limes", uint8=True)).convert("CMYK").save(cmyk, "JPEG")
  with pytest.raises(JPEGError, match="CMYK"):
    recompress.recompress(cmyk.getvalue())
  with pytest.raises(JPEGError, match="truncated"):
    recompress.optimize_file(camera_jpeg()[:500])
  rgb = io.BytesIO()
  Image.fromarray(samples.load("limes", uint8=True)).save(rgb, "JPEG", keep_rgb=True)
  with pytest.raises(JPEGError, match="RGB"):
    recompress.optimize_file(rgb.getvalue())
  # In the batch CLI: a per-file error, the others written, exit status 1.
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "cmyk.jpg").write_bytes(cmyk.getvalue())
  (tmp_path / "in" / "good.jpg").write_bytes(camera_jpeg())
  assert cli.main(["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--jobs", "1",
                   "--quiet", "--no-cache"]) == 1
  assert (tmp_path / "out" / "good.jpg").exists() and not (tmp_path / "out" / "cmyk.jpg").exists()


def test_cli_modes_for_jpeg_inputs(tmp_path):
  source = tmp_path / "in.jpg"
  source.write_bytes(camera_jpeg("houses", 95))
  for name, extra in (("d", []), ("l", ["--lossless"]), ("p", ["--psnr", "37"]),
                      ("x", ["--pixels"])):
    assert cli.main(["encode", str(source), str(tmp_path / f"{name}.jpg"), "--quiet",
                     "--no-cache", *extra]) == 0
  sizes = {n: (tmp_path / f"{n}.jpg").stat().st_size for n in "dlpx"}
  assert sizes["l"] <= source.stat().st_size and max(sizes["d"], sizes["p"]) < sizes["l"]
  with pytest.raises(SystemExit, match="JPEG inputs"):
    png = tmp_path / "in.png"
    Image.fromarray(samples.load("houses", uint8=True)).save(png)
    cli.main(["encode", str(png), str(tmp_path / "y.jpg"), "--psnr", "37", "--no-cache"])
