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


def straight_through(exact: jax.Array, smooth: jax.Array) -> jax.Array:
  """Returns `exact` in the forward pass with the gradient of `smooth`."""
  return smooth + jax.lax.stop_gradient(exact - smooth)


def round_ste(x: jax.Array) -> jax.Array:
  """Half-away-from-zero rounding with identity gradient."""
  return straight_through(round_half_away(x), x)


def floor_ste(x: jax.Array) -> jax.Array:
  """Floor with identity gradient."""
  return straight_through(jnp.floor(x), x)


def clip_ste(x: jax.Array, lo: float, hi: float) -> jax.Array:
  """Clip to [lo, hi] with identity gradient, so saturated values still learn."""
  return straight_through(jnp.clip(x, lo, hi), x)


def _cubic(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  r = jax.lax.stop_gradient(round_half_away(x))
  return r, r + (x - r) ** 3


def quantizer(name: str) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
  """Returns the rounding surrogate `f(x, key) -> rounded x` called `name` (see module docstring).

  `key` is a `jax.random` key, used only by "noise"; the others ignore it.
  """
  if name == "ste":
    return lambda x, key: round_ste(x)
  if name == "ste_cubic":
    def ste_cubic(x, key):
      r, smooth = _cubic(x)
      return straight_through(r, smooth)
    return ste_cubic
  if name == "cubic":
    return lambda x, key: _cubic(x)[1]
  if name == "noise":
    def noise(x, key):
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
