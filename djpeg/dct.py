"""The 8x8 DCT: orthonormal float transforms and libjpeg's exact integer ones.

All transforms act on blocks `(..., 8, 8)` (rows, columns). Coefficients are in orthonormal DCT
units, which is JPEG's definition (T.81 A.3.3): F[0, 0] = 8 * mean. libjpeg's accurate integer
DCT (`jfdctint.c`, `jidctint.c`, "islow", the default of libjpeg-turbo and of Pillow) computes the
same transform in 13-bit fixed point with a rounding after each of its two passes; `fdct_islow`
and `idct_islow` reproduce it bit for bit with int32 arithmetic and take the float transform's
gradient. The forward DCT runs each pass as an exact integer matrix product (the butterfly's
matrix), the inverse as elementwise butterflies; both vectorize across any number of blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from djpeg.rounding import exact_forward


def _dct_matrix() -> np.ndarray:
  k = np.arange(8)
  m = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
  m[0] = np.sqrt(1 / 8)
  return m.astype(np.float32)


#: DCT_MATRIX[u, x]: the orthonormal 8-point DCT-II basis; F = C X C^T for a block X.
DCT_MATRIX = _dct_matrix()
# The 2-D transform as one 64x64 matrix on row-major flattened blocks: a single large matmul is
# much faster than two batched 8x8 ones on CPU.
_DCT_2D = np.kron(DCT_MATRIX, DCT_MATRIX).T.astype(np.float32)   # f_flat = x_flat @ _DCT_2D
_HIGHEST = jax.lax.Precision.HIGHEST


def fdct(blocks: jax.Array) -> jax.Array:
  """Orthonormal 2-D DCT-II of `(..., 8, 8)` blocks, in float32."""
  shape = blocks.shape
  flat = jnp.matmul(blocks.reshape(*shape[:-2], 64), _DCT_2D, precision=_HIGHEST)
  return flat.reshape(shape)


def idct(coefficients: jax.Array) -> jax.Array:
  """Inverse of `fdct` on `(..., 8, 8)` coefficient blocks, in float32."""
  shape = coefficients.shape
  flat = jnp.matmul(coefficients.reshape(*shape[:-2], 64), _DCT_2D.T, precision=_HIGHEST)
  return flat.reshape(shape)


# ---------------------------------------------------------------- libjpeg's islow, bit exact

_CONST_BITS = 13
_PASS1_BITS = 2
_FIX_0_298631336 = 2446
_FIX_0_390180644 = 3196
_FIX_0_541196100 = 4433
_FIX_0_765366865 = 6270
_FIX_0_899976223 = 7373
_FIX_1_175875602 = 9633
_FIX_1_501321110 = 12299
_FIX_1_847759065 = 15137
_FIX_1_961570560 = 16069
_FIX_2_053119869 = 16819
_FIX_2_562915447 = 20995
_FIX_3_072711336 = 25172


def _descale(x: jax.Array, n: int | None) -> jax.Array:
  """libjpeg's DESCALE: x / 2**n rounded half up (an arithmetic shift); None leaves x as it is."""
  return x if n is None else (x + (1 << (n - 1))) >> n


def _fdct_pass(d: list, shift: int) -> list:
  """One 1-D pass of jpeg_fdct_islow on 8 int32 arrays, each output descaled by `shift` bits
  (None: not descaled, which makes the pass linear; `_FDCT_MATRIX` is built from it).

  The two DC-like outputs are exact left shifts in libjpeg; writing them as (x << 13) descaled by
  `shift` gives the same value and lets both passes share this code.
  """
  tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
  tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
  tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
  tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
  # Even part (LL&M figure 1).
  tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
  tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
  out = [None] * 8
  out[0] = _descale((tmp10 + tmp11) << _CONST_BITS, shift)
  out[4] = _descale((tmp10 - tmp11) << _CONST_BITS, shift)
  z1 = (tmp12 + tmp13) * _FIX_0_541196100
  out[2] = _descale(z1 + tmp13 * _FIX_0_765366865, shift)
  out[6] = _descale(z1 - tmp12 * _FIX_1_847759065, shift)
  # Odd part (LL&M figure 8).
  z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
  z5 = (z3 + z4) * _FIX_1_175875602
  tmp4 = tmp4 * _FIX_0_298631336
  tmp5 = tmp5 * _FIX_2_053119869
  tmp6 = tmp6 * _FIX_3_072711336
  tmp7 = tmp7 * _FIX_1_501321110
  z1 = z1 * -_FIX_0_899976223
  z2 = z2 * -_FIX_2_562915447
  z3 = z3 * -_FIX_1_961570560 + z5
  z4 = z4 * -_FIX_0_390180644 + z5
  out[7] = _descale(tmp4 + z1 + z3, shift)
  out[5] = _descale(tmp5 + z2 + z4, shift)
  out[3] = _descale(tmp6 + z2 + z3, shift)
  out[1] = _descale(tmp7 + z1 + z4, shift)
  return out


def _idct_pass(z: list, shift: int) -> list:
  """One 1-D pass of jpeg_idct_islow on 8 int32 arrays, each output descaled by `shift` bits.

  libjpeg short-cuts columns and rows whose AC terms are all zero; the short cut gives the same
  values as the full computation, so it is not needed here.
  """
  # Even part.
  z1 = (z[2] + z[6]) * _FIX_0_541196100
  tmp2 = z1 - z[6] * _FIX_1_847759065
  tmp3 = z1 + z[2] * _FIX_0_765366865
  tmp0 = (z[0] + z[4]) << _CONST_BITS
  tmp1 = (z[0] - z[4]) << _CONST_BITS
  tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
  tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
  # Odd part.
  t0, t1, t2, t3 = z[7], z[5], z[3], z[1]
  z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
  z5 = (z3 + z4) * _FIX_1_175875602
  t0 = t0 * _FIX_0_298631336
  t1 = t1 * _FIX_2_053119869
  t2 = t2 * _FIX_3_072711336
  t3 = t3 * _FIX_1_501321110
  z1 = z1 * -_FIX_0_899976223
  z2 = z2 * -_FIX_2_562915447
  z3 = z3 * -_FIX_1_961570560 + z5
  z4 = z4 * -_FIX_0_390180644 + z5
  t0 = t0 + z1 + z3
  t1 = t1 + z2 + z4
  t2 = t2 + z2 + z3
  t3 = t3 + z1 + z4
  return [_descale(v, shift) for v in (
      tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0,
      tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3)]


def _two_passes(x: jax.Array, one_pass, axes: tuple[int, int], shifts: tuple[int, int]) -> jax.Array:
  """Applies `one_pass` along block axis axes[0] (descaling by shifts[0]), then along axes[1].

  `x` is `(..., 8, 8)`. XLA's CPU code for stacking the 8 outputs is fast only when the stacked
  axis is not the innermost one, so the block axis before the block (the block column, when there
  is one) is moved innermost for the computation; XLA merges this transpose with neighbouring ones.
  """
  if x.ndim >= 3:
    x = jnp.moveaxis(x, -3, -1)
    axes = tuple(a - 1 for a in axes)
  for axis, shift in zip(axes, shifts):
    parts = [jax.lax.index_in_dim(x, k, axis, keepdims=False) for k in range(8)]
    x = jnp.stack(one_pass(parts, shift), axis=axis)
  return jnp.moveaxis(x, -1, -3) if x.ndim >= 3 else x


def _pass_matrix(one_pass) -> np.ndarray:
  """`(8, 8)` int64 M with one_pass(d)[u] == sum_j M[u, j] d[j] before descaling.

  Before its final descale a pass is an integer linear map; applying it to the unit vectors
  gives its matrix, so the matrix form computes exactly libjpeg's sums.
  """
  return np.stack(one_pass(list(np.eye(8, dtype=np.int64)), None))


#: jpeg_fdct_islow's 1-D pass as a matrix: entries |m| <= 11363, every row's |m| sums to <= 2**16.
_FDCT_MATRIX = _pass_matrix(_fdct_pass)


def _fdct_islow_exact(samples: jax.Array) -> jax.Array:
  # Each pass as multiply-and-reduce with the pass matrix: XLA's CPU code runs a reduction over a
  # small axis several times faster than the butterflies' 8 outputs stacked back into a block
  # (each output of a stack is computed by its own loop). int32 is exact: with |x| <= 128 and
  # row sums of |m| <= 2**16, pass 1 sums stay below 2**23 and its outputs below 2**12, so
  # pass 2 sums stay below 2**28.
  m = jnp.asarray(_FDCT_MATRIX, jnp.int32)
  x = samples.astype(jnp.int32) - 128
  # Pass 1 along each row (x[..., r, c] -> y[..., r, u]), pass 2 along each column
  # (y[..., r, u] -> z[..., v, u]), as in jpeg_fdct_islow.
  y = _descale((x[..., :, None, :] * m).sum(-1), _CONST_BITS - _PASS1_BITS)
  z = _descale((y[..., None, :, :] * m[:, :, None]).sum(-2), _CONST_BITS + _PASS1_BITS)
  # libjpeg's output is 8x the orthonormal DCT; its quantizer divides by 8 * step. Dividing by 8
  # here is exact in float32 and keeps the coefficients in orthonormal units.
  return z.astype(jnp.float32) / 8.0


def _fdct_float_shifted(samples: jax.Array) -> jax.Array:
  return fdct(samples - 128.0)


def _idct_islow_exact(dequantized: jax.Array) -> jax.Array:
  z = jnp.floor(dequantized + 0.5).astype(jnp.int32)   # integer input, as in a real file
  # Pass 1 down each column, pass 2 along each row; the extra 3 bits undo libjpeg's factor of 8.
  x = _two_passes(z, _idct_pass, (-2, -1), (_CONST_BITS - _PASS1_BITS, _CONST_BITS + _PASS1_BITS + 3))
  # range_limit[x & RANGE_MASK] of jdmaster.c's prepare_range_limit_table: clamps x + 128 to
  # 0..255 for |x| < 384 and wraps beyond, as libjpeg does for corrupt data.
  i = x & 1023
  out = jnp.where(i < 128, i + 128, jnp.where(i < 512, 255, jnp.where(i < 896, 0, i - 896)))
  return out.astype(jnp.float32)


def _idct_float_shifted(dequantized: jax.Array) -> jax.Array:
  return idct(dequantized) + 128.0


_fdct_islow = exact_forward(_fdct_islow_exact, _fdct_float_shifted)
_idct_islow = exact_forward(_idct_islow_exact, _idct_float_shifted)


def fdct_islow(samples: jax.Array) -> jax.Array:
  """libjpeg's accurate integer forward DCT (`jpeg_fdct_islow`), bit exact.

  Args:
    samples: `(..., 8, 8)` integer-valued samples in 0..255 (level shift included here).
  Returns:
    `(..., 8, 8)` float32 coefficients in orthonormal units: libjpeg's integer output / 8, so that
    `round_half_away(out / step)` is exactly libjpeg's quantized value. The gradient is that of
    `fdct(samples - 128)`.
  """
  return _fdct_islow(jnp.asarray(samples, jnp.float32))


def idct_islow(dequantized: jax.Array) -> jax.Array:
  """libjpeg's accurate integer inverse DCT (`jpeg_idct_islow`) with level shift and range limit.

  Args:
    dequantized: `(..., 8, 8)` dequantized coefficients (quantized value times step), rounded to
      integers first as they would be in a file.
  Returns:
    `(..., 8, 8)` float32 samples in 0..255, bit exact with libjpeg for any coefficients that fit
    its 16-bit SIMD path (all that an 8-bit image produces). Gradient: `idct(x) + 128`, unclipped.
  """
  return _idct_islow(jnp.asarray(dequantized, jnp.float32))
