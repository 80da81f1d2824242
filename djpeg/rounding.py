"""Rounding as libjpeg does it, and the differentiable surrogates that stand in for it.

JPEG rounds in many places: 8-bit samples, table entries, quantized coefficients. Each rounding
has zero gradient almost everywhere, so the codec pairs an exact forward value with a surrogate
gradient. Two families live here:

* straight-through helpers (`straight_through`, `round_ste`, `floor_ste`, `clip_ste`): the forward
  value is exact and the gradient is that of a smooth stand-in (usually the identity);
* the quantizer surrogates chosen by name with `rounding=` in `djpeg.encode`:

  ============  ==========================  ==============================================
  name          forward                     gradient d out / d x
  ============  ==========================  ==============================================
  "ste"         round(x) (exact)            1
  "ste_cubic"   round(x) (exact)            3 (x - round(x))^2   (Reich et al., WACV 2024)
  "cubic"       round(x) + (x - round(x))^3 3 (x - round(x))^2   (Shin & Song, 2017)
  "noise"       x + u,  u ~ U(-1/2, 1/2)    1                    (additive-noise proxy)
  ============  ==========================  ==============================================

All rounding to integers is half away from zero, as libjpeg's quantizer does
(`jcdctmgr.c: quantize`), not numpy's half-to-even.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ROUNDINGS = ("ste", "ste_cubic", "cubic", "noise")


def round_half_away(x: jax.Array) -> jax.Array:
  """Rounds to the nearest integer, ties away from zero (libjpeg's rule). No gradient."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def floor_divide(numerator: jax.Array, denominator) -> jax.Array:
  """floor(numerator / denominator), exact for positive denominators. No gradient.

  XLA compiles division by a constant as multiplication by the rounded reciprocal, which can
  land an exact quotient an ulp low; the result is corrected with exact float products, valid
  while numerator and the products stay below 2**24 in magnitude (integers in float32).
  """
  q = jnp.floor(numerator / denominator)
  q = jnp.where((q + 1) * denominator <= numerator, q + 1, q)
  return jnp.where(q * denominator > numerator, q - 1, q)


def divide_round_half_away(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """round_half_away(numerator / denominator), exact for positive integer-valued denominators.

  This is libjpeg's quantizer rule, (|x| + d/2) // d with the sign restored, computed so that a
  quotient exactly on a .5 tie rounds away from zero even when XLA divides inexactly.
  """
  a = jnp.abs(numerator)
  r = jnp.floor(a / denominator + 0.5)
  r = jnp.where(a >= (r + 0.5) * denominator, r + 1, r)
  r = jnp.where(a < (r - 0.5) * denominator, r - 1, r)
  return jnp.sign(numerator) * r


@jax.custom_jvp
def straight_through(exact: jax.Array, smooth: jax.Array) -> jax.Array:
  """Returns `exact` in the forward pass with the gradient of `smooth`.

  The value is `exact` bit for bit: a rounded -0.0 (from a small negative input) keeps its
  sign, which the rate model reads to know which way a zero coefficient would move.
  """
  return exact


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
  return primals[0], tangents[1]


def round_ste(x: jax.Array) -> jax.Array:
  """Half-away-from-zero rounding with identity gradient."""
  return straight_through(round_half_away(x), x)


def floor_ste(x: jax.Array) -> jax.Array:
  """Floor with identity gradient."""
  return straight_through(jnp.floor(x), x)


def clip_ste(x: jax.Array, lo: float, hi: float) -> jax.Array:
  """Clip to [lo, hi] with identity gradient, so saturated values still learn."""
  return straight_through(jnp.clip(x, lo, hi), x)


def quantizer(name: str) -> Callable[..., jax.Array]:
  """Returns the rounding surrogate `f(x, key, rounded=None)` called `name` (module docstring).

  `key` is a `jax.random` key, used only by "noise". `rounded`, if given, is the exact rounding
  of `x` (computed by the caller from exact operands); by default `round_half_away(x)`.
  """
  if name == "ste":
    def ste(x, key, rounded=None):
      return straight_through(round_half_away(x) if rounded is None else rounded, x)
    return ste
  if name in ("ste_cubic", "cubic"):
    def cubic(x, key, rounded=None):
      r = jax.lax.stop_gradient(round_half_away(x) if rounded is None else rounded)
      smooth = r + (x - r) ** 3
      return straight_through(r, smooth) if name == "ste_cubic" else smooth
    return cubic
  if name == "noise":
    def noise(x, key, rounded=None):
      if key is None:
        raise ValueError('rounding="noise" needs a PRNG key: pass key=jax.random.key(seed).')
      return x + jax.random.uniform(key, x.shape, x.dtype, -0.5, 0.5)
    return noise
  raise ValueError(f"unknown rounding {name!r}; expected one of {', '.join(map(repr, ROUNDINGS))}.")


def exact_forward(exact_fn: Callable, smooth_fn: Callable) -> Callable:
  """Combines two implementations of one stage: `exact_fn` forward, the derivative of `smooth_fn`.

  The result is a `jax.custom_jvp` function: its value is `exact_fn(*args)` (libjpeg's integer
  arithmetic, say) and its JVP is that of `smooth_fn` (the float formula the integer code
  approximates). Unlike `straight_through`, the smooth function is never evaluated in the forward
  pass, so a faithful pipeline costs no more than the exact one. Both take and return float arrays.
  """
  f = jax.custom_jvp(exact_fn)

  @f.defjvp
  def _jvp(primals, tangents):
    _, t_out = jax.jvp(smooth_fn, primals, tangents)
    return exact_fn(*primals), t_out

  return f
