"""The exact file backend, in numpy: `Coefficients` to JPEG bytes and back, and the trellis.

Not differentiable and not traced, and it imports nothing from the JAX layers of djpeg (the
import-linter contract in pyproject.toml keeps it so). `write_coefficients` writes baseline or
progressive JPEG (optimal or Annex K Huffman tables, optional restart markers) with a vectorized
entropy coder whose output is byte-identical to libjpeg-turbo's for the same coefficients;
`read_coefficients` reads the quantized coefficients of baseline and progressive files.

Writer side (`jcmarker`/`jchuff`/`jcphuff` in libjpeg-turbo): `writer` (file layout), `sequential`
(the baseline scan), `scans` and `progressive` (symbols of progressive scans), `layout` (block
order, dummy blocks), `huffman` (tables), `bitpack` (bits to bytes), `sizes` (how many bytes a
file takes), `scripts` (progressive scan scripts chosen per image), `trellis` (trellis
quantization). Reader side (`jdmarker`/`jdhuff`/`jdphuff`/`jdinput`): `markers` (segments),
`bitreader`, `decode_sequential`, `decode_progressive`, `reader` (the driver). `errors`:
`JPEGError`, and `UnsupportedJPEGError` for well-formed files that use a feature djpeg does
not read.
"""

from djpeg.exact.api import check_tables, read_coefficients, write_coefficients
from djpeg.exact.errors import JPEGError, UnsupportedJPEGError
from djpeg.exact.metadata import Metadata

__all__ = ["JPEGError", "Metadata", "UnsupportedJPEGError", "check_tables", "read_coefficients",
           "write_coefficients"]
