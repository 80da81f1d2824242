"""The rate proxy against libjpeg-turbo's optimizing encoder, and the sense of its gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import djpeg
from djpeg import huffman, rate
from conftest import PIL_SUBSAMPLING, huffman_tables, pillow_encode, scan_bits


def libjpeg_bits(pixels, **options):
  return scan_bits(pillow_encode(pixels, optimize=True, **options))


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_rate_matches_libjpeg_optimized_scan_bits(colour_batch, subsampling):
  images = colour_batch.astype(np.float32) / 255
  for quality in (5, 20, 50, 80, 95):
    bits = rate.rate(djpeg.encode(images, quality=quality, subsampling=subsampling))
    for pixels, ours in zip(colour_batch, np.asarray(bits)):
      theirs = libjpeg_bits(pixels, quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
      # Within the final byte's padding (< 8 bits) and rounding: the model is exact.
      assert abs(ours - theirs) < 8, (quality, ours, theirs)


@pytest.mark.parametrize("height, width", [(37, 53), (9, 120), (75, 97)])
def test_rate_with_partial_mcus_and_gray(colour_batch, gray_sample, height, width):
  """Odd sizes exercise libjpeg's padding blocks (their DC copies and EOBs)."""
  for pixels in (colour_batch[2, :height, :width], gray_sample[:height, :width]):
    for quality in (10, 75):
      c = djpeg.encode(pixels.astype(np.float32) / 255, quality=quality)
      assert abs(float(rate.rate(c)) - libjpeg_bits(pixels, quality=quality)) < 8


def test_huffman_code_lengths_equal_libjpeg_tables(colour_batch):
  """The lengths libjpeg puts in the DHT segments of an optimized file, from the same counts."""
  pixels = colour_batch[0]
  c = djpeg.encode(pixels.astype(np.float32) / 255, quality=30, subsampling="4:4:4")
  tables = huffman_tables(pillow_encode(pixels, quality=30, subsampling=0, optimize=True))
  counts = rate.symbol_counts(c)       # {(class, id): (256,) counts}
  for key, theirs in tables.items():
    np.testing.assert_array_equal(huffman.code_lengths(counts[key]), theirs, err_msg=str(key))


def test_huffman_code_lengths_are_limited_to_16_bits():
  fibonacci = [1, 1]
  while len(fibonacci) < 40:
    fibonacci.append(fibonacci[-1] + fibonacci[-2])
  counts = np.zeros(256, np.int32)
  counts[:40] = fibonacci
  lengths = np.asarray(huffman.code_lengths(counts))
  assert lengths.max() == 16 and np.all(lengths[:40] > 0) and np.all(lengths[40:] == 0)
  assert np.sum(2.0 ** -lengths[:40]) < 1.0, "Kraft: one code point stays reserved"


def test_entropy_code_and_ablation_proxies_are_rough(colour_batch):
  c = djpeg.encode(colour_batch.astype(np.float32) / 255, quality=50)
  exact = np.asarray(rate.rate(c))
  for estimate in (rate.rate(c, code="entropy"), rate.rate_nonzeros(c), rate.rate_log(c)):
    estimate = np.asarray(estimate)
    assert np.all(np.isfinite(estimate)) and np.all(estimate > 0)
    assert np.all(np.abs(estimate / exact - 1) < 0.5)


def test_lowering_a_table_entry_raises_the_rate(colour_batch):
  image = colour_batch[1].astype(np.float32) / 255
  tables = np.asarray(djpeg.quality_tables(40))
  bits = lambda t: float(rate.rate(djpeg.encode(image, tables=t)))
  base = bits(tables)
  grad = np.asarray(jax.grad(lambda t: rate.rate(djpeg.encode(image, tables=t)))(jnp.asarray(tables)))
  agree = 0
  for table, u, v in [(0, 0, 1), (0, 1, 0), (0, 2, 2), (1, 0, 1), (0, 1, 1), (1, 1, 0)]:
    lower = tables.copy()
    lower[table, u, v] = np.floor(lower[table, u, v] / 2)
    higher = tables.copy()
    higher[table, u, v] = lower[table, u, v] * 4
    assert bits(lower) > base, (table, u, v)
    # Finite difference over a coarse change against the gradient's sign.
    agree += np.sign(bits(higher) - bits(lower)) == np.sign(grad[table, u, v])
  assert agree == 6


def test_rate_gradient_reaches_image_and_quality(colour_batch):
  image = jnp.asarray(colour_batch[0, :32, :48], jnp.float32) / 255
  gx, gq = jax.grad(lambda x, q: jnp.sum(rate.rate(djpeg.encode(x, quality=q))),
                    argnums=(0, 1))(image, 50.0)
  assert np.all(np.isfinite(gx)) and np.any(gx != 0)
  assert gq > 0, "higher quality, more bits"


def test_unknown_code_is_refused(colour_batch):
  with pytest.raises(ValueError, match="unknown code 'arith'"):
    rate.rate(djpeg.encode(colour_batch[0, :8, :8].astype(np.float32) / 255), code="arith")


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_rate_and_file_size_with_random_tables(colour_batch, subsampling):
  """Against djpeg's own writer, whose files equal libjpeg-turbo's (tests/test_exact_*)."""
  from conftest import scan_bits
  rng = np.random.default_rng(7)
  images = colour_batch.astype(np.float32) / 255
  for _ in range(3):
    tables = rng.integers(1, 256, (3, 3, 8, 8)).astype(np.float32)   # per image, per component
    c = djpeg.encode(images, tables=tables, subsampling=subsampling)
    bits, sizes = np.asarray(rate.rate(c)), np.asarray(rate.file_bytes(c))
    for i, data in enumerate(djpeg.dumps(c)):
      assert abs(bits[i] - scan_bits(data)) < 8
      assert abs(sizes[i] / len(data) - 1) < 0.01
