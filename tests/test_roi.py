"""Regions of interest: map validation, block weights, dead-zones, MS-ROI, encoder and CLI."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import simplejpeg
from PIL import Image

import djpeg
from djpeg import cli, rate, roi, samples, sampling
from djpeg.encoder import compress


@pytest.fixture(scope="module")
def pixels():
  return samples.load("houses", uint8=True)          # (128, 192, 3)


@pytest.fixture(scope="module")
def mask(pixels):
  m = np.zeros(pixels.shape[:2], bool)
  m[32:96, 48:144] = True                              # a quarter of the image
  return m


def psnr(a, b):
  return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


def decode(data):
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- maps ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (np.ones((10, 10)), "must have the image's shape"),
    (np.full((128, 192), np.nan), "NaN"),
    (np.full((128, 192), -0.1), "negative"),
    (np.full((128, 192), 1.5), r"must lie in \[0, 1\]"),
    (np.full((128, 192), "a"), "numeric"),
])
def test_bad_maps_are_refused(pixels, bad, match):
  with pytest.raises(ValueError, match=match):
    roi.saliency_map(bad, pixels)
  with pytest.raises(ValueError, match=match):
    djpeg.dumps(pixels, saliency=bad)


def test_map_forms(pixels, mask, tmp_path):
  want = mask.astype(np.float32)
  np.testing.assert_array_equal(roi.saliency_map(mask, pixels), want)
  np.testing.assert_array_equal(roi.saliency_map(mask.astype(np.uint8) * 255, pixels), want)
  np.testing.assert_array_equal(roi.saliency_map(want[..., None], pixels), want)
  path = tmp_path / "mask.png"
  Image.fromarray(mask.astype(np.uint8) * 255).save(path)
  np.testing.assert_array_equal(roi.saliency_map(path, pixels), want)
  np.testing.assert_array_equal(roi.saliency_map(str(path), pixels), want)
  np.testing.assert_array_equal(roi.saliency_map(lambda image: want, pixels), want)
  Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
  with pytest.raises(ValueError, match="must have the image's shape"):
    roi.saliency_map(tmp_path / "small.png", pixels)
  with pytest.raises(ValueError, match="no such file"):
    roi.saliency_map(tmp_path / "missing.png", pixels)
  (tmp_path / "junk.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="cannot be read"):
    roi.saliency_map(tmp_path / "junk.png", pixels)


def test_auto_saliency_is_a_hook(pixels, monkeypatch):
  # Without an installed model (no entry point), "auto" says how to get one.
  with monkeypatch.context() as m:
    m.setattr(roi, "entry_points", lambda **kw: [])
    with pytest.raises(NotImplementedError, match="register_saliency"):
      roi.saliency_map("auto", pixels)
  # A registered model takes precedence over the installed one.
  try:
    roi.register_saliency(lambda image: np.full(image.shape[:2], 0.5, np.float32))
    np.testing.assert_array_equal(roi.saliency_map("auto", pixels), 0.5)
    roi.register_saliency(lambda image: np.ones((3, 3)))
    with pytest.raises(ValueError, match="saliency model's map"):
      roi.saliency_map("auto", pixels)
  finally:
    roi.register_saliency(None)
  with pytest.raises(ValueError, match="callable"):
    roi.register_saliency(3)


def test_block_weights(pixels, mask):
  factors = sampling.factors_for("4:2:0", 3)
  uniform = roi.block_weights(np.full(mask.shape, 0.3), 128, 192, factors)
  for w in uniform:
    np.testing.assert_allclose(w, 1.0, rtol=1e-6)
  weights = roi.block_weights(mask, 128, 192, factors, background=0.1)
  assert [w.shape for w in weights] == [(16, 24), (8, 12), (8, 12)]
  y = weights[0]
  assert y[4:12, 6:18].min() > 3 and y[:4].max() < 0.4 and y[4:12, 6:18].min() / y[:4].max() == \
      pytest.approx(10.0)
  np.testing.assert_allclose(np.mean(roi.pixel_weights(mask)), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="background"):
    roi.pixel_weights(mask, background=0.0)
  # Odd sizes: blocks that pad the image average the edge-repeated map.
  odd = roi.block_means(np.arange(10 * 13, dtype=np.float32).reshape(10, 13), 10, 13, factors)
  assert [o.shape for o in odd] == [(2, 2), (1, 1), (1, 1)]


# --- the exporter with a region of interest -----------------------------------------------------

def test_roi_keeps_quality_inside_and_saves_bytes_outside(pixels, mask):
  uniform = compress(pixels, quality=85, mode="mse")
  focused = compress(pixels, quality=85, saliency=mask, background=0.05)
  a, b = (djpeg.dumps(r.coefficients) for r in (uniform, focused))
  da, db = decode(a), decode(b)
  assert len(b) < 0.9 * len(a)
  assert psnr(db[mask], pixels[mask]) > psnr(da[mask], pixels[mask]) - 0.3
  assert psnr(db[~mask], pixels[~mask]) < psnr(da[~mask], pixels[~mask]) - 1.0
  assert focused.weighted_psnr is not None and focused.saliency.shape == mask.shape
  simplejpeg.decode_jpeg(djpeg.dumps(focused.coefficients, progressive=True), strict=True)


def test_trellis_with_block_weights_beats_uniform_inside_at_equal_bytes(pixels, mask):
  from djpeg.encoder import TrellisImage
  image = pixels.astype(np.float32) / 255
  tables = np.asarray(djpeg.quality_tables(90))[[0, 1, 1]].astype(np.float64)
  uniform_problem = TrellisImage(image, "4:2:0", None)
  focused_problem = TrellisImage(image, "4:2:0", roi.pixel_weights(mask, 0.05))

  def file(problem, lmbda):
    chosen = problem.trellis(tables, lmbda, 2)
    return djpeg.dumps(djpeg.Coefficients(tuple(chosen.components), tables.astype(np.float32),
                                          128, 192, problem.factors))

  uniform = file(uniform_problem, 0.02)
  lo, hi = 1e-4, 10.0                   # the focused lambda whose file fits the same bytes
  for _ in range(25):
    mid = np.sqrt(lo * hi)
    lo, hi = (mid, hi) if len(file(focused_problem, mid)) <= len(uniform) else (lo, mid)
  focused = file(focused_problem, lo)
  assert len(uniform) * 0.97 <= len(focused) <= len(uniform)
  gain = psnr(decode(focused)[mask], pixels[mask]) - psnr(decode(uniform)[mask], pixels[mask])
  assert gain > 1.5, gain


def test_compress_to_a_budget_with_a_mask(pixels, mask):
  uniform = djpeg.dumps(pixels, quality=75)
  result = compress(pixels, bpp=8 * len(uniform) / mask.size, saliency=mask)
  data = djpeg.dumps(result.coefficients)
  assert len(data) <= len(uniform)
  gain = psnr(decode(data)[mask], pixels[mask]) - psnr(decode(uniform)[mask], pixels[mask])
  assert gain > 2.0, gain


def test_saliency_needs_the_trellis_and_the_image(pixels, mask):
  with pytest.raises(ValueError, match="needs trellis=True"):
    compress(pixels, quality=75, saliency=mask, trellis=False)
  with pytest.raises(ValueError, match="pass the image"):
    djpeg.dumps(djpeg.encode(pixels.astype(np.float32) / 255), saliency=mask)


# --- the differentiable per-block dead-zone -----------------------------------------------------

def zones(c, value):
  return [jnp.full(comp.shape[:2], value, jnp.float32) for comp in c.components]


def test_zero_deadzone_is_the_exact_codec(pixels):
  image = pixels.astype(np.float32) / 255
  plain = djpeg.encode(image, quality=60)
  same = djpeg.encode(image, quality=60, deadzone=zones(plain, 0.0))
  for a, b in zip(plain.components, same.components):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))   # -0.0 kept for the rate model


def test_deadzone_zeroes_and_lowers(pixels):
  image = pixels.astype(np.float32) / 255
  plain = djpeg.encode(image, quality=60)
  counts = []
  for theta in (0.0, 0.2, 0.5, 2.0):
    c = djpeg.encode(image, quality=60, deadzone=zones(plain, theta))
    for a, b in zip(c.components, plain.components):
      a, b = np.asarray(a), np.asarray(b)
      assert np.all(np.abs(a) <= np.abs(b))
      if theta <= 0.5:                      # up to 1/2 a dead-zone lowers by one at most
        assert np.all(np.abs(b) - np.abs(a) <= 1)
    counts.append(sum(int(np.count_nonzero(a)) for a in c.components))
  assert counts[0] > counts[1] > counts[2] > counts[3]
  # Per-coefficient offsets; and a map: only the blocks it marks change.
  per_coefficient = [jnp.zeros(comp.shape, jnp.float32) for comp in plain.components]
  c = djpeg.encode(image, quality=60, deadzone=per_coefficient)
  np.testing.assert_array_equal(np.asarray(c.components[0]), np.asarray(plain.components[0]))
  half = zones(plain, 0.0)
  half[0] = half[0].at[:, :12].set(1.0)
  c = djpeg.encode(image, quality=60, deadzone=half)
  np.testing.assert_array_equal(np.asarray(c.components[0])[:, 12:],
                                np.asarray(plain.components[0])[:, 12:])
  assert np.count_nonzero(c.components[0][:, :12]) < np.count_nonzero(plain.components[0][:, :12])


def test_deadzone_gradients(pixels):
  image = jnp.asarray(pixels, jnp.float32) / 255
  shapes = [comp.shape[:2] for comp in djpeg.encode(image).components]
  steps = djpeg.quality_tables(60)

  def losses(theta, image):
    c = djpeg.encode(image, quality=60, deadzone=[jnp.full(s, theta) for s in shapes])
    dct = djpeg.transform(image)
    distortion = sum(jnp.sum((d - q * steps[min(i, 1)]) ** 2) for i, (d, q) in
                     enumerate(zip(dct, c.components)))
    return rate.rate(c), distortion

  for theta in (0.0, 0.3, 1.0):
    _, (g_rate, g_distortion) = jax.jvp(lambda t: losses(t, image), (jnp.float32(theta),),
                                        (jnp.float32(1.0),))
    assert np.isfinite(g_rate) and np.isfinite(g_distortion)
    assert g_rate < 0 and g_distortion > 0   # a wider dead-zone saves bits and costs quality
  direction = jnp.asarray(np.random.default_rng(0).normal(size=image.shape), jnp.float32)
  _, (g_image, _) = jax.jvp(lambda x: losses(jnp.float32(0.3), x), (image,), (direction,))
  assert np.isfinite(g_image) and g_image != 0


def test_deadzone_from_block_weights_tracks_the_trellis(pixels, mask):
  image = pixels.astype(np.float32) / 255
  factors = sampling.factors_for("4:2:0", 3)
  tables = np.asarray(djpeg.quality_tables(75))[[0, 1, 1]]
  weights = roi.block_weights(mask, 128, 192, factors)
  theta = roi.deadzone(weights, tables, lmbda=0.05, height=128, width=192)
  assert [t.shape for t in theta] == [(16, 24, 8, 8), (8, 12, 8, 8), (8, 12, 8, 8)]
  assert float(theta[0][0, 0].mean()) > float(theta[0][8, 12].mean())   # background zeroes more
  zero = roi.deadzone([np.zeros((16, 24)), np.zeros((8, 12)), np.zeros((8, 12))], tables,
                      lmbda=0.05, height=128, width=192)
  # Weight 0 zeroes every AC coefficient; the DC stays rounded, as in the trellis.
  assert all(float(jnp.min(t[..., 1:, :])) == 64.0 and float(jnp.max(t[..., 0, 0])) == 0.0
             for t in zero)
  c = djpeg.encode(image, tables=tables, deadzone=theta)
  y = np.asarray(c.components[0])
  assert np.count_nonzero(y[:4, ..., 1:]) < np.count_nonzero(y[4:12, 6:18, ..., 1:])


@pytest.mark.parametrize("make, match", [
    (lambda c: zones(c, 0.1)[:2], "one array per component"),
    (lambda c: [jnp.zeros((3, 3))] * 3, "deadzone of component 0 must have shape"),
    (lambda c: zones(c, -0.1), "deadzone of component 0 values must lie"),
    (lambda c: zones(c, np.nan), "must be finite"),
    (lambda c: jnp.zeros((16, 24)), "sequence of 3 arrays"),
])
def test_bad_deadzones(pixels, make, match):
  image = pixels.astype(np.float32) / 255
  c = djpeg.encode(image)
  with pytest.raises(ValueError, match=match):
    djpeg.encode(image, deadzone=make(c))


def test_deadzone_needs_exact_rounding(pixels):
  image = pixels.astype(np.float32) / 255
  c = djpeg.encode(image)
  with pytest.raises(ValueError, match="exact-forward rounding"):
    djpeg.encode(image, rounding="cubic", deadzone=zones(c, 0.1))


# --- MS-ROI -------------------------------------------------------------------------------------

def test_msroi_mosaic(pixels, mask):
  mosaic = roi.msroi_mosaic(pixels, mask)
  for quality, where in ((100, mask), (80, ~mask)):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    np.testing.assert_array_equal(mosaic[where], decode(buf.getvalue())[where])
  # A continuous map splits at its median.
  ramp = np.tile(np.linspace(0, 1, 192, dtype=np.float32), (128, 1))
  mosaic = roi.msroi_mosaic(pixels, ramp, low=30, high=90)
  right = ramp >= np.median(ramp)
  assert psnr(mosaic[right], pixels[right]) > psnr(mosaic[~right], pixels[~right]) + 3
  data = roi.msroi(pixels, mask, quality=70)
  assert decode(data).shape == pixels.shape
  with pytest.raises(ValueError, match="must have the image's shape"):
    roi.msroi_mosaic(pixels, mask[:10])


# --- command line -------------------------------------------------------------------------------

def test_cli_trellis_and_saliency(pixels, mask, tmp_path, capsys):
  source = tmp_path / "in.png"
  Image.fromarray(pixels).save(source)
  Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
  assert cli.main(["encode", str(source), str(tmp_path / "t.jpg"), "--quality", "70",
                   "--trellis", "--quiet"]) == 0
  assert cli.main(["encode", str(source), str(tmp_path / "r.jpg"), "--quality", "70",
                   "--saliency", str(tmp_path / "mask.png"), "--optimize-scans"]) == 0
  out = capsys.readouterr().out
  assert "inside the region of interest" in out
  plain = djpeg.dumps(pixels, quality=70)
  for name in ("t.jpg", "r.jpg"):
    data = (tmp_path / name).read_bytes()
    simplejpeg.decode_jpeg(data, strict=True)
    assert len(data) < len(plain)
  for kind in ("auto", "ms-ssim"):
    assert cli.main(["encode", str(source), str(tmp_path / "a.jpg"), "--quality", "70",
                     "--saliency", kind, "--quiet"]) == 0
    simplejpeg.decode_jpeg((tmp_path / "a.jpg").read_bytes(), strict=True)
  with pytest.raises(SystemExit, match="no such file"):
    cli.main(["encode", str(source), str(tmp_path / "a.jpg"), "--saliency",
              str(tmp_path / "nope.png")])


def test_reported_psnr_is_the_written_files(pixels, mask, tmp_path):
  # The exporter measures its file on the decode, stripe by stripe (bounded memory): the
  # PSNRs it reports, whole and inside / outside the region, are those of libjpeg-turbo's
  # decode of the file it wrote. Three stripes of 256 rows here.
  from djpeg.export import ExportOptions, export_bytes
  image = np.concatenate([pixels, pixels[::-1], pixels, pixels[::-1], pixels[:60]], 0)
  region = np.concatenate([mask, mask[::-1], mask, mask[::-1], mask[:60]], 0)
  Image.fromarray(region.astype(np.uint8) * 255).save(tmp_path / "mask.png")
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, "PNG")
  options = ExportOptions(mode="trellis", quality=60, saliency=str(tmp_path / "mask.png"))
  data, result = export_bytes(buffer.getvalue(), options)
  decoded = decode(data)
  assert result.psnr == pytest.approx(psnr(decoded, image), abs=1e-9)
  assert result.roi_psnr == pytest.approx((psnr(decoded[region], image[region]),
                                           psnr(decoded[~region], image[~region])), abs=1e-9)


def test_every_target_is_met_on_the_real_file(tmp_path):
  # Measured on Pillow's decode and the file's own size: the table fit without the trellis and
  # the learned tables with it (whose targets used to be dropped) both meet them.
  from conftest import pillow_decode
  from djpeg import cli, samples
  pixels = samples.load("castle", uint8=True)
  Image.fromarray(pixels).save(tmp_path / "in.png")
  psnr = lambda data: 10 * np.log10(255 ** 2 / np.mean(
      (pillow_decode(data).astype(float) - pixels) ** 2))
  bpp = lambda data: 8 * len(data) / (pixels.shape[0] * pixels.shape[1])
  for name, extra in (("a", ["--optimize-tables", "--psnr", "36"]),
                      ("b", ["--optimize-tables", "--bpp", "1.2"]),
                      ("c", ["--learned", "--psnr", "34", "--trellis"]),
                      ("d", ["--learned", "--bpp", "1.0", "--trellis"]),
                      ("e", ["--learned", "--bpp", "1.0"])):
    assert cli.main(["encode", str(tmp_path / "in.png"), str(tmp_path / f"{name}.jpg"),
                     "--quiet", "--no-cache", *extra]) == 0
    data = (tmp_path / f"{name}.jpg").read_bytes()
    if "--psnr" in extra:
      target = float(extra[extra.index("--psnr") + 1])
      assert target <= psnr(data) < target + 1, (name, psnr(data))
    else:
      target = float(extra[extra.index("--bpp") + 1])
      assert 0.9 * target < bpp(data) <= target, (name, bpp(data))


def test_settings_a_mode_would_ignore_are_refused(tmp_path):
  from djpeg import cli, samples
  pixels = samples.load("castle", uint8=True)
  Image.fromarray(pixels).save(tmp_path / "in.png")
  for extra, match in ((["--background", "0.5"], "needs --saliency"),
                       (["--libjpeg", "--background", "0.3"], "needs --saliency"),
                       (["--steps", "50"], "--steps sets the gradient steps"),
                       (["--optimize-scans", "--standard-huffman"], "excludes --standard-huffman")):
    with pytest.raises(SystemExit, match=match):
      cli.main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.jpg"), *extra])
  for kwargs in (dict(mode="libjpeg", trellis=False), dict(quality=75, steps=10),
                 dict(quality=75, rounds=0)):
    with pytest.raises(ValueError, match="takes only a quality"):
      djpeg.compress(pixels, **kwargs)
  with pytest.raises(ValueError, match="needs saliency"):
    djpeg.compress(pixels, quality=75, mode="mse", background=0.5)
  with pytest.raises(FileNotFoundError, match="the folder .*nowhere' does not exist"):
    djpeg.save(tmp_path / "nowhere" / "x.jpg", pixels)
  (tmp_path / "f.json").write_bytes(b"\x89PNG not json")
  with pytest.raises(SystemExit, match="is not a djpeg table family file"):
    cli.main(["encode", str(tmp_path / "in.png"), str(tmp_path / "y.jpg"), "--tables",
              str(tmp_path / "f.json"), "--level", "1", "--no-cache"])
