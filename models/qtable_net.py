"""QTableNet: a Flax NNX network that predicts per-image JPEG quantization tables.

Input is what the tables act on: the image's DCT coefficients (`djpeg.transform`, exact to
libjpeg), plus a rate knob, the log of the Lagrange multiplier lambda of "bits per pixel + lambda
* MSE" (8-bit RGB MSE). Two small convolutional branches read the block-DCT magnitude maps of luma
and of chroma (one 8x8 block = one pixel with 64 channels), a third branch reads per-frequency
magnitude statistics, and a head maps their pooled features and the knob to 3 x 64 log-steps.
Steps are squashed into (1, 255) in the log domain, so any input (black, white, noise, 1x1
images) gives finite, valid baseline tables; rounding happens in `djpeg.encode`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from djpeg.tables import ANNEX_K

#: log(lambda) is centred and scaled by these before entering the network.
LOG_LAMBDA_CENTRE = float(np.log(0.01))
LOG_LAMBDA_SCALE = 2.0
_LOG_255 = float(np.log(255.0))


def _magnitudes(blocks: jax.Array) -> jax.Array:
  """`(B, rows, cols, 8, 8)` coefficients -> `(B, rows, cols, 64)` log-magnitudes in about [0, 1]."""
  b, rows, cols = blocks.shape[:3]
  return jnp.log1p(jnp.abs(blocks.reshape(b, rows, cols, 64))) / np.log1p(1024.0)


class _Branch(nnx.Module):
  """Two 3x3 convolutions over a block-DCT map, then global average and max pooling."""

  def __init__(self, channels_in: int, width: int, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels_in, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.gelu(self.conv1(x))
    x = nnx.gelu(self.conv2(x))
    return jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)


class QTableNet(nnx.Module):
  """(DCT coefficients, log lambda) -> `(B, 3, 8, 8)` quantization steps in (1, 255).

  Args:
    width: channels of the convolutional branches and of the head.
    rngs: `nnx.Rngs` for initialization.
  """

  def __init__(self, *, width: int = 48, rngs: nnx.Rngs):
    self.luma = _Branch(64, width, rngs)
    self.chroma = _Branch(128, width, rngs)
    self.stats = nnx.Linear(3 * 64, width, rngs=rngs)
    self.knob = nnx.Linear(1, width, rngs=rngs)
    self.hidden = nnx.Linear(6 * width, 2 * width, rngs=rngs)
    self.out = nnx.Linear(2 * width, 3 * 64, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
    # Start from Annex K at quality 50: sigmoid(bias) * log 255 = log(table).
    start = np.log(np.asarray(ANNEX_K)[[0, 1, 1]].reshape(-1)) / _LOG_255
    self.bias = nnx.Param(jnp.asarray(np.log(start / (1 - start)), jnp.float32))

  def __call__(self, dct: tuple[jax.Array, ...], log_lambda: jax.Array) -> jax.Array:
    """
    Args:
      dct: per component `(B, rows_c, cols_c, 8, 8)` DCT coefficients (`djpeg.transform` of a
        batch; 3 components for colour, 1 for gray). The chroma components must share a grid.
      log_lambda: `(B,)` natural log of lambda (bits per pixel per unit of 8-bit RGB MSE).
    Returns:
      `(B, 3, 8, 8)` steps (Y, Cb, Cr) in (1, 255); for gray input use the first.
    """
    y = _magnitudes(dct[0])
    b = y.shape[0]
    if len(dct) == 3:
      chroma = jnp.concatenate([_magnitudes(dct[1]), _magnitudes(dct[2])], axis=-1)
    else:
      chroma = jnp.zeros(y.shape[:3] + (128,), y.dtype)
    stats = jnp.concatenate([y.mean(axis=(1, 2)), chroma.mean(axis=(1, 2))], axis=-1)
    knob = ((jnp.reshape(log_lambda, (b, 1)) - LOG_LAMBDA_CENTRE) / LOG_LAMBDA_SCALE)
    features = jnp.concatenate([self.luma(y), self.chroma(chroma), nnx.gelu(self.stats(stats)),
                                nnx.gelu(self.knob(knob))], axis=-1)
    z = self.out(nnx.gelu(self.hidden(features))) + self.bias[...]
    return jnp.exp(_LOG_255 * jax.nn.sigmoid(z)).reshape(b, 3, 8, 8)
