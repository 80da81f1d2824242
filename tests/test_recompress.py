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
from djpeg.exact import JPEGError, UnsupportedJPEGError
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
  # Two SOI markers: the reader's words in every route (they had read "truncated file: the
  # FF D8 segment needs 65504 bytes").
  for route in (recompress.optimize_file, recompress.recompress, djpeg.load_coefficients):
    with pytest.raises(JPEGError, match="a second SOI marker"):
      route(b"\xff\xd8" + camera_jpeg())
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


def test_corrupt_jpegs_are_refused_in_every_mode(tmp_path):
  # libjpeg-turbo (Pillow) decodes a stray marker in the scan or an early EOI into grey fill
  # with a warning at most: --pixels and --libjpeg had encoded that as the picture, exit
  # status 0. Every mode now refuses the file as the DCT-domain route does, and writes nothing.
  data = camera_jpeg()
  start = data.index(b"\xff\xda") + 200
  broken = {"marker": (data[:start] + b"\xff\xd3" + data[start:], "restart marker"),
            "eoi": (data[:start] + b"\xff\xd9" + data[start + 2:], "truncated")}
  for name, (bad, problem) in broken.items():
    source = tmp_path / f"{name}.jpg"
    source.write_bytes(bad)
    Image.open(source).load()                  # Pillow decodes it (the reason for the check)
    for extra in ([], ["--pixels"], ["--libjpeg"]):
      out = tmp_path / f"out_{name}{''.join(extra)}.jpg"
      with pytest.raises(SystemExit, match=problem):
        cli.main(["encode", str(source), str(out), "--quiet", "--no-cache", *extra])
      assert not out.exists()
  # A file using a feature djpeg's reader does not read is still Pillow's to decode there.
  arithmetic = tmp_path / "arithmetic.jpg"
  if shutil.which("jpegtran"):
    subprocess.run(["jpegtran", "-arithmetic", "-outfile", str(arithmetic)],
                   input=data, check=True)
    with pytest.raises(UnsupportedJPEGError, match="arithmetic"):
      djpeg.load_coefficients(arithmetic.read_bytes())
    assert cli.main(["encode", str(arithmetic), str(tmp_path / "a.jpg"), "--pixels", "--quiet",
                     "--no-cache"]) == 0


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


def _without_segments(data: bytes, marker: int) -> bytes:
  """`data` without its header segments of this marker."""
  from djpeg.exact.markers import header_segments
  out, pos = [data[:2]], 2
  for m, start, payload in header_segments(data):
    end = start + 4 + len(payload)
    if m != marker:
      out.append(data[start:end])
    pos = end
  return b"".join(out) + data[pos:]


def test_rgb_named_components_are_refused_by_libjpegs_rule():
  # Pillow's RGB JPEG names its components R, G, B and says so in an Adobe segment; without
  # that segment libjpeg-turbo still reads it as RGB by the ids (jdapimin.c), so a rewrite as
  # YCbCr would change every colour.
  rgb = io.BytesIO()
  Image.fromarray(samples.load("limes", uint8=True)).save(rgb, "JPEG", keep_rgb=True)
  ids_only = _without_segments(rgb.getvalue(), 0xEE)
  assert b"Adobe" not in ids_only
  np.testing.assert_array_equal(pillow_decode(ids_only), pillow_decode(rgb.getvalue()))
  for call in (recompress.optimize_file, recompress.recompress):
    with pytest.raises(JPEGError, match="R, G, B"):
      call(ids_only)


def test_sixteen_bit_tables_are_rewritten_as_libjpeg_writes_them():
  # libjpeg writes steps above 255 (here through Pillow's qtables) as 16-bit DQT entries in an
  # extended sequential frame (SOF1); the rewrite keeps every step and coefficient.
  coarse = io.BytesIO()
  steps = np.minimum(np.arange(64) * 8 + 40, 600).tolist()
  Image.fromarray(samples.load("houses", uint8=True)).save(coarse, "JPEG", qtables=[steps, steps])
  data = coarse.getvalue()
  assert b"\xff\xc1" in data
  out = recompress.optimize_file(data)
  assert len(out) < len(data)
  for ours, theirs in zip(read_dct(out), read_dct(data)):
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
  np.testing.assert_array_equal(pillow_decode(out), pillow_decode(data))
  if shutil.which("djpeg"):
    subprocess.run(["djpeg", "-strict"], input=out, capture_output=True, check=True)
  lossy = recompress.recompress(data, quality=20)
  assert len(lossy.data) <= len(data)
  np.asarray(Image.open(io.BytesIO(lossy.data)).convert("RGB"))


def test_multi_picture_files_keep_their_other_pictures():
  # A phone's depth or gain map rides after the first picture's EOI, found through the MPF
  # index; the rewrite keeps it and moves the index's offsets (Pillow reads the frames back).
  first = samples.load("houses", uint8=True)
  second = np.ascontiguousarray(first[::-1])
  buf = io.BytesIO()
  Image.fromarray(first).save(buf, "MPO", save_all=True, append_images=[Image.fromarray(second)],
                              quality=92)
  data = buf.getvalue()
  frames_in = Image.open(io.BytesIO(data))
  expected = []
  for i in range(2):
    frames_in.seek(i)
    expected.append(np.asarray(frames_in.convert("RGB")))
  for out in (recompress.optimize_file(data), recompress.recompress(data, quality=75).data):
    assert len(out) < len(data)
    image = Image.open(io.BytesIO(out))
    assert image.format == "MPO" and image.n_frames == 2
    image.seek(1)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), expected[1])
  image = Image.open(io.BytesIO(recompress.optimize_file(data)))
  np.testing.assert_array_equal(np.asarray(image.convert("RGB")), expected[0])
  stripped = recompress.optimize_file(data, strip=True)
  assert b"MPF\x00" not in stripped and Image.open(io.BytesIO(stripped)).format == "JPEG"


def test_resolution_is_kept():
  buf = io.BytesIO()
  Image.fromarray(samples.load("houses", uint8=True)).save(buf, "JPEG", quality=92, dpi=(300, 150))
  data = buf.getvalue()
  for out in (recompress.optimize_file(data), recompress.recompress(data, quality=70).data):
    assert Image.open(io.BytesIO(out)).info["dpi"] == (300, 150)
  # --strip keeps it (jpegtran -copy none does), rewritten or not.
  assert Image.open(io.BytesIO(recompress.optimize_file(data, strip=True))).info["dpi"] == (
      300, 150)
  kept_as_is = recompress.optimize_file(data)
  assert Image.open(io.BytesIO(recompress.optimize_file(kept_as_is, strip=True))).info["dpi"] \
      == (300, 150)
  pixels = samples.load("houses", uint8=True)
  assert Image.open(io.BytesIO(djpeg.dumps(pixels, dpi=(72, 72)))).info["dpi"] == (72, 72)
  with pytest.raises(ValueError, match="dpi"):
    djpeg.dumps(pixels, dpi=(0, 72))


def test_a_bpp_budget_counts_the_metadata():
  buf = io.BytesIO()
  Image.fromarray(samples.load("castle", uint8=True)).save(buf, "JPEG", quality=95,
                                                            comment=b"x" * 1000)
  data = buf.getvalue()
  pixels = djpeg.load_coefficients(data).height * djpeg.load_coefficients(data).width
  result = recompress.recompress(data, bpp=1.5)
  assert result.kind == "lossy" and 8 * len(result.data) / pixels <= 1.5
  assert Image.open(io.BytesIO(result.data)).info["comment"] == b"x" * 1000
  # A budget the metadata alone exceeds cannot be met: the result says so in bpp.
  impossible = recompress.recompress(data, bpp=8 * 900 / pixels)
  assert impossible.kind != "lossy" and impossible.score > impossible.target == 8 * 900 / pixels


def test_the_cli_says_when_a_bpp_budget_cannot_be_met(tmp_path, capsys):
  # The note had said "no recompression was smaller than the input's lossless
  # re-optimization" when none fitted the budget, and nothing about the budget.
  source = tmp_path / "in.jpg"
  source.write_bytes(camera_jpeg("limes", 90))
  assert cli.main(["encode", str(source), str(tmp_path / "out.jpg"), "--bpp", "0.05",
                   "--no-cache"]) == 0
  err = capsys.readouterr().err
  assert "--bpp 0.05 budget cannot be met" in err and "no recompression" not in err, err


def test_paths_and_file_objects_are_inputs_too(tmp_path):
  path = tmp_path / "in.jpg"
  path.write_bytes(camera_jpeg())
  expected = recompress.optimize_file(path.read_bytes())
  with open(path, "rb") as f:
    assert recompress.optimize_file(f) == expected
  assert recompress.optimize_file(path) == recompress.optimize_file(str(path)) == expected
  assert recompress.recompress(path, quality=70).kind == "lossy"
  with pytest.raises(ValueError, match="quality must be a number"):
    recompress.recompress(path, quality="75")
  with pytest.raises(ValueError, match="bytes, a path or a binary file"):
    recompress.optimize_file(12)
  for route in (recompress.optimize_file, recompress.recompress):   # had been AttributeError
    with pytest.raises(ValueError, match="layout must be a recompress.Layout"):
      route(path, layout="progressive")


def test_parameterless_markers_between_segments_are_skipped():
  # libjpeg skips TEM and RSTn between segments (a strict libjpeg-turbo decodes such a file).
  data = camera_jpeg()
  odd = data[:2] + b"\xff\x01" + data[2:]
  for ours, theirs in zip(read_dct(odd)[0], djpeg.load_coefficients(odd).components):
    np.testing.assert_array_equal(ours, theirs)
  assert len(recompress.optimize_file(odd)) <= len(odd)
  with pytest.raises(JPEGError, match="unknown marker FF 02"):
    recompress.optimize_file(data[:2] + b"\xff\x02" + data[2:])


def test_files_libjpeg_decodes_with_smoothing_are_not_rewritten(tmp_path):
  # A progressive file whose scans never send the AC coefficients: libjpeg-turbo smooths its
  # blocks, so its look is not its coefficients'. The lossless rewrite keeps the file as it is,
  # the DCT-domain route refuses it, and the CLI encodes it from its pixels instead.
  from djpeg.exact import scans, writer
  c = djpeg.encode(samples.load("houses"), quality=90)
  components = [np.asarray(a, np.int16) for a in c.components]
  script = (scans.Scan((0, 1, 2), 0, 0, 0, 0), scans.Scan((0,), 1, 2, 0, 0))
  data = writer.encode_image(components, np.asarray(c.tables, np.int64), c.height, c.width,
                             c.sampling, progressive_mode=True, script=script)
  plain = djpeg.decode(djpeg.load_coefficients(data))
  assert np.abs(pillow_decode(data).astype(int) - np.round(np.asarray(plain) * 255)).max() > 8
  assert recompress.optimize_file(data) == data
  with pytest.raises(recompress.SmoothedInput, match="smooths"):
    recompress.recompress(data, quality=75)
  (tmp_path / "in.jpg").write_bytes(data)
  assert cli.main(["encode", str(tmp_path / "in.jpg"), str(tmp_path / "out.jpg"), "--quiet",
                   "--no-cache"]) == 0
  assert Image.open(tmp_path / "out.jpg").size == (c.width, c.height)
  # A DC left at Al = 1 with every AC coefficient coded is not smoothed (libjpeg-turbo looks at
  # AC 1..9 only): rewritten losslessly as any file.
  dc_coarse = (scans.Scan((0, 1, 2), 0, 0, 0, 1),) + tuple(
      scans.Scan((k,), 1, 63, 0, 0) for k in range(3))
  data = writer.encode_image(components, np.asarray(c.tables, np.int64), c.height, c.width,
                             c.sampling, progressive_mode=True, script=dc_coarse)
  out = recompress.optimize_file(data)
  assert out != data and len(out) < len(data)
  np.testing.assert_array_equal(pillow_decode(out), pillow_decode(data))


def test_a_table_shared_by_every_component_stays_shared():
  # One table for all components (Pillow's qtables=[T]): the rewrite keeps one DQT, where a
  # fresh encode takes libjpeg's slots (luma, chroma) and writes two.
  buf = io.BytesIO()
  Image.fromarray(samples.load("houses", uint8=True)).save(buf, "JPEG", qtables=[[12] * 64])
  data = buf.getvalue()
  out = recompress.optimize_file(data)
  assert data.count(b"\xff\xdb") == out.count(b"\xff\xdb") == 1 and len(out) < len(data)
  for ours, theirs in zip(read_dct(out)[0], read_dct(data)[0]):
    np.testing.assert_array_equal(ours, theirs)


def test_every_route_keeps_what_follows_the_image_and_every_segment(tmp_path):
  # A multi-picture file with two comments, through the pixel routes too (--pixels, --libjpeg):
  # its other picture and MPF index come along (Pillow reads both frames), and both comments.
  first = samples.load("houses", uint8=True)
  buf = io.BytesIO()
  Image.fromarray(first).save(buf, "MPO", save_all=True,
                              append_images=[Image.fromarray(first[::-1].copy())], quality=92)
  data = buf.getvalue()
  # Before the MPF segment, whose offsets count from itself: the index stays right.
  data = data[:2] + b"\xff\xfe\x00\x07first" + b"\xff\xfe\x00\x08second" + data[2:]
  second = Image.open(io.BytesIO(data))
  second.seek(1)
  second = np.asarray(second.convert("RGB"))
  (tmp_path / "in.jpg").write_bytes(data)
  for name, extra in (("d", []), ("x", ["--pixels"]), ("j", ["--libjpeg"])):
    out = tmp_path / f"{name}.jpg"
    assert cli.main(["encode", str(tmp_path / "in.jpg"), str(out), "--quiet", "--no-cache",
                     *extra]) == 0
    raw = out.read_bytes()
    assert raw.count(b"\xff\xfe\x00\x07first") == 1 and b"\xff\xfe\x00\x08second" in raw, name
    image = Image.open(out)
    assert image.n_frames == 2, name
    image.seek(1)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), second)
    if shutil.which("djpeg"):
      subprocess.run(["djpeg", "-strict"], input=raw, capture_output=True, check=True)


def test_a_layout_asked_for_is_written_for_jpeg_inputs(tmp_path, capsys):
  # --baseline, --restart-interval and --subsampling with a JPEG input in the DCT domain: the
  # first two are honoured (they used to be ignored), the third is said not to apply.
  source = tmp_path / "in.jpg"
  source.write_bytes(camera_jpeg("houses", 95, progressive=True))
  for name, extra in (("d", []), ("l", ["--lossless"])):
    out = tmp_path / f"{name}.jpg"
    assert cli.main(["encode", str(source), str(out), "--baseline", "--restart-interval", "2",
                     "--no-cache", *extra]) == 0
    raw = out.read_bytes()
    assert b"\xff\xc0" in raw and b"\xff\xc2" not in raw and b"\xff\xdd\x00\x04\x00\x02" in raw
    simplejpeg.decode_jpeg(raw, strict=True)
  assert cli.main(["encode", str(source), str(tmp_path / "s.jpg"), "--subsampling", "4:4:4",
                   "--no-cache"]) == 0
  assert "keeps its own chroma sampling" in capsys.readouterr().err
