"""Trellis quantization: optimal per block, never worse than rounding, files any decoder reads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import simplejpeg

import djpeg
from djpeg import rate, samples, sampling
from djpeg.exact import trellis as trellis_lib
from djpeg.distortion import rgb_mse_weights
from djpeg.tables import ZIGZAG
from conftest import huffman_tables
from exact_util import jpeglib_coefficients


def setup(name="castle", subsampling="4:2:0", quality=50, crop=(0, 0)):
  """(dct, tables, factors, height, width, weights) of a bundled sample, less `crop` rows and
  columns."""
  image = samples.load(name)
  image = image[:image.shape[0] - crop[0], :image.shape[1] - crop[1]]
  height, width, channels = image.shape
  factors = sampling.factors_for(subsampling, channels)
  dct = [np.asarray(d) for d in djpeg.transform(image, subsampling=subsampling)]
  tables = np.asarray(djpeg.encode(image, quality=quality, subsampling=subsampling).tables)
  weights = [np.asarray(w) * height * width for w in rgb_mse_weights(factors, height * width)]
  return dct, tables, factors, height, width, weights


def coefficients(result, tables, factors, height, width):
  return djpeg.Coefficients(tuple(result.components), np.asarray(tables, np.float32), height,
                            width, factors)


def block_cost(x, dmul, lengths, magnitudes):
  """Bits + distortion of one block's AC magnitudes, symbol by symbol (the reference)."""
  cost, prev = 0.0, 0
  nonzero = np.flatnonzero(magnitudes)
  for k in nonzero:
    run, size = k - prev, int(magnitudes[k]).bit_length()
    cost += (run >> 4) * lengths[0xF0] + lengths[((run & 15) << 4) + size] + size
    prev = k + 1
  if not len(nonzero) or nonzero[-1] != 62:
    cost += lengths[0x00]
  return cost + np.sum(dmul * (x - magnitudes) ** 2)


def test_dynamic_program_equals_exhaustive_search():
  rng = np.random.default_rng(0)
  n = 150
  x = np.zeros((n, 63))
  for b in range(n):        # up to 6 candidates anywhere in the block: runs past 16 need ZRLs
    k = rng.choice(63, rng.integers(0, 7), replace=False)
    x[b, k] = rng.exponential(2.0, len(k)) + 0.3
  rounded = np.floor(x + 0.5).astype(np.int32)
  dmul = rng.uniform(0.05, 3.0, (n, 63))
  table = rng.integers(0, 2, n)
  lengths = np.where(trellis_lib.AC_VALID, rng.uniform(2, 16, (2, 256)), np.inf)
  chosen = trellis_lib.solve_blocks(x, rounded, dmul, table, lengths)
  assert np.all((chosen >= 0) & (chosen <= rounded))
  for b in range(n):
    candidates = np.flatnonzero(rounded[b])
    options = [sorted({int(rounded[b, k]), int(rounded[b, k]) - 1, 0}) for k in candidates]
    best = np.inf
    for combo in itertools.product(*options):
      m = np.zeros(63, np.int32)
      m[candidates] = combo
      best = min(best, block_cost(x[b], dmul[b], lengths[table[b]], m))
    assert block_cost(x[b], dmul[b], lengths[table[b]], chosen[b]) <= best + 1e-4


def real_cost(data, dct, weights, lmbda):
  """bits + lmbda * distortion of a file, from its own Huffman tables and coefficients.

  Independent of the trellis code: symbols are counted by `djpeg.rate.symbol_counts` (JAX) on
  the coefficients read back from the file and priced with the code lengths of the file's DHT
  segments; distortion is recomputed from the DCT.
  """
  c = djpeg.load_coefficients(data)
  lengths = huffman_tables(data)
  counts = rate.symbol_counts(c)
  bits = 0.0
  for (cls, slot), hist in counts.items():
    hist = np.asarray(hist, np.int64)
    extra = np.arange(256) if cls == 0 else np.arange(256) % 16
    bits += np.sum(hist * (lengths[(cls, slot)] + extra))
    bits += 8 * (5 + 16 + int(np.sum(hist > 0)))      # its DHT segment
  distortion = 0.0
  for d, q, t, w in zip(dct, c.components, np.asarray(c.tables), weights):
    distortion += np.sum(w * (d - np.asarray(q, np.float64) * t) ** 2)
  return bits + lmbda * distortion, bits, distortion


@pytest.mark.parametrize("name, subsampling, quality, factor", [
    ("castle", "4:2:0", 30, 1.0), ("castle", "4:2:0", 85, 0.5), ("limes", "4:4:4", 60, 2.0),
    ("houses", "4:2:2", 95, 1.0), ("bear_gray", "4:2:0", 50, 1.0)])
def test_never_worse_than_rounding_with_real_code_lengths(name, subsampling, quality, factor):
  dct, tables, factors, height, width, weights = setup(name, subsampling, quality)
  lmbda = factor * trellis_lib.table_slope(dct, tables, factors, height, width, weights=weights)
  result = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=lmbda,
                                        weights=weights)
  rounded = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=lmbda,
                                         weights=weights, rounds=0)
  ours = real_cost(djpeg.dumps(coefficients(result, tables, factors, height, width)), dct,
                   weights, lmbda)
  plain = real_cost(djpeg.dumps(coefficients(rounded, tables, factors, height, width)), dct,
                    weights, lmbda)
  # The trellis's own accounting is the file's, and it never loses to rounding.
  assert ours[1] == pytest.approx(result.bits) and plain[1] == pytest.approx(result.rounding_bits)
  assert ours[2] == pytest.approx(result.distortion, rel=1e-6)
  assert ours[0] <= plain[0]
  if quality <= 85:
    assert ours[0] < plain[0] - 1.0         # and it finds something better
  # Plain rounding is what libjpeg stores.
  np.testing.assert_array_equal(
      rounded.components[0],
      np.asarray(djpeg.encode(samples.load(name), quality=quality,
                              subsampling=subsampling).components[0]))


@pytest.mark.parametrize("name, subsampling, with_importance", [
    ("castle", "4:2:0", True), ("houses", "4:2:2", False), ("bear_gray", "4:2:0", True)])
def test_a_large_image_solved_in_strips_gets_the_one_piece_result(name, subsampling,
                                                                 with_importance, monkeypatch):
  # Above STRIP_BLOCKS blocks the trellis runs strip by strip (bounded memory), priced by the
  # whole image's counts: the same values, the same slope, and its accounting is the file's.
  # Cropped to partial MCUs: libjpeg's dummy blocks' EOBs are counted once, on the whole.
  dct, tables, factors, height, width, weights = setup(name, subsampling, 60, crop=(13, 11))
  importance = ([np.random.default_rng(1).uniform(0.2, 3.0, np.shape(d)[:2]) for d in dct]
                if with_importance else None)
  args = (dct, tables, factors, height, width)
  whole = trellis_lib.trellis_quantize(*args, weights=weights, importance=importance)
  slope = trellis_lib.table_slope(*args, weights=weights, importance=importance)
  monkeypatch.setattr(trellis_lib, "STRIP_BLOCKS", 20)
  assert len(trellis_lib._strips([np.shape(d) for d in dct], factors, height)) > 3
  striped = trellis_lib.trellis_quantize(*args, weights=weights, importance=importance)
  assert trellis_lib.table_slope(*args, weights=weights, importance=importance) == slope
  for ours, theirs in zip(striped.components, whole.components):
    np.testing.assert_array_equal(ours, theirs)
  assert (striped.lmbda, striped.bits, striped.chosen) == (whole.lmbda, whole.bits, whole.chosen)
  assert striped.distortion == pytest.approx(whole.distortion, rel=1e-9)
  np.testing.assert_array_equal(striped.ac_counts, whole.ac_counts)
  if importance is None:
    bits = real_cost(djpeg.dumps(coefficients(striped, tables, factors, height, width)), dct,
                     weights, striped.lmbda)[1]
    assert bits == pytest.approx(striped.bits)


@pytest.mark.parametrize("name, subsampling", [("castle", "4:2:0"), ("bear_gray", "4:4:4")])
def test_a_pass_priced_by_given_counts_continues_the_rounds(name, subsampling):
  """`ac_counts` are the kept result's symbol counts as the file's scan codes them, and one pass
  priced by a one-pass result's counts is exactly the second pass of a two-pass call."""
  dct, tables, factors, height, width, weights = setup(name, subsampling, 50)
  lmbda = trellis_lib.table_slope(dct, tables, factors, height, width, weights=weights)
  run = lambda **kw: trellis_lib.trellis_quantize(dct, tables, factors, height, width,
                                                  lmbda=lmbda, weights=weights, **kw)
  one, two = run(rounds=1), run(rounds=2)
  counted = trellis_lib.symbol_counts(one.components, height, width, factors)
  for slot in (0, 1):
    want = counted.get((1, slot), np.zeros(256))
    np.testing.assert_array_equal(one.ac_counts[slot], want)
  assert one.chosen == 1 and two.chosen == 2
  warm = run(rounds=1, ac_counts=one.ac_counts)
  for a, b in zip(warm.components, two.components):
    np.testing.assert_array_equal(a, b)
  assert warm.bits == two.bits


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("name, subsampling", [("houses", "4:2:0"), ("limes", "4:2:2"),
                                               ("bear_gray", "4:4:4")])
def test_files_decode_strictly_and_read_back_exactly(name, subsampling, progressive):
  dct, tables, factors, height, width, weights = setup(name, subsampling, 70)
  result = trellis_lib.trellis_quantize(dct, tables, factors, height, width, weights=weights)
  c = coefficients(result, tables, factors, height, width)
  data = djpeg.dumps(c, progressive=progressive)
  gray = len(factors) == 1
  pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", strict=True)
  assert pixels.shape[:2] == (height, width)
  for got in (jpeglib_coefficients(data), djpeg.load_coefficients(data)):
    for a, b in zip(got.components, result.components):
      np.testing.assert_array_equal(np.asarray(a), b)
  # The trellis only lowers magnitudes and keeps DC and signs.
  plain = djpeg.encode(samples.load(name), quality=70, subsampling=subsampling)
  for a, b in zip(result.components, plain.components):
    b = np.asarray(b)
    assert np.all(np.abs(a) <= np.abs(b)) and np.all(a * b >= 0)
    np.testing.assert_array_equal(a[..., 0, 0], b[..., 0, 0])


def test_importance_decides_where_coefficients_survive():
  dct, tables, factors, height, width, weights = setup("houses", "4:2:0", 80)
  lmbda = trellis_lib.table_slope(dct, tables, factors, height, width, weights=weights)
  uniform = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=lmbda,
                                         weights=weights)
  importance = []
  for d in dct:
    m = np.full(d.shape[:2], 4.0)
    m[:, : d.shape[1] // 2] = 0.0            # left half does not matter at all
    importance.append(m)
  focused = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=lmbda,
                                         weights=weights, importance=importance)
  for u, f in zip(uniform.components, focused.components):
    half = f.shape[1] // 2
    ac = lambda a: np.count_nonzero(a.reshape(a.shape[:2] + (64,))[..., ZIGZAG[1:]])
    assert ac(f[:, :half]) == 0                                   # only DC left there
    assert ac(f[:, half:]) > ac(u[:, half:])                      # and more kept here


def test_lambda_extremes():
  dct, tables, factors, height, width, weights = setup("limes", "4:2:0", 60)
  zero = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=0.0,
                                      weights=weights)
  for comp in zero.components:
    flat = comp.reshape(-1, 64)
    assert np.count_nonzero(flat[:, 1:]) == 0 and np.count_nonzero(flat[:, 0]) > 0
  huge = trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=1e6,
                                      weights=weights)
  plain = djpeg.encode(samples.load("limes"), quality=60)
  for a, b in zip(huge.components, plain.components):
    np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lmbda=-1.0), "lmbda must be"), (dict(lmbda=float("nan")), "lmbda must be"),
    (dict(importance=[np.ones((3, 3))] * 3), "importance of component 0 must have shape"),
    (dict(importance=[np.ones((16, 24))]), "one array per component"),
    (dict(ac_counts=np.ones((3, 256))), "ac_counts must be"),
])
def test_bad_arguments(kwargs, match):
  dct, tables, factors, height, width, weights = setup("castle", "4:2:0", 50)
  with pytest.raises(ValueError, match=match):
    trellis_lib.trellis_quantize(dct, tables, factors, height, width, weights=weights, **kwargs)


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN"), (-0.5, "negative")])
def test_bad_importance_values(bad, match):
  dct, tables, factors, height, width, weights = setup("castle", "4:2:0", 50)
  importance = [np.ones(d.shape[:2]) for d in dct]
  importance[1][2, 3] = bad
  with pytest.raises(ValueError, match=match):
    trellis_lib.trellis_quantize(dct, tables, factors, height, width, lmbda=0.01,
                                 weights=weights, importance=importance)


def test_dumps_and_save_with_trellis(tmp_path):
  pixels = samples.load("castle", uint8=True)
  plain = djpeg.dumps(pixels, quality=60)
  data = djpeg.dumps(pixels, quality=60, trellis=True)
  assert len(data) < 0.95 * len(plain)
  c = djpeg.load_coefficients(data)
  np.testing.assert_array_equal(np.asarray(c.tables), np.asarray(djpeg.load_coefficients(plain).tables))
  djpeg.save(tmp_path / "t.jpg", pixels, quality=60, trellis=True, progressive=True)
  simplejpeg.decode_jpeg((tmp_path / "t.jpg").read_bytes(), strict=True)
  # A given lambda: larger keeps more.
  sizes = [len(djpeg.dumps(pixels, quality=60, trellis=lm)) for lm in (0.005, 0.05, 0.5)]
  assert sizes[0] < sizes[1] < sizes[2] <= len(plain)
  assert djpeg.dumps(np.stack([pixels, pixels]), quality=60, trellis=True) == [data, data]
  with pytest.raises(ValueError, match="pass the image"):
    djpeg.dumps(djpeg.encode(samples.load("castle")), trellis=True)
  with pytest.raises(ValueError, match="positive lambda"):
    djpeg.dumps(pixels, trellis=-1.0)


def test_compress_meets_a_psnr_target_with_fewer_bytes():
  from djpeg.encoder import compress
  image = samples.load("castle")                       # test_optimize's image and target
  plain = djpeg.optimize_tables(image, psnr=34.0)
  plain_file = djpeg.dumps(djpeg.encode(image, tables=plain.tables))
  result = compress(image, psnr=34.0)
  data = djpeg.dumps(result.coefficients)
  decoded = np.asarray(simplejpeg.decode_jpeg(data), np.float64)
  real = 10 * np.log10(255.0 ** 2 / np.mean((decoded - samples.load("castle", uint8=True)) ** 2))
  assert real >= 34.0 and real == pytest.approx(result.psnr, abs=1e-6)
  assert len(data) < 0.97 * len(plain_file)
  assert 8 * len(data) / (128 * 192) == pytest.approx(result.bits_per_pixel, rel=0.01)


@pytest.mark.parametrize("target", [{"psnr": 33.0}, {"bpp": 1.2}])
def test_large_images_fit_tables_on_a_sample_and_meet_the_target_whole(target, monkeypatch):
  # Over TABLE_FIT_LIMIT pixels the tables are fitted on a mosaic of tiles; the trellis and the
  # target's check run on the whole image, whose error is measured stripe by stripe. Limits are
  # lowered here so that a small image takes those paths.
  from djpeg import distortion, encoder, perceptual
  monkeypatch.setattr(encoder, "TABLE_FIT_LIMIT", 100_000)
  monkeypatch.setattr(perceptual, "CHECK_TILES", 4)
  monkeypatch.setattr(distortion, "DECODE_WHOLE_LIMIT", 0)
  monkeypatch.setattr(distortion, "DECODE_STRIPE_PIXELS", 96 * 1024)
  fitted = []
  real_fit = encoder.optimize_tables
  monkeypatch.setattr(encoder, "optimize_tables",
                      lambda image, **kw: fitted.append(np.shape(image)) or real_fit(image, **kw))
  tiles = [samples.load(name, uint8=True) for name in ("limes", "houses", "castle")]
  pixels = np.ascontiguousarray(np.concatenate(
      [np.concatenate([tiles[(r + c) % 3] for c in range(3)], 1) for r in range(4)], 0))
  result = encoder.compress(pixels, **target)                      # 512 x 576, uint8
  assert fitted == [(4 * 256, 256, 3)]
  data = djpeg.dumps(result.coefficients)
  decoded = np.asarray(simplejpeg.decode_jpeg(data), np.float64)
  real = 10 * np.log10(255.0 ** 2 / np.mean((decoded - pixels) ** 2))
  assert real == pytest.approx(result.psnr, abs=1e-4)
  bpp = 8 * len(data) / (512 * 576)
  if "psnr" in target:
    assert real >= 33.0
  else:
    assert 1.1 <= bpp <= 1.2


@pytest.mark.parametrize("name", ["houses", "bear_gray"])
def test_optimized_progressive_scripts(name):
  pixels = samples.load(name, uint8=True)
  for quality in (30, 90):
    c = djpeg.load_coefficients(djpeg.dumps(pixels, quality=quality, trellis=True))
    default = djpeg.dumps(c, progressive=True)
    chosen = djpeg.dumps(c, progressive="optimize")
    assert chosen[:2] == b"\xff\xd8" and b"\xff\xc2" in chosen      # SOF2: progressive
    assert len(chosen) <= 1.002 * len(default)
    gray = name == "bear_gray"
    simplejpeg.decode_jpeg(chosen, colorspace="GRAY" if gray else "RGB", strict=True)
    for got in (jpeglib_coefficients(chosen), djpeg.load_coefficients(chosen)):
      for a, b in zip(got.components, c.components):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="progressive must be"):
    djpeg.dumps(c, progressive="fast")
  with pytest.raises(ValueError, match="needs optimize=True"):
    djpeg.dumps(c, progressive="optimize", optimize=False)


def _writer_counts(scan, component, cap):
  """The writer's own coder for one AC scan of a `(rows, cols, 8, 8)` component (the coders
  whose files equal libjpeg-turbo's): (symbol counts, raw bits)."""
  from djpeg.exact import layout as layout_lib, scans, writer
  rows, cols = component.shape[:2]
  sparse = [scans.sparse_component(component)]
  layout = layout_lib.scan_layout(8 * rows, 8 * cols, ((1, 1),), (0,))
  used, dc_local, ac_local = writer.scan_tables(scan, True)
  coded = writer.code_scan(scan, sparse, layout, 0, dc_local, ac_local, cap)
  return coded.counts(len(used))[0], coded.raw_bits()


@pytest.mark.parametrize("cap", [0x7FFF, 5, 1])
def test_compiled_scan_pricing_counts_what_the_writer_codes(cap):
  # The scan-script search prices AC scans with compiled counting loops; they must count the
  # symbols and correction bits the writer emits, for every scan of the searched family: real
  # trellis output at two qualities, and dense random blocks whose correction bits force
  # libjpeg's buffered-bits flushes of end-of-band runs.
  from djpeg.exact import progressive_compiled, scans
  from djpeg.exact.scripts import _options
  pixels = samples.load("houses", uint8=True)
  components = []
  for quality in (30, 90):
    c = djpeg.load_coefficients(djpeg.dumps(pixels, quality=quality, trellis=True))
    components += [np.asarray(x, np.int16) for x in c.components]
  rng = np.random.default_rng(0)
  dense = rng.integers(-40, 41, (20, 30, 8, 8)) * (rng.random((20, 30, 1, 1)) < 0.5)
  even = 2 * rng.integers(1, 20, (10, 40, 8, 8)) * rng.choice([-1, 1], (10, 40, 8, 8))
  components += [dense.astype(np.int16), even.astype(np.int16)]   # even: no new coefficient
  checked = 0
  for component in components:
    sparse = scans.sparse_component(component)
    lists = (progressive_compiled.block_starts(sparse), sparse.k, sparse.magnitude)
    for first, refine in _options(0, True):
      for scan in first + refine:
        expected, raw = _writer_counts(scan, component, cap)
        if scan.ah == 0:
          got, got_raw = progressive_compiled.ac_first_counts(*lists, scan.ss, scan.se,
                                                              scan.al, cap), 0
        else:
          got, got_raw = progressive_compiled.ac_refine_counts(*lists, scan.ss, scan.se,
                                                               scan.al, cap)
        np.testing.assert_array_equal(got, expected, err_msg=str(scan))
        assert got_raw == raw, scan
        checked += 1
  assert checked > 100


@pytest.mark.parametrize("kind", ["psnr", "bpp"])
def test_target_search_holds_one_result_of_coefficients_at_a_time(monkeypatch, kind):
  """A bpp or PSNR target's search keeps every result's bits and distortion, but the
  coefficients (3 bytes a pixel) of none while a new trellis pass runs when they exceed the
  cache's budget, as on large photos; the file is the same as with every result kept."""
  import weakref

  from djpeg import encoder

  image = samples.load("houses", uint8=True)
  target = {"psnr": 33.0, "bpp": 1.2}[kind]
  kept = encoder.compress(image, **{kind: target}, measure=False)
  alive, most = [], [0]
  trellis = encoder.TrellisImage.trellis

  def spy(self, *args):
    most[0] = max(most[0], sum(ref() is not None for ref in alive))
    result = trellis(self, *args)
    alive.extend(weakref.ref(c) for c in result.components)
    return result

  monkeypatch.setattr(encoder.TrellisImage, "trellis", spy)
  monkeypatch.setattr(encoder, "_FAMILY_CACHE_BYTES", 1)
  lean = encoder.compress(image, **{kind: target}, measure=False)
  assert len(alive) > 3 * 3 and most[0] == 0
  np.testing.assert_array_equal(np.asarray(lean.tables), np.asarray(kept.tables))
  for a, b in zip(lean.coefficients.components, kept.coefficients.components):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
