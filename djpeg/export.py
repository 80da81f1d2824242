"""One image file to one JPEG file, with every choice the command line offers: `export_file`.

The unit of work of `djpeg-cli encode`, of its batch mode and of the Ray Data path
(`djpeg.raydata`): read the image (`djpeg.images.load_image`) and its metadata, choose the
coefficients in the requested mode, write the file atomically with the metadata, and report
what was done (`ExportResult`). `ExportOptions` is frozen and picklable, so worker processes
and Ray actors receive it as it is.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import warnings
from importlib.metadata import entry_points

import numpy as np

from djpeg import codec, tables as tables_lib
from djpeg.atomic import write_bytes_atomic
from djpeg.encoder import compress
from djpeg.exact import (JPEGError, Metadata, UnsupportedJPEGError, read_coefficients,
                         write_coefficients)
from djpeg.exact.api import MAX_SIDE
from djpeg.exact.markers import image_end, metadata_segments
from djpeg.exact.metadata import (exif_orientation, jfif_density, orientation_exif,
                                  orientation_segments, with_trailing)
from djpeg.files import dumps, read_metadata
from djpeg.images import load_image
from djpeg.optimize import optimize_tables
from djpeg.recompress import (Layout, SmoothedInput, header_options, optimize_file,
                              recompress)
from djpeg.tables import DEFAULT_QUALITY

#: The modes of `ExportOptions.mode`.
MODES = ("perceptual", "libjpeg", "trellis", "optimize-tables", "learned", "tables")
#: Progressive files (the perceptual mode's default) under this size are also written baseline,
#: and the smaller kept: each progressive scan carries its own tables and headers, which on
#: small images outweigh what the scans save (default mode at q75 on training-image crops:
#: baseline smaller on 6 of 6 at 16x16 to 64x64, 5 of 6 at 128x128, files under 3 KB; on
#: none at 256x256, 13 KB). Writing a file this small twice costs about a millisecond.
BASELINE_CHECK_BYTES = 16384


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  """How to export an image (the command line's flags; see `djpeg-cli encode --help`).

  Attributes:
    mode: "perceptual" (default: at least libjpeg-turbo's SSIMULACRA 2 at `quality`, fewer
      bytes), "libjpeg" (libjpeg-turbo's own file), "trellis" (Annex K tables at `quality`, the
      MSE trellis), "optimize-tables" (per-image tables for `target`), "learned" (QTableNet's
      tables for `target`), "tables" (level `level` of the family file `tables_file`).
    quality: IJG quality 1..100.
    target: ("bpp" | "psnr" | "lmbda", value) for the modes that take one.
    subsampling: None (chosen per image in the perceptual mode, 4:2:0 otherwise) or a name.
    progressive: None (optimized scans in the perceptual mode, or baseline when that file is
      smaller, as on thumbnails; baseline otherwise), False, True (libjpeg's script) or
      "optimize".
    optimize_huffman: optimized Huffman tables (False: Annex K's).
    restart_interval: RST markers every N MCUs (None: none).
    trellis: the MSE trellis on top of "optimize-tables", "learned" or "tables".
    saliency, background: a region of interest for the trellis (`djpeg.roi.saliency_map`).
    steps: gradient steps of the table optimization.
    tables_file, level: the table family and its level for mode "tables".
    strip: drop the input's ICC profile, EXIF, XMP and comment (kept by default); the EXIF
      orientation stays, alone, so that the photo still displays upright.
    matte: colour transparent inputs are composited onto: "white", "black" or (r, g, b)
      (None: transparency is an error).
    jpeg_input: what the perceptual mode does with a JPEG input: "dct" (default: recompress
      its own coefficients, `djpeg.recompress`, for `quality` or a psnr / bpp `target`),
      "lossless" (re-optimize it losslessly) or "pixels" (decode it and encode the pixels).
    compact: the fewest header bytes (`djpeg.dumps(..., compact=True)`), and no JFIF APP0
      unless the image has a print density.
    fast: the perceptual mode without butteraugli's second look (`compress(fast=True)`).
  """
  mode: str = "perceptual"
  quality: int = DEFAULT_QUALITY
  target: tuple[str, float] | None = None
  subsampling: str | None = None
  progressive: bool | str | None = None
  optimize_huffman: bool = True
  restart_interval: int | None = None
  trellis: bool = False
  saliency: str | None = None
  background: float | None = None
  steps: int = 100
  tables_file: str | None = None
  level: int | None = None
  strip: bool = False
  matte: str | tuple[int, int, int] | None = None
  jpeg_input: str = "dct"
  compact: bool = False
  fast: bool = False

  def check(self) -> None:
    """Raises ValueError naming the first inconsistent option."""
    if self.mode not in MODES:
      raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}.")
    if not 1 <= self.quality <= 100:
      raise ValueError(f"quality must be in 1..100; got {self.quality}.")
    needs_target = self.mode in ("optimize-tables", "learned")
    if needs_target and self.target is None:
      raise ValueError(f"mode {self.mode!r} needs a target (bpp, psnr or lmbda).")
    if self.target is not None and not needs_target and not (
        self.mode == "trellis" and self.target[0] == "lmbda") and not (
        self.mode == "perceptual" and self.target[0] in ("psnr", "bpp")):
      raise ValueError("a bpp, psnr or lmbda target goes with optimized or learned tables "
                       "(lmbda also with the trellis, as its lambda; psnr and bpp alone with "
                       "JPEG inputs, recompressed in the DCT domain).")
    if self.jpeg_input not in ("dct", "lossless", "pixels"):
      raise ValueError(f"jpeg_input must be 'dct', 'lossless' or 'pixels'; got "
                       f"{self.jpeg_input!r}.")
    if (self.mode == "tables") != (self.tables_file is not None and self.level is not None):
      raise ValueError("a table family file and its level go together, with mode 'tables'.")
    if self.mode in ("perceptual", "libjpeg") and (self.trellis or self.saliency):
      raise ValueError(f"mode {self.mode!r} takes no trellis or saliency options.")
    if self.fast and self.mode != "perceptual":
      raise ValueError(f"fast leaves out the default mode's butteraugli look; mode "
                       f"{self.mode!r} has none.")
    r = self.restart_interval
    if r is not None and not (isinstance(r, (int, np.integer)) and 0 <= r <= 65535):
      # Checked here, before any image is encoded, not by the writer after each one.
      raise ValueError(f"restart_interval must be an integer in 0..65535 (MCUs); got {r!r}.")

  @property
  def resolved_progressive(self):
    if self.progressive is None:
      return "optimize" if self.mode == "perceptual" and self.optimize_huffman else False
    return self.progressive

  @property
  def resolved_subsampling(self) -> str | None:
    if self.subsampling is None and self.mode != "perceptual":
      return "4:2:0"
    return self.subsampling


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What `export_file` did for one image."""
  source: str
  destination: str
  width: int
  height: int
  input_bytes: int
  output_bytes: int
  seconds: float
  psnr: float | None
  ssimulacra2: float | None = None
  target_ssimulacra2: float | None = None
  roi_psnr: tuple[float, float] | None = None
  notes: tuple[str, ...] = ()


def _predictor():
  found = entry_points(group="djpeg.table_predictors", name="learned")
  if not found:
    raise ValueError("mode 'learned' needs a table predictor; install the full package "
                     "(pip install .) so that djpeg.models.qtable_net is registered.")
  return next(iter(found)).load()


@dataclasses.dataclass(frozen=True)
class _StartTables:
  """Tables to start `compress`'s target search from (what it reads of a `TableOptimization`)."""
  tables: np.ndarray


def encode_pixels_for(pixels: np.ndarray, options: ExportOptions, progress=None):
  """(Coefficients, compress result or None) for uint8 pixels in the options' mode."""
  say = progress or (lambda message: None)
  channels = pixels.shape[-1]
  subsampling = options.resolved_subsampling
  kind_value = dict([options.target]) if options.target else {}
  if options.mode == "perceptual":
    if options.target is not None:
      raise ValueError(f"a {options.target[0]} target alone applies to JPEG inputs (recompressed "
                       "in the DCT domain); for other images add --optimize-tables.")
    # measure=False: export_bytes measures the file itself when asked (one decode, not two).
    result = compress(pixels, quality=options.quality, subsampling=subsampling, progress=say,
                      measure=False, fast=options.fast)
    return result.coefficients, result
  if options.mode == "libjpeg":
    return codec.encode_pixels(pixels, quality=options.quality, subsampling=subsampling), None
  tables = None
  if options.mode == "tables":
    family = tables_lib.load_table_family(options.tables_file)
    levels = len(family["tables"])
    if not 1 <= options.level <= levels:
      raise ValueError(f"level must be 1..{levels} for {options.tables_file}; got "
                       f"{options.level}.")
    tables = np.asarray(family["tables"][options.level - 1])
    tables = tables[:channels] if channels == 1 else tables
  elif options.mode == "learned":
    if channels != 3:
      raise ValueError("learned tables are for colour images.")
    tables = _predictor()(pixels.astype(np.float32) / 255, subsampling=subsampling, **kind_value)
  trellis = options.trellis or options.saliency is not None or options.mode == "trellis"
  if trellis:
    if options.mode == "optimize-tables":
      settings = kind_value
    elif tables is not None and options.mode == "learned" and kind_value:
      # The network's tables start the trellis's own search for the target (met on the file),
      # or, for a lambda, are coded with the trellis at that lambda.
      kind, value = options.target
      settings = (dict(tables=tables, lmbda=value) if kind == "lmbda" else
                  dict(kind_value, optimization=_StartTables(np.asarray(tables))))
    elif tables is not None:
      settings = dict(tables=tables)
    else:
      settings = dict(quality=options.quality, lmbda=kind_value.get("lmbda"))
    result = compress(pixels, subsampling=subsampling, steps=options.steps,
                      saliency=options.saliency, background=options.background, mode="mse",
                      progress=say, measure=False, **settings)
    return result.coefficients, result
  if options.mode in ("optimize-tables", "learned") and options.target[0] in ("bpp", "psnr"):
    # Fitted (or predicted) tables, then scaled until plain rounding meets the target on the
    # real file: the fit's model and the network both miss it by some bytes or tenths of a dB.
    start = dict(optimization=_StartTables(np.asarray(tables))) if tables is not None else {}
    result = compress(pixels, subsampling=subsampling, steps=options.steps, mode="mse",
                      trellis=False, progress=say, measure=False, **kind_value, **start)
    return result.coefficients, result
  image = pixels.astype(np.float32) / 255
  if options.mode == "optimize-tables":
    tables = optimize_tables(image, subsampling=subsampling, steps=options.steps, progress=say,
                             **kind_value).tables
  return codec.encode(image, tables=tables, subsampling=subsampling), None


def _recompressing(options: ExportOptions) -> bool:
  """Whether a JPEG input is recompressed as a JPEG (not decoded to pixels first)."""
  return options.mode == "perceptual" and options.jpeg_input != "pixels"


def _export_jpeg(raw: bytes, name: str, options: ExportOptions, measure: bool,
                 start: float) -> tuple[bytes, ExportResult]:
  """A JPEG input in the perceptual mode: re-optimized losslessly, or recompressed in the DCT
  domain (`djpeg.recompress`)."""
  score = target = None
  layout = Layout(progressive=options.progressive, restart_interval=options.restart_interval,
                  optimize_huffman=options.optimize_huffman, compact=options.compact)
  # The file's own sampling and grid are kept: a subsampling asked for is not applied.
  extra = (f"a JPEG input keeps its own chroma sampling in the DCT domain; --subsampling "
           f"{options.subsampling} applies with --pixels",) if options.subsampling else ()
  if options.jpeg_input == "lossless":
    if options.target is not None:
      raise ValueError("lossless re-optimization takes no target.")
    data = optimize_file(raw, strip=options.strip, layout=layout)
    notes = ("lossless: the input's coefficients, re-optimized" if data != raw else
             "lossless: no rewrite was smaller; the input is kept",) + extra
  else:
    kind, value = options.target if options.target else ("quality", options.quality)
    result = recompress(raw, strip=options.strip, layout=layout, **{kind: value})
    data = result.data
    if kind == "quality" and result.kind == "lossy":
      score, target = result.score, result.target
    notes = {"lossy": (), "lossless": ("no recompression was smaller than the input's lossless "
                                       "re-optimization; that is written",),
             "input": ("no recompression was smaller than the input; the input is kept",)}[
                 result.kind]
    if kind == "bpp" and result.kind != "lossy" and result.score > value:
      # Not "no recompression was smaller": none fitted the budget (`recompress`'s rule).
      notes = (f"the --bpp {value:g} budget cannot be met in the DCT domain: even the coarsest "
               f"tables take more; " + ("the input's lossless re-optimization is written"
                                        if result.kind == "lossless" else "the input is kept")
               + f", {result.score:.3f} bpp",)
    if result.target is None:
      notes = ("under 8x8 pixels, which SSIMULACRA 2 does not measure: not recompressed, "
               + ("re-optimized losslessly" if result.kind == "lossless" else "the input kept"),)
    notes += extra
  psnr = None
  with warnings.catch_warnings():
    # Read for the size and the PSNR only: a multi-picture file's "holds 2 frames" (its other
    # pictures are kept here) or Pillow's view of its EXIF is not news about this export.
    warnings.simplefilter("ignore")
    pixels = load_image(io.BytesIO(raw))
    if measure:
      psnr = _psnr(load_image(io.BytesIO(data)), pixels)
  height, width = pixels.shape[:2]
  return data, ExportResult(source=name, destination="", width=width, height=height,
                            input_bytes=len(raw), output_bytes=len(data),
                            seconds=time.perf_counter() - start, psnr=psnr, ssimulacra2=score,
                            target_ssimulacra2=target, notes=notes)


def _carried(data: bytes, strip: bool):
  """What a JPEG input's new file from its pixels carries over, as its own rewrites do
  (`djpeg.recompress`): (its APPn and COM segments, but the JFIF and Adobe segments that
  describe the old coding; its JFIF density; its EOI's offset, after which come the other
  pictures of a multi-picture file or a motion photo's video, copied with the MPF index moved).
  `strip`: the density and the orientation alone. None when the file's structure cannot be
  read this way (Pillow read its pixels): its metadata is then read as for other files."""
  try:
    segments = metadata_segments(data)
    end = image_end(data)
  except JPEGError:
    return None
  density = jfif_density(segments)
  meta = Metadata(density=density) if density else None
  if strip:
    return orientation_segments(segments), meta, len(data)      # nothing after the image
  keep = [(m, p) for m, p in segments
          if not (m == 0xE0 and p[:5] == b"JFIF\x00") and not (m == 0xEE and p[:5] == b"Adobe")]
  return keep, meta, end


def _check_readable(data: bytes) -> None:
  """Raises JPEGError for a corrupt JPEG input before its pixels are encoded: libjpeg-turbo
  (Pillow) decodes bad scan data, an early EOI or missing rows into grey fill with a warning
  at most, which would be encoded as the picture. The strict reader decides; a file using a
  feature it does not read (`UnsupportedJPEGError`) is left to Pillow."""
  try:
    read_coefficients(data)
  except UnsupportedJPEGError:
    pass


def _psnr_of(error: np.ndarray) -> float:
  """PSNR of 8-bit samples from (summed squared error, number of samples)."""
  mse = error[0] / max(error[1], 1)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _psnr(a: np.ndarray, b: np.ndarray, rows: int = 256) -> float:
  """PSNR of 8-bit images (any shape), summed `rows` rows at a time: a 24-MP photo in float64
  would need over half a gigabyte per copy."""
  a, b = np.asarray(a), np.asarray(b)
  total = 0
  for i in range(0, max(len(a), 1), rows):
    d = (a[i:i + rows].astype(np.int64) - b[i:i + rows]).ravel()
    total += int(np.dot(d, d))
  mse = total / max(a.size, 1)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def export_file(source, destination, options: ExportOptions = ExportOptions(), *,
                measure: bool = True, progress=None) -> ExportResult:
  """Reads an image file, encodes it as `options` say, writes the JPEG file atomically.

  `measure` decodes the result to report its PSNR (False: `psnr` is None).

  Raises:
    ValueError: an unreadable or unsupported input (named), a bad option, or an output path
      equal to the input's.
  """
  source, destination = os.fspath(source), os.fspath(destination)
  if os.path.exists(destination) and os.path.samefile(source, destination):
    raise ValueError(f"{destination!r} is the input itself; refusing to overwrite it.")
  data, result = export_bytes(source, options, measure=measure, progress=progress)
  write_bytes_atomic(destination, data)
  return dataclasses.replace(result, destination=destination)


def export_bytes(source, options: ExportOptions = ExportOptions(), *, measure: bool = True,
                 progress=None) -> tuple[bytes, ExportResult]:
  """`export_file` without the output file: (the JPEG file's bytes, what was done).

  Args:
    source: a path, a binary file object or the bytes of an image file.
  """
  options.check()
  start = time.perf_counter()
  input_bytes = len(source) if isinstance(source, (bytes, bytearray)) else (
      os.path.getsize(source) if isinstance(source, (str, os.PathLike)) else None)
  name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
  if isinstance(source, (str, os.PathLike)):
    with open(source, "rb") as f:
      head = f.read(3)
    if head == b"\xff\xd8\xff":        # a JPEG: its bytes, for its own coefficients or segments
      with open(source, "rb") as f:
        source = f.read()
  elif hasattr(source, "read"):
    source = source.read()
  first_notes, jpeg_input = [], None
  if isinstance(source, (bytes, bytearray)):
    jpeg_input = bytes(source) if bytes(source[:3]) == b"\xff\xd8\xff" else None
    if jpeg_input is not None and _recompressing(options):
      try:
        return _export_jpeg(bytes(source), name, options, measure, start)
      except SmoothedInput:
        if options.target is not None:      # a psnr / bpp target: the DCT-domain route's only
          raise
        first_notes.append("a progressive file libjpeg-turbo decodes with block smoothing: "
                           "encoded from its decoded pixels, not in the DCT domain")
    elif jpeg_input is not None:
      _check_readable(jpeg_input)
    source = io.BytesIO(source)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pixels = load_image(source, matte=options.matte)
    height, width = pixels.shape[:2]
    if max(height, width) > MAX_SIDE:
      # Refused before the encoder's work (minutes for a large image), not by the writer after.
      raise ValueError(f"{name} is {width}x{height} pixels; a JPEG frame is at most "
                       f"{MAX_SIDE}x{MAX_SIDE}.")
    if hasattr(source, "seek"):
      source.seek(0)
    carried = _carried(jpeg_input, options.strip) if jpeg_input is not None else None
    if carried is None:
      metadata = read_metadata(source)
      if options.strip:        # print resolution stays, as with jpegtran -copy none, and
        # the orientation, without which a portrait photo would display sideways
        metadata = Metadata(density=metadata.density,
                            exif=orientation_exif(exif_orientation(metadata.exif)))
    coefficients, result = encode_pixels_for(pixels, options, progress)
  notes = first_notes + list(dict.fromkeys(str(w.message) for w in caught))

  def write(progressive) -> bytes:
    if carried is None:
      return dumps(coefficients, optimize=options.optimize_huffman, progressive=progressive,
                   restart_interval=options.restart_interval, metadata=metadata or None,
                   **header_options(options.compact, metadata))
    segments, meta, end = carried
    out = write_coefficients(coefficients, optimize=options.optimize_huffman,
                             progressive=progressive, restart_interval=options.restart_interval,
                             metadata=meta, segments=segments,
                             **header_options(options.compact, meta))[0]
    return with_trailing(out, jpeg_input, end)

  data = write(options.resolved_progressive)
  if options.progressive is None and options.resolved_progressive and (
      len(data) < BASELINE_CHECK_BYTES):
    data = min(data, write(False), key=len)
  if carried is not None and len(jpeg_input) > carried[2]:
    # Its other pictures are carried after the image: the loader's "holds N frames; the first
    # is read" is not news here.
    notes = [n for n in notes if "frames (an animation or several pages)" not in n]
  if options.target is not None and options.target[0] == "bpp":
    # The target was met on a bare baseline file; the layout and the metadata asked for come
    # on top of it.
    written = 8 * len(data) / (height * width)
    if written > options.target[1]:
      notes.append(f"the file is {written:.3f} bits per pixel with its metadata and layout, over "
                   f"the {options.target[1]:g} budget its image data meets")
  psnr = roi_psnr = None
  if measure:
    # On the uint8 decode any decoder shows, strip by strip: a whole decode of a 48-MP photo
    # would add several hundred megabytes to the run's peak.
    saliency = getattr(result, "saliency", None)
    split = saliency is not None and (saliency >= 0.5).any() and (saliency < 0.5).any()
    errors = np.zeros((2, 2))                 # (squared error, samples) inside, outside
    for top, decoded in codec.decode_sample_stripes(coefficients):
      diff = decoded.astype(np.int32) - pixels[top:top + len(decoded)]
      squared = np.einsum("...c,...c->...", diff, diff)
      inside = (saliency[top:top + len(decoded)] >= 0.5 if split
                else np.ones(squared.shape, bool))
      errors += [[squared[inside].sum(), inside.sum() * diff.shape[-1]],
                 [squared[~inside].sum(), (~inside).sum() * diff.shape[-1]]]
    psnr = _psnr_of(errors.sum(axis=0))
    if split:
      roi_psnr = (_psnr_of(errors[0]), _psnr_of(errors[1]))
  return data, ExportResult(
      source=name, destination="", width=width, height=height,
      input_bytes=input_bytes if input_bytes is not None else 0, output_bytes=len(data),
      seconds=time.perf_counter() - start, psnr=psnr, roi_psnr=roi_psnr,
      ssimulacra2=getattr(result, "ssimulacra2", None),
      target_ssimulacra2=getattr(result, "target_ssimulacra2", None), notes=tuple(notes))
