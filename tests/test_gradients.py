"""Gradients: finite everywhere, non-zero under every surrogate, correct on the smooth stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import djpeg
from djpeg import color, dct, rounding, sampling


@pytest.fixture(scope="module")
def image(colour_batch):
  return jnp.asarray(colour_batch[0, :24, :40], jnp.float32) / 255


def distortion(image, **kwargs):
  return jnp.mean((djpeg.jpeg(image, **kwargs) - jax.lax.stop_gradient(image)) ** 2)


@jax.jit
def grads_over_quality(image, qualities):
  return jax.vmap(jax.grad(lambda x, q: distortion(x, quality=q), argnums=(0, 1)),
                  in_axes=(None, 0))(image, qualities)


def test_gradients_finite_for_every_quality(image):
  gx, gq = grads_over_quality(image, jnp.arange(1.0, 101.0))
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gq))
  assert np.all(np.abs(np.asarray(gq)) > 0), "every quality must have a gradient"


def test_gradients_finite_for_extreme_tables(image):
  rng = np.random.default_rng(0)
  for tables in (np.ones((3, 8, 8)), np.full((3, 8, 8), 255.0),
                 rng.integers(1, 256, (3, 8, 8)).astype(np.float32)):
    g = jax.grad(lambda t: distortion(image, tables=t))(jnp.asarray(tables, jnp.float32))
    assert np.all(np.isfinite(g))
    assert np.any(g != 0)


@pytest.mark.parametrize("rounding_name", djpeg.ROUNDINGS)
@pytest.mark.parametrize("faithful", [True, False])
def test_gradients_reach_image_quality_and_tables(image, rounding_name, faithful):
  key = jax.random.key(0)

  def loss(x, q, scale):
    tables = djpeg.quality_tables(q) * scale
    return distortion(x, tables=tables, rounding=rounding_name, faithful=faithful, key=key)

  gx, gq, gt = jax.grad(loss, argnums=(0, 1, 2))(image, 40.0, jnp.ones((2, 8, 8)))
  for name, g in (("image", gx), ("quality", gq), ("tables", gt)):
    assert np.all(np.isfinite(g)), name
    assert np.any(np.asarray(g) != 0), f"zero gradient with respect to the {name}"
  if rounding_name == "ste":
    # Coarser quantization gives a worse reconstruction: the loss falls as quality rises. (The
    # cubic surrogates bias the step-size gradient and do not guarantee this sign.)
    assert gq < 0


@pytest.mark.parametrize("name", ["ste", "ste_cubic", "cubic", "noise"])
def test_surrogate_values_and_derivatives(name):
  x = jnp.array([-2.7, -0.5, -0.2, 0.0, 0.25, 0.5, 1.5, 3.49])
  key = jax.random.key(3)
  f = rounding.quantizer(name)
  out = f(x, key)
  grad = jax.vmap(jax.grad(lambda v: f(v, key)))(x)
  r = np.sign(x) * np.floor(np.abs(x) + 0.5)      # half away from zero, as libjpeg rounds
  if name in ("ste", "ste_cubic"):
    np.testing.assert_array_equal(out, r)
  if name == "cubic":
    np.testing.assert_allclose(out, r + (x - r) ** 3, rtol=1e-6)
  if name == "noise":
    assert np.all(np.abs(out - x) <= 0.5)
  expected = np.ones_like(x) if name in ("ste", "noise") else 3 * (x - r) ** 2
  np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_libjpeg_rounds_half_away_from_zero():
  # A coefficient of exactly 1.5 steps: libjpeg gives 2, numpy's round-half-even also 2, but
  # 2.5 steps gives 3 in libjpeg and 2 in numpy.
  q = djpeg.quantization.quantize(jnp.array([1.5, 2.5, -2.5, -0.5]) * 7, jnp.float32(7))
  np.testing.assert_array_equal(q, [2, 3, -3, -1])


# --- the smooth stages: JAX's numerical gradient check on the float implementations -----------

def rand(shape, lo=0.0, hi=255.0, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(lo, hi, shape), jnp.float32)


SMOOTH_STAGES = {
    "rgb_to_ycbcr": (lambda x: color.rgb_to_ycbcr(x, exact=False), (4, 5, 3)),
    "ycbcr_to_rgb": (lambda x: color.ycbcr_to_rgb(x, exact=False), (4, 5, 3)),
    "fdct": (dct.fdct, (2, 8, 8)),
    "idct": (dct.idct, (2, 8, 8)),
    "downsample_2x2": (lambda x: sampling.downsample(x, 2, 2, exact=False), (6, 8)),
    "upsample_2x2": (lambda x: sampling.upsample(x, 2, 2, exact=False), (5, 6)),
    "upsample_2x1": (lambda x: sampling.upsample(x, 2, 1, exact=False), (5, 6)),
    "upsample_1x2": (lambda x: sampling.upsample(x, 1, 2, exact=False), (5, 6)),
}


@pytest.mark.parametrize("stage", sorted(SMOOTH_STAGES))
def test_check_grads_on_smooth_stages(stage):
  fn, shape = SMOOTH_STAGES[stage]
  # The stages are affine, so a large step is exact and keeps float32 round-off small.
  check_grads(fn, (rand(shape),), order=2, modes=("fwd", "rev"), eps=1.0, atol=1e-2, rtol=1e-3)


def test_check_grads_through_the_float_codec(image):
  """The whole float pipeline with the smooth (cubic) rounding, away from rounding ties."""
  def fn(x):
    return djpeg.jpeg(x, quality=50.0, rounding="cubic", faithful=False, subsampling="4:4:4")
  x = image[:8, :8] * 0.5 + 0.25   # stay away from the clip at 0 and 1
  check_grads(fn, (x,), order=1, modes=("rev",), eps=1e-4, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("exact_fn, float_fn, shape, unit", [
    (lambda x: color.rgb_to_ycbcr(x), lambda x: color.rgb_to_ycbcr(x, exact=False), (3, 4, 3), 1),
    (lambda x: color.ycbcr_to_rgb(x), lambda x: color.ycbcr_to_rgb(x, exact=False), (3, 4, 3), 1),
    (dct.fdct_islow, lambda x: dct.fdct(x - 128.0), (2, 8, 8), 8),   # libjpeg's output / 8
    (dct.idct_islow, lambda x: dct.idct(x) + 128.0, (2, 8, 8), 1),
    (lambda x: sampling.downsample(x, 2, 2), lambda x: sampling.downsample(x, 2, 2, exact=False),
     (4, 6), 1),
    (lambda x: sampling.upsample(x, 2, 2), lambda x: sampling.upsample(x, 2, 2, exact=False),
     (4, 6), 1),
])
def test_exact_stages_take_the_float_stage_gradient(exact_fn, float_fn, shape, unit):
  x = jnp.round(rand(shape, seed=2))
  t = rand(shape, -1, 1, seed=3)
  _, jvp_exact = jax.jvp(exact_fn, (x,), (t,))
  _, jvp_float = jax.jvp(float_fn, (x,), (t,))
  np.testing.assert_allclose(jvp_exact, jvp_float, rtol=1e-5, atol=1e-4)
  # while the forward value is libjpeg's integer arithmetic
  out = np.asarray(exact_fn(x)) * unit
  np.testing.assert_array_equal(out, np.round(out))
  assert np.any(np.asarray(exact_fn(x)) != np.asarray(float_fn(x)))
