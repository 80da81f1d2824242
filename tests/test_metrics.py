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


@pytest.mark.parametrize("fn", [metrics.mse, metrics.psnr, metrics.ssim, metrics.ms_ssim])
def test_bad_pairs_are_refused(fn, pair):
  a, b = pair
  a8, b8 = (np.round(x * 255).astype(np.uint8) for x in (a, b))
  if fn is not metrics.mse:                      # mse has no scale to check against
    with pytest.raises(ValueError, match="look like 0..255"):
      fn(a8, b8)                                 # 8-bit data on the default scale of 1
  with pytest.raises(ValueError, match="one size and channel count"):
    fn(a, b[..., :1])                            # no broadcasting of channels
  with pytest.raises(ValueError, match="one size and channel count"):
    fn(a[..., 0], b[..., 0])
  # Batch axes broadcast: several candidates against one reference.
  np.testing.assert_allclose(fn(np.stack([b, a]), a), [fn(b, a), fn(a, a)], rtol=1e-6)
  nan = b.copy()
  nan[3, 4, 1] = np.nan
  with pytest.raises(ValueError, match=r"must be finite; entry \(3, 4, 1\)"):
    fn(a, nan)
  if fn is not metrics.mse:                      # 8-bit samples with their own peak
    np.testing.assert_allclose(fn(a8.astype(np.float32), b8.astype(np.float32), peak=255),
                               fn(a8 / np.float32(255), b8 / np.float32(255)), rtol=1e-4)


@pytest.mark.parametrize("scales", [-1, 0, 6, 2.5, True])
def test_ms_ssim_scales_are_checked(scales, pair):
  with pytest.raises(ValueError, match="scales must be an integer in 1..5"):
    metrics.ms_ssim(*pair, scales=scales)


def test_ms_ssim_sensitivity_matches_the_metric():
  # Half smooth ramp, half texture, with noise as the error: scaling one block's error by
  # (1 +- d) must change 1 - MS-SSIM by about +-2 d w_b |e_b|^2 (the metric itself, no gradient),
  # and errors weigh more where the image is smooth (MS-SSIM divides by local contrast).
  rng = np.random.default_rng(0)
  ramp = np.broadcast_to(np.linspace(0.2, 0.8, 64, dtype=np.float32)[:, None, None], (64, 64, 3))
  image = ramp.copy()
  image[:, 32:] = np.clip(0.5 + 0.2 * rng.standard_normal((64, 32, 3)), 0, 1)
  ref = jnp.asarray(image[None])
  dist = ref + 0.03 * jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
  w = np.asarray(metrics.ms_ssim_sensitivity(ref, dist, smoothing=0.0, floor=1e-9))[0]
  assert w.shape == (8, 8) and w.max() == pytest.approx(1.0)
  assert np.median(w[:, :4]) > 4 * np.median(w[:, 4:])
  e = np.asarray(dist - ref)[0]
  d = 0.1

  def change(r, c):
    up, down = np.asarray(dist)[0].copy(), np.asarray(dist)[0].copy()
    up[8 * r:8 * r + 8, 8 * c:8 * c + 8] += d * e[8 * r:8 * r + 8, 8 * c:8 * c + 8]
    down[8 * r:8 * r + 8, 8 * c:8 * c + 8] -= d * e[8 * r:8 * r + 8, 8 * c:8 * c + 8]
    return (float(metrics.ms_ssim(ref[0], jnp.asarray(down)))
            - float(metrics.ms_ssim(ref[0], jnp.asarray(up)))) / 2

  energy = (e ** 2).reshape(8, 8, 8, 8, 3).sum(axis=(1, 3, 4))
  blocks = [(3, 1), (4, 2), (3, 5), (4, 6)]
  measured = np.array([change(r, c) / (2 * d * energy[r, c]) for r, c in blocks])
  predicted = np.array([w[r, c] for r, c in blocks])
  np.testing.assert_allclose(measured / measured[0], predicted / predicted[0], rtol=0.05)


def test_ms_ssim_sensitivity_edge_cases():
  ref = jnp.full((2, 16, 24, 3), 0.5)
  np.testing.assert_array_equal(metrics.ms_ssim_sensitivity(ref, ref), 1.0)
  with pytest.raises(ValueError, match="one shape"):
    metrics.ms_ssim_sensitivity(ref, ref[:, :8])
