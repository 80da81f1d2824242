"""The error type of the file backend: what `load_coefficients` raises for a file it cannot read."""


class JPEGError(ValueError):
  """A JPEG file is malformed, truncated, or uses a feature djpeg does not read.

  A subclass of ValueError, so code that catches ValueError for bad input keeps working. The
  message names the problem (the marker, segment, scan or block) so a user can tell a corrupt
  file from an unsupported one.
  """


class UnsupportedJPEGError(JPEGError):
  """A JPEG file that uses a feature djpeg does not read: arithmetic coding, 12-bit samples,
  lossless or hierarchical coding, CMYK, a height defined by DNL, sampling factors that are not
  integer ratios. Other decoders may show it; it is not corrupt."""
