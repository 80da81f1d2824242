"""Quantization of DCT coefficients by per-frequency steps, with a choice of rounding surrogate.

`quantize` is where JPEG loses information and where the rounding surrogate (see
`djpeg.rounding`) decides what gradients see. Coefficients are in orthonormal DCT units, steps in
JPEG table units, so the quantized value of coefficient F with step Q is round(F / Q), rounded
half away from zero as libjpeg does.

An optional per-block dead-zone (`deadzone=`) is the differentiable stand-in for the exporter's
trellis quantization (`djpeg.exact.trellis`), the only spatially varying control a standard JPEG
file has: a file has one table per component, but each block may code smaller values than
rounding gives. With offset theta (in steps) a coefficient is zeroed when |F / Q| < 1/2 + theta,
and other values are lowered by one when their fractional part is below 1/2 + min(theta, 1/2):

  theta = 0       plain rounding (bit exact with the default path);
  0 < theta <= 1/2  a dead-zone quantizer with rounding offset 1/2 - theta (H.264's kind);
  theta > 1/2     truncation, with a zero bin widened to |F / Q| < 1/2 + theta.

The trellis, for a block whose distortion weighs lambda * m_b * W_k per squared error at
frequency k, zeroes an isolated +-1 that costs b bits exactly when |F / Q| < 1/2 + b / (2 lambda
m_b W_k Q_k^2): a dead-zone with theta = b / (2 lambda m_b W_k Q_k^2) (`djpeg.roi.deadzone`
computes it), so training with the dead-zone sees, to first order, what the exporter will do.
The forward value is exact; gradients with respect to the coefficients and steps are the
rounding surrogate's, and with respect to theta those of a sigmoid staircase (each threshold
smoothed over `temperature` steps), so a model learns how its map moves zeros and levels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from djpeg.rounding import divide_round_half_away, quantizer, straight_through
from djpeg.tables import round_tables

#: Width (in steps) over which the dead-zone surrogate smooths each threshold for gradients.
DEADZONE_TEMPERATURE = 0.25


def quantize(coefficients: jax.Array, steps: jax.Array, *, rounding: str = "ste",
             key: jax.Array | None = None, deadzone: jax.Array | None = None,
             temperature: float = DEADZONE_TEMPERATURE) -> jax.Array:
  """Quantizes DCT coefficients.

  Args:
    coefficients: `(..., 8, 8)` DCT coefficients in orthonormal units.
    steps: quantization steps broadcastable against `coefficients`, e.g. `(..., 1, 1, 8, 8)` for
      one table per image over a `(..., rows, cols, 8, 8)` grid of blocks.
    rounding: surrogate name: "ste", "ste_cubic", "cubic" or "noise" (`djpeg.rounding`).
    key: PRNG key, required by "noise".
    deadzone: optional dead-zone offset theta >= 0 in steps (module docstring), broadcastable
      against `coefficients`: `(..., rows, cols, 1, 1)` per block, or per coefficient. Needs an
      exact-forward rounding ("ste" or "ste_cubic"). None (default) is plain rounding.
    temperature: smoothing of the dead-zone thresholds for the gradient with respect to theta.
  Returns:
    `(..., 8, 8)` float32 quantized values in step units (integers for "ste" and "ste_cubic").
  """
  rounded = jax.lax.stop_gradient(divide_round_half_away(coefficients, steps))
  quantized = quantizer(rounding)(coefficients / steps, key, rounded)
  if deadzone is None:
    return quantized
  if rounding not in ("ste", "ste_cubic"):
    raise ValueError(f'deadzone needs an exact-forward rounding ("ste" or "ste_cubic"); got '
                     f'rounding={rounding!r}.')
  return _deadzone(coefficients, steps, rounded, quantized, deadzone, temperature)


def _deadzone(coefficients, steps, rounded, quantized, theta, temperature):
  """Applies a dead-zone of offset `theta` to exactly rounded values (module docstring)."""
  theta = jnp.maximum(jnp.asarray(theta, jnp.float32), 0.0)
  level_offset = jnp.minimum(theta, 0.5)
  magnitude = jax.lax.stop_gradient(jnp.abs(coefficients))
  steps_sg = jax.lax.stop_gradient(steps)
  level = jnp.abs(rounded)
  # Compare |F| with thresholds times the step (not |F| / Q with thresholds), so that theta = 0
  # reproduces libjpeg's rounding exactly, ties included.
  lower = (level >= 2) & (magnitude < (level - 0.5 + level_offset) * steps_sg)
  level = jnp.where(lower, level - 1.0, level)
  level = jnp.where(magnitude < (0.5 + theta) * steps_sg, 0.0, level)
  sign = jnp.where(jnp.signbit(coefficients), -1.0, 1.0)   # zeros keep their sign (the rate
  hard = sign * level                                        # model reads it, see rounding.py)
  # Gradient in theta: a staircase of sigmoids at the thresholds around |F / Q|: the zero
  # threshold 1/2 + theta and the level thresholds n - 1/2 + min(theta, 1/2) for the two
  # levels n >= 2 nearest the rounded value.
  x = jax.lax.stop_gradient(magnitude / steps_sg)
  r = jax.lax.stop_gradient(jnp.abs(rounded))
  soft = jax.nn.sigmoid((x - 0.5 - theta) / temperature)
  for n in (r, r + 1.0):
    soft = soft + jnp.where(n >= 2, jax.nn.sigmoid((x - n + 0.5 - level_offset) / temperature), 0.0)
  smooth = quantized + sign * (soft - jax.lax.stop_gradient(soft))
  return straight_through(hard, smooth)


def dequantize(quantized: jax.Array, steps: jax.Array) -> jax.Array:
  """Quantized values times their steps: the coefficients a decoder reconstructs."""
  return quantized * steps


def quantize_with_tables(dct, tables) -> tuple[tuple[jax.Array, ...], jax.Array]:
  """Quantizes one image's components by real-valued tables, as the encoder would.

  Args:
    dct: per component `(rows, cols, 8, 8)` coefficients (`djpeg.transform`).
    tables: `(C, 8, 8)` steps, rounded and clipped to 1..255 straight-through (`round_tables`).
  Returns:
    (per component the quantized values, the `(C, 8, 8)` integer-valued steps used).
  """
  steps = round_tables(tables)
  return tuple(quantize(d, steps[c]) for c, d in enumerate(dct)), steps
