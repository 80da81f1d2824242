"""The exact file backend: real .jpg files from `Coefficients` or images, and back.

Not differentiable and not traced: numpy only. `save`/`dumps` write baseline or progressive
JPEG (optimal or Annex K Huffman tables, optional restart markers) with a vectorized entropy
coder whose output is byte-identical to libjpeg-turbo's for the same coefficients;
`load_coefficients` reads the quantized coefficients of baseline and progressive files.

Modules: `api` (the public functions), `writer` (file layout), `sequential` (the baseline scan),
`scans` and `progressive` (symbols of progressive scans), `layout` (block order, dummy blocks),
`huffman` (tables), `bitpack` (bits to bytes), `reader` (parser and decoder), `errors`
(`JPEGError`).
"""

from djpeg.exact.api import dumps, load_coefficients, save
from djpeg.exact.errors import JPEGError

__all__ = ["JPEGError", "dumps", "load_coefficients", "save"]
