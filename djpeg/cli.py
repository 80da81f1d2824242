"""The `djpeg-cli` command line (also `python -m djpeg`).

  djpeg-cli demo                     the bundled samples: per-image optimized tables against
                                     libjpeg-turbo at the same quality, and the differentiable
                                     codec's agreement with libjpeg-turbo and its gradients
  djpeg-cli encode IN OUT [options]  an image file to a JPEG file (`djpeg-cli encode --help`).
                                     By default the perceptual mode: at --quality Q (75), at
                                     least libjpeg-turbo's SSIMULACRA 2 at Q in fewer bytes.
                                     --libjpeg: libjpeg-turbo's own file; --optimize-tables with
                                     --bpp/--psnr/--lmbda; --trellis; --saliency auto|MASK.png

The command is not called `djpeg`: that name belongs to libjpeg-turbo's decoder.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from importlib.metadata import entry_points

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import djpeg
from djpeg import samples
from djpeg.encoder import compress
from djpeg.images import load_image
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


def demo(args: argparse.Namespace) -> int:
  qualities = [int(q) for q in args.qualities.split(",")]
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


def _table_predictor():
  """The 'learned' table predictor registered by an installed package (entry point group
  `djpeg.table_predictors`; this distribution's `djpeg.models` provides QTableNet's)."""
  found = entry_points(group="djpeg.table_predictors", name="learned")
  if not found:
    raise SystemExit(f"{PROG}: --learned needs a table predictor; install the full package "
                     "(pip install .) so that djpeg.models.qtable_net is registered.")
  return next(iter(found)).load()


def encode_command(args: argparse.Namespace) -> int:
  targets = {k: v for k, v in (("bpp", args.bpp), ("psnr", args.psnr), ("lmbda", args.lmbda))
             if v is not None}
  trellis = args.trellis or args.saliency is not None
  modes = [m for m, on in (("--optimize-tables", args.optimize_tables), ("--learned", args.learned),
                           ("--tables", args.tables is not None), ("--quality", args.quality is not None))
           if on]
  if len(modes) > 1:
    raise SystemExit(f"{PROG}: {' and '.join(modes)} exclude each other.")
  others = [m for m, on in (("--trellis", trellis), ("--optimize-tables", args.optimize_tables),
                            ("--learned", args.learned), ("--tables", args.tables is not None),
                            ("--bpp/--psnr/--lmbda", bool(targets))) if on]
  if args.libjpeg and others:
    raise SystemExit(f"{PROG}: --libjpeg writes libjpeg-turbo's own file; it excludes "
                     f"{', '.join(others)}.")
  perceptual = not (args.libjpeg or others)
  if args.baseline and (args.progressive or args.optimize_scans):
    raise SystemExit(f"{PROG}: --baseline excludes --progressive and --optimize-scans.")
  if (args.optimize_tables or args.learned) and len(targets) != 1:
    raise SystemExit(f"{PROG}: {modes[0]} needs exactly one of --bpp, --psnr, --lmbda.")
  if targets and not (args.optimize_tables or args.learned) and not (
      trellis and set(targets) == {"lmbda"}):
    raise SystemExit(f"{PROG}: --bpp, --psnr and --lmbda go with --optimize-tables or --learned "
                     "(--lmbda also with --trellis, as the trellis lambda).")
  if (args.level is None) != (args.tables is None):
    raise SystemExit(f"{PROG}: --tables FILE and --level K go together.")
  try:
    pixels = load_image(args.input, matte=args.matte)
  except ValueError as e:
    raise SystemExit(f"{PROG}: {e}")
  height, width, channels = pixels.shape
  say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
  say(f"{args.input}: {width}x{height}, {'RGB' if channels == 3 else 'gray'}")
  start = time.perf_counter()
  progressive = "optimize" if args.optimize_scans else args.progressive
  if perceptual and not (args.baseline or args.progressive or args.standard_huffman):
    progressive = "optimize"       # like mozjpeg: the smallest file by default
  subsampling = args.subsampling or (None if perceptual else "4:2:0")
  options = dict(optimize=not args.standard_huffman, progressive=progressive,
                 restart_interval=args.restart_interval)
  result = None
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      tables = None
      if args.tables is not None:
        family = djpeg.tables.load_table_family(args.tables)
        levels = len(family["tables"])
        if not 1 <= args.level <= levels:
          raise SystemExit(f"{PROG}: --level must be 1..{levels} for {args.tables}; got "
                           f"{args.level}.")
        tables = np.asarray(family["tables"][args.level - 1])
        tables = tables[:channels] if channels == 1 else tables
        say(f"  tables: level {args.level} of {levels} from {args.tables} (lambda "
            f"{family['lambdas'][args.level - 1]:.3g})")
      elif args.learned:
        if channels != 3:
          raise SystemExit(f"{PROG}: --learned tables are for colour images.")
        tables = _table_predictor()(pixels.astype(np.float32) / 255,
                                    subsampling=subsampling, **targets)
        say(f"  tables: predicted by the learned network for {targets}")
      if perceptual:
        result = compress(pixels, quality=DEFAULT_QUALITY if args.quality is None else args.quality,
                          subsampling=subsampling, progress=lambda m: say(f"  {m}"))
        djpeg.save(args.output, result.coefficients, **options)
      elif trellis:
        if args.optimize_tables:
          settings = dict(targets)
        elif tables is not None:
          settings = dict(tables=tables)
        else:
          settings = dict(quality=DEFAULT_QUALITY if args.quality is None else args.quality,
                          lmbda=targets.get("lmbda"))
        result = compress(pixels, subsampling=subsampling, steps=args.steps,
                          saliency=args.saliency, background=args.background, mode="mse",
                          progress=lambda m: say(f"  {m}"), **settings)
        djpeg.save(args.output, result.coefficients, **options)
      elif tables is not None:
        coefficients = djpeg.encode(pixels.astype(np.float32) / 255, tables=tables,
                                    subsampling=subsampling)
        djpeg.save(args.output, coefficients, **options)
      elif args.optimize_tables:
        image = pixels.astype(np.float32) / 255
        optimized = djpeg.optimize_tables(image, subsampling=subsampling, steps=args.steps,
                                          progress=lambda m: say(f"  {m}"), **targets)
        coefficients = djpeg.encode(image, tables=optimized.tables, subsampling=subsampling)
        djpeg.save(args.output, coefficients, **options)
      else:
        quality = DEFAULT_QUALITY if args.quality is None else args.quality
        djpeg.save(args.output, pixels, quality=quality, subsampling=subsampling, **options)
    for w in caught:
      print(f"{PROG}: warning: {w.message}", file=sys.stderr)
  except ValueError as e:
    raise SystemExit(f"{PROG}: {e}")
  except NotImplementedError as e:
    raise SystemExit(f"{PROG}: {e}")
  with open(args.output, "rb") as f:
    data = f.read()
  decoded = _decode_file(data, channels)
  say(f"{args.output}: {len(data)} bytes, {8 * len(data) / (height * width):.3f} bits/pixel, "
      f"PSNR {psnr(decoded, pixels):.2f} dB ({time.perf_counter() - start:.1f} s)")
  if result is not None and result.ssimulacra2 is not None:
    say(f"  SSIMULACRA 2 {result.ssimulacra2:.2f} (libjpeg-turbo at this quality: "
        f"{result.target_ssimulacra2:.2f})")
  if trellis and args.saliency is not None and result.saliency is not None:
    inside = result.saliency >= 0.5
    if inside.any() and (~inside).any():
      say(f"  PSNR inside the region of interest (map >= 0.5): "
          f"{psnr(decoded[inside], pixels[inside]):.2f} dB, outside: "
          f"{psnr(decoded[~inside], pixels[~inside]):.2f} dB")
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog=PROG, description="Differentiable JPEG in JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("demo", help="the bundled samples: optimized tables vs libjpeg-turbo, and "
                                  "the differentiable codec's fidelity and gradients")
  p.add_argument("--qualities", default="50,75,90", help="comma-separated qualities (1..100)")
  p.set_defaults(func=demo)

  p = sub.add_parser("encode", help="encode an image file (PNG, TIFF, ...) as JPEG")
  p.add_argument("input")
  p.add_argument("output")
  p.add_argument("--quality", type=int,
                 help=f"IJG quality 1..100 (default {DEFAULT_QUALITY}): by default a file at "
                      "least as good in SSIMULACRA 2 as libjpeg-turbo's at this quality, in "
                      "fewer bytes; with --libjpeg or --trellis, the Annex K tables at it")
  p.add_argument("--libjpeg", action="store_true",
                 help="libjpeg-turbo's own file at --quality (Annex K tables, plain rounding; "
                      "byte for byte what libjpeg-turbo writes with optimized Huffman tables)")
  p.add_argument("--subsampling", default=None, choices=["4:4:4", "4:2:2", "4:2:0"],
                 help="chroma subsampling (default: chosen per image in the default mode, "
                      "4:2:0 otherwise)")
  p.add_argument("--baseline", action="store_true",
                 help="baseline JPEG (the default mode otherwise writes progressive JPEG with "
                      "optimized scans)")
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
  p.add_argument("--bpp", type=float, help="target bits per pixel of the file")
  p.add_argument("--psnr", type=float, help="target RGB PSNR in dB")
  p.add_argument("--lmbda", type=float, help="trade-off: bits/pixel + lmbda * MSE")
  p.add_argument("--steps", type=int, default=100, help="gradient steps for --optimize-tables")
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
  p.add_argument("--matte", metavar="white|black",
                 help="composite transparent images onto this colour (a JPEG has no alpha; "
                      "without it, a transparent input is refused)")
  p.add_argument("--quiet", action="store_true")
  p.set_defaults(func=encode_command)
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
