"""Learning quantization tables from data: a dataset-level table family, and QTableNet.

  python -m djpeg.train.tables family --data ../shared/data/train --out runs/family
  python -m djpeg.train.tables net    --data ../shared/data/train --out runs/net

Both minimise, per training crop, log(bits per pixel + lambda * MSE) through the exact DCT
(`djpeg.transform`), the straight-through quantizer and the rate model (`djpeg.optimize.
rate_distortion`: counted symbols, ideal code lengths for the gradient, headers left out; 8-bit
RGB MSE from the DCT-domain error). The log balances the loss across rate points. `family` learns one table set per
level of a fixed lambda ladder (all levels on every crop); `net` trains `djpeg.models.qtable_net.
QTableNet` with a log-uniform random lambda per crop.

Runs are resumable and exact: checkpoints (orbax) every `--checkpoint-every` steps hold the state
and the data stream's position; rerunning the same command continues from the last one and ends
bit for bit where an uninterrupted run would. A NaN guard stops a run with a clear message and
keeps the last good checkpoint; `metrics.csv` logs the training loss, `validation.csv` the periodic
evaluation on fixed centre crops (and fixed lambdas for the network).
At the end the result is exported: `family.json` (`djpeg.tables.save_table_family` format) or
`qtable_net.npz` (`djpeg.models.params.save_params`).
"""

from __future__ import annotations

import dataclasses
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
from djpeg.models.params import save_params
from djpeg.models.qtable_net import QTableNet, TableFamily
from djpeg.train import data, loop, monitor, parallel
from djpeg.train import state as state_lib
from djpeg.train import config as config_lib
from djpeg.train.config import as_dict, option

#: The lambda ladder of table families: level 1 (smallest files) to level 12 (best quality).
FAMILY_LAMBDAS = np.geomspace(4e-4, 0.3, 12)
#: The lambda range QTableNet is trained on (log-uniform).
NET_LAMBDA_RANGE = (3e-4, 0.4)
_SUBSAMPLING = "4:2:0"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(loop.CropRunConfig):
  """One table-learning run (saved with its checkpoints)."""

  kind: str = option(help="a dataset-level table family, or the table-predicting network",
                     choices=("family", "net"), positional=True)
  steps: int = option(3000, "training steps")
  batch: int = option(16, "crops per step")
  eval_every: int = option(500, "steps between validations")
  checkpoint_every: int = option(500, "steps between checkpoints")
  log_every: int = option(50, "steps per metrics.csv row")
  val_images: int = option(16, "validation centre crops")
  learning_rate: float | None = option(
      None, "learning rate (None: 5 for family, SGD with momentum; 1e-3 for net, Adam)")
  width: int = option(48, "QTableNet width")

  def check(self) -> None:
    """Raises ValueError naming the first bad setting."""
    if self.kind not in ("family", "net"):
      raise ValueError(f"kind must be 'family' or 'net'; got {self.kind!r}.")
    if self.steps < 1 or self.batch < 1 or self.crop < 16:
      raise ValueError("steps and batch must be positive and crop at least 16 pixels.")
    if self.learning_rate is not None and not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")

  @property
  def lr(self) -> float:
    """The learning rate used: the given one, or the kind's default."""
    if self.learning_rate is not None:
      return float(self.learning_rate)
    return 5.0 if self.kind == "family" else 1e-3


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


def run(args: Config) -> dict:
  """Trains (or resumes) one run and exports its result; returns a summary dict."""
  args.check()
  if args.distributed:
    jax.distributed.initialize()
  os.makedirs(args.out, exist_ok=True)
  stream = data.CropStream(args.data, crop=args.crop, batch_size=args.batch, seed=args.seed)
  validation = data.centre_crops(args.data, args.crop, args.val_images)
  graphdef, tx, mesh, step_fn, evaluate = _compiled(
      args.kind, args.width, args.lr, args.crop, tuple(jax.devices()))
  _, state = state_lib.create_state(build_model(args.kind, args.seed, args.width), tx,
                                    seed=args.seed)
  config = as_dict(args)

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


def main(argv: list[str] | None = None) -> int:
  return config_lib.main(Config, run, argv, prog="djpeg-train tables", description=__doc__.splitlines()[0],
                         errors=(ValueError, monitor.NonFiniteError))


if __name__ == "__main__":
  sys.exit(main())
