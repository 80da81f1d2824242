"""quality_tables against the tables libjpeg-turbo writes, and its straight-through gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import djpeg
from conftest import pillow_encode, read_dct


def test_quality_tables_equal_libjpeg_for_every_quality():
  qualities = np.arange(1, 101, dtype=np.float32)
  ours = np.asarray(jax.jit(djpeg.quality_tables)(qualities))   # traced, as in training
  eager = np.asarray(djpeg.quality_tables(qualities))
  pixels = np.zeros((8, 8, 3), np.uint8)
  for q in range(1, 101):
    _, (luma, chroma, _) = read_dct(pillow_encode(pixels, quality=q))
    np.testing.assert_array_equal(ours[q - 1, 0], luma, err_msg=f"luma table, quality {q}")
    np.testing.assert_array_equal(ours[q - 1, 1], chroma, err_msg=f"chroma table, quality {q}")
  np.testing.assert_array_equal(ours, eager)


def test_quality_50_is_identity_and_custom_base_is_scaled_like_libjpeg():
  base = np.arange(1, 65, dtype=np.float32).reshape(8, 8) * 3
  np.testing.assert_array_equal(djpeg.quality_tables(50, base), base)
  # libjpeg: floor((base * (5000 / 20) + 50) / 100), then clip to 1..255.
  expected = np.clip(np.floor((base * 250 + 50) / 100), 1, 255)
  np.testing.assert_array_equal(djpeg.quality_tables(20, base), expected)
  assert np.all(np.asarray(djpeg.quality_tables(100)) == 1)
  assert np.all(np.asarray(djpeg.quality_tables(1)) == 255)


def test_quality_tables_shapes():
  assert djpeg.quality_tables(75).shape == (2, 8, 8)
  assert djpeg.quality_tables(jnp.array([10.0, 90.0])).shape == (2, 2, 8, 8)
  assert djpeg.quality_tables(75, np.ones((8, 8)) * 16).shape == (8, 8)
  assert djpeg.quality_tables(75, np.ones((3, 8, 8)) * 16).shape == (3, 8, 8)


def test_quality_gradient_is_straight_through_and_finite_everywhere():
  grad = jax.vmap(jax.grad(lambda q: jnp.sum(djpeg.quality_tables(q))))(
      jnp.arange(1.0, 101.0))
  assert np.all(np.isfinite(grad))
  assert np.all(np.asarray(grad) < 0), "higher quality must lower every step"
  # Between 50 and 100 the scale is 200 - 2q: d table / dq = -2 base / 100 for each entry,
  # also where the clip to 1 is active (straight-through).
  np.testing.assert_allclose(grad[74], -2 * djpeg.ANNEX_K.sum() / 100, rtol=1e-6)
  np.testing.assert_allclose(grad[99], -2 * djpeg.ANNEX_K.sum() / 100, rtol=1e-6)


def test_zigzag_is_the_jpeg_scan_order():
  assert list(djpeg.ZIGZAG[:10]) == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
  assert sorted(djpeg.ZIGZAG) == list(range(64)) and djpeg.ZIGZAG[-1] == 63


@pytest.mark.parametrize("quality, match", [(0, r"quality.*\[1, 100\]"), (101, r"\[1, 100\]"),
                                            (float("nan"), "finite"), (float("inf"), "finite")])
def test_bad_quality_is_refused(quality, match):
  with pytest.raises(ValueError, match=match):
    djpeg.quality_tables(quality)


def test_bad_base_is_refused():
  with pytest.raises(ValueError, match="shape"):
    djpeg.quality_tables(50, np.ones((4, 4)))
  with pytest.raises(ValueError, match=r"base table.*entry \(0, 3\)"):
    djpeg.quality_tables(50, np.where(np.arange(64).reshape(8, 8) == 3, 0, 16))


def test_concrete_quality_tables_equal_the_jitted_arithmetic():
  # The exporter's numpy tables (no XLA program) against `quality_tables` compiled by XLA:
  # every integer quality on the Annex K tables (libjpeg's own), and fractional qualities on
  # the perceptual mode's base tables, where float32 rounding decides boundary entries.
  from djpeg import perceptual
  from djpeg.tables import concrete_quality_tables
  jitted = jax.jit(djpeg.quality_tables)
  for q in range(1, 101):
    np.testing.assert_array_equal(concrete_quality_tables(q), np.asarray(jitted(np.float32(q))))
  base = np.asarray(perceptual.PERCEPTUAL_TABLES, np.float32)
  for q in np.random.default_rng(0).uniform(1, 100, 300).astype(np.float32):
    np.testing.assert_array_equal(concrete_quality_tables(float(q), base),
                                  np.asarray(jitted(q, base)), err_msg=str(q))
  with pytest.raises(ValueError, match="quality"):
    concrete_quality_tables(0.5)
