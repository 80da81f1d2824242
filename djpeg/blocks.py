"""Splitting sample planes into 8x8 blocks and putting them back.

A plane `(..., 8 * rows, 8 * cols)` becomes blocks `(..., rows, cols, 8, 8)`: block [i, j] holds
the samples [8i:8i+8, 8j:8j+8], row-major inside the block. Pure reshapes and transposes.
"""

from __future__ import annotations

import jax


def blockify(plane: jax.Array) -> jax.Array:
  """`(..., 8 * rows, 8 * cols)` plane to `(..., rows, cols, 8, 8)` blocks."""
  *lead, h, w = plane.shape
  if h % 8 or w % 8:
    raise ValueError(f"plane of shape {plane.shape} is not a whole number of 8x8 blocks.")
  n = len(lead)
  x = plane.reshape(*lead, h // 8, 8, w // 8, 8)
  return x.transpose(*range(n), n, n + 2, n + 1, n + 3)


def unblockify(blocks: jax.Array) -> jax.Array:
  """`(..., rows, cols, 8, 8)` blocks to the `(..., 8 * rows, 8 * cols)` plane."""
  *lead, rows, cols, _, _ = blocks.shape
  n = len(lead)
  x = blocks.transpose(*range(n), n, n + 2, n + 1, n + 3)
  return x.reshape(*lead, 8 * rows, 8 * cols)
