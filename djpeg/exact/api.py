"""Quantized coefficients to JPEG bytes and back: `write_coefficients`, `read_coefficients`.

This is the exact, non-differentiable end of djpeg, in numpy: coefficients are written as they
are (integers, nothing re-quantized), and `djpeg.decode(read_coefficients(data))` is what any
JPEG decoder shows for them. Images become coefficients above this package (`djpeg.files`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from djpeg.coefficients import Coefficients
from djpeg.exact import metadata as metadata_lib, reader, scripts, writer
from djpeg.exact.metadata import Metadata

__all__ = ["check_tables", "read_coefficients", "write_coefficients"]


def _fmt(x) -> str:
  """A numpy scalar as a user would write it: 256, 0.5, nan."""
  x = float(x)
  return str(int(x)) if x.is_integer() else repr(x)


def check_tables(tables: np.ndarray, what: str, max_step: int = 255) -> None:
  """Quantization tables must be integers in 1..255 (8-bit DQT, baseline), or in 1..65535 with
  `max_step=65535` (16-bit DQT entries, which extended sequential and progressive files allow)."""
  bad = ~np.isfinite(tables) | (tables != np.round(tables)) | (tables < 1) | (tables > max_step)
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    *lead, t, u, v = idx
    where = f"table {t}" + (f" of image {tuple(lead)}" if lead else "")
    kind = "baseline JPEG" if max_step == 255 else "JPEG"
    raise ValueError(f"{what}: {where} entry [{u}, {v}] is {_fmt(tables[idx])}; {kind} "
                     f"quantization steps are integers in 1..{max_step}.")


_LIMIT = np.full((8, 8), 1023)
_LIMIT[0, 0] = 2047
#: JPEG's largest frame side (16-bit fields in SOF).
MAX_SIDE = 65535


def _integer_components(c: Coefficients) -> list[np.ndarray]:
  """The components as integer numpy arrays, refusing non-integer or out-of-range values."""
  out = []
  for i, comp in enumerate(c.components):
    a = np.asarray(comp)
    small = _small_integers(a)
    out.append(small if small is not None else _checked_integers(i, a))
  return out


def _small_integers(a: np.ndarray) -> np.ndarray | None:
  """`a` as int16 when every entry is an integer in -1023..1023 (what 8-bit images give), else
  None. Three cheap passes, against the full check's several; a None sends `a` to that check."""
  if a.dtype not in (np.float32, np.float64, np.int16, np.int32):
    return None
  with np.errstate(invalid="ignore"):
    ints = a.astype(np.int16, copy=False)  # NaN, inf, values beyond int16 come out different
  if a.dtype != np.int16 and not np.array_equal(ints, a):
    return None
  if ints.size and (ints.max() > 1023 or ints.min() < -1023):
    return None
  return ints


def _checked_integers(i: int, a: np.ndarray) -> np.ndarray:
  """Component `i` as int32, or a ValueError naming its first bad entry."""
  if np.issubdtype(a.dtype, np.integer):
    a = a.astype(np.int64) if a.dtype.itemsize > 4 or a.dtype == np.uint32 else a
  elif not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"component {i} has dtype {a.dtype}; coefficients must be integers.")
  with np.errstate(invalid="ignore"):
    ints = a.astype(np.int32) if a.dtype != np.int32 else a
  if a.dtype.kind == "f" and not np.array_equal(ints, a):
    idx = tuple(int(j) for j in np.argwhere(~(ints == a))[0])
    raise ValueError(
        f"component {i} holds non-integer coefficients (entry {idx} is {_fmt(a[idx])}); a file "
        "stores integers. Coefficients from rounding='noise' or other soft roundings must be "
        "rounded (e.g. encode with rounding='ste') before saving.")
  if ints.size and (ints.max() > 1023 or ints.min() < -1023):  # rare: find out what is wrong
    bad = np.abs(a.astype(np.float64)) > _LIMIT
    if bad.any():
      *lead, r, col, u, v = (int(j) for j in np.argwhere(bad)[0])
      what = "DC" if (u, v) == (0, 0) else f"AC coefficient [{u}, {v}]"
      limit = "|DC| <= 2047" if (u, v) == (0, 0) else "|AC| <= 1023"
      image = f" of image {tuple(lead)}" if lead else ""
      raise ValueError(f"component {i} block (row {r}, col {col}){image}: {what} is "
                       f"{_fmt(a[(*lead, r, col, u, v)])}; 8-bit JPEG codes {limit}.")
  return ints


def write_coefficients(c: Coefficients, *, optimize: bool = True, progressive=False,
                       restart_interval: int | None = None,
                       metadata: Metadata | None = None,
                       segments: Sequence[tuple[int, bytes]] = (),
                       share_equal_tables: bool = False, compact: bool = False,
                       jfif: bool = True) -> list[bytes]:
  """The JPEG files of quantized coefficients (libjpeg's `jpeg_write_coefficients`): one per image.

  Args:
    c: `Coefficients` with integer-valued components and tables; batch shape `()` or `(B,)`.
      Written as they are, nothing re-quantized. Tables in 1..255 give baseline files; a step
      up to 65535 (what libjpeg writes below quality 25 without `-baseline`, and what such a
      file's coefficients carry) is written as a 16-bit DQT entry, in an extended sequential
      frame (SOF1) when not progressive, as libjpeg does.
    optimize: optimal Huffman tables per image, built exactly as libjpeg-turbo does (default);
      False uses the Annex K tables.
    progressive: False (baseline, SOF0); True: progressive JPEG (SOF2) with libjpeg's default scan
      script and per-scan optimal tables (with `optimize=False`: Annex K tables, end-of-band runs
      of one block); "optimize": the smallest script of a family of standard ones for this image
      (`scripts`, like mozjpeg's optimize_scans), never larger than libjpeg's.
    restart_interval: emit RST markers every this many MCUs (None or 0: none).
    metadata: ICC profile, EXIF, XMP and comment written into every file (`Metadata`).
    segments: (marker, payload) APPn / COM segments copied into every file as they are (what
      `markers.metadata_segments` reads from another file), after `metadata`'s; a JFIF APP0
      among them is not copied (the file has its own: `metadata.density` sets its density).
    share_equal_tables: equal tables share one DQT slot (`writer.quant_slots`); by default
      the slots are libjpeg's (luma 0, chroma 1), each written even when the tables are equal.
    compact: the fewest header bytes for the same coefficients: equal tables share a DQT
      slot, all of them in one DQT segment, each scan's Huffman tables in one DHT segment, and
      luma and chroma share a Huffman table where that makes the file smaller. Standard
      baseline JPEG that every decoder reads, the same pixels; 5-60 bytes fewer (with
      `jfif=False` 23-80), which matters for small images: a 32x32 file is about half
      headers. Default False: libjpeg-turbo's layout, byte for byte.
    jfif: write the JFIF APP0 segment (18 bytes; default). Without it decoders assume YCbCr
      for three components as they do for camera files, which carry none; it holds only the
      print density, so False refuses a density in `metadata` or in a copied JFIF segment.
  Returns:
    A list of `bytes`, one file per image (one item for batch shape `()`).
  Raises:
    ValueError: bad arguments, non-integer coefficients, values JPEG cannot code (|AC| > 1023,
      DC differences beyond 11 bits), or tables outside 1..65535; the message names the
      component, block or table entry.
  """
  c.check()
  if progressive not in (True, False, "optimize"):
    raise ValueError(f'progressive must be False, True or "optimize"; got {progressive!r}.')
  if progressive == "optimize" and not optimize:
    raise ValueError('progressive="optimize" chooses scans by their optimal Huffman tables: it '
                     "needs optimize=True.")
  if len(c.batch_shape) > 1:
    raise ValueError(f"a batch of coefficients must have one batch axis; got {c.batch_shape}.")
  if restart_interval is None:
    restart_interval = 0
  if not isinstance(restart_interval, (int, np.integer)) or not 0 <= restart_interval <= 65535:
    raise ValueError(f"restart_interval must be an integer in 0..65535 (MCUs); got {restart_interval!r}.")
  if c.height > MAX_SIDE or c.width > MAX_SIDE:
    raise ValueError(f"JPEG frames are at most {MAX_SIDE}x{MAX_SIDE}; got {c.height}x{c.width}.")
  tables = np.asarray(c.tables, np.float64)
  check_tables(tables, "Coefficients.tables", max_step=65535)
  components = _integer_components(c)
  tables = tables.astype(np.int64)
  raw = metadata.segments() if metadata else []
  if not jfif and ((metadata and metadata.density) or
                   metadata_lib.jfif_density(list(segments))):
    raise ValueError("the print density (dpi) is written in the JFIF APP0 segment: it needs "
                     "jfif=True.")
  jfif_bytes = (metadata.jfif_segment() if metadata else None) if jfif else b""
  for marker, payload in segments:
    if not (0xE0 <= marker <= 0xEF or marker == 0xFE) or len(payload) > 65533:
      raise ValueError(f"segment FF {marker:02X} of {len(payload)} bytes cannot be copied: only "
                       "APPn and COM segments of at most 65,533 bytes.")
    if marker == 0xE0 and payload[:5] == b"JFIF\x00":
      continue          # the writer's own JFIF APP0 stands in for it (as jpegtran's does)
    raw.append(metadata_lib.segment_bytes(marker, payload))
  def one(comps, tabs):
    script = None
    if progressive == "optimize":
      script = scripts.choose(comps, c.height, c.width, c.sampling)
    return writer.encode_image(comps, tabs, c.height, c.width, c.sampling, optimize=optimize,
                               progressive_mode=bool(progressive),
                               restart_interval=int(restart_interval), script=script,
                               segments=raw, jfif=jfif_bytes,
                               share_equal_tables=share_equal_tables or compact, compact=compact)

  if not c.batch_shape:
    return [one(components, tables)]
  return [one([comp[i] for comp in components], tables[i]) for i in range(c.batch_shape[0])]


def read_coefficients(data: bytes) -> Coefficients:
  """The quantized coefficients, tables and sampling factors of a JPEG file's bytes
  (libjpeg's `jpeg_read_coefficients`).

  Baseline (SOF0/SOF1) and progressive (SOF2) Huffman-coded 8-bit files with 1 (gray) or 3
  components, any sampling factors, restart markers; APPn and COM segments are skipped.

  Returns:
    `Coefficients` with numpy arrays: int16 components (int32 if a value does not fit),
    float32 tables, the file's size and sampling factors. `djpeg.decode` of it is the image
    libjpeg-turbo decodes.
  Raises:
    JPEGError: the file is malformed or truncated, or uses something not read here (arithmetic
      coding, 12-bit or lossless, hierarchical, 2 or 4 components); the message says which.
  """
  return reader.read(bytes(data))
