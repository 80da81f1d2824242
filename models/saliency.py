"""SaliencyNet: a Flax NNX network that says, per 8x8 block, where a JPEG's bits are worth spending.

The map it predicts drives the exporter's trellis (`djpeg.encoder.compress(saliency=...)`): a
standard JPEG file has one table per component, and the per-block choice of which coefficients
to keep is the only place quality can vary. The network is trained end to end through the
differentiable codec, with each block's AC steps scaled by 1 / sqrt(weight) as a model of what
the trellis does with the map, and the rate proxy, to maximise MS-SSIM at a given rate
(`train/saliency.py`); it learns, for instance, that errors in smooth areas cost MS-SSIM more
than the same errors in texture.

Input is the image, padded to whole blocks; a strided convolutional trunk brings it to one
feature vector per 8x8 luma block, joined there by each block's log standard deviation (the
statistic MS-SSIM's contrast term normalizes by), then dilated convolutions give each block
context before a sigmoid head. `predict_saliency(image)` is the `saliency="auto"` model that
the `djpeg` package finds through the `djpeg.saliency_models` entry point.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

#: Weight of the least important pixels relative to the most important that the shipped network
#: was trained with (`djpeg.roi.pixel_weights`'s background): maps from this network are meant
#: to be used with it.
BACKGROUND = 0.001

PRETRAINED = "data/saliency_net.npz"

#: Exponent of the shipped map after stretching it to [0, 1] (`calibrate`). The network is
#: trained with a high-rate model of the exporter (a block's AC steps times 1 / sqrt(weight));
#: the trellis only zeroes small coefficients, which costs less than that model's coarser steps,
#: so the map it needs is more contrasted. Chosen on four BSDS training images with the real
#: exporter (`djpeg.encoder.compress(bpp=...)`), MS-SSIM BD-rate against the uniform map, with
#: an earlier checkpoint: -4.5% raw, -4.9% stretched, -6.9% stretched and squared; exponents 3
#: and 4 broke down on images with large smooth areas. The shipped network, stretched and
#: squared: -7.6% on the same images.
CONTRAST = 2.0


def _pad_to_blocks(images: jax.Array) -> jax.Array:
  """`(B, H, W, C)` -> `(B, 8 * ceil(H / 8), 8 * ceil(W / 8), C)` by edge repetition."""
  h, w = images.shape[1:3]
  ph, pw = -h % 8, -w % 8
  if ph or pw:
    images = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
  return images


def block_log_std(images: jax.Array) -> jax.Array:
  """Log standard deviation of the luma in each 8x8 block.

  Args:
    images: `(B, H, W, C)` in [0, 1], H and W multiples of 8, C = 3 or 1.
  Returns:
    `(B, H / 8, W / 8, 1)`: log(std * 255 + 1) / log(128), about [0, 1].
  """
  if images.shape[-1] == 3:
    luma = images @ jnp.asarray([0.299, 0.587, 0.114], images.dtype)
  else:
    luma = images[..., 0]
  b, h, w = luma.shape
  tiles = luma.reshape(b, h // 8, 8, w // 8, 8)
  std = jnp.sqrt(jnp.maximum(tiles.var(axis=(2, 4)), 0.0) + 1e-12)
  return (jnp.log1p(std * 255.0) / np.log(128.0))[..., None]


class SaliencyNet(nnx.Module):
  """Image `(B, H, W, C)` in [0, 1] -> per-block logits `(B, ceil(H / 8), ceil(W / 8))`.

  `importance(images)` gives the map in (0, 1) per block; `pixel_map` per pixel.

  Args:
    width: channels at block resolution (the trunk uses width / 3 and 2 width / 3 before).
    rngs: `nnx.Rngs` for initialization.
  """

  def __init__(self, *, width: int = 48, rngs: nnx.Rngs):
    w1, w2 = max(width // 3, 4), max(2 * width // 3, 4)
    self.stem = nnx.Conv(3, w1, (3, 3), rngs=rngs)
    self.down1 = nnx.Conv(w1, w1, (3, 3), strides=(2, 2), rngs=rngs)
    self.down2 = nnx.Conv(w1, w2, (3, 3), strides=(2, 2), rngs=rngs)
    self.down3 = nnx.Conv(w2, width, (3, 3), strides=(2, 2), rngs=rngs)
    self.join = nnx.Conv(width + 1, width, (1, 1), rngs=rngs)
    self.context1 = nnx.Conv(width, width, (3, 3), kernel_dilation=(2, 2), rngs=rngs)
    self.context2 = nnx.Conv(width, width, (3, 3), kernel_dilation=(4, 4), rngs=rngs)
    self.head = nnx.Conv(width, 1, (1, 1), kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f"SaliencyNet takes (B, H, W, C) images with C = 1 or 3; got {images.shape}.")
    h, w = images.shape[1:3]
    x = _pad_to_blocks(images)
    stats = block_log_std(x)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    x = nnx.gelu(self.stem(x - 0.5))
    x = nnx.gelu(self.down1(x))
    x = nnx.gelu(self.down2(x))
    x = nnx.gelu(self.down3(x))
    x = nnx.gelu(self.join(jnp.concatenate([x, stats], axis=-1)))
    x = x + nnx.gelu(self.context1(x))
    x = x + nnx.gelu(self.context2(x))
    logits = self.head(x)[..., 0]
    return logits[:, :-(-h // 8), :-(-w // 8)]

  def importance(self, images: jax.Array) -> jax.Array:
    """Per-block importance `(B, ceil(H / 8), ceil(W / 8))` in (0, 1)."""
    return jax.nn.sigmoid(self(images))


def pixel_map(block_map: jax.Array, height: int, width: int) -> jax.Array:
  """Per-block map `(..., rows, cols)` -> per-pixel `(..., height, width)` (each block's value
  over its 8x8 pixels, cropped to the image)."""
  up = jnp.repeat(jnp.repeat(block_map, 8, axis=-2), 8, axis=-1)
  return up[..., :height, :width]


def calibrate(block_map: jax.Array, contrast: float = CONTRAST) -> jax.Array:
  """Per image, stretches a block map `(B, rows, cols)` to [0, 1] and raises it to `contrast`.

  A constant map (nothing stands out) becomes all ones: the uniform map.
  """
  low = jnp.min(block_map, axis=(-2, -1), keepdims=True)
  span = jnp.max(block_map, axis=(-2, -1), keepdims=True) - low
  stretched = jnp.where(span > 1e-6, (block_map - low) / jnp.maximum(span, 1e-6), 1.0)
  return stretched ** contrast


# ----------------------------------------------------------------- the shipped network

def save_params(model: nnx.Module, path: str) -> None:
  """Writes the parameters as one flat .npz, atomically (`models.qtable_net.save_params`)."""
  from models.qtable_net import save_params as save
  save(model, path)


def load_params(model: nnx.Module, path: str) -> nnx.Module:
  """Loads `save_params` output into `model` (same architecture); returns the model."""
  from models.qtable_net import load_params as load
  return load(model, path)


@functools.lru_cache(maxsize=1)
def pretrained(width: int = 48) -> SaliencyNet:
  """The SaliencyNet shipped with the package (trained by `djpeg-train saliency`)."""
  from importlib import resources
  path = resources.files("models").joinpath(PRETRAINED)
  if not path.is_file():
    raise ValueError("the package has no trained SaliencyNet; train one with "
                     "`djpeg-train saliency` and copy its saliency_net.npz to "
                     "models/data/saliency_net.npz.")
  with resources.as_file(path) as p:
    return load_params(SaliencyNet(width=width, rngs=nnx.Rngs(0)), str(p))


@nnx.jit
def _importance(net: SaliencyNet, images: jax.Array) -> jax.Array:
  return calibrate(net.importance(images))


def predict_saliency(image) -> np.ndarray:
  """The shipped network's importance map for one image: `saliency="auto"`.

  Args:
    image: `(H, W, C)` float in [0, 1] or uint8, C = 3 or 1.
  Returns:
    `(H, W)` float32 map in [0, 1], constant over each 8x8 block: the network's importance,
    `calibrate`d for the exporter. Use it with `background=BACKGROUND` (what
    `djpeg.encoder.compress` does for "auto").
  """
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 3) or min(a.shape[:2]) < 1:
    raise ValueError(f"predict_saliency takes one image (H, W, C) with C = 1 or 3; got {a.shape}.")
  if a.dtype == np.uint8:
    a = a.astype(np.float32) / 255
  a = np.asarray(a, np.float32)
  if not np.all(np.isfinite(a)):
    raise ValueError("the image holds NaN or infinite values.")
  blocks = _importance(pretrained(), jnp.asarray(a)[None])[0]
  return np.asarray(pixel_map(blocks, a.shape[0], a.shape[1]), np.float32)


#: What the `djpeg.saliency_models` entry point hands to `djpeg.roi`: the model and the
#: background its maps are meant for.
predict_saliency.background = BACKGROUND
