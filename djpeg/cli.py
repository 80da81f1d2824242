"""The `djpeg-cli` command line (also `python -m djpeg`).

  djpeg-cli demo                     the bundled samples: per-image optimized tables against
                                     libjpeg-turbo at the same quality, and the differentiable
                                     codec's agreement with libjpeg-turbo and its gradients
  djpeg-cli encode IN OUT [options]  an image file to a JPEG file (`djpeg-cli encode --help`).
                                     By default the perceptual mode: at --quality Q (75), at
                                     least libjpeg-turbo's SSIMULACRA 2 at Q in fewer bytes
                                     (never more).
                                     --libjpeg: libjpeg-turbo's own file; --optimize-tables with
                                     --bpp/--psnr/--lmbda; --trellis; --saliency auto|MASK.png

The command is not called `djpeg`: that name belongs to libjpeg-turbo's decoder.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import djpeg
from djpeg import batch, samples
from djpeg.exact import JPEGError
from djpeg.export import ExportOptions, export_file
from djpeg.tables import DEFAULT_QUALITY

PROG = "djpeg-cli"


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
  """PSNR in dB between two arrays in [0, peak]; inf when they are identical."""
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def _pillow_jpeg(pixels: np.ndarray, **options) -> bytes:
  """libjpeg-turbo's file for uint8 `(H, W, C)` pixels, through Pillow."""
  buf = io.BytesIO()
  Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, "JPEG", **options)
  return buf.getvalue()


def _decode_file(data: bytes, channels: int) -> np.ndarray:
  pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB" if channels == 3 else "L"))
  return pixels.reshape(pixels.shape[:2] + (channels,))


def _qualities(text: str) -> list[int]:
  """--qualities: comma-separated integers in 1..100, checked before any work."""
  try:
    qualities = [int(q) for q in text.split(",")]
  except ValueError:
    qualities = []
  if not qualities or not all(1 <= q <= 100 for q in qualities):
    raise SystemExit(f"{PROG}: --qualities takes comma-separated integers in 1..100 (such as "
                     f"50,75,90); got {text!r}.")
  return qualities


def demo(args: argparse.Namespace) -> int:
  qualities = _qualities(args.qualities)
  print(f"djpeg {djpeg.__version__} on {jax.default_backend()}.\n")
  print("1. Smaller files at the same quality: per image, djpeg.optimize_tables aims at the PSNR "
        "libjpeg-turbo\n   reaches (Pillow, 4:2:0, optimize=True); both files are decoded by "
        "libjpeg-turbo (Pillow).\n")
  header = (f"{'sample':10s} {'q':>3s} {'libjpeg-turbo':>21s} {'djpeg optimized tables':>24s} "
            f"{'size':>7s} {'time':>6s}")
  print(header)
  print("-" * len(header))
  savings = []
  for name in samples.NAMES:
    pixels = samples.load(name, uint8=True)
    image = pixels.astype(np.float32) / 255
    for quality in qualities:
      theirs = _pillow_jpeg(pixels, quality=quality, subsampling=2, optimize=True)
      target = psnr(_decode_file(theirs, pixels.shape[-1]), pixels)
      start = time.perf_counter()
      result = djpeg.optimize_tables(image, psnr=target)
      ours = djpeg.dumps(djpeg.encode(image, tables=result.tables, subsampling="4:2:0"))
      elapsed = time.perf_counter() - start
      ours_psnr = psnr(_decode_file(ours, pixels.shape[-1]), pixels)
      savings.append(1 - len(ours) / len(theirs))
      print(f"{name:10s} {quality:3d} {len(theirs):7d} B {target:6.2f} dB "
            f"{len(ours):9d} B {ours_psnr:6.2f} dB {-100 * savings[-1]:+6.1f}% {elapsed:5.1f}s")
  print(f"\nmean size change at equal or better PSNR: {-100 * np.mean(savings):+.1f}% "
        "(the first call of each image size includes compilation).\n")

  print("2. The differentiable codec against libjpeg-turbo: jpeg(x) vs Pillow's decode of "
        "Pillow's encode,\n   and gradients of L = MSE(jpeg(x), x) (x held fixed as the "
        "target) with respect to the image,\n   the quality and a per-entry scale of the "
        "tables (straight-through rounding).\n")

  def loss(image, quality, tables_scale):
    tables = djpeg.quality_tables(quality) * tables_scale
    out = djpeg.jpeg(image, tables=tables)
    return jnp.mean((out - jax.lax.stop_gradient(image)) ** 2)

  grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  header = (f"{'sample':10s} {'q':>3s} {'PSNR vs libjpeg':>15s} {'|dL/dx|':>9s} {'dL/dq':>10s} "
            f"{'|dL/dT|':>9s}")
  print(header)
  print("-" * len(header))
  for name in samples.NAMES:
    pixels = samples.load(name, uint8=True)
    image = pixels.astype(np.float32) / 255
    for quality in qualities:
      ours = np.round(np.asarray(djpeg.jpeg(image, quality=quality)) * 255)
      theirs = _decode_file(_pillow_jpeg(pixels, quality=quality, subsampling=2), pixels.shape[-1])
      gx, gq, gt = grad_fn(image, jnp.float32(quality), jnp.ones((2, 8, 8), jnp.float32))
      print(f"{name:10s} {quality:3d} {psnr(ours, theirs):15.2f} {float(jnp.linalg.norm(gx)):9.2e} "
            f"{float(gq):10.2e} {float(jnp.linalg.norm(gt)):9.2e}")
  print("\n(inf = bit exact.)")
  return 0


def _options(args: argparse.Namespace) -> ExportOptions:
  """The command's flags as `ExportOptions`; SystemExit with a message for a bad combination."""
  targets = [(k, v) for k, v in (("bpp", args.bpp), ("psnr", args.psnr), ("lmbda", args.lmbda))
             if v is not None]
  chosen = [m for m, on in (("--optimize-tables", args.optimize_tables), ("--learned", args.learned),
                            ("--tables", args.tables is not None), ("--libjpeg", args.libjpeg))
            if on]
  if len(chosen) > 1:
    raise SystemExit(f"{PROG}: {' and '.join(chosen)} exclude each other.")
  if args.libjpeg and (args.trellis or args.saliency or targets):
    raise SystemExit(f"{PROG}: --libjpeg writes libjpeg-turbo's own file; it excludes "
                     "--trellis, --saliency and targets.")
  if args.baseline and (args.progressive or args.optimize_scans):
    raise SystemExit(f"{PROG}: --baseline excludes --progressive and --optimize-scans.")
  if len(targets) > 1:
    raise SystemExit(f"{PROG}: give one of --bpp, --psnr, --lmbda.")
  if (args.level is None) != (args.tables is None):
    raise SystemExit(f"{PROG}: --tables FILE and --level K go together.")
  if args.quality is not None and (args.optimize_tables or args.learned or args.tables):
    raise SystemExit(f"{PROG}: --quality and {chosen[0]} exclude each other.")
  if args.optimize_tables:
    mode = "optimize-tables"
  elif args.learned:
    mode = "learned"
  elif args.tables is not None:
    mode = "tables"
  elif args.libjpeg:
    mode = "libjpeg"
  elif args.trellis or args.saliency is not None or (targets and targets[0][0] == "lmbda"):
    mode = "trellis"
  else:
    mode = "perceptual"       # with a psnr or bpp target: JPEG inputs, in the DCT domain
  if mode in ("optimize-tables", "learned") and not targets:
    raise SystemExit(f"{PROG}: {chosen[0]} needs exactly one of --bpp, --psnr, --lmbda.")
  if targets and mode == "trellis" and targets[0][0] != "lmbda":
    raise SystemExit(f"{PROG}: --bpp and --psnr go with --optimize-tables or --learned, or "
                     "alone for JPEG inputs; not with --trellis (which takes --lmbda).")
  if args.background is not None and args.saliency is None:
    raise SystemExit(f"{PROG}: --background weighs the pixels a --saliency map leaves out; it "
                     "needs --saliency.")
  if args.steps is not None and mode != "optimize-tables":
    raise SystemExit(f"{PROG}: --steps sets the gradient steps of --optimize-tables; the "
                     f"{mode} mode takes none.")
  if args.optimize_scans and args.standard_huffman:
    raise SystemExit(f"{PROG}: --optimize-scans chooses scans by their optimized Huffman tables; "
                     "it excludes --standard-huffman.")
  if args.lossless and args.pixels:
    raise SystemExit(f"{PROG}: --lossless and --pixels exclude each other.")
  if (args.lossless or args.pixels) and mode != "perceptual":
    raise SystemExit(f"{PROG}: --lossless and --pixels choose how the default mode treats JPEG "
                     "inputs; they exclude the other modes.")
  progressive = ("optimize" if args.optimize_scans else True if args.progressive
                 else False if args.baseline or args.standard_huffman else None)
  options = ExportOptions(
      mode=mode, quality=DEFAULT_QUALITY if args.quality is None else args.quality,
      target=targets[0] if targets else None, subsampling=args.subsampling,
      progressive=progressive, optimize_huffman=not args.standard_huffman,
      restart_interval=args.restart_interval, trellis=args.trellis, saliency=args.saliency,
      background=args.background, steps=100 if args.steps is None else args.steps,
      tables_file=args.tables, level=args.level,
      strip=args.strip, matte=_matte(args.matte), compact=args.compact, fast=args.fast,
      jpeg_input="lossless" if args.lossless else "pixels" if args.pixels else "dct")
  try:
    options.check()
  except ValueError as e:
    raise SystemExit(f"{PROG}: {e}")
  return options


def _matte(value: str | None):
  """--matte: a colour's name, or R,G,B (0..255 each; checked by the loader)."""
  if value is not None and value.count(",") == 2:
    try:
      return tuple(int(v) for v in value.split(","))
    except ValueError:
      pass
  return value


def _compile_loops(options: ExportOptions, args: argparse.Namespace) -> None:
  """The first run after installing: says so, and compiles the mode's numba loops in parts side
  by side, one process per core (half the time of compiling them one after another as the first
  export reaches them, on 2 cores)."""
  if options.mode in batch.XLA_FREE_MODES and batch.loops_compiled(options.mode) is False:
    if not args.quiet:
      print(f"{PROG}: compiling djpeg's loops for this machine, once after installing (about "
            "20 s on 2 cores, 40 s on one); later runs load them from numba's cache.",
            file=sys.stderr, flush=True)
    try:
      batch.compile_loops(options.mode, args.jobs)     # None: one process per core
    except KeyboardInterrupt:
      print(f"{PROG}: interrupted; nothing was written.", file=sys.stderr)
      raise SystemExit(130) from None


def encode_command(args: argparse.Namespace) -> int:
  options = _options(args)
  if args.jobs is not None and args.jobs < 1:
    raise SystemExit(f"{PROG}: --jobs takes a number of worker processes, 1 or more; got "
                     f"{args.jobs}.")
  if args.output_dir is None:
    if len(args.inputs) != 2:
      raise SystemExit(f"{PROG}: give one input and one output file, or inputs and "
                       "--output-dir FOLDER for many.")
    if args.shard is not None:
      raise SystemExit(f"{PROG}: --shard splits the inputs of a run with -o FOLDER; one input "
                       "and one output have nothing to split.")
    if args.skip_existing and os.path.exists(args.inputs[1]):
      if not args.quiet:
        print(f"{args.inputs[1]}: exists; left alone (--skip-existing).")
      return 0
    _check_one(*args.inputs, args.overwrite)
    if not args.no_cache:
      batch.enable_compilation_cache()
    _compile_loops(options, args)
    return _encode_one(args.inputs[0], args.inputs[1], options, args.quiet)
  if (os.path.splitext(args.output_dir)[1].lower() in (".jpg", ".jpeg")
      and not os.path.isdir(args.output_dir)):
    # `-o out.jpg` (cwebp's form) would make a folder named out.jpg: say what -o is instead.
    raise SystemExit(f"{PROG}: -o/--output-dir names a folder, and {args.output_dir!r} looks "
                     "like a file name; for one file give the input and the output: "
                     f"{PROG} encode INPUT OUTPUT.jpg")
  try:
    jobs = batch.shard(batch.plan(args.inputs, args.output_dir), args.shard)
  except ValueError as e:
    raise SystemExit(f"{PROG}: {e}")
  if jobs:
    _compile_loops(options, args)
  cache = None if args.no_cache else batch.cache_dir()
  batch.reuse_freed_memory()      # many images in this process (or its workers): keep memory
  start = time.perf_counter()
  try:
    outcomes = batch.run(jobs, options, processes=args.jobs or os.cpu_count() or 1,
                         skip_existing=args.skip_existing, cache=cache, progress=not args.quiet)
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted; the files written so far are complete, no partial file is "
          "left (--skip-existing resumes).", file=sys.stderr)
    return 130
  if not args.quiet:
    print(batch.summary(outcomes, time.perf_counter() - start))
  failed = [o for o in outcomes if o.error is not None]
  if args.quiet:       # otherwise the progress display has named them as they failed
    for o in failed:
      print(f"{PROG}: {o.source}: {o.error}", file=sys.stderr)
  return 1 if failed else 0


def _check_one(source: str, destination: str, overwrite: bool) -> None:
  """SystemExit naming the problem with the paths of `encode IN OUT`, before any work."""
  if not destination:
    raise SystemExit(f"{PROG}: the output file's name is empty.")
  if os.path.isdir(source):
    raise SystemExit(f"{PROG}: {source!r} is a folder; for many inputs give an output folder: "
                     f"{PROG} encode INPUT... -o FOLDER")
  if not os.path.exists(source):
    hint = " (a pattern the shell did not expand? use -o FOLDER)" if any(
        c in source for c in "*?[") else ""
    raise SystemExit(f"{PROG}: {source!r}: no such file{hint}.")
  if os.path.isdir(destination):
    raise SystemExit(f"{PROG}: {destination!r} is a folder; give the output file's name, or "
                     f"-o {destination} to write INPUT's .jpg into it.")
  folder = os.path.dirname(os.path.abspath(destination))
  if not os.path.isdir(folder):
    raise SystemExit(f"{PROG}: the output's folder {folder!r} does not exist.")
  jpeg = (".jpg", ".jpeg", ".jpe", ".jfif", ".jif")
  kind = lambda path: "jpeg" if os.path.splitext(path)[1].lower() in jpeg else \
      os.path.splitext(path)[1].lower()
  if os.path.exists(destination) and not overwrite and (
      kind(destination) != "jpeg" or kind(destination) == kind(source)):
    # An existing output that looks like an input, as when a pattern matches two files
    # (`djpeg-cli encode IMG_*.jpg`, `*.png`): writing would silently replace the second
    # with the first. (A JPEG output of another kind of input, rewritten, is replaced.)
    raise SystemExit(f"{PROG}: {destination!r} exists and looks like an input; --overwrite "
                     f"replaces it. (To encode several files, give an output folder: {PROG} "
                     "encode INPUT... -o FOLDER)")


def _encode_one(source: str, destination: str, options: ExportOptions, quiet: bool) -> int:
  say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
  try:
    result = export_file(source, destination, options, progress=lambda m: say(f"  {m}"))
  except (ValueError, NotImplementedError, JPEGError) as e:
    raise SystemExit(f"{PROG}: {e}")
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted; nothing was written.", file=sys.stderr)
    raise SystemExit(130) from None
  except OSError as e:       # unreadable input, unwritable output: one line, not a traceback
    path = str(e.filename or source)
    if os.path.basename(path).startswith(".djpeg-"):      # the atomic write's temporary file
      path = destination
    raise SystemExit(f"{PROG}: {path}: {e.strerror or e}.")
  for note in result.notes:
    print(f"{PROG}: note: {note}", file=sys.stderr)
  say(f"{destination}: {result.output_bytes} bytes, "
      f"{8 * result.output_bytes / (result.width * result.height):.3f} bits/pixel, "
      f"PSNR {result.psnr:.2f} dB ({result.seconds:.1f} s)")
  if result.ssimulacra2 is not None:
    say(f"  SSIMULACRA 2 {result.ssimulacra2:.2f} (libjpeg-turbo at this quality: "
        f"{result.target_ssimulacra2:.2f})")
  if result.roi_psnr is not None:
    say(f"  PSNR inside the region of interest (map >= 0.5): {result.roi_psnr[0]:.2f} dB, "
        f"outside: {result.roi_psnr[1]:.2f} dB")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog=PROG, description="Differentiable JPEG in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("demo", help="the bundled samples: optimized tables vs libjpeg-turbo, and "
                                  "the differentiable codec's fidelity and gradients")
  p.add_argument("--qualities", default="50,75,90", help="comma-separated qualities (1..100)")
  p.set_defaults(func=demo)

  p = sub.add_parser("encode", help="encode image files (PNG, TIFF, JPEG, ...) as JPEG",
                     description="One file: djpeg-cli encode IN OUT. Many: djpeg-cli encode "
                                 "INPUT... --output-dir FOLDER (files, folders searched "
                                 "recursively, glob patterns; the tree is mirrored).")
  p.add_argument("inputs", nargs="+", metavar="INPUT")
  p.add_argument("-o", "--output-dir", help="write every input's .jpg under this folder")
  p.add_argument("--jobs", type=int, default=None,
                 help="worker processes for many inputs (default: the number of cores)")
  p.add_argument("--skip-existing", action="store_true", help="leave outputs that exist alone")
  p.add_argument("--overwrite", action="store_true",
                 help="one input and one output: replace an existing output that looks like "
                      "an input (not a .jpg, or of the input's own type: two files a pattern "
                      "matched), which is refused otherwise; other existing outputs, and those "
                      "under -o FOLDER (unless --skip-existing), are replaced")
  p.add_argument("--shard", metavar="I/N",
                 help="export only the I-th of N interleaved slices of the inputs (0-based; "
                      "with -o FOLDER)")
  p.add_argument("--no-cache", action="store_true",
                 help="no persistent compilation cache (default: in ~/.cache/djpeg/jax or "
                      "$DJPEG_CACHE_DIR)")
  p.add_argument("--quality", type=int,
                 help=f"IJG quality 1..100 (default {DEFAULT_QUALITY}): by default a file at "
                      "least as good in SSIMULACRA 2 as libjpeg-turbo's at this quality, in "
                      "fewer bytes (never more); with --libjpeg or --trellis, the Annex K tables at it")
  p.add_argument("--fast", action="store_true",
                 help="the default mode without its butteraugli look at images up to a "
                      "megapixel: several times faster there, the same SSIMULACRA 2 target, "
                      "a higher butteraugli distance")
  p.add_argument("--lossless", action="store_true",
                 help="JPEG inputs: the same coefficients, re-optimized (Huffman tables, scans); "
                      "never larger than the input")
  p.add_argument("--pixels", action="store_true",
                 help="JPEG inputs: decode and encode the pixels (by default their own "
                      "coefficients are recompressed, with no second generation of loss)")
  p.add_argument("--libjpeg", action="store_true",
                 help="libjpeg-turbo's own file at --quality (Annex K tables, plain rounding; "
                      "byte for byte what libjpeg-turbo writes with optimized Huffman tables)")
  p.add_argument("--subsampling", default=None, choices=["4:4:4", "4:2:2", "4:2:0"],
                 help="chroma subsampling (default: chosen per image in the default mode, "
                      "4:2:0 otherwise)")
  p.add_argument("--baseline", action="store_true",
                 help="baseline JPEG (the default mode otherwise writes progressive JPEG with "
                      "optimized scans, or baseline where that is smaller, as on thumbnails; "
                      "--optimize-scans always writes progressive)")
  p.add_argument("--progressive", action="store_true",
                 help="progressive JPEG (SOF2) with libjpeg's scan script")
  p.add_argument("--optimize-scans", action="store_true",
                 help="progressive JPEG with the smallest of a family of standard scan scripts")
  p.add_argument("--standard-huffman", action="store_true",
                 help="Annex K Huffman tables instead of optimized ones")
  p.add_argument("--restart-interval", type=int, default=None, help="RST marker every N MCUs")
  p.add_argument("--optimize-tables", action="store_true",
                 help="fit quantization tables to this image (needs --bpp, --psnr or --lmbda)")
  p.add_argument("--learned", action="store_true",
                 help="tables predicted by the learned network (needs --bpp, --psnr or --lmbda)")
  p.add_argument("--tables", metavar="FILE",
                 help='a table family file (djpeg-train tables family), or "learned" for the '
                      "family shipped with djpeg; with --level")
  p.add_argument("--level", type=int, help="level of the table family (1 = smallest files)")
  p.add_argument("--bpp", type=float,
                 help="target bits per pixel of the file (alone: JPEG inputs, recompressed)")
  p.add_argument("--psnr", type=float,
                 help="target RGB PSNR in dB (alone: JPEG inputs, against their decode)")
  p.add_argument("--lmbda", type=float, help="trade-off: bits/pixel + lmbda * MSE")
  p.add_argument("--steps", type=int, default=None,
                 help="gradient steps for --optimize-tables (default 100)")
  p.add_argument("--trellis", action="store_true",
                 help="trellis quantization: per block, the values that minimise real bits + "
                      "lambda * distortion (lambda: the tables' own slope, or --lmbda)")
  p.add_argument("--saliency", metavar="auto|ms-ssim|MASK",
                 help="region of interest: a mask image (white = important, same size), "
                      "'auto' (the learned saliency network) or 'ms-ssim' (MS-SSIM's own "
                      "per-block weight, measured on the image); implies --trellis")
  p.add_argument("--background", type=float, default=None,
                 help="with --saliency: weight of unimportant pixels' errors relative to "
                      "important ones (default 0.1 for a mask, 0.001 for 'auto' and 'ms-ssim')")
  p.add_argument("--matte", metavar="white|black|R,G,B",
                 help="composite transparent images onto this colour (a JPEG has no alpha; "
                      "without it, a transparent input is refused)")
  p.add_argument("--strip", action="store_true",
                 help="drop the input's ICC profile, EXIF, XMP, comments, other APPn segments "
                      "and whatever follows a JPEG input's image (all kept by default); the "
                      "print resolution (dpi) stays, and the EXIF orientation, alone, so that "
                      "a photo still displays upright")
  p.add_argument("--compact", action="store_true",
                 help="the fewest header bytes for the same image: one DQT and one DHT "
                      "segment, Huffman tables shared by luma and chroma where smaller, no JFIF "
                      "APP0 unless the input has a print resolution (5-80 bytes a file; worth it "
                      "for thumbnails and small images)")
  p.add_argument("--quiet", action="store_true")
  p.set_defaults(func=encode_command)
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
