"""Quantization tables: the Annex K tables, IJG quality scaling, and the zigzag scan order.

Tables are `(..., 8, 8)` arrays in natural (row-major) order, in JPEG step units: entry [u, v]
is the step for vertical frequency u and horizontal frequency v. Baseline JPEG allows 1..255.
"""

from __future__ import annotations

import json
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from djpeg import checks
from djpeg.atomic import write_bytes_atomic
from djpeg.rounding import clip_ste, floor_divide, straight_through

#: The quality used when neither a quality nor tables are given: libjpeg's (and Pillow's) default.
DEFAULT_QUALITY = 75

#: ITU-T T.81 Annex K, table K.1 (luminance), natural order.
ANNEX_K_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=np.float32)

#: ITU-T T.81 Annex K, table K.2 (chrominance), natural order.
ANNEX_K_CHROMA = np.array([
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
], dtype=np.float32)

#: Both Annex K tables, `(2, 8, 8)`: [luma, chroma].
ANNEX_K = np.stack([ANNEX_K_LUMA, ANNEX_K_CHROMA])


def _zigzag_order() -> np.ndarray:
  order = sorted(((u, v) for u in range(8) for v in range(8)),
                 key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]))
  return np.array([8 * u + v for u, v in order], dtype=np.int32)


#: ZIGZAG[k] is the natural (row-major) index of the k-th coefficient in zigzag scan order.
ZIGZAG = _zigzag_order()
#: NATURAL_TO_ZIGZAG[n] is the zigzag position of natural index n (the inverse permutation).
NATURAL_TO_ZIGZAG = np.argsort(ZIGZAG).astype(np.int32)


def quality_scale(quality: jax.Array) -> jax.Array:
  """IJG's quality-to-percentage mapping (`jpeg_quality_scaling`), straight-through in `quality`.

  Args:
    quality: `(...)` quality in [1, 100].
  Returns:
    `(...)` scale in percent: floor(5000 / q) below 50, 200 - 2q from 50 on. The floor is exact in
    the forward pass (libjpeg divides integers) and has an identity gradient. Qualities outside
    [1, 100] are clamped as libjpeg clamps them.
  """
  # libjpeg maps quality <= 0 to 1 and > 100 to 100; clamping also keeps 5000 / q finite
  # for traced out-of-range values.
  q = clip_ste(jnp.asarray(quality, jnp.float32), 1.0, 100.0)
  return jnp.where(q < 50, straight_through(floor_divide(5000.0, q), 5000.0 / q), 200.0 - 2.0 * q)


def scale_tables(base: jax.Array, scale: jax.Array) -> jax.Array:
  """libjpeg's `jpeg_add_quant_table` with `force_baseline`: clip(floor((base*scale+50)/100), 1, 255).

  The floor and the clip are exact forward and straight-through backward, so gradients reach
  both `base` and `scale` even where an entry saturates.

  Args:
    base: `(..., 8, 8)` base table(s).
    scale: scale in percent, broadcastable against `base`.
  Returns:
    `(..., 8, 8)` float32 tables with integer values in 1..255.
  """
  numerator = jnp.asarray(base, jnp.float32) * scale + 50.0
  floor = straight_through(floor_divide(numerator, 100.0), numerator / 100.0)
  return clip_ste(floor, 1.0, 255.0)


def quality_tables(quality, base=None) -> jax.Array:
  """The tables libjpeg uses at `quality`: IJG scaling of the Annex K (or given) base tables.

  Exactly what `jpeg_set_quality(cinfo, quality, TRUE)` computes for integer qualities (the floor
  comes before the clip), with a straight-through gradient in `quality` and in `base`.

  Args:
    quality: scalar or `(...)` array, each in [1, 100]. Fractional qualities interpolate.
    base: `(k, 8, 8)` or `(8, 8)` base tables in natural order, entries in [1, 32767];
      default: `ANNEX_K`, the Annex K luma and chroma tables, `(2, 8, 8)`.
  Returns:
    `quality.shape + base.shape` float32 tables, integer-valued in 1..255.

  Example:
    >>> djpeg.quality_tables(50)[0, 0]  # q=50 is the identity on the base table
    Array([16., 11., 10., 16., 24., 40., 51., 61.], dtype=float32)
  """
  checks.concrete_range("quality", quality, 1, 100)
  if base is None:
    base = ANNEX_K
  if np.ndim(base) < 2 or np.shape(base)[-2:] != (8, 8):
    raise ValueError(f"base tables must have shape (8, 8) or (k, 8, 8); got {np.shape(base)}.")
  checks.concrete_range("base table", base, 1, 32767, what="entries")
  base = jnp.asarray(base, jnp.float32)
  scale = quality_scale(quality)
  scale = jnp.reshape(scale, jnp.shape(scale) + (1,) * base.ndim)
  return scale_tables(base, scale)


def concrete_quality_tables(quality: float, base=None) -> np.ndarray:
  """`quality_tables` for one concrete quality, in numpy: the same float32 arithmetic step by
  step (IEEE products, sums and quotients, the floor made exact the same way), so the same
  tables for every quality, integer or not, without starting an XLA program. The per-image
  exporter uses it, so that an export runs no XLA at all (a worker forked from the CLI then
  needs none of JAX's threads).

  Args:
    quality: a number in [1, 100].
    base: `(k, 8, 8)` or `(8, 8)` base tables, entries in [1, 32767]; default `ANNEX_K`.
  Returns:
    `base.shape` float32 tables, integer-valued in 1..255.
  """
  checks.concrete_range("quality", quality, 1, 100)
  if np.ndim(quality) != 0:
    raise ValueError(f"concrete_quality_tables takes one quality; got shape {np.shape(quality)}.")
  base = ANNEX_K if base is None else np.asarray(base)
  if np.ndim(base) < 2 or np.shape(base)[-2:] != (8, 8):
    raise ValueError(f"base tables must have shape (8, 8) or (k, 8, 8); got {np.shape(base)}.")
  checks.concrete_range("base table", base, 1, 32767, what="entries")
  q = np.float32(quality)
  scale = (_floor_divide_f32(np.float32(5000.0), q) if q < 50
           else np.float32(200.0) - np.float32(2.0) * q)
  numerator = np.asarray(base, np.float32) * np.float32(scale) + np.float32(50.0)
  return np.clip(_floor_divide_f32(numerator, np.float32(100.0)), 1, 255).astype(np.float32)


def _floor_divide_f32(numerator, denominator):
  """`rounding.floor_divide` in numpy float32."""
  q = np.floor(np.float32(numerator) / np.float32(denominator))
  q = np.where((q + 1) * denominator <= numerator, q + 1, q)
  return np.where(q * denominator > numerator, q - 1, q).astype(np.float32)


def round_tables(tables: jax.Array) -> jax.Array:
  """Makes tables valid baseline steps: round to integers and clip to 1..255, straight-through.

  Args:
    tables: `(..., 8, 8)` real-valued steps.
  Returns:
    `(..., 8, 8)` float32 integer-valued steps in 1..255 whose gradient is the identity.
  """
  t = jnp.asarray(tables, jnp.float32)
  return straight_through(jnp.clip(jnp.floor(t + 0.5), 1.0, 255.0), t)


# ------------------------------------------------------------------ table family files
#
# A table family is a set of tables indexed by a quality-like level, learned for a dataset (see
# `train/tables.py`). Its file is JSON:
#
#   {"format": "djpeg-table-family", "version": 1,
#    "subsampling": "4:2:0",                       # what the tables were learned for
#    "description": "...",                         # free text: data, steps, ...
#    "levels": [{"level": 1,                       # 1 = smallest files, rising with quality
#                "lambda": 0.0004,                 # bits/pixel per unit of 8-bit RGB MSE
#                "tables": [[64 ints], [64 ints], [64 ints]],   # Y, Cb, Cr; natural order, 1..255
#                ...}, ...]}                       # optional extra keys (training figures)

FAMILY_FORMAT = "djpeg-table-family"


def save_table_family(path: str, tables, lambdas, *, subsampling: str = "4:2:0",
                      description: str = "", extra: list[dict] | None = None) -> None:
  """Writes a table family file (format above), atomically.

  Args:
    path: file to write.
    tables: `(K, C, 8, 8)` tables (rounded to integers, clipped to 1..255), level 1 first.
    lambdas: `(K,)` the Lagrange multiplier each level was learned for.
    subsampling, description: recorded in the file.
    extra: optional per-level dicts merged into each level's record.
  """
  tables = np.clip(np.round(np.asarray(tables, np.float64)), 1, 255).astype(int)
  if tables.ndim != 4 or tables.shape[1] not in (1, 3) or tables.shape[2:] != (8, 8):
    raise ValueError(f"tables must have shape (levels, 1 or 3, 8, 8); got {tables.shape}.")
  lambdas = np.asarray(lambdas, np.float64).reshape(-1)
  if len(lambdas) != len(tables):
    raise ValueError(f"{len(tables)} levels of tables but {len(lambdas)} lambdas.")
  levels = []
  for k, (t, lam) in enumerate(zip(tables, lambdas)):
    record = {"level": k + 1, "lambda": float(lam), "tables": t.reshape(len(t), 64).tolist()}
    record.update((extra or [{}] * len(tables))[k])
    levels.append(record)
  data = {"format": FAMILY_FORMAT, "version": 1, "subsampling": subsampling,
          "description": description, "levels": levels}
  write_bytes_atomic(path, json.dumps(data, indent=1).encode())


def _flattened(x):
  """The leaves of nested lists (a non-list is one leaf; None none)."""
  if isinstance(x, list):
    for item in x:
      yield from _flattened(item)
  elif x is not None:
    yield x


def load_table_family(path: str) -> dict:
  """Reads and checks a table family file.

  Args:
    path: a family file, or "learned" for the family shipped with djpeg (learned on the project's
      training images for 4:2:0).
  Returns:
    {"tables": `(K, C, 8, 8)` float32, "lambdas": `(K,)`, "subsampling": str,
     "description": str, "levels": the raw level records}.
  Raises:
    ValueError: unreadable file, wrong format or version, or tables outside 1..255.
  """
  try:
    if path == "learned":
      text = resources.files("djpeg").joinpath("data/learned_tables.json").read_text()
    else:
      with open(path) as f:
        text = f.read()
    data = json.loads(text)
  except OSError as e:
    raise ValueError(f"cannot read table family {path!r}: {e}") from None
  except (json.JSONDecodeError, UnicodeDecodeError):
    raise ValueError(f"{path!r} is not a djpeg table family file (a JSON file written by "
                     "djpeg-train tables family or save_table_family).") from None
  if not isinstance(data, dict) or data.get("format") != FAMILY_FORMAT:
    raise ValueError(f"{path!r} is not a djpeg table family file (format {FAMILY_FORMAT!r}).")
  if data.get("version") != 1:
    raise ValueError(f"{path!r} has table family version {data.get('version')!r}; this djpeg "
                     "reads version 1.")
  levels = data.get("levels")
  if not isinstance(levels, list) or not levels:
    raise ValueError(f"{path!r}: no levels (a family file lists at least one).")
  subsampling = data.get("subsampling", "4:2:0")
  if subsampling not in ("4:4:4", "4:2:2", "4:2:0"):         # djpeg.sampling.SUBSAMPLINGS
    raise ValueError(f"{path!r}: subsampling {subsampling!r} is not one of 4:4:4, 4:2:2 and "
                     "4:2:0.")
  per_level = []
  for k, level in enumerate(levels):
    entries = list(_flattened(level.get("tables") if isinstance(level, dict) else None))
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in entries)
    # Numbers only (true would read as a step of 1), 1 or 3 tables of 64 entries.
    if len(entries) not in (64, 192) or not numbers:
      raise ValueError(f"{path!r}: level {k + 1} needs 1 or 3 tables of 64 numbers each; got "
                       f"{len(entries)} entries" + ("" if numbers else ", not all numbers") + ".")
    if isinstance(level.get("level"), int) and level["level"] != k + 1:
      raise ValueError(f"{path!r}: level record {k + 1} is numbered {level['level']}; levels run "
                       "1, 2, ... in order.")
    per_level.append(np.asarray(entries, np.float64).reshape(-1, 8, 8))
  if len({t.shape[0] for t in per_level}) > 1:
    raise ValueError(f"{path!r}: every level needs the same number of tables, 1 or 3.")
  tables = np.stack(per_level)
  try:
    lambdas = np.asarray([float(level["lambda"]) for level in levels])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path!r}: malformed levels ({e}).") from None
  bad = ~np.isfinite(tables) | (tables < 1) | (tables > 255) | (tables != np.round(tables))
  if bad.any():
    k, c, u, v = (int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{path!r}: level {k + 1} table {c} entry [{u}, {v}] is {tables[k, c, u, v]}; "
                     "steps must be integers in 1..255.")
  return {"tables": tables.astype(np.float32), "lambdas": lambdas,
          "subsampling": subsampling,
          "description": data.get("description", ""), "levels": levels}
