"""djpeg: JPEG as a differentiable, trainable part of a JAX model, exact to libjpeg-turbo.

The differentiable codec (`encode`, `decode`, `jpeg`) reproduces libjpeg-turbo's integer pipeline
bit for bit in its forward pass and gives straight-through gradients with respect to the image,
the quality and the quantization tables. Everything runs under `jit`, `vmap` and `grad`.
`rate` estimates the file's bits, `optimize_tables` fits tables to one image, `compress` adds
trellis quantization and regions of interest, and `save` / `dumps` / `load_coefficients` write
and read real .jpg files (through the exact numpy backend, `djpeg.exact`).

Layers, each importing only from those below it (checked by import-linter, pyproject.toml):

  cli -> files -> encoder -> optimize -> roi -> distortion -> rate, metrics
      -> codec, exact -> coefficients -> stages (color, sampling, blocks, dct, quantization,
         tables, rounding, huffman, checks, images, atomic, samples)

`djpeg.models` (Flax networks) and `djpeg.train` (training) sit above all of them; the library
never imports them (the learned predictors are found through entry points).
"""

from djpeg import metrics, rate, roi, samples
from djpeg.codec import decode, encode, jpeg, resolve_tables, transform
from djpeg.coefficients import Coefficients
from djpeg.encoder import Compressed, compress
from djpeg.exact import JPEGError
from djpeg.files import dumps, load_coefficients, save
from djpeg.images import load_image
from djpeg.optimize import TableOptimization, optimize_tables
from djpeg.rounding import ROUNDINGS
from djpeg.sampling import SUBSAMPLINGS
from djpeg.tables import ANNEX_K, ANNEX_K_CHROMA, ANNEX_K_LUMA, DEFAULT_QUALITY, ZIGZAG, quality_tables

__version__ = "0.2.0"

#: Modules of the library's upper layers, imported when first named (`djpeg.batch`, ...), so
#: that `import djpeg` stays as light as it is and the names the README uses still work.
_ON_DEMAND = ("batch", "export", "raydata", "recompress", "perceptual", "codec", "exact")


def __getattr__(name):
  if name in _ON_DEMAND:
    import importlib
    return importlib.import_module(f"djpeg.{name}")
  raise AttributeError(f"module 'djpeg' has no attribute {name!r}")

__all__ = [
    "ANNEX_K", "ANNEX_K_CHROMA", "ANNEX_K_LUMA", "Coefficients", "Compressed", "DEFAULT_QUALITY",
    "JPEGError", "ROUNDINGS", "SUBSAMPLINGS", "TableOptimization", "ZIGZAG", "compress", "decode",
    "dumps", "encode", "jpeg", "load_coefficients", "load_image", "metrics", "optimize_tables",
    "quality_tables", "rate", "resolve_tables", "roi", "samples", "save", "transform",
]
