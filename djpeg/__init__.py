"""djpeg: JPEG as a differentiable, trainable part of a JAX model, exact to libjpeg-turbo.

The differentiable codec (`encode`, `decode`, `jpeg`) reproduces libjpeg-turbo's integer pipeline
bit for bit in its forward pass and gives straight-through gradients with respect to the image,
the quality and the quantization tables. Everything runs under `jit`, `vmap` and `grad`.
`rate` estimates the file's bits, `optimize_tables` fits tables to one image, and `save` /
`load_coefficients` (the exact numpy backend in `djpeg.exact`) write and read real .jpg files.
`compress` (`djpeg.encoder`) adds trellis quantization and regions of interest (`djpeg.roi`).
"""

from djpeg import metrics, rate, roi, samples
from djpeg.codec import decode, encode, jpeg, resolve_tables, transform
from djpeg.coefficients import Coefficients
from djpeg.encoder import Compressed, compress
from djpeg.exact import JPEGError, dumps, load_coefficients, save
from djpeg.optimize import TableOptimization, optimize_tables
from djpeg.rounding import ROUNDINGS
from djpeg.sampling import SUBSAMPLINGS
from djpeg.tables import ANNEX_K, ANNEX_K_CHROMA, ANNEX_K_LUMA, ZIGZAG, quality_tables

__version__ = "0.1.0"

__all__ = [
    "ANNEX_K", "ANNEX_K_CHROMA", "ANNEX_K_LUMA", "Coefficients", "Compressed", "JPEGError",
    "ROUNDINGS", "SUBSAMPLINGS", "TableOptimization", "ZIGZAG", "compress", "decode", "dumps",
    "encode", "jpeg", "load_coefficients", "metrics", "optimize_tables", "quality_tables", "rate",
    "resolve_tables", "roi", "samples", "save", "transform",
]
