"""SaliencyNet: a Flax NNX network that says, per 8x8 block, where a JPEG's bits are worth spending.

The map it predicts drives the exporter's trellis (`djpeg.encoder.compress(saliency=...)`): a
standard JPEG file has one table per component, and the per-block choice of which coefficients
to keep is the only place quality can vary. The exporter minimises bits plus lambda times
squared error weighted by the map, so the right map is the metric's own weight of squared
error in each block. The network is trained (`train/saliency.py`) to predict, from the image
alone, the log of MS-SSIM's per-block sensitivity to squared error at JPEG operating points
(`djpeg.metrics.ms_ssim_sensitivity`); it learns, for instance, that errors in smooth areas
cost MS-SSIM more than the same errors in texture.

Input is the image, padded to whole blocks; a strided convolutional trunk brings it to one
feature vector per 8x8 luma block, joined there by each block's log standard deviation (the
statistic MS-SSIM's contrast term normalizes by), then dilated convolutions give each block
context before a linear head: the log-map. `predict_saliency(image)` is the `saliency="auto"`
model that the `djpeg` package finds through the `djpeg.saliency_models` entry point.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from djpeg.models.params import load_packaged
from djpeg.roi import pixel_map

#: Weight of the least important pixels relative to the most important that maps from this
#: network are meant to be used with (`djpeg.roi.pixel_weights`'s background): MS-SSIM's
#: sensitivity spans about three decades within an image, so the floor sits below that.
BACKGROUND = 0.001

#: Exponent applied to the map for the exporter (`contrasted`): the network predicts the
#: expected log-sensitivity given the image, which is flatter than any one image's measured
#: map, and the exporter does best with more contrast. Chosen on eight BSDS training images
#: held out of training (bsd200 files 100-107), real exporter (`compress(bpp=)` at
#: libjpeg-turbo's q30/50/70/85 sizes), MS-SSIM BD-rate against the uniform map. The shipped
#: network: exponent 1.2 gives -14.2%, 1.4 gives -13.8%, 1.6 gives -11.7% (after 400 steps:
#: 1 gives -12.9%, 1.4 -14.3%, 1.8 -11.5%). The measured map itself
#: (`djpeg.metrics.ms_ssim_sensitivity` at q50, exponent 1) gives -16.0% on those images.
CONTRAST = 1.2

PRETRAINED = "saliency_net.npz"


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
  """Image `(B, H, W, C)` in [0, 1] -> per-block log-importance `(B, ceil(H / 8), ceil(W / 8))`.

  Only differences between blocks of an image mean anything (a predicted log weight of
  squared error, up to a constant). `importance(images)` gives the map in (0, 1] per block,
  largest 1 per image; `pixel_map` per pixel.

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
    """Per-block importance `(B, ceil(H / 8), ceil(W / 8))` in (0, 1], largest 1 per image."""
    log_map = self(images)
    return jnp.exp(log_map - jnp.max(log_map, axis=(-2, -1), keepdims=True))


# ----------------------------------------------------------------- the shipped network

@functools.lru_cache(maxsize=1)
def pretrained(width: int = 48) -> SaliencyNet:
  """The SaliencyNet shipped with the package (trained by `djpeg-train saliency`)."""
  return load_packaged(SaliencyNet(width=width, rngs=nnx.Rngs(0)), PRETRAINED,
                       "train one with `djpeg-train saliency` and copy its saliency_net.npz to "
                       "models/data/.")


def contrasted(block_map: jax.Array, contrast: float = CONTRAST) -> jax.Array:
  """`block_map ** contrast`: the network's importance `(..., rows, cols)` as the exporter's map."""
  return block_map ** contrast


@nnx.jit
def _importance(net: SaliencyNet, images: jax.Array) -> jax.Array:
  return contrasted(net.importance(images))


def predict_saliency(image) -> np.ndarray:
  """The shipped network's importance map for one image: `saliency="auto"`.

  Args:
    image: `(H, W, C)` float in [0, 1] or uint8, C = 3 or 1.
  Returns:
    `(H, W)` float32 map in (0, 1], constant over each 8x8 block: the network's importance,
    `contrasted` for the exporter. Use it with `background=BACKGROUND` (what
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
