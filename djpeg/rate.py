"""The rate proxy: how many bits the entropy-coded file will take, differentiably.

`rate(coefficients)` models what a baseline JPEG coder spends, per image:

* DC: the difference to the previous block's DC in coding order (MCU order, with libjpeg's
  padding blocks), coded as its size category (a Huffman symbol) plus that many magnitude bits;
* AC: (run, size) symbols along the zigzag scan, with ZRL for runs of 16 zeros and EOB after the
  last non-zero coefficient, each plus `size` magnitude bits;
* luma tables for Y, chroma tables shared by Cb and Cr (libjpeg's assignment).

The forward value counts these symbols exactly and prices them with the code lengths of the
tables the writer would build (`code="huffman"`, libjpeg's optimal tables, see
`djpeg.huffman`) or with their ideal lengths -log2 p (`code="entropy"`). It is the writer's
entropy-coded size up to byte stuffing and the final byte's padding.

The gradient comes from a smoothed version of the same count (straight-through: exact value,
smooth slope). Each coefficient's symbol cost is interpolated across size categories on
log2(1 + |q|): a coefficient in category s costs what its (run, s) symbol and magnitude bits
cost, and the slope towards category s - 1 (down to zero, which removes the symbol) is the
difference in cost spread over the category's magnitudes. DC differences are treated alike.
Gradients flow to the quantized coefficients and, through `encode`'s rounding surrogate, to the
image and the quantization tables. Symbol code lengths are held fixed in the gradient.

Two simpler proxies are kept for ablation: `rate_nonzeros` (bits proportional to the number of
non-zero coefficients) and `rate_log` (bits proportional to sum log2(1 + |q|)).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from djpeg.coefficients import Coefficients
from djpeg.exact import sizes
from djpeg.huffman import code_lengths
from djpeg.tables import ZIGZAG

CODES = ("huffman", "entropy")
_EOB = 0x00
_ZRL = 0xF0


def _size_category(magnitude: jax.Array) -> jax.Array:
  """JPEG size category: the number of bits of |v| (0 for 0), as int32."""
  m = jnp.abs(magnitude).astype(jnp.int32)
  return jnp.where(m > 0, 32 - jax.lax.clz(m), 0)


def _dc_scan(dc: jax.Array, h: int, v: int, interleaved: bool) -> jax.Array:
  """DC values `(rows, cols)` of one component in coding order, with libjpeg's MCU padding.

  In an interleaved scan each MCU holds h x v blocks of the component; blocks beyond the image
  are coded with zero AC and a copied DC (`jccoefct.c`): from the last real block to their left,
  and below the image from the last real row at the MCU's right edge.
  """
  rows, cols = dc.shape
  if not interleaved or (h, v) == (1, 1):
    return dc.reshape(-1)
  mcu_rows, mcu_cols = -(-rows // v), -(-cols // h)
  dc = jnp.pad(dc, ((0, 0), (0, mcu_cols * h - cols)), mode="edge")
  if mcu_rows * v > rows:
    source = dc[rows - 1, h - 1::h]                       # last real row, each MCU's right edge
    below = jnp.broadcast_to(jnp.repeat(source, h), (mcu_rows * v - rows, mcu_cols * h))
    dc = jnp.concatenate([dc, below], axis=0)
  return dc.reshape(mcu_rows, v, mcu_cols, h).transpose(0, 2, 1, 3).reshape(-1)


def _ac_symbols(ac: jax.Array):
  """Symbols of AC coefficients `(n, 63)` in zigzag order (hard counts; no gradient needed).

  Returns the (run, size) symbol of every coefficient as if it were non-zero given the zeros
  before it (`symbol`, `(n, 63)`), whether it is non-zero, the number of ZRL symbols, and the
  number of EOB symbols.
  """
  nonzero = ac != 0
  position = jnp.arange(1, 64)
  last = jax.lax.cummax(jnp.where(nonzero, position, 0), axis=1)
  previous = jnp.concatenate([jnp.zeros_like(last[:, :1]), last[:, :-1]], axis=1)
  run = position - previous - 1
  symbol = (run % 16) * 16 + _size_category(ac)
  zrl = jnp.sum(jnp.where(nonzero, run // 16, 0))
  eob = jnp.sum(last[:, -1] < 63)
  return symbol, run, nonzero, zrl, eob


def _histogram(symbols: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.zeros(256, jnp.int32).at[symbols.reshape(-1)].add(weights.reshape(-1).astype(jnp.int32))


@jax.custom_jvp
def _magnitude(v: jax.Array) -> jax.Array:
  """|v|, whose slope at zero follows the sign bit: a quantized -0.0 came from a small negative
  value (the straight-through rounding keeps the sign), so it would grow towards -1."""
  return jnp.abs(v)


@_magnitude.defjvp
def _magnitude_jvp(primals, tangents):
  (v,), (t,) = primals, tangents
  return jnp.abs(v), jnp.where(jnp.signbit(v), -t, t)


def _soft_cost(magnitude: jax.Array, cost_of_size) -> jax.Array:
  """Cost interpolated across size categories on t = log2(1 + |v|).

  `cost_of_size(s)` is the cost of the coefficient in size category s (0 = zero); the result is
  linear in t between cost_of_size(ceil(t) - 1) and cost_of_size(ceil(t)), so each category's
  extra cost is spread over its magnitudes. Only its slope is used.
  """
  t = jnp.log2(1.0 + _magnitude(magnitude))
  lower = jnp.clip(jnp.ceil(t) - 1.0, 0.0, 15.0)
  frac = t - lower
  low, high = cost_of_size(lower.astype(jnp.int32)), cost_of_size(lower.astype(jnp.int32) + 1)
  return low + frac * (high - low)


def _lengths(counts: jax.Array, code: str) -> jax.Array:
  if code == "huffman":
    return code_lengths(counts).astype(jnp.float32)
  total = jnp.maximum(jnp.sum(counts), 1)
  return jnp.where(counts > 0, -jnp.log2(jnp.maximum(counts, 1) / total), 0.0)


def _table_groups(num_components: int) -> list[list[int]]:
  """Components sharing each pair of Huffman tables: luma tables for Y, chroma for Cb and Cr."""
  return [[0], [1, 2]] if num_components == 3 else [[0]]


def _group_symbols(components, factors, group):
  """Symbols of the components coded with one pair of tables (one image).

  Returns (dc_diff, dc_counts, ac_counts, ac_parts): DC differences in coding order (float, with
  gradient), the hard DC and AC symbol histograms `(256,)`, and per component the AC values
  `(n, 63)` with their would-be symbols for the smooth cost.
  """
  interleaved = len(components) > 1
  dc_diffs, ac_parts = [], []
  ac_counts = jnp.zeros(256, jnp.int32)
  for c in group:
    blocks = components[c]
    h, v = factors[c]
    flat = blocks.reshape(-1, 64)[:, ZIGZAG]
    dc = _dc_scan(blocks[..., 0, 0], h, v, interleaved)
    dc_diffs.append(dc - jnp.concatenate([jnp.zeros(1, dc.dtype), dc[:-1]]))
    hard = jax.lax.stop_gradient(jnp.round(flat[:, 1:]))
    symbol, _, nonzero, zrl, eob = _ac_symbols(hard)
    padding_blocks = dc.shape[0] - flat.shape[0]          # all-zero AC: one EOB each
    ac_counts = ac_counts + _histogram(symbol, nonzero)
    ac_counts = ac_counts.at[_ZRL].add(zrl).at[_EOB].add(eob + padding_blocks)
    ac_parts.append((flat[:, 1:], symbol))
  dc_diff = jnp.concatenate(dc_diffs)
  dc_size = _size_category(jax.lax.stop_gradient(jnp.round(dc_diff)))
  dc_counts = _histogram(dc_size, jnp.ones_like(dc_size))
  return dc_diff, dc_counts, ac_counts, ac_parts


def image_rate(components, factors, code: str, with_used: bool = False):
  """Bits of one image's entropy-coded data; components `(rows, cols, 8, 8)` each.

  With `with_used`, also the number of distinct Huffman symbols used (what the DHT segments of
  the file list), as (bits, used).
  """
  total = jnp.float32(0.0)
  used = jnp.int32(0)
  for group in _table_groups(len(components)):
    dc_diff, dc_counts, ac_counts, ac_parts = _group_symbols(components, factors, group)
    dc_len = jax.lax.stop_gradient(_lengths(dc_counts, code))
    ac_len = jax.lax.stop_gradient(_lengths(ac_counts, code))
    # Exact value: every symbol's code plus its magnitude bits (the low 4 bits of AC symbols,
    # the symbol itself for DC).
    exact = (jnp.sum(dc_counts * (dc_len + jnp.arange(256)))
             + jnp.sum(ac_counts * (ac_len + jnp.arange(256) % 16)))
    # Smooth stand-in whose gradient is used: per-coefficient interpolated costs.
    soft = jnp.sum(_soft_cost(dc_diff, lambda s: dc_len[s] + s))
    for values, symbol in ac_parts:
      run_part = symbol - symbol % 16
      cost = lambda s, run_part=run_part: jnp.where(
          s > 0, ac_len[jnp.clip(run_part + s, 0, 255)] + s, 0.0)
      soft = soft + jnp.sum(_soft_cost(values, cost))
    total = total + exact + (soft - jax.lax.stop_gradient(soft))
    used = used + jnp.sum(dc_counts > 0) + jnp.sum(ac_counts > 0)
  return (total, used) if with_used else total


def _image_counts(components, factors) -> jax.Array:
  out = []
  for group in _table_groups(len(components)):
    _, dc_counts, ac_counts, _ = _group_symbols(components, factors, group)
    out += [dc_counts, ac_counts]
  return jnp.stack(out)


def symbol_counts(coefficients: Coefficients) -> dict:
  """Histograms of the Huffman symbols a baseline writer codes, per table.

  Returns `{(table_class, table_id): counts}` with class 0 = DC, 1 = AC, id 0 = luma, 1 = chroma,
  and counts `batch_shape + (256,)` int32 (DC symbols are size categories; AC symbols are
  run * 16 + size, with EOB = 0x00 and ZRL = 0xF0).
  """
  counts = _per_image(coefficients, "counts")
  keys = [(0, 0), (1, 0), (0, 1), (1, 1)][:counts.shape[-2]]
  return {key: counts[..., i, :] for i, key in enumerate(keys)}


@functools.partial(jax.jit, static_argnames=("kind", "factors", "options"))
def _batched(comps, *, kind: str, factors, options: tuple):
  """Runs one per-image statistic over a flat batch; compiled once per geometry and options."""
  opts = dict(options)
  if kind == "rate":
    fn = lambda c: image_rate(c, factors, opts["code"])
  elif kind == "file":
    fn = lambda c: image_rate(c, factors, opts["code"], with_used=True)
  elif kind == "counts":
    fn = lambda c: _image_counts(c, factors)
  elif kind == "nonzeros":
    fn = lambda c: sum(jnp.sum(jnp.minimum(jnp.abs(x), 1.0)) for x in c) * opts["scale"]
  else:
    fn = lambda c: sum(jnp.sum(jnp.log2(1.0 + jnp.abs(x))) for x in c) * opts["scale"]
  return jax.vmap(fn)(comps)


def _per_image(coefficients: Coefficients, kind: str, **options):
  if not isinstance(coefficients, Coefficients):
    raise ValueError(f"the rate takes Coefficients (from djpeg.encode); got "
                     f"{type(coefficients).__name__}.")
  coefficients.check()
  batch = coefficients.batch_shape
  comps = tuple(jnp.asarray(c, jnp.float32).reshape((-1,) + c.shape[len(batch):])
                for c in coefficients.components)
  out = _batched(comps, kind=kind, factors=coefficients.sampling,
                 options=tuple(sorted(options.items())))
  return jax.tree.map(lambda o: o.reshape(batch + o.shape[1:]), out)


def rate(coefficients: Coefficients, *, code: str = "huffman") -> jax.Array:
  """Estimated entropy-coded bits of each image, for optimized Huffman tables.

  Args:
    coefficients: from `djpeg.encode` (batch shape `(...)`).
    code: "huffman" prices symbols with the optimal Huffman code lengths libjpeg and djpeg's
      writer build; "entropy" with their ideal lengths -log2(p).
  Returns:
    `(...)` float32 bits per image, differentiable with respect to the coefficients (see the
    module docstring). Excludes headers, byte stuffing and final padding (`file_bytes` adds them).
  """
  if code not in CODES:
    raise ValueError(f"unknown code {code!r}; expected one of {', '.join(map(repr, CODES))}.")
  return _per_image(coefficients, "rate", code=code)


def bits_per_pixel(coefficients: Coefficients, *, code: str = "huffman") -> jax.Array:
  """`rate` divided by the number of pixels: `(...)` bits per pixel."""
  return rate(coefficients, code=code) / (coefficients.height * coefficients.width)


def rate_nonzeros(coefficients: Coefficients, *, bits_per_nonzero: float = 6.0) -> jax.Array:
  """Ablation proxy: a fixed number of bits per non-zero quantized coefficient.

  The count is smoothed as sum min(|q|, 1) (straight-through at integers). `(...)` bits.
  """
  return _per_image(coefficients, "nonzeros", scale=float(bits_per_nonzero))


def rate_log(coefficients: Coefficients, *, bits_per_log2: float = 2.0) -> jax.Array:
  """Ablation proxy: bits proportional to sum log2(1 + |q|) over all coefficients. `(...)` bits."""
  return _per_image(coefficients, "log", scale=float(bits_per_log2))


def header_bytes(tables: jax.Array, used_symbols: jax.Array) -> jax.Array:
  """Bytes of everything but the entropy-coded data in a baseline file from `djpeg.save`.

  SOI, JFIF APP0, one DQT per distinct table, SOF0, one DHT per Huffman table, SOS and EOI, as
  the writer lays them out (`djpeg.exact.sizes`); this counts the distinct tables in JAX, so it
  works under `jit` and on batches.

  Args:
    tables: `(..., C, 8, 8)` quantization tables.
    used_symbols: `(...)` number of distinct symbols over all Huffman tables.
  """
  tables = jnp.asarray(tables)
  num = tables.shape[-3]
  distinct = jnp.ones(tables.shape[:-3], jnp.float32)
  for i in range(1, num):
    new = jnp.ones(tables.shape[:-3], bool)
    for j in range(i):
      new &= jnp.any(tables[..., i, :, :] != tables[..., j, :, :], axis=(-2, -1))
    distinct = distinct + new
  huffman_tables = 4 if num == 3 else 2
  return (sizes.frame_bytes(num, distinct) + sizes.dht_bytes(huffman_tables, used_symbols)
          + sizes.sos_bytes(num))


def file_bytes(coefficients: Coefficients, *, code: str = "huffman") -> jax.Array:
  """Estimated size in bytes of the baseline file `djpeg.save` writes (optimized Huffman tables).

  The headers are counted exactly (`header_bytes`); the entropy-coded data is `rate` plus the mean
  byte stuffing and half a byte of final padding. Differentiable like `rate`.

  Returns:
    `(...)` float32 bytes per image.
  """
  if code not in CODES:
    raise ValueError(f"unknown code {code!r}; expected one of {', '.join(map(repr, CODES))}.")
  bits, used = _per_image(coefficients, "file", code=code)
  return header_bytes(coefficients.tables, used) + sizes.data_bytes(bits)
