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

import djpeg
from djpeg import sampling
from djpeg.checks import is_concrete
from djpeg.distortion import coefficient_mse, decoded_mse, rate_distortion, rgb_mse_weights
from djpeg.quantization import quantize_with_tables
from djpeg.models.params import load_packaged
from djpeg.tables import ANNEX_K, quality_tables

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

  def features(self, dct: tuple[jax.Array, ...]) -> jax.Array:
    """The image part: per component `(B, rows_c, cols_c, 8, 8)` -> `(B, 5 * width)` features."""
    y = _magnitudes(dct[0])
    if len(dct) == 3:
      chroma = jnp.concatenate([_magnitudes(dct[1]), _magnitudes(dct[2])], axis=-1)
    else:
      chroma = jnp.zeros(y.shape[:3] + (128,), y.dtype)
    stats = jnp.concatenate([y.mean(axis=(1, 2)), chroma.mean(axis=(1, 2))], axis=-1)
    return jnp.concatenate([self.luma(y), self.chroma(chroma), nnx.gelu(self.stats(stats))],
                           axis=-1)

  def head(self, features: jax.Array, log_lambda: jax.Array) -> jax.Array:
    """Features `(B, F)` and `(B,)` log lambda -> `(B, 3, 8, 8)` steps in (1, 255)."""
    b = features.shape[0]
    knob = (jnp.reshape(log_lambda, (b, 1)) - LOG_LAMBDA_CENTRE) / LOG_LAMBDA_SCALE
    hidden = self.hidden(jnp.concatenate([features, nnx.gelu(self.knob(knob))], axis=-1))
    z = self.out(nnx.gelu(hidden)) + self.bias[...]
    return jnp.exp(_LOG_255 * jax.nn.sigmoid(z)).reshape(b, 3, 8, 8)

  def __call__(self, dct: tuple[jax.Array, ...], log_lambda: jax.Array) -> jax.Array:
    """
    Args:
      dct: per component `(B, rows_c, cols_c, 8, 8)` DCT coefficients (`djpeg.transform` of a
        batch; 3 components for colour, 1 for gray). The chroma components must share a grid.
      log_lambda: `(B,)` natural log of lambda (bits per pixel per unit of 8-bit RGB MSE).
    Returns:
      `(B, 3, 8, 8)` steps (Y, Cb, Cr) in (1, 255); for gray input use the first.
    """
    _check_call(dct, log_lambda)
    return self.head(self.features(dct), log_lambda)


def _check_call(dct, log_lambda) -> None:
  """ValueError naming what is wrong with `QTableNet`'s arguments (shapes only)."""
  if not isinstance(dct, (tuple, list)) or len(dct) not in (1, 3):
    raise ValueError("QTableNet takes the DCT as a tuple of 1 or 3 components, each "
                     "(B, rows, cols, 8, 8) (djpeg.transform of a batch).")
  for i, d in enumerate(dct):
    if np.ndim(d) != 5 or tuple(np.shape(d)[-2:]) != (8, 8):
      raise ValueError(f"QTableNet: component {i} has shape {tuple(np.shape(d))}; it must be "
                       "(B, rows, cols, 8, 8) (one image? add a batch axis: x[None]).")
  b = np.shape(dct[0])[0]
  if any(np.shape(d)[0] != b for d in dct) or np.shape(log_lambda) != (b,):
    raise ValueError(f"QTableNet: log_lambda has shape {tuple(np.shape(log_lambda))}; it must "
                     f"be ({b},), one per image of the batch of {b}.")


class TableFamily(nnx.Module):
  """One learned set of Y, Cb, Cr tables per rate level: `(levels,) -> (B, 3, 8, 8)`.

  The dataset-level counterpart of `QTableNet`: no image input, just a table per level, trained
  over a dataset (`train/tables.py`) and saved as a table family file (`djpeg.tables`).

  Args:
    lambdas: `(K,)` the Lagrange multiplier of each level, ascending.
    start_qualities: `(K,)` Annex K qualities the levels start from.
  """

  def __init__(self, lambdas, start_qualities, *, rngs: nnx.Rngs | None = None):
    if np.ndim(lambdas) != 1 or np.shape(lambdas) != np.shape(start_qualities):
      raise ValueError(f"TableFamily takes one start quality per lambda; got shapes "
                       f"{np.shape(lambdas)} and {np.shape(start_qualities)}.")
    self.lambdas = nnx.Variable(jnp.asarray(lambdas, jnp.float32))
    with jax.ensure_compile_time_eval():   # constants, also when built inside a trace
      start = np.asarray(quality_tables(np.asarray(start_qualities, np.float32),
                                        np.asarray(ANNEX_K)[[0, 1, 1]]))
    fraction = np.clip(np.log(start) / _LOG_255, 1e-3, 1 - 1e-3)
    self.logits = nnx.Param(jnp.asarray(np.log(fraction / (1 - fraction)), jnp.float32))

  def __call__(self, levels: jax.Array) -> jax.Array:
    """`(B,)` int level indices (0-based) -> `(B, 3, 8, 8)` steps in (1, 255)."""
    count = self.logits.shape[0]
    if is_concrete(levels):
      lv = np.asarray(levels)
      if lv.size and (lv.min() < 0 or lv.max() >= count):
        # JAX would clamp an index out of range to the last level without a word.
        raise ValueError(f"level indices must be in 0..{count - 1}; got {lv.min()}..{lv.max()}.")
    return jnp.exp(_LOG_255 * jax.nn.sigmoid(self.logits[...][levels]))


# ----------------------------------------------------------------- the shipped network

PRETRAINED = "qtable_net.npz"


def pretrained(width: int = 48) -> QTableNet:
  """The QTableNet shipped with the package (trained by `djpeg-train tables net`)."""
  return load_packaged(QTableNet(width=width, rngs=nnx.Rngs(0)), PRETRAINED,
                       "train one with `djpeg-train tables net` and copy its qtable_net.npz to "
                       "models/data/.")


# ------------------------------------------------------------------- inference helpers

#: Candidate lambdas tried when a bits-per-pixel or PSNR target is given instead of lambda.
CANDIDATE_LAMBDAS = np.geomspace(1e-4, 1.0, 12).astype(np.float32)


@nnx.jit
def _features(net: QTableNet, dct):
  return net.features(dct)


@nnx.jit(static_argnames=("factors", "height", "width", "with_rate"))
def _candidates(net: QTableNet, features, dct, log_lambdas, *, factors, height, width, with_rate):
  """Tables for each candidate lambda, their model MSE, and (with_rate) their file bpp (ideal
  code lengths: no Huffman construction per candidate)."""
  n = log_lambdas.shape[0]
  tables = net.head(jnp.broadcast_to(features, (n,) + features.shape[1:]), log_lambdas)
  rounded = jnp.clip(jnp.floor(tables + 0.5), 1, 255)
  image = tuple(d[0] for d in dct)

  def one(t):
    bpp, mse = rate_distortion(image, t, sampling=factors, height=height, width=width,
                               code="entropy")
    return (bpp if with_rate else jnp.float32(0.0)), mse

  if with_rate:
    bpp, mse = jax.vmap(one)(rounded)
  else:   # the MSE model alone is cheap: no symbol counting
    weights = rgb_mse_weights(factors, height * width)

    def mse_only(t):
      q, steps = quantize_with_tables(image, t)
      return coefficient_mse(image, q, steps, weights)

    mse, bpp = jax.vmap(mse_only)(rounded), jnp.zeros(n)
  return rounded, bpp, mse


_NET = {}


def predict_tables(image, *, lmbda: float | None = None, bpp: float | None = None,
                   psnr: float | None = None, subsampling: str = "4:2:0",
                   net: QTableNet | None = None) -> np.ndarray:
  """Per-image tables from QTableNet in one forward pass (a batch of candidates for targets).

  Args:
    image: `(H, W, 3)` float in [0, 1].
    lmbda: the trade-off (bits/pixel + lmbda * 8-bit RGB MSE); or
    bpp: bits per pixel of the file to stay within; or
    psnr: RGB PSNR in dB to reach. For bpp/psnr the network runs on 12 candidate lambdas at once
      and then on 6 more between the two that bracket the target; the smallest lambda meeting
      it wins (the network's tables get finer as lambda grows). Bits come from the exact file
      size model, PSNR from the DCT-domain MSE model calibrated on the image.
    subsampling: chroma subsampling to encode with.
    net: a QTableNet (default: the one shipped with the package).
  Returns:
    `(3, 8, 8)` int tables, 1..255, for `djpeg.encode(image, tables=..., subsampling=...)`.
  """
  targets = [t for t in (lmbda, bpp, psnr) if t is not None]
  if len(targets) != 1:
    raise ValueError("give exactly one of lmbda, bpp and psnr.")
  if not (np.isfinite(targets[0]) and targets[0] > 0):
    raise ValueError(f"the target must be a positive finite number; got {targets[0]!r}.")
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"predict_tables takes one RGB image (H, W, 3); got shape {image.shape}.")
  if net is None:
    net = _NET.setdefault("pretrained", pretrained())
  height, width = image.shape[:2]
  dct = djpeg.transform(image[None], subsampling=subsampling)
  factors = sampling.factors_for(subsampling, 3)
  features = _features(net, dct)
  evaluate = lambda lambdas, with_rate=bpp is not None: (np.asarray(v) for v in _candidates(
      net, features, dct, jnp.log(jnp.asarray(lambdas, jnp.float32)), factors=factors,
      height=height, width=width, with_rate=with_rate))
  if lmbda is not None:
    return next(evaluate(np.full(1, lmbda), False))[0].astype(np.int32)
  if psnr is not None:
    tables, _, mse = evaluate(CANDIDATE_LAMBDAS)
    # The DCT-domain MSE misses chroma subsampling and rounding: calibrate it once on the image.
    middle = len(tables) // 2
    c = djpeg.encode(image, tables=tables[middle], subsampling=subsampling)
    real = decoded_mse(image, c)
    limit = 255.0 ** 2 / 10 ** (psnr / 10) - (real - float(mse[middle]))
    meets = lambda _, mse: mse <= limit
  else:
    meets = lambda bpp_c, _: bpp_c <= bpp
    tables = None
  lambdas = CANDIDATE_LAMBDAS
  for _ in range(2):   # the grid, then 6 lambdas between the two around the target
    if tables is None:
      tables, bpp_c, mse = evaluate(lambdas)
    else:
      bpp_c = np.zeros(len(lambdas)) if bpp is None else bpp_c
    ok = meets(bpp_c, mse)
    if psnr is not None:   # smallest lambda (fewest bits) that reaches the PSNR
      index = int(np.argmax(ok)) if ok.any() else int(np.argmin(mse))
      low, high = lambdas[max(index - 1, 0)], lambdas[index]
    else:                  # largest lambda (best quality) that fits the budget
      index = int(np.flatnonzero(ok)[-1]) if ok.any() else int(np.argmin(bpp_c))
      low, high = lambdas[index], lambdas[min(index + 1, len(lambdas) - 1)]
    best, below = tables[index], tables[max(index - 1, 0)]
    lambdas, tables = np.geomspace(low, high, 6).astype(np.float32), None
  if bpp is not None:
    # Candidates were priced with ideal code lengths; check the pick with the exact file size.
    size = lambda t: 8 * float(djpeg.rate.file_bytes(djpeg.encode(image, tables=t,
                                                                  subsampling=subsampling)))
    if size(best) > bpp * height * width:
      best = below
  return best.astype(np.int32)
