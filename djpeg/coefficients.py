"""`Coefficients`: the quantized DCT coefficients of a JPEG image, as one JAX pytree.

This is what `djpeg.encode` produces and what `djpeg.decode`, the rate proxy and the file writer
consume. It holds exactly what a baseline JPEG file holds besides its entropy coding: per
component, the quantized coefficients of each 8x8 block and the quantization table, plus the
frame geometry (image size and sampling factors). Component order is the file's: Y, Cb, Cr, or a
single gray component.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from djpeg import sampling


@dataclasses.dataclass(frozen=True)
class Coefficients:
  """Quantized DCT coefficients of one image or a batch of images.

  Attributes:
    components: one array per component, `(..., rows_c, cols_c, 8, 8)`: the quantized value of
      each coefficient in units of its quantization step, natural (row-major) order within a
      block. `rows_c, cols_c` are libjpeg's height_in_blocks, width_in_blocks
      (`djpeg.sampling.component_blocks`); blocks that only pad an MCU are not stored.
      Float arrays from `encode` (integer-valued under exact rounding), integer arrays when read
      from a file.
    tables: `(..., num_components, 8, 8)` quantization step of each component, natural order,
      integer-valued in 1..255.
    height, width: image size in pixels (static).
    sampling: `((h, v), ...)` sampling factors of each component, as in the frame header (static).

  The leading `...` (batch) axes are the same on every array, so `jax.tree.map(lambda a: a[i], c)`
  selects image i, and `jax.vmap` maps over images.
  """

  components: tuple[Any, ...]
  tables: Any
  height: int
  width: int
  sampling: tuple[tuple[int, int], ...]

  @property
  def num_components(self) -> int:
    return len(self.components)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(np.shape(self.tables)[:-3])

  @property
  def subsampling(self) -> str | None:
    """"4:4:4", "4:2:2", "4:2:0", "gray", or None for other sampling factors."""
    return sampling.subsampling_name(self.sampling)

  @property
  def y(self):
    return self.components[0]

  @property
  def cb(self):
    return self.components[1]

  @property
  def cr(self):
    return self.components[2]

  def block_shape(self, index: int) -> tuple[int, int]:
    """(rows, cols) of blocks of component `index` for this geometry."""
    return sampling.component_blocks(self.height, self.width, self.sampling, index)

  def check(self) -> None:
    """Raises ValueError if the arrays do not fit the geometry. Shapes only; values are free."""
    n = len(self.components)
    if n not in (1, 3) or len(self.sampling) != n:
      raise ValueError(f"Coefficients need 1 or 3 components with one sampling factor pair each; "
                       f"got {n} components and sampling {self.sampling}.")
    if self.height < 1 or self.width < 1:
      raise ValueError(f"image size must be at least 1x1; got {self.height}x{self.width}.")
    batch = self.batch_shape
    if np.shape(self.tables)[-3:] != (n, 8, 8):
      raise ValueError(f"tables must have shape (..., {n}, 8, 8); got {np.shape(self.tables)}.")
    for i, comp in enumerate(self.components):
      want = batch + self.block_shape(i) + (8, 8)
      if tuple(np.shape(comp)) != want:
        raise ValueError(f"component {i} has shape {tuple(np.shape(comp))}; a {self.height}x"
                         f"{self.width} image with sampling {self.sampling} needs {want}.")


jax.tree_util.register_dataclass(
    Coefficients, data_fields=["components", "tables"], meta_fields=["height", "width", "sampling"])
