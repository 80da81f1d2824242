"""A classifier that reads JPEG coefficients directly, skipping the decoder (DCT-domain input).

After Deguerre et al. (2019) and Pistono et al. (2020): each 8x8 block of a component becomes one
position with 64 channels (its dequantized DCT coefficients, natural order), so a 32x32 image is
a 4x4 grid of 64 luma channels; subsampled chroma grids are repeated up to the luma grid and
concatenated, giving `(B, rows, cols, 64 * C)`. A `ResNet` (stem "none", input batch norm
instead of pixel normalization) classifies that grid.

The input is a `djpeg.Coefficients` batch, from `djpeg.encode` (inside a jitted step, float
coefficients) or from files through `djpeg.load_coefficients` + `stack_coefficients` (int16
numpy): the same image gives the same prediction either way, since djpeg's coefficients equal
libjpeg-turbo's.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from djpeg import Coefficients
from djpeg.models.classifier import ResNet


def stack_coefficients(items: Sequence[Coefficients]) -> Coefficients:
  """One batched `Coefficients` from single images of one geometry (e.g. `load_coefficients`)."""
  items = list(items)
  if not items:
    raise ValueError("stack_coefficients needs at least one Coefficients.")
  first = items[0]
  for i, c in enumerate(items):
    if (c.height, c.width, c.sampling) != (first.height, first.width, first.sampling):
      raise ValueError(f"item {i} is {c.height}x{c.width} with sampling {c.sampling}; item 0 is "
                       f"{first.height}x{first.width} with sampling {first.sampling}: a batch "
                       "needs one geometry.")
    if c.batch_shape:
      raise ValueError(f"item {i} is already a batch {c.batch_shape}; stack single images.")
  return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *items)


def coefficient_planes(coefficients: Coefficients, *, dequantize: bool = True) -> jax.Array:
  """Coefficients with batch shape `(B,)` -> `(B, rows, cols, 64 * C)` float32 block planes.

  Channel 64 * c + k is coefficient k (natural order) of component c, times its quantization step
  when `dequantize` (so images compressed at different qualities share one scale). `rows, cols`
  is the first (luma) component's block grid; the others are repeated by their sampling ratio
  and cropped to it.
  """
  if len(coefficients.batch_shape) != 1:
    raise ValueError(f"coefficient_planes needs a batch of images (batch shape (B,)); got batch "
                     f"shape {coefficients.batch_shape}.")
  coefficients.check()
  rows, cols = coefficients.block_shape(0)
  h0, v0 = coefficients.sampling[0]
  steps = jnp.asarray(coefficients.tables, jnp.float32)
  planes = []
  for c, comp in enumerate(coefficients.components):
    x = jnp.asarray(comp, jnp.float32)
    if dequantize:
      x = x * steps[:, c, None, None, :, :]
    x = x.reshape(x.shape[:3] + (64,))
    h, v = coefficients.sampling[c]
    x = jnp.repeat(jnp.repeat(x, v0 // v, axis=1), h0 // h, axis=2)
    # Blocks that only pad the last MCU are not stored, so a repeated chroma grid can be one
    # block short or long of the luma grid: edge-pad, then crop.
    x = jnp.pad(x, ((0, 0), (0, max(rows - x.shape[1], 0)), (0, max(cols - x.shape[2], 0)),
                    (0, 0)), mode="edge")
    planes.append(x[:, :rows, :cols])
  return jnp.concatenate(planes, axis=-1)


class DCTResNet(nnx.Module):
  """ResNet on block planes: `Coefficients` `(B,)` -> (logits, features).

  Args:
    num_classes: output logits.
    components: 3 (YCbCr) or 1 (gray); inputs must match.
    widths, blocks, strides: as for `ResNet` (the input is already 8x downsampled, so the default
      keeps the first stages at full grid resolution).
  """

  def __init__(self, num_classes: int, *, components: int = 3, widths: Sequence[int] = (64, 128),
               blocks: Sequence[int] = (1, 1), strides: Sequence[int] | None = None,
               rngs: nnx.Rngs):
    if components not in (1, 3):
      raise ValueError(f"components must be 1 (gray) or 3 (YCbCr); got {components}.")
    self.components = components
    # Coefficient scales span three orders of magnitude (DC ~1000, high AC ~1): a learned
    # per-channel normalization replaces the pixel models' fixed one.
    self.input_bn = nnx.BatchNorm(64 * components, momentum=0.9, rngs=rngs)
    strides = tuple(strides) if strides is not None else (1,) * len(tuple(widths))
    self.body = ResNet(num_classes, widths=widths, blocks=blocks, strides=strides,
                       in_channels=64 * components, stem="none", normalize=False, rngs=rngs)

  def __call__(self, coefficients: Coefficients, *, train: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    if coefficients.num_components != self.components:
      raise ValueError(f"this DCTResNet takes {self.components}-component coefficients; got "
                       f"{coefficients.num_components}.")
    x = coefficient_planes(coefficients)
    x = self.input_bn(x, use_running_average=not train)
    return self.body(x, train=train)
