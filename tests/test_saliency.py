"""The learned saliency network: valid maps for any image, what it learned, training, "auto"."""

import dataclasses
import io
import os

import numpy as np
import pytest
import simplejpeg
from flax import nnx
from PIL import Image

import djpeg
from djpeg import roi
from djpeg.encoder import compress
from djpeg.models import params, saliency
from djpeg.train import saliency as train_saliency
from tests.test_tables_training import losses, make_folder


@pytest.fixture
def no_installed_model(monkeypatch):
  """As on a machine where only the `djpeg` package is installed: no saliency entry point."""
  monkeypatch.setattr(roi, "entry_points", lambda **kw: [])


@pytest.mark.parametrize("shape", [(1, 1, 3), (13, 29, 3), (40, 17, 1), (64, 64, 3)])
def test_maps_are_valid_for_any_image(shape):
  rng = np.random.default_rng(0)
  image = rng.random(shape, dtype=np.float32)
  sal = saliency.predict_saliency(image)
  assert sal.shape == shape[:2] and sal.dtype == np.float32
  assert np.all(np.isfinite(sal)) and sal.min() >= 0 and sal.max() <= 1
  # One value per 8x8 block of the image.
  blocks = np.pad(sal, ((0, -shape[0] % 8), (0, -shape[1] % 8)), mode="edge")
  tiles = blocks.reshape(blocks.shape[0] // 8, 8, blocks.shape[1] // 8, 8)
  assert np.all(tiles.max(axis=(1, 3)) == tiles.min(axis=(1, 3)))
  # uint8 input gives the same map as its float equivalent.
  pixels = (image * 255).round().astype(np.uint8)
  np.testing.assert_allclose(saliency.predict_saliency(pixels),
                             saliency.predict_saliency(pixels / np.float32(255)), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4, 2), np.float32), "C = 1 or 3"),
    (np.zeros((0, 4, 3), np.float32), "C = 1 or 3"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
])
def test_bad_images(bad, match):
  with pytest.raises(ValueError, match=match):
    saliency.predict_saliency(bad)


def test_the_network_favours_smooth_areas_over_texture():
  # MS-SSIM divides errors by local contrast, so at a rate the same error costs more where the
  # image is smooth: the trained map must rank a smooth gradient above noise-like texture.
  rng = np.random.default_rng(1)
  rows = np.linspace(0.2, 0.8, 128, dtype=np.float32)[:, None, None]
  image = np.broadcast_to(rows, (128, 128, 3)).copy()
  image[:, 64:] = np.clip(0.5 + 0.25 * rng.standard_normal((128, 64, 3)), 0, 1)
  sal = saliency.predict_saliency(image)
  assert sal[:, :56].mean() > 2 * sal[:, 72:].mean(), (sal[:, :56].mean(), sal[:, 72:].mean())


def _msssim_of(data, pixels):
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32) / 255
  return float(djpeg.metrics.ms_ssim(decoded, pixels.astype(np.float32) / 255))


@pytest.fixture(scope="module")
def houses_uniform():
  pixels = djpeg.samples.load("houses", uint8=True)
  return pixels, djpeg.dumps(compress(pixels, bpp=1.0, measure=False).coefficients)


@pytest.mark.parametrize("kind", ["auto", "ms-ssim"])
def test_maps_raise_msssim_at_the_same_rate(kind, houses_uniform):
  # The learned map and the measured one it learns from, through the real exporter; MS-SSIM of
  # Pillow's decode (libjpeg-turbo), at no more bytes than the uniform map's file.
  pixels, uniform = houses_uniform
  target = 1.0
  learned = compress(pixels, bpp=target, saliency=kind, measure=False)
  data = djpeg.dumps(learned.coefficients)
  simplejpeg.decode_jpeg(data, strict=True)
  assert learned.saliency.shape == pixels.shape[:2]
  assert len(data) <= len(uniform) * 1.01
  assert _msssim_of(data, pixels) > _msssim_of(uniform, pixels)


def test_auto_falls_back_to_a_clear_error_without_the_model(no_installed_model):
  pixels = djpeg.samples.load("limes", uint8=True)
  with pytest.raises(NotImplementedError, match="register_saliency"):
    roi.saliency_map("auto", pixels)
  with pytest.raises(NotImplementedError, match="pip install"):
    djpeg.dumps(pixels, saliency="auto")


def test_measured_map_for_any_image():
  # MS-SSIM's weights: valid for any size, uniform below its 11x11 window, higher on a smooth
  # ramp than in noise-like texture.
  rng = np.random.default_rng(1)
  image = np.broadcast_to(np.linspace(0.2, 0.8, 64, dtype=np.float32)[:, None, None],
                          (64, 64, 3)).copy()
  image[:, 32:] = np.clip(0.5 + 0.25 * rng.standard_normal((64, 32, 3)), 0, 1)
  sal = roi.saliency_map("ms-ssim", image)
  assert sal.shape == (64, 64) and sal.max() == 1.0 and sal.min() > 0
  assert np.median(sal[:, :24]) > 2 * np.median(sal[:, 40:])
  np.testing.assert_array_equal(roi.saliency_map("ms-ssim", image[:10, :30]), 1.0)
  odd = roi.saliency_map("ms-ssim", image[:37, :45])
  assert odd.shape == (37, 45) and np.all(np.isfinite(odd))
  gray = roi.saliency_map("ms-ssim", image[..., :1])
  assert gray.shape == (64, 64) and np.median(gray[:, :24]) > 2 * np.median(gray[:, 40:])


def test_background_follows_the_map():
  assert roi.default_background("auto") == saliency.BACKGROUND
  assert roi.default_background("ms-ssim") == roi.MSSSIM_BACKGROUND
  assert roi.default_background(np.ones((8, 8))) == roi.BACKGROUND


def test_training_target_is_the_metrics_own_weighting():
  # The regression target: MS-SSIM's per-block sensitivity at a JPEG operating point. Only
  # ratios between blocks matter to the exporter, so a prediction off by a constant scores
  # perfectly, and one that ranks blocks the other way scores worse than the uniform map.
  import jax.numpy as jnp
  images = jnp.asarray(djpeg.samples.load("castle", uint8=True)[:64, :64][None] / 255.0,
                       jnp.float32)
  target = train_saliency.target_log_map(images, jnp.array([50.0]))
  assert target.shape == (1, 8, 8) and float(target.max()) == 0.0
  assert float(jnp.std(target[:, 1:-1, 1:-1])) > 0.1
  mse, corr = train_saliency.map_losses(target + 3.0, target)
  np.testing.assert_allclose(mse, 0.0, atol=1e-10)
  np.testing.assert_allclose(corr, 1.0, rtol=1e-5)
  uniform = train_saliency.map_losses(jnp.zeros_like(target), target)[0]
  reversed_ = train_saliency.map_losses(-target, target)[0]
  assert float(reversed_[0]) > float(uniform[0]) > 0


def test_a_few_steps_train_resume_and_export(tmp_path):
  folder = make_folder(tmp_path / "images")
  args = train_saliency.Config(data=folder, out=str(tmp_path / "run"), steps=4, batch=2, crop=48,
                               learning_rate=3e-3, width=12, seed=0, eval_every=2,
                               checkpoint_every=2, log_every=1, val_images=2)
  train_saliency.run(args)
  assert len(losses(args.out)) == 4
  net = params.load_params(saliency.SaliencyNet(width=12, rngs=nnx.Rngs(1)),
                           os.path.join(args.out, "saliency_net.npz"))
  assert np.all(np.isfinite(net.head.kernel[...]))
  # A rerun of a finished run resumes at its end and trains nothing more.
  train_saliency.run(args)
  assert len(losses(args.out)) == 4
  with pytest.raises(ValueError, match="at least 32"):
    train_saliency.run(dataclasses.replace(args, crop=16))
