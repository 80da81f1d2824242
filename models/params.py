"""Model parameters on disk: one flat .npz per model, and the networks shipped in the package.

Keys are the '/'-joined paths of the model's `nnx.Param` and `nnx.BatchStat` variables (a
BatchNorm's running statistics are part of the model it runs in evaluation), so a file loads
into any instance of the same architecture, and a mismatch (a file for another model, a changed
layer) is reported with the variable's name.
"""

from __future__ import annotations

import io
from importlib import resources

import jax.numpy as jnp
import numpy as np
from flax import nnx

from djpeg.atomic import write_bytes_atomic


#: What a model file holds: the parameters and BatchNorm's running statistics.
_SAVED = (nnx.Param, nnx.BatchStat)


def save_params(model: nnx.Module, path: str) -> None:
  """Writes a model's parameters and batch statistics as one flat .npz (keys are '/'-joined
  paths), atomically."""
  flat = {"/".join(map(str, k)): np.asarray(v)
          for k, v in nnx.to_flat_state(nnx.state(model, _SAVED))}
  buf = io.BytesIO()
  np.savez(buf, **flat)
  write_bytes_atomic(path, buf.getvalue())


def load_params(model: nnx.Module, path: str) -> nnx.Module:
  """Loads `save_params` output into `model` (same architecture); returns the model."""
  try:
    with np.load(path) as data:
      stored = dict(data)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read model parameters {path!r}: {e}") from None
  flat = nnx.to_flat_state(nnx.state(model, _SAVED))
  missing = ["/".join(map(str, k)) for k, _ in flat if "/".join(map(str, k)) not in stored]
  if missing or len(stored) != len(flat):
    raise ValueError(f"{path!r} does not hold this model's parameters and batch statistics "
                     f"(missing {missing[:3]}...).")
  for key, variable in flat:
    value = stored["/".join(map(str, key))]
    if value.shape != variable.shape:
      raise ValueError(f"{path!r}: parameter {'/'.join(map(str, key))} has shape {value.shape}, "
                       f"the model expects {variable.shape}.")
    variable.set_value(jnp.asarray(value))
  return model


def load_packaged(model: nnx.Module, name: str, how_to_train: str) -> nnx.Module:
  """Loads the parameters shipped as `djpeg/models/data/<name>` into `model`.

  Raises:
    ValueError: the package has no such file (`how_to_train` says how to make one).
  """
  path = resources.files("djpeg.models").joinpath("data", name)
  if not path.is_file():
    raise ValueError(f"the package has no trained {type(model).__name__} ({name}); "
                     f"{how_to_train}")
  with resources.as_file(path) as p:
    return load_params(model, str(p))
