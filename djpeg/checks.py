"""Argument checks shared by the public functions.

Every check runs before any computation. Checks on *values* (finite, in range) run only when the
value is concrete: inside `jax.jit` the arrays are tracers and their values are unknown until run
time, so there the caller is responsible for valid inputs (the codec clips tables and images, so
it never produces NaN from an out-of-range value; concrete images outside [0, 1] are refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when `x` holds values we can look at now (not a tracer inside a transformation)."""
  return not isinstance(x, jax.core.Tracer)


def concrete_range(name: str, x: Any, lo: float, hi: float, *, what: str = "values",
                   hint: Callable[[float, float], str] | None = None,
                   slack: float = 0.0) -> None:
  """Raises ValueError if a concrete `x` has a non-finite entry or one outside [lo, hi] by more
  than `slack` (float rounding; the message states [lo, hi]).

  A JAX array is reduced where it lives (a flag and two scalars come back); only a failing one
  is fetched whole, so that the message can name the first offending entry by index. `what`
  names the entries in the message ("" for none); `hint(min, max)` adds a sentence to it.
  """
  if not is_concrete(x):
    return
  if isinstance(x, jax.Array):
    with jax.ensure_compile_time_eval():     # evaluate now, even while tracing other code
      a = jnp.asarray(x)
      if a.size == 0:
        return
      finite, low, high = bool(jnp.isfinite(a).all()), float(a.min()), float(a.max())
  else:
    a = np.asarray(x)
    if a.size == 0:
      return
    finite = bool(np.isfinite(a).all())
    low, high = (float(a.min()), float(a.max())) if finite else (lo, hi)
  if finite and lo - slack <= low and high <= hi + slack:
    return
  a = np.asarray(x)
  if not finite:
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    raise ValueError(f"{name} must be finite; entry {idx} is {a[idx].item()!r}.")
  idx = tuple(int(i) for i in np.argwhere((a < lo - slack) | (a > hi + slack))[0])
  subject = f"{name} {what}" if what else name
  raise ValueError(
      f"{subject} must lie in [{lo:g}, {hi:g}]; entry {idx} is {a[idx].item()!r} (min "
      f"{low:.9g}, max {high:.9g})." + (hint(low, high) if hint else ""))


def is_real_number(x: Any) -> bool:
  """A concrete real scalar: a Python or numpy int or float, or a 0-d array of one; not a bool
  (True is not a quality or a target)."""
  if isinstance(x, (bool, np.bool_)):
    return False
  if isinstance(x, (int, float, np.integer, np.floating)):
    return True
  if getattr(x, "shape", None) == () and is_concrete(x):
    dtype = jnp.result_type(x)
    return jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
  return False


def positive_finite(x: Any) -> bool:
  """A real scalar (`is_real_number`) that is finite and above 0."""
  return is_real_number(x) and bool(np.isfinite(float(x))) and float(x) > 0


def check_choice(name: str, value: Any, choices) -> None:
  if value not in choices:
    raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")


def check_images(images: Any) -> tuple[int, ...]:
  """Checks an image batch `(..., H, W, C)` and returns its shape.

  Images are float arrays in [0, 1], channels last, with C = 1 (gray) or 3 (RGB) and H, W >= 1.
  """
  shape = tuple(np.shape(images))
  if len(shape) not in (3, 4):
    raise ValueError(
        f"images must have shape (H, W, C) or (B, H, W, C); got shape {shape} (rank {len(shape)})."
        + (" For a single gray image add a channel axis: images[..., None]." if len(shape) == 2 else ""))
  h, w, c = shape[-3:]
  if c not in (1, 3):
    hint = " Channels-first input? Move the channel axis last." if shape[-3] in (1, 3) else ""
    raise ValueError(f"images must be channels-last with C = 1 or 3; got shape {shape} (C = {c}).{hint}")
  if h < 1 or w < 1:
    raise ValueError(f"images must be at least 1x1; got shape {shape}.")
  dtype = jnp.result_type(images) if hasattr(images, "dtype") else np.asarray(images).dtype
  if not jnp.issubdtype(dtype, jnp.floating):        # bfloat16 is floating too
    raise ValueError(
        f"images must be floating point in [0, 1]; got dtype {dtype}. "
        "For 8-bit data use images.astype(np.float32) / 255.")
  # A few ulps beyond [0, 1] are float rounding (the codec clips them); more is a mistake.
  concrete_range("images", images, 0.0, 1.0, what="", hint=_unit_range_hint, slack=1e-6)
  return shape


def _unit_range_hint(low: float, high: float) -> str:
  # The codec would clip such values, and float data in 0..255 would come out white.
  if high > 2.0:
    return " The data look like 0..255: divide by 255."
  return " Clip them first (np.clip(images, 0, 1)) if that is what you want."
