"""The small sample images that ship inside the package, for demos, notebooks and tests."""

from __future__ import annotations

from importlib import resources

import numpy as np
from PIL import Image

#: Names of the bundled samples: three RGB photos (192x128) and one gray crop (97x75).
NAMES = ("limes", "houses", "castle", "bear_gray")


def load(name: str, *, uint8: bool = False) -> np.ndarray:
  """Loads a bundled sample.

  Args:
    name: one of `NAMES`.
    uint8: return the 8-bit pixels instead of float32 in [0, 1].
  Returns:
    `(H, W, 3)` for colour samples, `(H, W, 1)` for gray ones.
  """
  if name not in NAMES:
    raise ValueError(f"unknown sample {name!r}; expected one of {', '.join(NAMES)}.")
  with resources.files("djpeg").joinpath(f"data/{name}.png").open("rb") as f:
    image = Image.open(f)
    image.load()
  pixels = np.asarray(image)
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  return pixels if uint8 else pixels.astype(np.float32) / 255.0
