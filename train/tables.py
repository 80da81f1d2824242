"""Learning quantization tables from data: a dataset-level table family, and QTableNet.

  python -m train.tables family --data ../shared/data/train --out runs/family
  python -m train.tables net    --data ../shared/data/train --out runs/net

Both minimise, per training crop, log(bits per pixel + lambda * MSE) through the exact DCT
(`djpeg.transform`), the straight-through quantizer and the rate model (`djpeg.optimize.
rate_distortion`: counted symbols, ideal code lengths for the gradient, headers left out; 8-bit
RGB MSE from the DCT-domain error). The log balances the loss across rate points. `family` learns one table set per
level of a fixed lambda ladder (all levels on every crop); `net` trains `models.qtable_net.
QTableNet` with a log-uniform random lambda per crop.

Runs are resumable and exact: checkpoints (orbax) every `--checkpoint-every` steps hold the state
and the data stream's position; rerunning the same command continues from the last one and ends
bit for bit where an uninterrupted run would. A NaN guard stops a run with a clear message and
keeps the last good checkpoint; `metrics.csv` logs the training loss, `validation.csv` the periodic
evaluation on fixed centre crops (and fixed lambdas for the network).
At the end the result is exported: `family.json` (`djpeg.tables.save_table_family` format) or
`qtable_net.npz` (`models.qtable_net.save_params`).
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
from djpeg import sampling
from djpeg.optimize import rate_distortion
from models.qtable_net import QTableNet, TableFamily, save_params
from train import data, loop, monitor, parallel
from train import state as state_lib

#: The lambda ladder of table families: level 1 (smallest files) to level 12 (best quality).
FAMILY_LAMBDAS = np.geomspace(4e-4, 0.3, 12)
#: The lambda range QTableNet is trained on (log-uniform).
NET_LAMBDA_RANGE = (3e-4, 0.4)
_SUBSAMPLING = "4:2:0"


def _crop_losses(dct, tables, lambdas, crop: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example (loss, bpp, mse) for DCT coefficients `(B, ...)`, tables `(B, 3, 8, 8)`, `(B,)`."""
  factors = sampling.factors_for(_SUBSAMPLING, 3)

  def one(d0, d1, d2, t, lam):
    # Entropy-coded bits only: file headers would dominate small crops and jump when tables
    # become distinct, which says nothing about images of real size.
    bpp, mse = rate_distortion((d0, d1, d2), t, sampling=factors, height=crop, width=crop,
                               code="entropy", headers=False)
    return jnp.log(bpp + lam * mse), bpp, mse

  return jax.vmap(one)(*dct, tables, lambdas)


def family_loss(model: TableFamily, batch, key):
  """All levels on every crop of `batch` `(B, S, S, 3)`."""
  crop = batch.shape[1]
  dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
  levels = model.lambdas.shape[0]
  b = batch.shape[0]
  tables = model(jnp.repeat(jnp.arange(levels), b))                 # (K * B, 3, 8, 8)
  tiled = tuple(jnp.tile(d, (levels,) + (1,) * (d.ndim - 1)) for d in dct)
  lambdas = jnp.repeat(model.lambdas[...], b)
  loss, bpp, mse = _crop_losses(tiled, tables, lambdas, crop)
  return jnp.mean(loss), {"bpp": jnp.mean(bpp)}


def net_loss(model: QTableNet, batch, key):
  """One log-uniform random lambda per crop of `batch` `(B, S, S, 3)`."""
  crop = batch.shape[1]
  lo, hi = np.log(NET_LAMBDA_RANGE[0]), np.log(NET_LAMBDA_RANGE[1])
  log_lambda = jax.random.uniform(key, (batch.shape[0],), minval=lo, maxval=hi)
  dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
  tables = model(dct, log_lambda)
  loss, bpp, mse = _crop_losses(dct, tables, jnp.exp(log_lambda), crop)
  return jnp.mean(loss), {"bpp": jnp.mean(bpp)}


def _evaluation(kind: str, graphdef, crop: int):
  """A jitted `(state, batch) -> mean validation loss` (fixed lambdas for the network)."""
  lambdas = jnp.asarray(FAMILY_LAMBDAS[::3], jnp.float32)

  @jax.jit
  def evaluate(state, batch):
    model = state_lib.merge_model(graphdef, state)
    if kind == "family":
      return family_loss(model, batch, None)[0]
    dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
    b = batch.shape[0]
    losses = []
    for lam in lambdas:   # the same few rate points every time, for a comparable curve
      tables = model(dct, jnp.full((b,), jnp.log(lam)))
      losses.append(jnp.mean(_crop_losses(dct, tables, jnp.full((b,), lam), crop)[0]))
    return jnp.mean(jnp.stack(losses))

  return evaluate


@functools.lru_cache(maxsize=8)
def _compiled(kind: str, width: int, learning_rate: float, crop: int, devices: tuple):
  """(graphdef, tx, step_fn, evaluate) for a configuration, built once per process so that
  repeated runs (resumes, tests) reuse the compiled step."""
  model = build_model(kind, 0, width)
  tx = _optimizer(kind, learning_rate)
  graphdef, _ = state_lib.create_state(model, tx, seed=0)
  mesh = parallel.data_mesh(list(devices))
  loss_fn = family_loss if kind == "family" else net_loss
  step_fn = parallel.parallel_step(state_lib.make_train_step(graphdef, tx, loss_fn), mesh)
  return graphdef, tx, mesh, step_fn, _evaluation(kind, graphdef, crop)


def _optimizer(kind: str, learning_rate: float) -> optax.GradientTransformation:
  # The family's parameters are the tables themselves: plain momentum follows the gradient's
  # scale (entries that matter move most), which converges far faster than Adam's per-entry
  # normalization, under which every rarely-used high-frequency entry moves as much.
  if kind == "family":
    return optax.sgd(learning_rate, momentum=0.9)
  return optax.adam(learning_rate)


def build_model(kind: str, seed: int, width: int):
  if kind == "family":
    # Start each level from the Annex K quality with roughly its rate (q 20 to 95).
    return TableFamily(FAMILY_LAMBDAS, np.linspace(20, 95, len(FAMILY_LAMBDAS)))
  return QTableNet(width=width, rngs=nnx.Rngs(seed))


def run(args: argparse.Namespace) -> dict:
  """Trains (or resumes) one run and exports its result; returns a summary dict."""
  if args.steps < 1 or args.batch < 1 or args.crop < 16:
    raise ValueError("steps and batch must be positive and crop at least 16 pixels.")
  os.makedirs(args.out, exist_ok=True)
  stream = data.CropStream(args.data, crop=args.crop, batch_size=args.batch, seed=args.seed)
  validation = data.centre_crops(args.data, args.crop, args.val_images)
  graphdef, tx, mesh, step_fn, evaluate = _compiled(
      args.kind, args.width, float(args.learning_rate), args.crop, tuple(jax.devices()))
  _, state = state_lib.create_state(build_model(args.kind, args.seed, args.width), tx,
                                    seed=args.seed)
  config = {k: v for k, v in vars(args).items() if k != "func"}

  def validate(state):
    value = float(evaluate(state, validation))
    return {"validation_loss": value}, f"validation loss {value:.4f}"

  state, first, elapsed = loop.fit_with_validation(
      state, step_fn, stream, out=args.out, mesh=mesh, num_steps=args.steps,
      eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
      log_every=args.log_every, validate=validate, name=args.kind, meta={"config": config},
      progress_keys=("loss", "bpp"))
  model = state_lib.merge_model(graphdef, jax.device_get(state))
  summary = {"steps": args.steps, "seconds": elapsed,
             "images_per_second": (args.steps - first) * args.batch / max(elapsed, 1e-9)}
  if args.kind == "family":
    tables = np.asarray(model(jnp.arange(len(FAMILY_LAMBDAS))))
    path = os.path.join(args.out, "family.json")
    djpeg.tables.save_table_family(
        path, tables, FAMILY_LAMBDAS, subsampling=_SUBSAMPLING,
        description=f"learned by train/tables.py family on {args.data} ({args.steps} steps, "
                    f"batch {args.batch}, {args.crop}px crops, seed {args.seed})")
  else:
    path = os.path.join(args.out, "qtable_net.npz")
    save_params(model, path)
  summary["export"] = path
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"[{args.kind}] done: {path} ({elapsed:.0f} s, {summary['images_per_second']:.1f} "
        "crops/s)", flush=True)
  return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("kind", choices=["family", "net"],
                      help="a dataset-level table family, or the table-predicting network")
  loop.add_run_arguments(parser, steps=3000, batch=16, crop=128, every=500, log_every=50,
                         val_images=16)
  parser.add_argument("--learning-rate", type=float, default=None,
                      help="learning rate (default: 5 for family, SGD with momentum; 1e-3 for net, "
                           "Adam)")
  parser.add_argument("--width", type=int, default=48, help="QTableNet width")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="djpeg-train tables", description=__doc__.splitlines()[0])
  add_arguments(parser)
  args = parser.parse_args(argv)
  if args.learning_rate is None:
    args.learning_rate = 5.0 if args.kind == "family" else 1e-3
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
