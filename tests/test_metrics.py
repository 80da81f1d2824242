"""PSNR, SSIM and MS-SSIM: against scikit-image and numpy, and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from djpeg import metrics, samples


@pytest.fixture(scope="module")
def pair():
  a = samples.load("castle")
  rng = np.random.default_rng(0)
  b = np.clip(a + rng.normal(0, 0.04, a.shape), 0, 1).astype(np.float32)
  return a, b


def test_psnr_and_mse(pair):
  a, b = pair
  mse = np.mean((a.astype(np.float64) - b) ** 2)
  np.testing.assert_allclose(metrics.mse(a, b), mse, rtol=1e-5)
  np.testing.assert_allclose(metrics.psnr(a, b), 10 * np.log10(1 / mse), rtol=1e-5)
  assert np.isinf(metrics.psnr(a, a))


def test_ssim_equals_scikit_image(pair):
  a, b = pair
  reference = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=True, data_range=1.0)
  np.testing.assert_allclose(metrics.ssim(a, b), reference, rtol=1e-4)
  gray = structural_similarity(a[..., 0], b[..., 0], gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=True, data_range=1.0)
  np.testing.assert_allclose(metrics.ssim(a[..., :1], b[..., :1]), gray, rtol=1e-4)


def test_ms_ssim_properties(pair):
  a, b = pair
  assert float(metrics.ms_ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
  rng = np.random.default_rng(1)
  values = [float(metrics.ms_ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 1)))
            for s in (0.01, 0.03, 0.1)]
  assert values[0] > values[1] > values[2]
  np.testing.assert_allclose(metrics.ms_ssim(a, b, scales=1), metrics.ssim(a, b), rtol=1e-5)


def test_batches_and_gradients(pair):
  a, b = pair
  batch = jnp.stack([jnp.asarray(b), jnp.asarray(a)])
  assert metrics.ms_ssim(jnp.stack([a, a]), batch).shape == (2,)
  for fn in (metrics.psnr, metrics.ssim, metrics.ms_ssim):
    g = jax.grad(lambda x: jnp.sum(fn(x, a)))(jnp.asarray(b))
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_too_small_images_are_refused():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(np.zeros((8, 20, 3)), np.zeros((8, 20, 3)))
