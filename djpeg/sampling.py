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
  *lead, r, c = plane.shape
  return plane.reshape(*lead, r // rv, rv, c // rh, rh).sum(axis=(-3, -1))


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


def _interleave(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
  """Interleaves a and b along `axis` (a first): out[2i] = a[i], out[2i+1] = b[i].

  Written as the sum of two interior-padded arrays: XLA's CPU code for this is several times
  faster than for stack-and-reshape.
  """
  axis = axis % a.ndim
  zero = jnp.zeros((), a.dtype)
  config_a = [(0, 0, 0)] * a.ndim
  config_b = [(0, 0, 0)] * a.ndim
  config_a[axis] = (0, 1, 1)
  config_b[axis] = (1, 0, 1)
  return jax.lax.pad(a, zero, config_a) + jax.lax.pad(b, zero, config_b)


def _neighbours(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """x shifted by one along `axis` with edge replication: (previous, next)."""
  n = x.shape[axis]
  axis = axis % x.ndim
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  padded = jnp.pad(x, pad, mode="edge")
  return (jax.lax.slice_in_dim(padded, 0, n, axis=axis),
          jax.lax.slice_in_dim(padded, 2, n + 2, axis=axis))


def _triangle(x: jax.Array, axis: int, bias_even: float, bias_odd: float, scale: float,
              exact: bool) -> jax.Array:
  """Doubles `axis` with weights 3/4, 1/4 (libjpeg's 'fancy' filter, edges replicated).

  `x` is in units of `scale`; exact mode returns floor((3 x + neighbour + bias) / (4 scale)),
  i.e. libjpeg's integer arithmetic with its ordered-dither biases.
  """
  prev, nxt = _neighbours(x, axis)
  even, odd = 3.0 * x + prev, 3.0 * x + nxt
  if exact:
    even = jnp.floor((even + bias_even) / (4.0 * scale))
    odd = jnp.floor((odd + bias_odd) / (4.0 * scale))
  else:
    even, odd = even / (4.0 * scale), odd / (4.0 * scale)
  return _interleave(even, odd, axis)


def _replicate(x: jax.Array, rh: int, rv: int) -> jax.Array:
  if rv > 1:
    x = jnp.repeat(x, rv, axis=-2)
  if rh > 1:
    x = jnp.repeat(x, rh, axis=-1)
  return x


def _fancy(x: jax.Array, rh: int, rv: int, exact: bool) -> jax.Array:
  if (rh, rv) == (2, 1):    # h2v1_fancy_upsample: biases 1 (even), 2 (odd)
    return _triangle(x, -1, 1.0, 2.0, 1.0, exact)
  if (rh, rv) == (1, 2):    # h1v2_fancy_upsample: biases 1 (row above), 2 (row below)
    return _triangle(x, -2, 1.0, 2.0, 1.0, exact)
  # h2v2_fancy_upsample: the vertical pass keeps the column sums 3a + b unrounded (units of 4),
  # the horizontal pass rounds once with biases 8 (even) and 7 (odd).
  prev, nxt = _neighbours(x, -2)
  colsums = _interleave(3.0 * x + prev, 3.0 * x + nxt, -2)
  return _triangle(colsums, -1, 8.0, 7.0, 4.0, exact)


def uses_fancy(rh: int, rv: int, cols: int) -> bool:
  """Whether libjpeg-turbo upsamples this component with its triangle filter (`jinit_upsampler`).

  It does for 1x2, and for 2x1 and 2x2 when the component is more than 2 samples wide;
  everything else is replicated.
  """
  return (rh, rv) == (1, 2) or ((rh, rv) in ((2, 1), (2, 2)) and cols > 2)


def upsample(plane: jax.Array, rh: int, rv: int, *, exact: bool = True) -> jax.Array:
  """Upsamples `(..., r, c)` by `rv` rows and `rh` columns as libjpeg-turbo's decoder does.

  Args:
    plane: `(..., r, c)` component samples (only the real ones, not block padding).
    rh, rv: horizontal and vertical expansion.
    exact: integer arithmetic with libjpeg's rounding (gradient of the float filter);
      otherwise the same filter in float.
  Returns:
    `(..., r * rv, c * rh)` float32 samples.
  """
  if (rh, rv) == (1, 1):
    return plane
  if not uses_fancy(rh, rv, plane.shape[-1]):
    return _replicate(plane, rh, rv)
  if exact:
    return exact_forward(lambda p: _fancy(p, rh, rv, True), lambda p: _fancy(p, rh, rv, False))(plane)
  return _fancy(plane, rh, rv, False)
