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
from djpeg import cli, export, metrics, perceptual, samples
from djpeg.encoder import compress
from conftest import pillow_decode, pillow_encode

SAMPLES = ("limes", "houses", "castle", "bear_gray")


def score(pixels: np.ndarray, data: bytes) -> float:
  """SSIMULACRA 2 of a file's Pillow decode against `pixels` (gray repeated to RGB)."""
  return score_pixels(pixels, pillow_decode(data))


def score_pixels(pixels: np.ndarray, decoded: np.ndarray) -> float:
  """SSIMULACRA 2 of uint8 `decoded` against uint8 `pixels`, as the reference program reads
  8-bit files."""
  if pixels.shape[-1] == 1:
    pixels, decoded = np.repeat(pixels, 3, -1), np.repeat(decoded, 3, -1)
  as_float = lambda a: a.astype(np.float32) * np.float32(1 / 255)
  return float(metrics.ssimulacra2(as_float(pixels), as_float(decoded)))


def test_the_default_mode_keeps_fine_colour_detail_in_4_4_4_at_high_quality():
  # Colour noise at full resolution: from FULL_CHROMA_FROM the default mode also searches
  # 4:4:4, and here it wins by far (4:2:0 must spend bits to make up for the halved chroma),
  # with a file that Pillow decodes at least as well as libjpeg-turbo's own at the quality.
  # Below it only 4:2:0 is searched (4:4:4 seldom wins there, and doubles the time).
  rng = np.random.default_rng(0)
  noise = lambda: rng.normal(0, 60, (96, 128))
  pixels = np.clip(np.stack([128 + noise(), np.full((96, 128), 128.0), 128 + noise()], -1),
                   0, 255).astype(np.uint8)
  quality = perceptual.FULL_CHROMA_FROM + 2
  both = perceptual.meet_libjpeg(pixels, quality)
  alone = perceptual.meet_libjpeg(pixels, quality, subsamplings=("4:2:0",))
  assert both.subsampling == "4:4:4"
  data = djpeg.dumps(both.coefficients)
  assert len(data) < 0.8 * len(djpeg.dumps(alone.coefficients))
  assert score(pixels, data) >= score(pixels, pillow_encode(pixels, quality=quality)) - 1e-3
  assert perceptual.meet_libjpeg(pixels, perceptual.FULL_CHROMA_FROM - 1).subsampling == "4:2:0"


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


@pytest.mark.parametrize("sample", ["true", "misleading"])
def test_default_mode_holds_on_the_whole_of_a_sampled_image(sample, monkeypatch):
  # Over a megapixel the search runs on sampled tiles; up to WHOLE_CHECK_LIMIT the choice is
  # then checked and corrected on the whole image, so the promise holds for the whole file even
  # when the sample misleads (here: flat tiles, which alone would pick tables 6 points short).
  if sample == "misleading":
    monkeypatch.setattr(perceptual, "sample_mosaic", lambda px, *args, **kwargs: np.full(
        (perceptual.SAMPLE_TILES * perceptual.SAMPLE_TILE, perceptual.SAMPLE_TILE, 3), 128,
        np.uint8) + (np.arange(perceptual.SAMPLE_TILE)[None, :, None] // 8).astype(np.uint8))
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  rows = [np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c] for c in range(6)], 1)
          for r in range(8)]
  pixels = np.ascontiguousarray(np.concatenate(rows, 0))                  # 1024 x 1152
  size = pixels.shape[0] * pixels.shape[1]
  assert perceptual.EXACT_LIMIT < size <= perceptual.WHOLE_CHECK_LIMIT
  theirs = pillow_encode(pixels, quality=75, optimize=True)
  result = perceptual.meet_libjpeg(pixels, 75)
  ours = djpeg.dumps(result.coefficients, progressive="optimize")
  assert not result.sampled and abs(result.target - score(pixels, theirs)) < 1e-3
  assert score(pixels, ours) >= score(pixels, theirs) and len(ours) < len(theirs)


def test_larger_images_are_checked_on_a_larger_sample(monkeypatch):
  # Above WHOLE_CHECK_LIMIT the whole image is not scored: the small sample's choice is checked
  # and corrected on a larger sample (CHECK_TILES tiles of CHECK_TILE pixels). Here the small
  # sample misleads (flat tiles): alone it leaves the whole file points below libjpeg-turbo's
  # score; checked, the file lands within a point of it.
  real = perceptual.sample_mosaic

  def misleading(px, tiles=perceptual.SAMPLE_TILES, size=perceptual.SAMPLE_TILE):
    if size != perceptual.SAMPLE_TILE:
      return real(px, tiles, size)
    return np.full((tiles * size, size, 3), 128, np.uint8) + (
        np.arange(size)[None, :, None] // 8).astype(np.uint8)
  monkeypatch.setattr(perceptual, "sample_mosaic", misleading)
  # The bracketing search (no early stop near the target), which this flat sample sends to
  # coarse tables; the default stops at once on it (its first candidate is within the slack).
  monkeypatch.setattr(perceptual, "SEARCH_AIM", None)
  monkeypatch.setattr(perceptual, "SEARCH_SLACK", 0.0)
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  rows = [np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c] for c in range(8)], 1)
          for r in range(13)]
  pixels = np.ascontiguousarray(np.concatenate(rows, 0))                  # 1664 x 1536
  assert pixels.shape[0] * pixels.shape[1] > perceptual.WHOLE_CHECK_LIMIT
  theirs = pillow_encode(pixels, quality=75, optimize=True)
  target = score(pixels, theirs)
  result = perceptual.meet_libjpeg(pixels, 75)
  ours = djpeg.dumps(result.coefficients, progressive="optimize")
  assert result.sampled and result.score >= result.target
  assert score(pixels, ours) > target - 1.0 and len(ours) < len(theirs)
  # libjpeg-turbo's file on the check sample, which decides whether the whole file is compared
  # with libjpeg-turbo's: Pillow's, byte for byte.
  check = real(pixels, perceptual.CHECK_TILES, perceptual.CHECK_TILE)
  assert result.libjpeg_bytes == len(pillow_encode(check, quality=75, optimize=True))
  monkeypatch.setattr(perceptual, "CHECK_TILE", 1 << 20)        # no check: the sample alone
  alone = djpeg.dumps(perceptual.meet_libjpeg(pixels, 75).coefficients, progressive="optimize")
  assert score(pixels, alone) < target - 2.0


def test_a_sampled_image_is_never_larger_than_libjpeg_turbos_file(monkeypatch):
  # Above WHOLE_CHECK_LIMIT the tables are chosen on samples and the whole image is coded once.
  # On real photos a sample can ask for finer tables than the image needs (a 4-MP photo at q75
  # came out 1.5% larger than libjpeg-turbo's file, scoring 1.3 points above it). Here every
  # search lands on fine tables, as such a sample would make it: the whole file, compared with
  # libjpeg-turbo's, gives way to it.
  monkeypatch.setattr(perceptual, "search",
                      lambda evaluate, target, p0, **kwargs: (97.0, evaluate(97.0), 1))
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  rows = [np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c] for c in range(8)], 1)
          for r in range(13)]
  pixels = np.ascontiguousarray(np.concatenate(rows, 0))                  # 1664 x 1536
  assert pixels.shape[0] * pixels.shape[1] > perceptual.WHOLE_CHECK_LIMIT
  result = perceptual.meet_libjpeg(pixels, 75)
  theirs = pillow_encode(pixels, quality=75, optimize=True)
  ours = djpeg.dumps(result.coefficients, optimize=True)
  assert result.sampled and result.p is None and len(ours) <= len(theirs)
  assert result.file_bytes == len(ours)
  assert np.array_equal(pillow_decode(ours), pillow_decode(theirs))


@pytest.mark.parametrize("gray,subsampling", [(False, "4:2:0"), (False, "4:4:4"), (True, None)])
def test_a_sampled_image_coded_in_strips_is_coded_as_in_one_piece(gray, subsampling,
                                                                   monkeypatch):
  # A sampled image's one whole pass runs strip by strip, so that its memory does not grow with
  # the image; the chroma fit and the decoder's upsampling reach across strips, which the
  # strips' context rows provide. Strips of 48 rows must give the coefficients of one strip.
  for name, value in [("EXACT_LIMIT", 1 << 16), ("WHOLE_CHECK_LIMIT", 1 << 16),
                      ("CHECK_TILES", 4)]:
    monkeypatch.setattr(perceptual, name, value)
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  pixels = np.concatenate([np.concatenate([tiles[(r + c) % 3][::(-1) ** r, ::(-1) ** c]
                                           for c in range(3)], 1) for r in range(2)], 0)
  pixels = np.ascontiguousarray(pixels[:487, :613])
  if gray:
    pixels = np.asarray(Image.fromarray(pixels).convert("L"))[..., None]
  subsamplings = None if subsampling is None else (subsampling,)
  coded = {}
  for strip_rows in (48, pixels.shape[0]):
    monkeypatch.setattr(perceptual, "STRIP_PIXELS", strip_rows * pixels.shape[1])
    result = perceptual.meet_libjpeg(pixels, 75, subsamplings=subsamplings)
    assert result.sampled and result.p is not None
    coded[strip_rows] = result
  strips, whole = coded[48], coded[pixels.shape[0]]
  for ours, theirs in zip(strips.coefficients.components, whole.coefficients.components):
    np.testing.assert_array_equal(ours, theirs)
  assert abs(strips.file_bytes / whole.file_bytes - 1) < 0.01
  decoded = pillow_decode(djpeg.dumps(strips.coefficients))
  assert decoded.shape[:2] == pixels.shape[:2]


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
  # Optimized scans, or baseline when smaller (this small image: baseline).
  coefficients = djpeg.load_coefficients(default)
  codings = [djpeg.dumps(coefficients, progressive=p) for p in ("optimize", False)]
  assert default == min(codings, key=len)
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


@pytest.mark.parametrize("quality", [40, 75])
def test_butteraugli_second_look_lowers_the_worst_error(quality, monkeypatch):
  # The search's choice coded again with the blocks weighted by butteraugli's map (Debian's
  # program, bit for bit: tests/test_butteraugli.py): on each colour sample its distance falls,
  # for about the same bytes, and the file still meets libjpeg-turbo's SSIMULACRA 2.
  from djpeg.butteraugli import butteraugli
  for name in ("limes", "houses", "castle"):
    pixels = samples.load(name, uint8=True)
    files = {}
    for passes in (0, perceptual.BUTTERAUGLI_PASSES):
      monkeypatch.setattr(perceptual, "BUTTERAUGLI_PASSES", passes)
      result = perceptual.meet_libjpeg(pixels, quality)
      data = djpeg.dumps(result.coefficients)
      assert score(pixels, data) >= result.target - 1e-6
      files[passes] = (len(data), butteraugli(pixels, pillow_decode(data)))
    (plain_bytes, plain), (looked_bytes, looked) = files[0], files[perceptual.BUTTERAUGLI_PASSES]
    assert looked < plain and looked_bytes <= 1.01 * plain_bytes, (name, files)


def test_fast_leaves_out_the_butteraugli_look(tmp_path):
  # compress(fast=True), ExportOptions(fast=True) and --fast: the search's choice as it was,
  # without the second look (a different file here), and refused by the other modes.
  pixels = samples.load("castle", uint8=True)
  fast = perceptual.meet_libjpeg(pixels, 50, second_look=False)
  looked = perceptual.meet_libjpeg(pixels, 50)
  assert looked.evaluations > fast.evaluations
  assert djpeg.dumps(looked.coefficients) != djpeg.dumps(fast.coefficients)
  assert djpeg.dumps(compress(pixels, quality=50, fast=True).coefficients) == djpeg.dumps(
      fast.coefficients)
  source = tmp_path / "castle.png"
  source.write_bytes(png_bytes(pixels))
  cli.main(["encode", str(source), str(tmp_path / "fast.jpg"), "--quality", "50", "--fast",
            "--quiet", "--baseline"])
  assert (tmp_path / "fast.jpg").read_bytes() == djpeg.dumps(fast.coefficients)
  with pytest.raises(ValueError, match="fast applies to the perceptual mode"):
    compress(pixels, quality=50, mode="libjpeg", fast=True)
  with pytest.raises(ValueError, match="fast"):
    export.ExportOptions(mode="libjpeg", fast=True).check()
  with pytest.raises(SystemExit, match="fast"):
    cli.main(["encode", str(source), str(tmp_path / "x.jpg"), "--libjpeg", "--fast"])


def png_bytes(pixels: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buf, "PNG")
  return buf.getvalue()


@pytest.mark.parametrize("name", SAMPLES)
def test_thumbnails_are_no_larger_than_libjpeg_turbos_file(name):
  # Each progressive scan carries its own tables and headers; on thumbnails they outweighed the
  # trellis's saving and the default file (optimized scans) was larger than libjpeg-turbo's
  # baseline one (16x16 limes: 390 bytes against 349). The smaller of the two codings is kept.
  pixels = samples.load(name, uint8=True)
  for size in (16, 24, 48):
    crop = np.ascontiguousarray(pixels[:size, :size])
    data, result = export.export_bytes(png_bytes(crop))
    theirs = pillow_encode(crop, quality=75, optimize=True)
    assert len(data) <= len(theirs), (size, len(data), len(theirs))
    assert score(crop, data) >= score(crop, theirs) - 1e-6


def test_images_under_8x8_get_libjpeg_turbos_file():
  # SSIMULACRA 2 measures nothing under 8x8: the default mode writes libjpeg-turbo's own file
  # (which meets its target by definition) instead of refusing the image.
  pixels = samples.load("castle", uint8=True)
  for crop in (pixels[:1, :1], pixels[:5, :7], pixels[:7, :40], samples.load(
      "bear_gray", uint8=True)[:6, :6]):
    crop = np.ascontiguousarray(crop)
    data, result = export.export_bytes(png_bytes(crop))
    assert data == pillow_encode(crop, quality=75, optimize=True)
    assert result.ssimulacra2 is None


def test_bad_input_and_conflicting_options():
  pixels = samples.load("limes", uint8=True)
  with pytest.raises(ValueError, match="quality"):
    compress(pixels, quality=0)
  with pytest.raises(ValueError, match="mode='mse'"):
    compress(pixels, quality=75, mode="perceptual", psnr=30.0)
  with pytest.raises(ValueError, match="mode"):
    compress(pixels, mode="fast")
  with pytest.raises(ValueError, match="perceptual quality"):
    perceptual.tables(0.5)


# ------------------------------------ everything that targets MSE can target SSIMULACRA 2 too

def test_ssimulacra2_map_is_the_metrics_weight_of_squared_error():
  # Repairing a high-weight block's JPEG error gains more SSIMULACRA 2 per unit of squared error
  # removed than repairing a low-weight block's.
  pixels = samples.load("houses", uint8=True)
  image = pixels.astype(np.float32) / 255
  sal = djpeg.roi.saliency_map("ssimulacra2", image)
  assert sal.shape == pixels.shape[:2] and sal.max() == 1.0 and sal.min() > 0
  decoded = pillow_decode(pillow_encode(pixels, quality=50))
  blocks = sal[::8, ::8]
  inner = blocks[1:-1, 1:-1]
  rates = []
  for index in (np.argmax(inner), np.argmin(inner)):
    r, c = (np.array(np.unravel_index(index, inner.shape)) + 1) * 8
    repaired = decoded.copy()
    repaired[r:r + 8, c:c + 8] = pixels[r:r + 8, c:c + 8]
    removed = np.sum((decoded[r:r + 8, c:c + 8].astype(float) - pixels[r:r + 8, c:c + 8]) ** 2)
    gain = score_pixels(pixels, repaired) - score_pixels(pixels, decoded)
    rates.append(gain / removed)
  assert rates[0] > rates[1]
  gray = djpeg.roi.saliency_map("ssimulacra2", image[:40, :50, :1])
  assert gray.shape == (40, 50) and np.all(np.isfinite(gray))
  np.testing.assert_array_equal(djpeg.roi.saliency_map("ssimulacra2", image[:7, :30]), 1.0)


def test_optimize_tables_for_ssimulacra2_lowers_its_lagrangian():
  pixels = samples.load("limes", uint8=True)
  image = pixels.astype(np.float32) / 255
  lmbda = 0.05
  result = djpeg.optimize_tables(image, lmbda=lmbda, distortion="ssimulacra2", steps=15)
  assert result.tables.min() >= 1 and result.tables.max() <= 255

  def cost(tables):
    data = djpeg.dumps(djpeg.encode(image, tables=tables))
    return 8 * len(data) / pixels[..., 0].size + lmbda * (100 - score(pixels, data))
  start = djpeg.quality_tables(75)
  assert cost(result.tables) < cost(np.asarray(start))
  with pytest.raises(ValueError, match="lmbda target"):
    djpeg.optimize_tables(image, psnr=30.0, distortion="ssimulacra2")


def test_table_training_for_ssimulacra2(tmp_path):
  from djpeg.train import tables as train_tables
  from tests.test_tables_training import args_for, losses, make_folder
  folder = make_folder(tmp_path / "images")
  out = tmp_path / "s2"
  train_tables.run(args_for("net", folder, out, steps=6, checkpoint_every=6,
                            distortion="ssimulacra2"))
  validation = losses(out, "validation_loss")
  assert len(validation) == 2 and validation[1] < validation[0], validation


@pytest.mark.parametrize("aim,slack", [(None, 0.0),
                                       (perceptual.SEARCH_AIM, perceptual.SEARCH_SLACK)])
def test_search_meets_the_target_with_the_fewest_bytes_it_saw(aim, slack):
  # Monotone score curves of several slopes and offsets, kinked like real ones: whatever the
  # settings, the result meets the target, has the fewest bytes among the candidates that met
  # it, and lies within the tolerance (in p) or the slack (in score) of the smallest p that
  # meets the target.
  rng = np.random.default_rng(0)
  for _ in range(200):
    slope, kink, offset = rng.uniform(0.2, 1.5), rng.uniform(40, 95), rng.uniform(-6, 6)

    def curve(p):
      return 60 + offset + slope * (p - 78) + 0.5 * slope * max(p - kink, 0.0)
    seen = []

    def evaluate(p):
      seen.append(p)
      return curve(p), 1000 * p, None
    p, value, count = perceptual.search(evaluate, 60.0, 78.0, aim=aim, slack=slack)
    if p is None:
      assert curve(100.0) < 60.0
      continue
    grid = np.arange(1, 100.0005, 0.001)
    below = grid[60 + offset + slope * (grid - 78) + 0.5 * slope * np.maximum(grid - kink, 0)
                 < 60.0]
    exact = below.max() if below.size else 1.0
    assert value[0] >= 60.0 and count == len(seen) <= 8
    assert value[1] == min(1000 * q for q in seen if curve(q) >= 60.0)
    assert p - exact < 0.75 or value[0] < 60.0 + slack or count == 8


@pytest.mark.parametrize("quality", [50, 95])
def test_a_chosen_subsampling_is_kept(quality, tmp_path):
  # Asked for 4:4:4, the default mode writes 4:4:4 even where its own search finds nothing
  # smaller than libjpeg-turbo's file (that file is then libjpeg-turbo's at 4:4:4, not its
  # 4:2:0 anchor), through the API and the CLI, as libjpeg-turbo (jpeglib) reads the file.
  from conftest import read_dct
  pixels = samples.load("houses", uint8=True)
  result = compress(pixels, quality=quality, subsampling="4:4:4")
  data = djpeg.dumps(result.coefficients)
  assert [a.shape[:2] for a in read_dct(data)[0]] == [(16, 24)] * 3
  Image.fromarray(pixels).save(tmp_path / "in.png")
  assert cli.main(["encode", str(tmp_path / "in.png"), str(tmp_path / "out.jpg"), "--quality",
                   str(quality), "--subsampling", "4:4:4", "--quiet", "--no-cache"]) == 0
  assert [a.shape[:2] for a in read_dct((tmp_path / "out.jpg").read_bytes())[0]] == [(16, 24)] * 3
