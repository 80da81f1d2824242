"""Tests of the JAX SSIMULACRA 2 against scores of Cloudinary's reference program.

The fixtures (data/ssimulacra2/ssimulacra2_fixtures.json, made by make_ssimulacra2_fixtures.py) list (reference,
distorted) pairs: Kodak crops and their JPEG (.jpg files decoded with Pillow), blurred (rebuilt
from the recipe) and noisy (PNG) versions, with the reference program's scores. Only data/ is
read: neither the reference program nor the Kodak images are needed. Each image shape is
compiled once (all pairs of a shape are scored in one batch).
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssimulacra2_recipes as fr
from djpeg.metrics import ssimulacra2

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ssimulacra2")
TOLERANCE = 0.1  # points, the required agreement with the reference program

with open(os.path.join(DATA, "ssimulacra2_fixtures.json")) as _f:
  FIXTURES = json.load(_f)
PAIRS = FIXTURES["pairs"]


def _to_float(img: np.ndarray) -> np.ndarray:
  """uint8 `(H, W, 3)` or `(H, W)` -> float32 `(H, W, C)` as the reference loads it."""
  if img.ndim == 2:
    img = img[..., None]
  return img.astype(np.float32) * np.float32(1.0 / 255.0)


@functools.lru_cache(maxsize=None)
def _read(name: str) -> np.ndarray:
  with open(os.path.join(DATA, name), "rb") as f:
    return fr.decode(f.read())


def _pair_images(pair: dict) -> tuple[np.ndarray, np.ndarray]:
  """uint8 reference and distorted images of a fixture pair, the latter checked by hash."""
  ref = _read(pair["reference"])
  recipe = pair["distorted"]
  if "file" in recipe:  # jpeg (.jpg decoded by Pillow) and noise (.png)
    dist = _read(recipe["file"])
  elif recipe["kind"] == "blur":
    dist = fr.gaussian_blur(ref, recipe["sigma"])
  elif recipe["kind"] == "noise":
    dist = fr.gaussian_noise(ref, recipe["sigma"], recipe["seed"])
  elif recipe["kind"] == "identical":
    dist = ref.copy()
  else:
    raise ValueError(f"unknown recipe {recipe}")
  if fr.pixels_sha256(dist) != pair["distorted_sha256"]:
    raise AssertionError(
        f"{pair['id']}: the distorted image differs from the one the reference scored "
        f"(recipe {recipe}); Pillow's JPEG decoder or numpy changed?")
  return ref, dist


@functools.lru_cache(maxsize=None)
def _jax_scores() -> dict[str, float]:
  """JAX scores of all fixture pairs, one batched call per image shape."""
  groups: dict[tuple, list[dict]] = {}
  for pair in PAIRS:
    ref, _ = _pair_images(pair)
    groups.setdefault(_to_float(ref).shape, []).append(pair)
  scores = {}
  for pairs in groups.values():
    imgs = [_pair_images(p) for p in pairs]
    refs = np.stack([_to_float(r) for r, _ in imgs])
    dists = np.stack([_to_float(d) for _, d in imgs])
    out = np.asarray(ssimulacra2(refs, dists))
    assert out.shape == (len(pairs),)
    scores.update({p["id"]: float(s) for p, s in zip(pairs, out)})
  return scores


def test_fixture_count_and_kinds():
  kinds = {p["distorted"]["kind"] for p in PAIRS}
  assert len(PAIRS) >= 48
  assert kinds == {"jpeg", "blur", "noise", "identical"}


@pytest.mark.parametrize("pair", PAIRS, ids=[p["id"] for p in PAIRS])
def test_matches_reference_program(pair):
  got = _jax_scores()[pair["id"]]
  assert abs(got - pair["score"]) <= TOLERANCE, (got, pair["score"])


def test_max_deviation_over_all_fixtures():
  scores = _jax_scores()
  worst = max(abs(scores[p["id"]] - p["score"]) for p in PAIRS)
  # The port follows the reference's float32 arithmetic; in practice it agrees to ~1e-5.
  assert worst <= TOLERANCE
  assert np.isfinite(worst)


def test_identical_images_score_100():
  for pair in PAIRS:
    if pair["distorted"]["kind"] == "identical":
      assert pair["score"] == 100.0
      assert _jax_scores()[pair["id"]] == 100.0


def _shape_pairs(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Stacked float reference/distorted images of the RGB fixtures of (H, W)."""
  refs, dists = [], []
  for pair in PAIRS:
    ref, dist = _pair_images(pair)
    if ref.shape == shape + (3,):
      refs.append(_to_float(ref))
      dists.append(_to_float(dist))
  return np.stack(refs), np.stack(dists)


def test_vmap_and_batch_match_per_image():
  refs, dists = _shape_pairs((13, 9))  # the 9x13 fixtures: 4 pairs
  batched = np.asarray(ssimulacra2(refs, dists))
  vmapped = np.asarray(jax.vmap(ssimulacra2)(refs, dists))
  single = np.array([float(ssimulacra2(r, d)) for r, d in zip(refs, dists)])
  np.testing.assert_allclose(vmapped, single, rtol=0, atol=1e-4)
  np.testing.assert_allclose(batched, single, rtol=0, atol=1e-4)
  # Any leading batch shape.
  nested = np.asarray(ssimulacra2(refs.reshape(2, 2, 13, 9, 3), dists.reshape(2, 2, 13, 9, 3)))
  assert nested.shape == (2, 2)
  np.testing.assert_allclose(nested.reshape(4), batched, rtol=0, atol=1e-4)
  # One reference against several distorted images.
  per_ref = jax.vmap(ssimulacra2, in_axes=(None, 0))
  one_ref = np.asarray(per_ref(refs[0], np.stack([dists[0], refs[0]])))
  np.testing.assert_allclose(one_ref, [single[0], 100.0], rtol=0, atol=1e-4)


def test_jit():
  refs, dists = _shape_pairs((13, 9))
  jitted = jax.jit(ssimulacra2)
  for r, d in zip(refs, dists):
    assert abs(float(jitted(r, d)) - float(ssimulacra2(r, d))) <= 1e-4
  # bfloat16 / float16 inputs are accepted (computed in float32).
  assert np.isfinite(float(ssimulacra2(jnp.asarray(refs[0], jnp.bfloat16), dists[0])))
  # jnp inputs and gray inputs (C = 1, repeated to RGB like the reference does).
  gray = refs[0, ..., :1]
  gray_d = dists[0, ..., :1]
  assert abs(float(jitted(jnp.asarray(gray), jnp.asarray(gray_d)))
             - float(ssimulacra2(np.repeat(gray, 3, -1), np.repeat(gray_d, 3, -1)))) <= 1e-4


# ---- Gradients.

_GRAD = jax.jit(jax.grad(ssimulacra2, argnums=(0, 1)))


def _grad_pair() -> tuple[np.ndarray, np.ndarray]:
  """A 16x16 crop (3 scales) and a strong distortion of it (JPEG q15 4:2:0 plus noise), where
  the score is far above float32 noise and changes measurably under small perturbations."""
  ref_u8 = _read("k23_96.png")[40:56, 30:46]
  dist_u8 = fr.decode(fr.jpeg_bytes(ref_u8, 15, 2))
  ref = _to_float(ref_u8)
  noise = np.random.default_rng(1).normal(0.0, 0.03, ref.shape).astype(np.float32)
  dist = np.clip(_to_float(dist_u8) + noise, 0.02, 0.98)
  return ref, dist


def test_gradient_matches_finite_differences():
  ref, dist = _grad_pair()
  g_ref, g_dist = (np.asarray(g) for g in _GRAD(ref, dist))
  assert np.all(np.isfinite(g_ref)) and np.all(np.isfinite(g_dist))
  assert np.linalg.norm(g_ref) > 1.0 and np.linalg.norm(g_dist) > 1.0
  rng = np.random.default_rng(0)
  cases = []  # (argument, unit direction, step, analytic directional derivative)
  for arg, g in ((0, g_ref), (1, g_dist)):
    # Along the gradient itself the derivative is largest (|g|), so float32 noise matters
    # least; a gradient that is off in scale or direction gives FD != |g| there.
    cases.append((arg, g / np.linalg.norm(g), 0.03))
    for _ in range(2):
      u = rng.normal(size=ref.shape).astype(np.float32)
      cases.append((arg, u / np.linalg.norm(u), 0.1))
  refs, dists = [], []
  for arg, u, h in cases:
    for sign in (1.0, -1.0):
      r, d = ref.copy(), dist.copy()
      (r if arg == 0 else d)[...] += np.float32(sign * h) * u
      refs.append(r)
      dists.append(d)
  values = np.asarray(ssimulacra2(np.stack(refs), np.stack(dists)))
  for i, (arg, u, h) in enumerate(cases):
    fd = (values[2 * i] - values[2 * i + 1]) / (2.0 * h)
    analytic = float(np.sum((g_ref if arg == 0 else g_dist) * u))
    tol = 0.05 * abs(analytic) if i % 3 == 0 else 0.1 * abs(analytic) + 0.05
    assert abs(fd - analytic) <= tol, (arg, i, analytic, fd)


@pytest.mark.parametrize("case", ["identical", "black", "white", "black_vs_tiny"])
def test_gradient_is_finite(case):
  ref, _ = _grad_pair()
  if case == "identical":
    dist = ref.copy()
  elif case == "black":
    ref = np.zeros_like(ref)
    dist = ref.copy()
  elif case == "white":
    ref = np.ones_like(ref)
    dist = ref.copy()
  else:
    ref = np.zeros_like(ref)
    dist = ref.copy()
    dist[5, 7, 1] = 1.0 / 255.0
  if case != "black_vs_tiny":
    assert float(ssimulacra2(ref, dist)) == 100.0
  for g in _GRAD(ref, dist):
    assert np.all(np.isfinite(np.asarray(g))), case


# ---- Input validation.

_OK = np.full((9, 8, 3), 0.5, np.float32)


@pytest.mark.parametrize("ref, dist, message", [
    (np.zeros((7, 8, 3), np.float32), np.zeros((7, 8, 3), np.float32), "minimum image size"),
    (np.zeros((8, 7, 3), np.float32), np.zeros((8, 7, 3), np.float32), "minimum image size"),
    (_OK, np.full((8, 9, 3), 0.5, np.float32), "shapes differ"),
    (np.stack([_OK, _OK]), _OK, "shapes differ"),
    (np.full((9, 8, 4), 0.5, np.float32), np.full((9, 8, 4), 0.5, np.float32), "shape"),
    (np.full((9, 8, 2), 0.5, np.float32), np.full((9, 8, 2), 0.5, np.float32), "shape"),
    (np.full((9, 8), 0.5, np.float32), np.full((9, 8), 0.5, np.float32), "shape"),
    (np.full((9, 8, 3), 128, np.uint16), _OK, "dtype"),
    (_OK, np.full((9, 8, 3), 1, np.int32), "dtype"),
    (_OK, np.full((9, 8, 3), True), "dtype"),
    (_OK, np.where(np.arange(9)[:, None, None] == 3, np.nan, _OK).astype(np.float32), "NaN"),
    (np.where(np.arange(9)[:, None, None] == 3, np.inf, _OK).astype(np.float32), _OK, "NaN"),
    (_OK, np.full((9, 8, 3), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((9, 8, 3), -0.01, np.float32), _OK, r"\[0, 1\]"),
    (_OK, jnp.full((9, 8, 3), 2.0), r"\[0, 1\]"),
])
def test_invalid_inputs_raise(ref, dist, message):
  with pytest.raises(ValueError, match=message):
    ssimulacra2(ref, dist)


def test_tiny_out_of_range_is_tolerated():
  refs, dists = _shape_pairs((13, 9))
  r = refs[0].copy()
  r[0, 0, 0] = 1.0 + 1e-7
  assert np.isfinite(float(ssimulacra2(r, dists[0])))


def test_prepared_reference_scores_match_the_reference_program():
  # One reference prepared once, every fixture distortion of it scored against it: the
  # reference program's scores, as the direct call gives them.
  from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
  by_reference: dict[str, list[dict]] = {}
  for pair in PAIRS:
    by_reference.setdefault(pair["reference"], []).append(pair)
  name, pairs = max(by_reference.items(), key=lambda item: len(item[1]))
  assert len(pairs) >= 3
  ref = _to_float(_pair_images(pairs[0])[0])
  prepared = ssimulacra2_reference(ref)
  for pair in pairs:
    dist = _to_float(_pair_images(pair)[1])
    got = float(ssimulacra2_against(prepared, dist))
    assert abs(got - pair["score"]) <= TOLERANCE, (pair["id"], got, pair["score"])
    # On a CPU the candidate path pools in double (djpeg.error_maps); XLA pools in float32.
    assert abs(got - float(ssimulacra2(ref, dist))) <= 1e-4
  batch = ssimulacra2_reference(np.stack([ref, ref]))
  assert ssimulacra2_against(batch, np.stack([ref, ref])).shape == (2,)
  gray = ref[..., :1]
  assert float(ssimulacra2_against(ssimulacra2_reference(gray), gray)) == 100.0
  with pytest.raises(ValueError, match="shapes differ"):
    ssimulacra2_against(prepared, ref[:-1])


@pytest.mark.parametrize("height,width", [(8, 8), (37, 53), (130, 67), (64, 300)])
def test_compiled_blur_equals_the_scans_bit_for_bit(height, width):
  # The scoring path's blur (numba loops) against the scans that match the reference program:
  # identical float32 numbers inside every scale's image, at sizes that exercise both of
  # libjxl's arithmetic phases, several scales and scales too narrow for the four-output one.
  from djpeg import ssimulacra2 as s2
  rng = np.random.default_rng(height * width)
  image = jnp.asarray(rng.random((1, height, width, 3), dtype=np.float32))
  canvas, inside = s2._xyb_canvas(image)
  planes = jnp.concatenate([canvas * canvas, canvas], axis=1)[0]
  _, offsets, _ = s2._canvas_layout(height, width)
  row_w = s2._row_widths(height, width)
  scans = np.asarray(jax.jit(lambda p: s2._blur_canvas(p, row_w, offsets))(planes))
  loops = s2._blur_compiled(planes, height, width)
  inside = np.asarray(inside)
  assert np.array_equal(scans[:, inside], loops[:, inside])
  # The compiled XYB canvas (djpeg.error_maps) equals the jitted one, bit for bit, on 8-bit
  # inputs as the encoder scores them.
  pixels = rng.integers(0, 256, (1, height, width, 3)).astype(np.float32) * np.float32(1 / 255)
  xla = np.asarray(jax.jit(s2._xyb_canvas)(jnp.asarray(pixels))[0])
  assert np.array_equal(xla[:, :, inside], s2._xyb_canvas_compiled(pixels)[:, :, inside])
  eight_bit = np.rint(pixels * 255).astype(np.uint8)               # through the table
  assert np.array_equal(xla[:, :, inside], s2._xyb_canvas_compiled(eight_bit)[:, :, inside])


def test_prepared_reference_under_jit_takes_the_scans():
  from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
  rng = np.random.default_rng(0)
  ref = rng.random((24, 40, 3), dtype=np.float32)
  dist = np.clip(ref + rng.normal(0, 0.05, ref.shape).astype(np.float32), 0, 1)
  prepared = ssimulacra2_reference(ref)
  eager = float(ssimulacra2_against(prepared, dist))
  traced = float(jax.jit(lambda d: ssimulacra2_against(prepared, d))(dist))
  assert traced == float(ssimulacra2(ref, dist))      # the scans and XLA's pooling, exactly
  assert abs(eager - traced) <= 1e-4   # the compiled loops, double sums


def test_compiled_scoring_matches_the_reference_program_closely():
  # The compiled path (blur and error maps as numba loops, the reference's double sums) on
  # every fixture pair of at least 8x8: within 2e-5 points of Cloudinary's program (measured
  # 3.8e-6; the XLA path's worst is 1.5e-5), far inside the 0.1 the metric is held to.
  from djpeg.metrics import ssimulacra2_against, ssimulacra2_reference
  checked = 0
  for pair in PAIRS:
    ref8, dist8 = (a if a.ndim == 3 else a[..., None] for a in _pair_images(pair))
    ref, dist = _to_float(ref8), _to_float(dist8)
    if min(ref.shape[:2]) < 8:
      continue
    got = float(ssimulacra2_against(ssimulacra2_reference(ref), dist))
    assert abs(got - pair["score"]) <= 2e-5, (pair["id"], got, pair["score"])
    # 8-bit arrays as given (linear light from a table): the same score, exactly.
    assert float(ssimulacra2_against(ssimulacra2_reference(ref8), dist8)) == got, pair["id"]
    checked += 1
  assert checked >= 48
  # uint8 on the XLA path: converted as the reference reads 8-bit files, the same scores.
  assert float(ssimulacra2(ref8, dist8)) == float(ssimulacra2(ref, dist))
