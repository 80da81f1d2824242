"""Argument checks shared by the public functions.

Every check runs before any computation. Checks on *values* (finite, in range) run only when the
value is concrete: inside `jax.jit` the arrays are tracers and their values are unknown until run
time, so there the caller is responsible for valid inputs (the codec clips tables and images, so
it never produces NaN from an out-of-range value; concrete images outside [0, 1] are refused).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when `x` holds values we can look at now (not a tracer inside a transformation)."""
  return not isinstance(x, jax.core.Tracer)


def concrete_range(name: str, x: Any, lo: float, hi: float, *, what: str = "values") -> None:
  """Raises ValueError if a concrete `x` has a non-finite entry or one outside [lo, hi].

  The message names the first offending entry by index so a user can find it.
  """
  if not is_concrete(x):
    return
  a = np.asarray(x)
  if a.size == 0:
    return
  finite = np.isfinite(a)
  if not finite.all():
    idx = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise ValueError(f"{name} must be finite; entry {idx} is {a[idx]!r}.")
  bad = (a < lo) | (a > hi)
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{name} {what} must lie in [{lo:g}, {hi:g}]; entry {idx} is {a[idx]!r} "
        f"(min {a.min():g}, max {a.max():g}).")


def concrete_finite(name: str, x: Any) -> None:
  """Raises ValueError if a concrete array `x` holds NaN or inf (checked on device, one scalar back)."""
  if not is_concrete(x):
    return
  if isinstance(x, np.ndarray):
    finite = bool(np.isfinite(x).all())
  else:
    # Reduce on the device and fetch one flag; evaluate now even if called while tracing a
    # function that closes over a concrete array.
    with jax.ensure_compile_time_eval():
      finite = bool(jnp.isfinite(jnp.asarray(x)).all())
  if not finite:
    a = np.asarray(x)
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    raise ValueError(f"{name} must be finite; entry {idx} is {a[idx]!r}.")


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
  dtype = np.dtype(images.dtype if hasattr(images, "dtype") else np.asarray(images).dtype)
  if not np.issubdtype(dtype, np.floating):
    raise ValueError(
        f"images must be floating point in [0, 1]; got dtype {dtype}. "
        "For 8-bit data use images.astype(np.float32) / 255.")
  concrete_finite("images", images)
  _concrete_unit_range(images)
  return shape


def _concrete_unit_range(images: Any) -> None:
  """Raises ValueError if concrete `images` have a value outside [0, 1] (reduced where the array
  lives, two scalars back): the codec would clip it, and float data in 0..255 would come out
  white without a word."""
  if not is_concrete(images):
    return
  if isinstance(images, np.ndarray):
    lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
  else:
    with jax.ensure_compile_time_eval():
      a = jnp.asarray(images)
      lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
  if lo < 0.0 or hi > 1.0:
    a = np.asarray(images)
    idx = tuple(int(i) for i in np.argwhere((a < 0) | (a > 1))[0])
    hint = (" The data look like 0..255: divide by 255." if hi > 2.0 else
            " Clip them first (np.clip(images, 0, 1)) if that is what you want.")
    raise ValueError(f"images must lie in [0, 1]; entry {idx} is {a[idx]!r} (min {lo:g}, max "
                     f"{hi:g}).{hint}")
