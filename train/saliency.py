"""Training SaliencyNet end to end through the codec and the rate proxy, for MS-SSIM at a rate.

  python -m train.saliency --data ../shared/data/train --out runs/saliency   (djpeg-train saliency)

The shipped `models/data/saliency_net.npz` is this command's result with its defaults (500 steps of
8 crops of 192x192 from BSDS and DIV2K, Adam 1e-3, seed 0; 16 minutes on a 2-core CPU).

Per training crop, a random IJG quality q (25..90) gives base tables, made finer by a random
factor kappa (0.5..1) as `djpeg.encoder.compress` refines them when a map is given. The network's
per-block map m becomes distortion weights `background + (1 - background) * m`, normalised to
mean 1 (`djpeg.roi.pixel_weights`), and each block's AC coefficients are quantized with their
steps times 1 / sqrt(weight) (`block_steps`; the DC keeps its step, as in the trellis): the
high-rate model of what the exporter's trellis does with those weights (it zeroes more where
errors weigh less). The trellis cannot be differentiated, and the dead-zone stand-in
(`djpeg.roi.deadzone`) is no help here: its gradient, linearised at the rounded value,
underrates what zeroing costs, and a network trained through it learns to zero nearly
everything. The loss is, per crop,

    -MS-SSIM in dB (-10 log10(1 - MS-SSIM), decoded vs original)  +  RATE_WEIGHT * ln(bpp)

with bpp from `djpeg.rate.bits_per_pixel`. RATE_WEIGHT is the slope of MS-SSIM dB against
ln(rate) along JPEG's curve (5..7 dB between qualities 20 and 85 on BSDS/DIV2K images), so the
loss ranks maps as a BD-rate would: a map only wins by putting the same bits where MS-SSIM
gains more from them.

Validation crops are scored at fixed qualities with the network's map and with a uniform map
(all blocks alike, the plain trellis): `validation.csv` logs both losses and their difference.
Checkpoints, resume, NaN guard and data parallelism are those of `train.tables`. The result is
exported to `<out>/saliency_net.npz` (`models.saliency.save_params`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import djpeg
from djpeg import roi, sampling
from djpeg.coefficients import Coefficients
from djpeg.rounding import round_half_away
from models.saliency import BACKGROUND, SaliencyNet, pixel_map, save_params
from train import data, loop, monitor, parallel
from train import state as state_lib

#: Training ranges: IJG quality of the base tables, and the refinement kappa applied to them.
QUALITY_RANGE = (25.0, 90.0)
KAPPA_RANGE = (0.5, 1.0)
#: dB of MS-SSIM per unit of ln(bits per pixel) along JPEG's rate-distortion curve.
RATE_WEIGHT = 6.0
#: Validation qualities (kappa 0.7, exact rounding).
VALIDATION_QUALITIES = (40.0, 75.0)
_SUBSAMPLING = "4:2:0"
_AC = np.ones((8, 8), np.float32)
_AC[0, 0] = 0.0


def block_steps(block_map, height: int, width: int, *, background: float = BACKGROUND):
  """Per-component step multipliers `(B, rows_c, cols_c)` from per-block maps `(B, rows, cols)`.

  Weights `background + (1 - background) * map`, normalised to mean 1 over the image and averaged
  over each block (`djpeg.roi.block_means`), become steps 1 / sqrt(weight): at high rate the
  best step for a block whose errors weigh w times more is 1 / sqrt(w) times the step.
  """
  factors = sampling.factors_for(_SUBSAMPLING, 3)
  weights = background + (1.0 - background) * pixel_map(block_map, height, width)
  weights = weights / jnp.mean(weights, axis=(-2, -1), keepdims=True)
  return tuple(jax.lax.rsqrt(b) for b in roi.block_means(weights, height, width, factors))


def crop_losses(images: jax.Array, block_map, quality, kappa):
  """Per-crop (loss, MS-SSIM dB, bpp) of coding `images` `(B, S, S, 3)` with a block map.

  Tables: IJG `quality` `(B,)` times `kappa` `(B,)`. `block_map` `(B, S / 8, S / 8)` in [0, 1]
  scales each block's steps (`block_steps`); None codes every block with the tables (uniform).
  Rounding is exact, with a straight-through gradient: a block's decoded error is its rounding
  residual times its step, so the gradient says how much a coarser step costs (2 u^2 Q^2 s per
  coefficient in squared error, u the residual), and the rate proxy (`djpeg.rate`) how many
  bits it saves.
  """
  b, height, width = images.shape[:3]
  factors = sampling.factors_for(_SUBSAMPLING, 3)
  base = djpeg.resolve_tables(quality, None, (b,), 3)
  tables = jnp.clip(jnp.round(base * kappa[:, None, None, None]), 1.0, 255.0)
  # The float pipeline: libjpeg's integer arithmetic changes pixels by about one level, nothing a
  # map could learn from, and costs twice the time.
  dct = djpeg.transform(images, subsampling=_SUBSAMPLING, faithful=False)
  scales = (block_steps(block_map, height, width) if block_map is not None
            else [jnp.ones(d.shape[:3]) for d in dct])
  rounded, dequantized = [], []
  for c, (d, scale) in enumerate(zip(dct, scales)):
    # AC steps only: the trellis keeps every DC as rounded, so a map cannot coarsen it.
    multiplier = 1.0 + (scale[..., None, None] - 1.0) * _AC
    x = d / (tables[:, c, None, None] * multiplier)                # in this block's steps
    hard = x + jax.lax.stop_gradient(round_half_away(x) - x)
    rounded.append(hard)
    dequantized.append(hard * multiplier)                          # in the table's steps
  bpp = djpeg.rate.bits_per_pixel(Coefficients(tuple(rounded), tables, height, width, factors))
  decoded = djpeg.decode(Coefficients(tuple(dequantized), tables, height, width, factors),
                         faithful=False)
  score = djpeg.metrics.ms_ssim(images, jnp.clip(decoded, 0.0, 1.0))
  db = -10.0 * jnp.log10(jnp.maximum(1.0 - score, 1e-6))
  return -db + RATE_WEIGHT * jnp.log(bpp), db, bpp


def loss_fn(model: SaliencyNet, batch, key):
  """Random quality and kappa per crop of `batch` `(B, S, S, 3)`."""
  b = batch.shape[0]
  kq, kk = jax.random.split(key)
  quality = jax.random.uniform(kq, (b,), minval=QUALITY_RANGE[0], maxval=QUALITY_RANGE[1])
  kappa = jax.random.uniform(kk, (b,), minval=KAPPA_RANGE[0], maxval=KAPPA_RANGE[1])
  loss, db, bpp = crop_losses(batch, model.importance(batch), quality, kappa)
  return jnp.mean(loss), {"msssim_db": jnp.mean(db), "bpp": jnp.mean(bpp)}


def _evaluation(graphdef):
  """A jitted `(state, batch) -> (learned loss, uniform loss)` at the validation qualities."""

  @jax.jit
  def evaluate(state, batch):
    model = state_lib.merge_model(graphdef, state)
    b = batch.shape[0]
    learned, uniform = [], []
    block_map = model.importance(batch)
    for q in VALIDATION_QUALITIES:
      quality = jnp.full((b,), q)
      kappa = jnp.full((b,), 0.7)
      learned.append(jnp.mean(crop_losses(batch, block_map, quality, kappa)[0]))
      uniform.append(jnp.mean(crop_losses(batch, None, quality, kappa)[0]))
    return jnp.mean(jnp.stack(learned)), jnp.mean(jnp.stack(uniform))

  return evaluate


@functools.lru_cache(maxsize=4)
def _compiled(width: int, learning_rate: float, devices: tuple):
  """(graphdef, tx, mesh, step_fn, evaluate), built once per process."""
  model = SaliencyNet(width=width, rngs=nnx.Rngs(0))
  tx = optax.adam(learning_rate)
  graphdef, _ = state_lib.create_state(model, tx, seed=0)
  mesh = parallel.data_mesh(list(devices))
  step_fn = parallel.parallel_step(state_lib.make_train_step(graphdef, tx, loss_fn), mesh)
  return graphdef, tx, mesh, step_fn, _evaluation(graphdef)


def _validation_batch(root: str, crop: int, count: int) -> np.ndarray:
  from train.tables import _validation_batch as centre_crops
  return centre_crops(root, crop, count)


def run(args: argparse.Namespace) -> dict:
  """Trains (or resumes) one run and exports the network; returns a summary dict."""
  if args.steps < 1 or args.batch < 1:
    raise ValueError("steps and batch must be positive.")
  if args.crop < 32:
    # MS-SSIM needs 11x11 windows; below 176 pixels it uses fewer than its five scales.
    raise ValueError(f"crop must be at least 32 pixels; got {args.crop}.")
  os.makedirs(args.out, exist_ok=True)
  stream = data.CropStream(args.data, crop=args.crop, batch_size=args.batch, seed=args.seed)
  validation = _validation_batch(args.data, args.crop, args.val_images)
  graphdef, tx, mesh, step_fn, evaluate = _compiled(args.width, float(args.learning_rate),
                                                    tuple(jax.devices()))
  with state_lib.fast_random():
    _, state = state_lib.create_state(SaliencyNet(width=args.width, rngs=nnx.Rngs(args.seed)),
                                      tx, seed=args.seed)
  config = {k: v for k, v in vars(args).items() if k != "func"}

  def validate(state):
    learned, uniform = (float(v) for v in evaluate(state, validation))
    return ({"learned": learned, "uniform": uniform, "gain": uniform - learned},
            f"validation loss {learned:.4f} (uniform map {uniform:.4f}, "
            f"gain {uniform - learned:+.4f})")

  state, first, elapsed = loop.fit_with_validation(
      state, step_fn, stream, out=args.out, mesh=mesh, num_steps=args.steps,
      eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
      log_every=args.log_every, validate=validate, name="saliency", meta={"config": config},
      progress_keys=("loss", "msssim_db", "bpp"))
  model = state_lib.merge_model(graphdef, jax.device_get(state))
  path = os.path.join(args.out, "saliency_net.npz")
  save_params(model, path)
  summary = {"steps": args.steps, "seconds": elapsed, "export": path,
             "crops_per_second": (args.steps - first) * args.batch / max(elapsed, 1e-9)}
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"[saliency] done: {path} ({elapsed:.0f} s, {summary['crops_per_second']:.1f} crops/s)",
        flush=True)
  return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
  loop.add_run_arguments(parser, steps=500, batch=8, crop=192, every=250, log_every=25,
                         val_images=8,
                         crop_help="crop side (>= 176 for all five MS-SSIM scales)")
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--width", type=int, default=48)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="djpeg-train saliency", description=__doc__.splitlines()[0])
  add_arguments(parser)
  args = parser.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize()
  try:
    run(args)
  except (ValueError, monitor.NonFiniteError) as e:
    print(f"djpeg-train: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
