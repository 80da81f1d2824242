"""Quantization of DCT coefficients by per-frequency steps, with a choice of rounding surrogate.

`quantize` is where JPEG loses information and where the rounding surrogate (see
`djpeg.rounding`) decides what gradients see. Coefficients are in orthonormal DCT units, steps in
JPEG table units, so the quantized value of coefficient F with step Q is round(F / Q), rounded
half away from zero as libjpeg does.
"""

from __future__ import annotations

import jax

from djpeg.rounding import divide_round_half_away, quantizer


def quantize(coefficients: jax.Array, steps: jax.Array, *, rounding: str = "ste",
             key: jax.Array | None = None) -> jax.Array:
  """Quantizes DCT coefficients.

  Args:
    coefficients: `(..., 8, 8)` DCT coefficients in orthonormal units.
    steps: quantization steps broadcastable against `coefficients`, e.g. `(..., 1, 1, 8, 8)` for
      one table per image over a `(..., rows, cols, 8, 8)` grid of blocks.
    rounding: surrogate name: "ste", "ste_cubic", "cubic" or "noise" (`djpeg.rounding`).
    key: PRNG key, required by "noise".
  Returns:
    `(..., 8, 8)` float32 quantized values in step units (integers for "ste" and "ste_cubic").
  """
  rounded = jax.lax.stop_gradient(divide_round_half_away(coefficients, steps))
  return quantizer(rounding)(coefficients / steps, key, rounded)


def dequantize(quantized: jax.Array, steps: jax.Array) -> jax.Array:
  """Quantized values times their steps: the coefficients a decoder reconstructs."""
  return quantized * steps
