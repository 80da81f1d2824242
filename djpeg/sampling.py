"""Chroma subsampling: sampling factors, component geometry, down- and upsampling.

A JPEG frame gives each component sampling factors (h, v); a component is stored at
(h / h_max, v / v_max) of the image resolution. The geometry here is libjpeg's (`jdinput.c`,
`jcmaster.c`): a component of an H x W image has ceil(H * v / v_max) x ceil(W * h / h_max) samples,
held in ceil(samples / 8) blocks in each direction.

Downsampling is libjpeg's box average with its alternating rounding bias (`jcsample.c`).
Upsampling is libjpeg-turbo's default "fancy" triangle filter where it applies (2x1, 2x2 and 1x2;
`jdsample.c`) and sample replication otherwise. Planes are `(..., rows, cols)` in sample units.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from djpeg.rounding import exact_forward, floor_divide

#: Sampling factors (h, v) of Y, Cb, Cr for each named chroma subsampling.
SUBSAMPLING_FACTORS = {
    "4:4:4": ((1, 1), (1, 1), (1, 1)),
    "4:2:2": ((2, 1), (1, 1), (1, 1)),
    "4:2:0": ((2, 2), (1, 1), (1, 1)),
}
SUBSAMPLINGS = tuple(SUBSAMPLING_FACTORS)

Factors = tuple[tuple[int, int], ...]


def factors_for(subsampling: str, num_components: int) -> Factors:
  """Sampling factors for a named subsampling; a single (gray) component is always (1, 1)."""
  if subsampling not in SUBSAMPLING_FACTORS:
    raise ValueError(
        f"unknown subsampling {subsampling!r}; expected one of {', '.join(map(repr, SUBSAMPLINGS))}.")
  if num_components == 1:
    return ((1, 1),)
  return SUBSAMPLING_FACTORS[subsampling]


def subsampling_name(factors: Factors) -> str | None:
  """The name of a standard set of factors ("4:2:0", ...), "gray" for one component, else None."""
  if len(factors) == 1:
    return "gray"
  for name, f in SUBSAMPLING_FACTORS.items():
    if tuple(map(tuple, factors)) == f:
      return name
  return None


def ratios(factors: Factors, index: int) -> tuple[int, int]:
  """(horizontal, vertical) reduction of component `index`: (h_max / h, v_max / v)."""
  h_max = max(h for h, _ in factors)
  v_max = max(v for _, v in factors)
  h, v = factors[index]
  if h_max % h or v_max % v:
    raise ValueError(f"sampling factors {factors} are not integer ratios; libjpeg refuses them too.")
  return h_max // h, v_max // v


def component_size(height: int, width: int, factors: Factors, index: int) -> tuple[int, int]:
  """Samples (rows, cols) of component `index` of a height x width image (libjpeg's
  downsampled_height and downsampled_width)."""
  rh, rv = ratios(factors, index)
  return math.ceil(height / rv), math.ceil(width / rh)


def component_blocks(height: int, width: int, factors: Factors, index: int) -> tuple[int, int]:
  """8x8 blocks (rows, cols) of component `index`: libjpeg's height_in_blocks, width_in_blocks."""
  rows, cols = component_size(height, width, factors, index)
  return math.ceil(rows / 8), math.ceil(cols / 8)


def pad_edge(plane: jax.Array, rows: int, cols: int) -> jax.Array:
  """Pads `(..., r, c)` to `(..., rows, cols)` by repeating the last row and column, as libjpeg
  does to fill partial blocks and MCUs."""
  r, c = plane.shape[-2:]
  if (r, c) == (rows, cols):
    return plane
  pad = [(0, 0)] * (plane.ndim - 2) + [(0, rows - r), (0, cols - c)]
  return jnp.pad(plane, pad, mode="edge")


# ----------------------------------------------------------------------------- downsampling


def _box_sum(plane: jax.Array, rh: int, rv: int) -> jax.Array:
  """Sums of rv x rh boxes: strided slices added elementwise (XLA's CPU reduction over the two
  interleaved axes of a reshape is several times slower)."""
  return sum(plane[..., i::rv, j::rh] for i in range(rv) for j in range(rh))


def _downsample_float(plane: jax.Array, rh: int, rv: int) -> jax.Array:
  return _box_sum(plane, rh, rv) / (rh * rv)


def _downsample_exact(plane: jax.Array, rh: int, rv: int) -> jax.Array:
  total = _box_sum(plane, rh, rv)
  cols = total.shape[-1]
  if (rh, rv) == (2, 2):    # h2v2_downsample: bias 1, 2, 1, 2, ... along each output row
    bias = jnp.where(jnp.arange(cols) % 2 == 0, 1.0, 2.0)
  elif (rh, rv) == (2, 1):  # h2v1_downsample: bias 0, 1, 0, 1, ...
    bias = jnp.where(jnp.arange(cols) % 2 == 0, 0.0, 1.0)
  else:                     # int_downsample: (sum + n/2) / n
    bias = float((rh * rv) // 2)
  return floor_divide(total + bias, float(rh * rv))


def downsample(plane: jax.Array, rh: int, rv: int, *, exact: bool = True) -> jax.Array:
  """Box-averages `(..., r, c)` by `rv` rows and `rh` columns (r, c multiples of them).

  Args:
    plane: `(..., r, c)` samples in 0..255 (integer-valued with `exact`).
    rh, rv: horizontal and vertical reduction (1 or more).
    exact: libjpeg's integer average with its alternating rounding bias (gradient of the mean);
      otherwise the plain mean.
  Returns:
    `(..., r // rv, c // rh)` float32 samples.
  """
  if (rh, rv) == (1, 1):
    return plane
  if exact:
    return exact_forward(lambda p: _downsample_exact(p, rh, rv),
                         lambda p: _downsample_float(p, rh, rv))(plane)
  return _downsample_float(plane, rh, rv)


def downsample_component(plane: jax.Array, rh: int, rv: int, block_rows: int, block_cols: int, *,
                         exact: bool = True) -> jax.Array:
  """From a full-resolution plane to a component's padded sample grid, as libjpeg pads it.

  libjpeg replicates the right edge at full resolution (`expand_right_edge` before downsampling),
  but at the bottom it pads only to a whole row group, downsamples, and then replicates the last
  *downsampled* row (`jcprepct.c`). The two differ when a chroma row averages two image rows.

  Args:
    plane: `(..., H, W)` full-resolution samples.
    rh, rv: reduction of this component.
    block_rows, block_cols: the component's blocks (`component_blocks`).
  Returns:
    `(..., 8 * block_rows, 8 * block_cols)` samples.
  """
  h = plane.shape[-2]
  plane = pad_edge(plane, math.ceil(h / rv) * rv, 8 * block_cols * rh)
  plane = downsample(plane, rh, rv, exact=exact)
  return pad_edge(plane, 8 * block_rows, 8 * block_cols)


# ------------------------------------------------------------------------------- upsampling


def _interleave_columns(even: jax.Array, odd: jax.Array) -> jax.Array:
  """out[..., 2i] = even[..., i], out[..., 2i + 1] = odd[..., i] (interior padding; XLA's CPU
  code for it is faster than for stack-and-reshape on the innermost axis)."""
  zero = jnp.zeros((), even.dtype)
  lead = [(0, 0, 0)] * (even.ndim - 1)
  return (jax.lax.pad(even, zero, lead + [(0, 1, 1)]) + jax.lax.pad(odd, zero, lead + [(1, 0, 1)]))


def _shifted(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """x shifted by one along `axis` with edge replication: (previous, next)."""
  n = x.shape[axis]
  first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
  last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
  prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
  nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis=axis)
  return prev, nxt


def _triangle_rows(x: jax.Array) -> jax.Array:
  """`(..., m, n)` to `(..., 2m, n)`: rows 3 x[i] + x[i-1] and 3 x[i] + x[i+1] (edges
  replicated), unnormalized. Whole rows are stacked, which XLA does efficiently."""
  prev, nxt = _shifted(x, -2)
  *lead, m, n = x.shape
  return jnp.stack([3.0 * x + prev, 3.0 * x + nxt], axis=-2).reshape(*lead, 2 * m, n)


def _tile_weights() -> np.ndarray:
  w = np.zeros((8, 16), np.float32)
  for k in range(8):
    w[k, 2 * k] += 3.0
    w[k, 2 * k + 1] += 3.0
    if k > 0:
      w[k - 1, 2 * k] += 1.0
    if k < 7:
      w[k + 1, 2 * k + 1] += 1.0
  return w


_TILE_WEIGHTS = _tile_weights()     # 8 samples -> 16, inside one 8-sample tile
_FIRST = np.eye(16, dtype=np.float32)[0]
_LAST = np.eye(16, dtype=np.float32)[15]


def _triangle_columns(x: jax.Array) -> jax.Array:
  """`(..., m, n)` to `(..., m, 2n)`: columns 3 x[j] + x[j-1] and 3 x[j] + x[j+1] (edges
  replicated), unnormalized.

  Interleaving along the innermost axis is slow on CPU, so when n is a multiple of 8 the
  columns are filtered as 8-sample tiles by one small matmul (integer weights, exact in float32),
  plus the two terms that reach into the neighbouring tiles.
  """
  *lead, n = x.shape
  if n % 8:
    prev, nxt = _shifted(x, -1)
    return _interleave_columns(3.0 * x + prev, 3.0 * x + nxt)
  tiles = x.reshape(*lead, n // 8, 8)
  inner = jnp.matmul(tiles, _TILE_WEIGHTS, precision=jax.lax.Precision.HIGHEST)
  left = jnp.concatenate([tiles[..., :1, 0], tiles[..., :-1, 7]], axis=-1)   # x[8t - 1]
  right = jnp.concatenate([tiles[..., 1:, 0], tiles[..., -1:, 7]], axis=-1)  # x[8t + 8]
  out = inner + left[..., None] * _FIRST + right[..., None] * _LAST
  return out.reshape(*lead, 2 * n)


def _bias(n: int, even: float, odd: float) -> np.ndarray:
  return np.tile(np.array([even, odd], np.float32), n)


def _fancy(x: jax.Array, rh: int, rv: int, exact: bool) -> jax.Array:
  """libjpeg-turbo's triangle filters; exact: its integer rounding with ordered-dither biases."""
  if (rh, rv) == (2, 1):    # h2v1_fancy_upsample: (3a + b + 1 or 2) >> 2
    sums, bias, div = _triangle_columns(x), _bias(x.shape[-1], 1.0, 2.0), 4.0
  elif (rh, rv) == (1, 2):  # h1v2_fancy_upsample: same down the columns
    sums, bias, div = _triangle_rows(x), _bias(x.shape[-2], 1.0, 2.0)[:, None], 4.0
  else:                     # h2v2_fancy_upsample: column sums 3a + b, then (3c + d + 8 or 7) >> 4
    sums, bias, div = _triangle_columns(_triangle_rows(x)), _bias(x.shape[-1], 8.0, 7.0), 16.0
  if exact:
    return floor_divide(sums + bias, div)
  return sums / div


def _replicate(x: jax.Array, rh: int, rv: int) -> jax.Array:
  if rv > 1:
    x = jnp.repeat(x, rv, axis=-2)
  if rh > 1:
    x = jnp.repeat(x, rh, axis=-1)
  return x


def _extend_edges(x: jax.Array, rows: int, cols: int) -> jax.Array:
  """Overwrites everything beyond the first rows x cols samples with the last real row/column."""
  if x.shape[-2:] == (rows, cols):
    return x
  r = jax.lax.broadcasted_iota(jnp.int32, x.shape[-2:], 0)
  c = jax.lax.broadcasted_iota(jnp.int32, x.shape[-2:], 1)
  x = jnp.where(c < cols, x, x[..., :, cols - 1:cols])
  return jnp.where(r < rows, x, x[..., rows - 1:rows, :])


def uses_fancy(rh: int, rv: int, cols: int) -> bool:
  """Whether libjpeg-turbo upsamples this component with its triangle filter (`jinit_upsampler`).

  It does for 1x2, and for 2x1 and 2x2 when the component is more than 2 samples wide;
  everything else is replicated.
  """
  return (rh, rv) == (1, 2) or ((rh, rv) in ((2, 1), (2, 2)) and cols > 2)


def upsample(plane: jax.Array, rh: int, rv: int, *, exact: bool = True,
             size: tuple[int, int] | None = None) -> jax.Array:
  """Upsamples `(..., r, c)` by `rv` rows and `rh` columns as libjpeg-turbo's decoder does.

  Args:
    plane: `(..., r, c)` component samples.
    rh, rv: horizontal and vertical expansion.
    exact: integer arithmetic with libjpeg's rounding (gradient of the float filter);
      otherwise the same filter in float.
    size: (rows, cols) of real samples when `plane` also holds block padding beyond them; the
      filter then treats the plane as ending there (edge replication), and the caller crops the
      output to (rows * rv, cols * rh). Default: all of `plane` is real.
  Returns:
    `(..., r * rv, c * rh)` float32 samples.
  """
  rows, cols = size or plane.shape[-2:]
  if (rh, rv) == (1, 1):
    return plane
  if not uses_fancy(rh, rv, cols):
    return _replicate(plane, rh, rv)
  plane = _extend_edges(plane, rows, cols)
  if exact:
    return exact_forward(lambda p: _fancy(p, rh, rv, True), lambda p: _fancy(p, rh, rv, False))(plane)
  return _fancy(plane, rh, rv, False)
