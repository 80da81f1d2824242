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
from djpeg.distortion import rate_distortion
from djpeg.optimize import codec_distortion
from djpeg.models.params import save_params
from djpeg.models.qtable_net import QTableNet, TableFamily
from djpeg.train import data, loop, monitor, parallel
from djpeg.train import state as state_lib
from djpeg.train import config as config_lib
from djpeg.train.config import as_dict, option

#: The lambda ladder of table families: level 1 (smallest files) to level 12 (best quality),
#: per distortion: bits per pixel per unit of 8-bit RGB MSE, or per SSIMULACRA 2 point lost.
FAMILY_LAMBDAS = np.geomspace(4e-4, 0.3, 12)
FAMILY_LAMBDAS_SSIMULACRA2 = np.geomspace(4e-3, 0.25, 12)
#: The lambda range QTableNet is trained on (log-uniform), per distortion.
NET_LAMBDA_RANGE = (3e-4, 0.4)
NET_LAMBDA_RANGE_SSIMULACRA2 = (3e-3, 0.35)
DISTORTIONS = ("mse", "ssimulacra2")
_SUBSAMPLING = "4:2:0"


def family_lambdas(distortion: str) -> np.ndarray:
  return FAMILY_LAMBDAS_SSIMULACRA2 if distortion == "ssimulacra2" else FAMILY_LAMBDAS


def net_lambda_range(distortion: str) -> tuple[float, float]:
  return NET_LAMBDA_RANGE_SSIMULACRA2 if distortion == "ssimulacra2" else NET_LAMBDA_RANGE


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
  distortion: str = option("mse", "what the tables trade bits for: 8-bit RGB MSE (the fast "
                                  "DCT-domain model), or SSIMULACRA 2 points (decode and metric "
                                  "every step)", choices=DISTORTIONS)

  def check(self) -> None:
    """Raises ValueError naming the first bad setting."""
    self.check_run()
    if self.kind not in ("family", "net"):
      raise ValueError(f"kind must be 'family' or 'net'; got {self.kind!r}.")
    if self.steps < 1 or self.batch < 1 or self.crop < 16:
      raise ValueError("steps and batch must be positive and crop at least 16 pixels.")
    if self.width < 1:                  # Flax had failed deep inside, unnamed
      raise ValueError(f"width must be at least 1; got {self.width}.")
    if self.learning_rate is not None and not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")
    if self.distortion not in DISTORTIONS:
      raise ValueError(f"distortion must be one of {DISTORTIONS}; got {self.distortion!r}.")

  @property
  def lr(self) -> float:
    """The learning rate used: the given one, or the kind's default."""
    if self.learning_rate is not None:
      return float(self.learning_rate)
    return 5.0 if self.kind == "family" else 1e-3


def _crop_losses(batch, dct, tables, lambdas, distortion: str):
  """Per-example (loss, bpp, distortion) of crops `batch` `(B, S, S, 3)` with their DCT
  coefficients `dct` (per component `(B, ...)`), tables `(B, 3, 8, 8)` and lambdas `(B,)`.

  Bits are the entropy-coded data's only: file headers would dominate small crops and jump when
  tables become distinct, which says nothing about images of real size. Distortion is the
  DCT-domain RGB MSE (`djpeg.distortion.rate_distortion`), or the SSIMULACRA 2 points lost on the
  crop's decode (`djpeg.optimize.codec_distortion`).
  """
  crop = batch.shape[1]
  factors = sampling.factors_for(_SUBSAMPLING, 3)
  if distortion == "ssimulacra2":
    coefficients = djpeg.encode(batch, tables=tables, subsampling=_SUBSAMPLING)
    bpp = djpeg.rate.rate(coefficients, code="entropy") / (crop * crop)
    loss = codec_distortion("ssimulacra2", djpeg.decode(coefficients), batch)
    return jnp.log(bpp + lambdas * loss), bpp, loss

  def one(d0, d1, d2, t, lam):
    bpp, mse = rate_distortion((d0, d1, d2), t, sampling=factors, height=crop, width=crop,
                               code="entropy", headers=False)
    return jnp.log(bpp + lam * mse), bpp, mse

  return jax.vmap(one)(*dct, tables, lambdas)


def family_loss(model: TableFamily, batch, key, *, distortion: str = "mse"):
  """All levels on every crop of `batch` `(B, S, S, 3)`."""
  dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
  levels = model.lambdas.shape[0]
  b = batch.shape[0]
  tables = model(jnp.repeat(jnp.arange(levels), b))                 # (K * B, 3, 8, 8)
  tile = lambda x: jnp.tile(x, (levels,) + (1,) * (x.ndim - 1))
  lambdas = jnp.repeat(model.lambdas[...], b)
  loss, bpp, _ = _crop_losses(tile(batch), tuple(tile(d) for d in dct), tables, lambdas,
                              distortion)
  return jnp.mean(loss), {"bpp": jnp.mean(bpp)}


def net_loss(model: QTableNet, batch, key, *, distortion: str = "mse"):
  """One log-uniform random lambda per crop of `batch` `(B, S, S, 3)`."""
  lo, hi = np.log(net_lambda_range(distortion))
  log_lambda = jax.random.uniform(key, (batch.shape[0],), minval=lo, maxval=hi)
  dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
  tables = model(dct, log_lambda)
  loss, bpp, _ = _crop_losses(batch, dct, tables, jnp.exp(log_lambda), distortion)
  return jnp.mean(loss), {"bpp": jnp.mean(bpp)}


def _evaluation(kind: str, graphdef, distortion: str):
  """A jitted `(state, batch) -> mean validation loss` (fixed lambdas for the network)."""
  lambdas = jnp.asarray(family_lambdas(distortion)[::3], jnp.float32)

  @jax.jit
  def evaluate(state, batch):
    model = state_lib.merge_model(graphdef, state)
    if kind == "family":
      return family_loss(model, batch, None, distortion=distortion)[0]
    dct = djpeg.transform(batch, subsampling=_SUBSAMPLING)
    b = batch.shape[0]
    losses = []
    for lam in lambdas:   # the same few rate points every time, for a comparable curve
      tables = model(dct, jnp.full((b,), jnp.log(lam)))
      losses.append(jnp.mean(_crop_losses(batch, dct, tables, jnp.full((b,), lam),
                                          distortion)[0]))
    return jnp.mean(jnp.stack(losses))

  return evaluate


@functools.lru_cache(maxsize=8)
def _compiled(kind: str, width: int, learning_rate: float, distortion: str, devices: tuple):
  """(graphdef, tx, step_fn, evaluate) for a configuration, built once per process so that
  repeated runs (resumes, tests) reuse the compiled step."""
  model = build_model(kind, 0, width, distortion)
  tx = _optimizer(kind, learning_rate)
  graphdef, _ = state_lib.create_state(model, tx, seed=0)
  mesh = parallel.data_mesh(list(devices))
  loss_fn = functools.partial(family_loss if kind == "family" else net_loss,
                              distortion=distortion)
  step_fn = parallel.parallel_step(state_lib.make_train_step(graphdef, tx, loss_fn), mesh)
  return graphdef, tx, mesh, step_fn, _evaluation(kind, graphdef, distortion)


def _optimizer(kind: str, learning_rate: float) -> optax.GradientTransformation:
  # The family's parameters are the tables themselves: plain momentum follows the gradient's
  # scale (entries that matter move most), which converges far faster than Adam's per-entry
  # normalization, under which every rarely-used high-frequency entry moves as much.
  if kind == "family":
    return optax.sgd(learning_rate, momentum=0.9)
  return optax.adam(learning_rate)


def build_model(kind: str, seed: int, width: int, distortion: str = "mse"):
  if kind == "family":
    # Start each level from the Annex K quality with roughly its rate (q 20 to 95).
    lambdas = family_lambdas(distortion)
    return TableFamily(lambdas, np.linspace(20, 95, len(lambdas)))
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
      args.kind, args.width, args.lr, args.distortion, tuple(jax.devices()))
  _, state = state_lib.create_state(build_model(args.kind, args.seed, args.width, args.distortion),
                                    tx, seed=args.seed)
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
    lambdas = family_lambdas(args.distortion)
    tables = np.asarray(model(jnp.arange(len(lambdas))))
    path = os.path.join(args.out, "family.json")
    djpeg.tables.save_table_family(
        path, tables, lambdas, subsampling=_SUBSAMPLING,
        description=f"learned by djpeg-train tables family for {args.distortion} on {args.data} "
                    f"({args.steps} steps, "
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
