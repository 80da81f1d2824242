"""Task-aware JPEG: quantization tables and trellis weights learned for a classifier's accuracy.

  djpeg-train task-tables family    --classifier runs/plain --data ../shared/data/cifar10 --out runs/tt
  djpeg-train task-tables net       --classifier runs/plain --data ... --out ...
  djpeg-train task-tables block     --classifier runs/plain --data ... --out ...
  djpeg-train task-tables alternate --classifier runs/fc    --data ... --out ...

A trained classifier (`djpeg.models.classifier.ResNet` on pixels or `djpeg.models.dct_classifier.
DCTResNet` on coefficients, from `djpeg-train consistency`) is frozen, and quantization tables T
are learned to minimise, per image x with label y,

    J(T) = bpp(T) + lambda * task(T),   bpp = 8 * file_bytes(encode(x, T)) / (H * W)

through the exact differentiable codec (`djpeg.encode` / `djpeg.decode`, straight-through
rounding) and the rate proxy (`djpeg.rate.file_bytes`: the baseline file with optimal Huffman
tables, headers counted). `task` (`--task`) is the classifier's cross-entropy on the JPEG copy
(nats), or the distance of its features (`--layers`) to the clean image's (mean squared
difference, as `djpeg.train.consistency.feature_distance`). lambda is in bits per pixel per unit
of task loss. Cb and Cr share one table (Y, C, C): on a 32x32 image a third DQT segment costs
65 bytes, half a bit per pixel.

Three levels:

* `family`: one table set per level of a lambda ladder (`--lambdas`), shared by every image of
  the dataset (`djpeg.models.qtable_net.TableFamily`); each step gives every level an equal share
  of the batch and minimises mean_k log(E[bpp] + lambda_k E[task]) (the log balances the levels).
  Exported as `family.json` in the table family format (`djpeg.tables.save_table_family`), so
  `djpeg-cli encode in.png out.jpg --tables family.json --level K` uses it.
* `net`: per-image tables from a small network conditioned on the image and lambda
  (`TaskTableNet`: a family over lambda, interpolated between anchor lambdas, plus a per-image
  correction from QTableNet-style features of the image's DCT). The batch is spread over equal
  bins of log lambda in `--lambda-range` (a random lambda inside each image's bin), and each bin
  minimises log(mean_i (bpp_i + lambda_i task_i)). Exported as `task_net.npz` (parameters) and
  `task_net.json` (width, lambda range, task).
* `block`: `net`, plus per-block weights for the trellis. A network's saliency is where its loss
  is sensitive: `djpeg.metrics.block_sensitivity` of the classifier's label-free task loss
  (cross-entropy against its own prediction on the clean image, or the feature distance) around
  the JPEG of the image, exactly as `djpeg.roi` measures MS-SSIM's (`sensitivity_maps`). In
  training the map acts through `djpeg.roi.deadzone` (the trellis's differentiable stand-in: per
  block weights `background + (1 - background) * map`, mean 1, at the tables' own MSE slope), so
  the tables are learned for the trellis that will follow the map. In a file:
  `djpeg.encoder.compress(image, tables=T, saliency=map, background=..., mode="mse")`.

Joint training. `djpeg-train consistency` then any level above is the sequential version (the
classifier made robust to JPEG first, then tables learned for it). `alternate` trains the
classifier that `--classifier` describes (its saved configuration: method, widths, epochs, ...)
again from its initialization, in `--rounds` rounds: each round trains it for epochs / rounds of
its own method, with JPEG copies made half the time by the current family (a random level) and
half by Annex K tables at a random quality, then trains the family for steps / rounds steps
against it. Same budget as the sequential version; exports `classifier.npz` and `family.json`.

Runs resume exactly (orbax checkpoints under `<out>/checkpoints`; `alternate` keeps one folder
per network), log `metrics.csv` and `validation.csv` (the objective on fixed training images),
stop `--time-limit` seconds after their first stretch of steps (at the next validation) and
export what they learned, and guard against NaN like the other tasks. Classifiers travel as one
`.npz` (`save_classifier`). Gradients of the task loss in the tables: straight-through rounding
by default (on CIFAR-10 its slope in a global table scale matched finite differences within
10%, where the additive-noise proxy, `--surrogate noise`, gave a tenth of it).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import djpeg
from djpeg import checks
from djpeg import metrics as metrics_lib
from djpeg import roi, sampling
from djpeg.atomic import write_bytes_atomic
from djpeg.distortion import rate_distortion
from djpeg.models.params import load_params, save_params
from djpeg.models.qtable_net import TableFamily
from djpeg.rounding import clip_ste
from djpeg.tables import ANNEX_K, quality_tables
from djpeg.train import checkpoint, consistency, data, loop, monitor, parallel
from djpeg.train import config as config_lib
from djpeg.train import state as state_lib
from djpeg.train.config import as_dict, option

KINDS = ("family", "net", "block", "alternate")
TASKS = ("ce", "features")
SURROGATES = ("ste", "noise")
SUBSAMPLING = "4:2:0"
#: The family ladder (bits per pixel per unit of task loss), level 1 (smallest files) first:
#: cross-entropy in nats, or the feature distance.
FAMILY_LAMBDAS = {"ce": tuple(float(x) for x in np.geomspace(0.5, 200.0, 8)),
                  "features": tuple(float(x) for x in np.geomspace(2.0, 800.0, 8))}
#: The lambda range the per-image network is trained on (log-uniform), per task.
NET_LAMBDA_RANGE = {"ce": (0.5, 200.0), "features": (2.0, 800.0)}
#: Lambdas outside these limits are refused: beyond them every table saturates at 1 or 255.
LAMBDA_LIMITS = (1e-3, 1e5)
#: Lambda anchors (and training bins) of the per-image network.
NET_ANCHORS = 8
#: Bound on the per-image network's log-step change from its start tables.
LOG_OFFSET_LIMIT = 6.0
#: Global gradient norm the per-image network's updates are clipped to.
NET_GRADIENT_CLIP = 1.0
#: Added to the squared length of the per-image network's features before they are normalized.
_FEATURE_EPS = 1e-4
#: How far `mse_slope` moves every AC step (a fraction, at least one unit), as the trellis does.
_SLOPE_STEP = 0.1
_RATE_CODE = "huffman"
_CLASSIFIER_FORMAT = "djpeg-classifier"


def check_lambda(value, what: str = "lambda") -> float:
  """`value` as a float, or ValueError unless it lies in `LAMBDA_LIMITS`."""
  lo, hi = LAMBDA_LIMITS
  try:
    x = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{what} must be a number; got {value!r}.") from None
  if not (np.isfinite(x) and lo <= x <= hi):
    raise ValueError(f"{what} must be in [{lo:g}, {hi:g}] bits per pixel per unit of task loss; "
                     f"got {value!r}.")
  return x


# ------------------------------------------------------------------------------ configuration


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
  """One task-aware table run (saved with its checkpoints and summary)."""

  kind: str = option(help="a table family per dataset, per-image tables from a network, the "
                          "network with per-block trellis weights, or alternating classifier "
                          "and family training", choices=KINDS, positional=True)
  classifier: str = option(help="the classifier: a `djpeg-train consistency` run folder or a "
                                "classifier .npz (frozen; for alternate, its settings are "
                                "retrained)", required=True)
  data: str = option(help="dataset folder with train/<class>/ images (only train/ is read)",
                     required=True)
  out: str = option(help="run folder: checkpoints, metrics, exports", required=True)
  task: str = option("ce", "task loss: cross-entropy on the JPEG copy, or the distance of the "
                           "classifier's features to the clean image's", choices=TASKS)
  layers: tuple[str, ...] = option(("pooled",), "feature maps compared by --task features")
  lambdas: tuple[float, ...] | None = option(
      None, "family lambdas, ascending, bpp per unit of task loss (None: FAMILY_LAMBDAS of the "
            "task)")
  lambda_range: tuple[float, float] | None = option(
      None, "lo,hi lambda range of the per-image network (None: NET_LAMBDA_RANGE of the task)")
  steps: int = option(600, "table training steps (alternate: over all rounds)")
  batch: int = option(64, "images per table step")
  learning_rate: float | None = option(
      None, "Adam's learning rate (None: 0.01 for a family's log-tables, 3e-4 for the network's "
            "image part)")
  surrogate: str = option("ste", "gradient of the task loss in the tables: straight-through "
                                   "rounding, or the additive-noise proxy (forward values "
                                   "exact either way)", choices=SURROGATES)
  width: int = option(32, "QTableNet width (net, block)")
  background: float = option(0.01, "block: weight of the least sensitive pixels relative to the "
                                   "most sensitive (djpeg.roi.pixel_weights)")
  rounds: int = option(3, "alternate: rounds of classifier epochs, then table steps")
  one_table: bool = option(False, "family, alternate: one table (Y's) for all three components, "
                                  "one DQT entry: 65 bytes fewer per file (half a bit per pixel "
                                  "on 32x32 images)")
  seed: int = option(0, "random seed (initialization and data order)")
  eval_every: int = option(100, "steps between validations (and time-limit checks)")
  checkpoint_every: int = option(500, "steps between checkpoints")
  log_every: int = option(25, "steps per metrics.csv row")
  val_images: int = option(128, "fixed training images the validation objective is measured on")
  time_limit: float | None = option(
      None, "stop training this many seconds after the first stretch of --eval-every steps "
            "(which includes compilation), at the next validation, and export what was learned")
  distributed: bool = option(False, "call jax.distributed.initialize() first (multi-host runs)")

  def check(self) -> None:
    """Raises ValueError naming the first bad setting."""
    choices = {"kind": KINDS, "task": TASKS, "surrogate": SURROGATES}
    for name, allowed in choices.items():
      if getattr(self, name) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
    if self.steps < 1 or self.batch < 1 or self.eval_every < 1 or self.log_every < 1:
      raise ValueError("steps, batch, eval_every and log_every must be positive; got "
                       f"{self.steps}, {self.batch}, {self.eval_every}, {self.log_every}.")
    levels = len(self.family_lambdas) if self.kind in ("family", "alternate") else NET_ANCHORS
    if self.batch < levels:
      raise ValueError(f"batch {self.batch} must give every one of the {levels} levels (lambda "
                       "bins) at least one image.")
    lambdas = self.family_lambdas
    if not lambdas:
      raise ValueError("lambdas must hold at least one value.")
    for x in lambdas + self.net_lambda_range:
      check_lambda(x)
    if any(b <= a for a, b in zip(lambdas, lambdas[1:])):
      raise ValueError(f"lambdas must be strictly ascending; got {lambdas}.")
    lo, hi = self.net_lambda_range
    if not lo < hi:
      raise ValueError(f"lambda_range must be lo,hi with lo < hi; got {self.lambda_range}.")
    if self.learning_rate is not None and not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")
    if not 0 < self.background <= 1:
      raise ValueError(f"background must be in (0, 1]; got {self.background}.")
    if self.width < 1 or self.rounds < 1 or self.val_images < 1:
      raise ValueError(f"width, rounds and val_images must be positive; got {self.width}, "
                       f"{self.rounds}, {self.val_images}.")
    if self.val_images < levels:
      # The validation objective averages each level's images: a level without one is 0 / 0.
      raise ValueError(f"val_images {self.val_images} must give every one of the {levels} levels "
                       "(lambda bins) at least one image.")
    if self.checkpoint_every < 0:
      raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end); got "
                       f"{self.checkpoint_every}.")
    if self.time_limit is not None and not self.time_limit > 0:
      raise ValueError(f"time_limit must be positive seconds or None; got {self.time_limit}.")
    if not self.layers:
      raise ValueError("layers must name at least one feature map.")
    if self.one_table and self.kind not in ("family", "alternate"):
      raise ValueError(f"one_table is a family's choice (kinds family and alternate); the "
                       f"{self.kind!r} kind predicts separate chroma tables.")

  @property
  def family_lambdas(self) -> tuple[float, ...]:
    return tuple(self.lambdas) if self.lambdas is not None else FAMILY_LAMBDAS[self.task]

  @property
  def net_lambda_range(self) -> tuple[float, float]:
    return (tuple(self.lambda_range) if self.lambda_range is not None
            else NET_LAMBDA_RANGE[self.task])

  @property
  def lr(self) -> float:
    """The learning rate used: the given one, or the kind's default."""
    if self.learning_rate is not None:
      return float(self.learning_rate)
    return 0.01 if self.kind in ("family", "alternate") else 3e-4


# ------------------------------------------------------------------------------- classifiers


@dataclasses.dataclass(frozen=True)
class FrozenNetwork:
  """A trained classifier as a pytree for `jit`: its arrays are the leaves, its structure static.

  Calling it runs the network in inference mode: `(inputs, quality (B,)) -> (logits, features)`,
  inputs `(B, H, W, 3)` pixels in [0, 1] (`inputs == "pixels"`) or batched `Coefficients`.
  """

  graphdef: Any
  inputs: str
  conditioned: bool
  params: Any
  rest: Any

  def __call__(self, x, quality=None):
    model = nnx.merge(self.graphdef, self.params, self.rest)
    kwargs = {}
    if self.conditioned:
      batch = x.shape[0] if self.inputs == "pixels" else x.batch_shape[0]
      kwargs["quality"] = jnp.full((batch,), 100.0) if quality is None else quality
    return model(x, train=False, **kwargs)


jax.tree_util.register_dataclass(FrozenNetwork, data_fields=["params", "rest"],
                                 meta_fields=["graphdef", "inputs", "conditioned"])


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A loaded classifier: the network, the `consistency.Config` it was trained with, its class
  names, and where it came from."""

  network: FrozenNetwork
  cfg: consistency.Config
  classes: tuple[str, ...]
  source: str


def network_of(cfg: consistency.Config, graphdef, params, rest) -> FrozenNetwork:
  return FrozenNetwork(graphdef, "coefficients" if cfg.model == "dct" else "pixels",
                       cfg.quality_block is not None, params, rest)


def _config_from_record(record: dict, path: str) -> consistency.Config:
  """The consistency Config a checkpoint or classifier file records, or ValueError."""
  if not isinstance(record, dict) or "method" not in record or "model" not in record:
    what = (f"a `djpeg-train tables` or `task-tables` run (kind {record.get('kind')!r})"
            if isinstance(record, dict) and "kind" in record else "no classifier settings")
    raise ValueError(f"{path!r} is not a classifier checkpoint: its record holds {what}. Pass a "
                     "`djpeg-train consistency` run folder or a classifier .npz "
                     "(djpeg.train.task_tables.save_classifier).")
  names = {f.name for f in dataclasses.fields(consistency.Config)}
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in names}
  cfg = consistency.Config(**values)
  cfg.check()
  return cfg


def save_classifier(path: str, classifier: Classifier) -> None:
  """Writes a classifier as one `.npz` (arrays by tree path, settings and classes as JSON),
  atomically."""
  net = classifier.network
  arrays = {}
  for name, tree in (("params", net.params), ("rest", net.rest)):
    for key, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      arrays[f"{name}{jax.tree_util.keystr(key)}"] = np.asarray(leaf)
  record = {"format": _CLASSIFIER_FORMAT, "version": 1, "config": as_dict(classifier.cfg),
            "classes": list(classifier.classes), "source": classifier.source}
  arrays["__record__"] = np.frombuffer(json.dumps(record).encode(), np.uint8)
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  write_bytes_atomic(path, buf.getvalue())


def _structure(cfg: consistency.Config, num_classes: int):
  """(graphdef, params, rest) of a fresh network of `cfg`'s architecture."""
  return state_lib.split_model(consistency.build_model(cfg, num_classes))


def _load_npz_classifier(path: str) -> Classifier:
  try:
    with np.load(path) as stored:
      arrays = dict(stored)
  except (OSError, ValueError, EOFError):
    # numpy's own message for a JSON or text file is about pickles: not the user's problem.
    raise ValueError(f"{path!r} is not a classifier checkpoint: not a .npz file. Pass a "
                     "`djpeg-train consistency` run folder or a classifier .npz "
                     "(djpeg.train.task_tables.save_classifier).") from None
  if "__record__" not in arrays:
    raise ValueError(f"{path!r} is not a classifier checkpoint: it has no classifier record (a "
                     "QTableNet or other parameter file?). Pass a `djpeg-train consistency` run "
                     "folder or a classifier .npz (djpeg.train.task_tables.save_classifier).")
  record = json.loads(arrays.pop("__record__").tobytes().decode())
  if record.get("format") != _CLASSIFIER_FORMAT:
    raise ValueError(f"{path!r} is not a djpeg classifier file (format {_CLASSIFIER_FORMAT!r}).")
  cfg = _config_from_record(record.get("config"), path)
  classes = tuple(record["classes"])
  graphdef, params, rest = _structure(cfg, len(classes))
  trees = []
  for name, tree in (("params", params), ("rest", rest)):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    values = []
    for key, leaf in leaves:
      stored = arrays.get(f"{name}{jax.tree_util.keystr(key)}")
      if stored is None or stored.shape != np.shape(leaf):
        raise ValueError(f"{path!r} does not fit the network its settings describe "
                         f"({name}{jax.tree_util.keystr(key)}).")
      values.append(jnp.asarray(stored))
    trees.append(jax.tree_util.tree_unflatten(treedef, values))
  return Classifier(network_of(cfg, graphdef, *trees), cfg, classes,
                    record.get("source") or path)


def _load_run_classifier(path: str, classes: Sequence[str] | None) -> Classifier:
  folder = os.path.join(path, "checkpoints")
  if not os.path.isdir(folder):
    raise ValueError(f"{path!r} is not a classifier checkpoint: no checkpoints/ folder in it. "
                     "Pass a `djpeg-train consistency` run folder or a classifier .npz.")
  with checkpoint.Checkpointer(folder) as ckpt:
    if ckpt.latest_step() is None:
      raise ValueError(f"{path!r} holds no finished checkpoint.")
    _, meta = ckpt.restore_meta()
    cfg = _config_from_record(meta.get("config"), path)
    own = os.path.join(cfg.data, "train")
    trained = data.list_classes(own)[0] if classes is None or os.path.isdir(own) else None
    if classes is None:
      classes = trained
    elif trained is not None and tuple(trained) != tuple(classes):
      # Named before the restore, whose failure would blame the checkpoint.
      raise ValueError(f"classifier {path!r} was trained on classes {list(trained)} (its "
                       f"folder {own!r}); the data has {list(classes)}.")
    graphdef, params, rest = _structure(cfg, len(classes))
    # The optimizer's state has the same structure whatever the schedule's step counts.
    tx = consistency.make_optimizer(cfg, 2, 1)
    state = state_lib.TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32),
                                 jax.random.PRNGKey(0))
    try:
      state, _ = ckpt.restore(state)
    except checkpoint.CheckpointError as e:
      # Not the checkpointer's advice on resuming a run (delete the step...): this is a
      # finished classifier, most likely of another number of classes.
      cause = e.__cause__ if e.__cause__ is not None else e
      detail = (str(cause).strip().splitlines() or [""])[0][:200]
      raise ValueError(f"{path!r}: its latest checkpoint does not fit a {len(classes)}-class "
                       f"{cfg.model} classifier of its own settings: trained on another number "
                       f"of classes, or damaged ({type(cause).__name__}: {detail}).") from None
  return Classifier(network_of(cfg, graphdef, state.params, state.rest), cfg, tuple(classes),
                    path)


def load_classifier(path: str, classes: Sequence[str] | None = None) -> Classifier:
  """A trained classifier from a `djpeg-train consistency` run folder or a `save_classifier` file.

  Args:
    path: the run folder (its latest checkpoint) or the `.npz`.
    classes: the class names of the data it is used on (a run folder records no class count;
      default: the classes of its own training folder, which must then exist).
  Raises:
    ValueError: missing path, a checkpoint or file of another kind (tables, QTableNet), or one
      that does not fit its own settings or the number of classes.
  """
  if not os.path.exists(path):
    raise ValueError(f"classifier {path!r} does not exist.")
  if os.path.isdir(path):
    result = _load_run_classifier(path, classes)
  else:
    result = _load_npz_classifier(path)
  if classes is not None and tuple(classes) != result.classes:
    raise ValueError(f"classifier {path!r} was trained on classes {list(result.classes)}; the "
                     f"data has {list(classes)}.")
  return result


# ------------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class LabeledImages:
  """A labeled split in memory: uint8 `(N, H, W, 3)` images, `(N,)` int32 labels, class names."""

  images: np.ndarray
  labels: np.ndarray
  classes: tuple[str, ...]


_SPLITS: dict = {}


def load_split(root: str, split: str = "train") -> LabeledImages:
  """All of `<root>/<split>/<class>/*` as arrays (read once per process; images of one size).

  Raises:
    ValueError: no such folder, no class folders or images in it, or images of several sizes.
  """
  folder = os.path.join(root, split)
  if not os.path.isdir(folder):
    raise ValueError(f"data folder {root!r} has no {split}/ subfolder (the layout is "
                     f"{split}/<class>/<image>).")
  key = (os.path.realpath(folder), split)
  if key not in _SPLITS:
    stream = data.ImageFolder(folder, batch_size=1000, shuffle=False, drop_last=False, epochs=1,
                              uint8=True)
    images, labels = zip(*stream)
    _SPLITS[key] = LabeledImages(np.concatenate(images), np.concatenate(labels).astype(np.int32),
                                 tuple(stream.classes))
  return _SPLITS[key]


class ArrayStream:
  """Endless seeded batches `(images (B, H, W, 3) float32 in [0, 1], labels (B,))` from arrays.

  Each epoch visits the images in an order drawn from `(seed, epoch)` (the last partial batch is
  dropped); `flip` mirrors half of them at random, drawn from `(seed, epoch, position)`.
  `get_state` / `set_state` as `djpeg.train.data` streams: a resumed run sees the same batches.
  """

  def __init__(self, split: LabeledImages, *, batch_size: int, seed: int, flip: bool = False):
    if len(split.labels) < batch_size:
      raise ValueError(f"{len(split.labels)} images are fewer than one batch of {batch_size}.")
    self.split, self.batch_size, self.seed, self.flip = split, batch_size, int(seed), flip
    self.epoch, self.position = 0, 0

  @property
  def steps_per_epoch(self) -> int:
    return len(self.split.labels) // self.batch_size

  def get_state(self) -> dict:
    return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

  def set_state(self, state: dict) -> None:
    if int(state["seed"]) != self.seed:
      raise ValueError(f"iterator state was saved with seed {state['seed']}, this stream has "
                       f"seed {self.seed}: resuming would not reproduce the run.")
    self.epoch, self.position = int(state["epoch"]), int(state["position"])

  def __iter__(self):
    return self

  def __next__(self):
    n = len(self.split.labels)
    if self.position + self.batch_size > n:
      self.epoch, self.position = self.epoch + 1, 0
    order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
    index = order[self.position:self.position + self.batch_size]
    images = self.split.images[index].astype(np.float32) / 255.0
    if self.flip:
      rng = np.random.default_rng([self.seed, self.epoch, self.position, 1])
      mirror = rng.random(len(index)) < 0.5
      images[mirror] = images[mirror, :, ::-1]
    self.position += self.batch_size
    return images, self.split.labels[index]


def fixed_images(split: LabeledImages, count: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` images of the split drawn once with a fixed seed (the same for every run)."""
  index = np.sort(np.random.default_rng(0).permutation(len(split.labels))[:count])
  return split.images[index].astype(np.float32) / 255.0, split.labels[index]


# ------------------------------------------------------------------------------ the objective


@functools.lru_cache(maxsize=1)
@functools.cache
def _ijg_luma_tables() -> np.ndarray:
  """`(100, 8, 8)` IJG luma tables at qualities 1..100 (`djpeg.tables.quality_tables`), as a
  numpy constant so that it stays one under any transformation."""
  with jax.ensure_compile_time_eval():     # first called while tracing a training step
    return np.asarray(quality_tables(np.arange(1.0, 101.0))[:, 0])


def file_quality(tables: jax.Array) -> jax.Array:
  """The IJG quality (1..100) whose luma table is nearest to `tables[..., 0, :, :]`: what a
  quality-conditioned classifier is told about a file (`djpeg.train.evaluate.estimate_quality`).
  `(..., C, 8, 8)` -> `(...)` float32, no gradient."""
  luma = jnp.round(jax.lax.stop_gradient(jnp.asarray(tables, jnp.float32))[..., 0, :, :])
  distance = jnp.abs(luma[..., None, :, :] - _ijg_luma_tables()).sum(axis=(-2, -1))
  return 1.0 + jnp.argmin(distance, axis=-1).astype(jnp.float32)


def tie_chroma(tables: jax.Array, one_table: bool = False) -> jax.Array:
  """`(..., 3, 8, 8)` -> Y, Cb, Cb: Cr uses Cb's table (one DQT entry for both); with
  `one_table`, Y, Y, Y (one entry for all three)."""
  return tables[..., jnp.asarray([0, 0, 0] if one_table else [0, 1, 1]), :, :]


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _feature_loss(features, targets, layers):
  return sum(consistency.feature_distance(jax.lax.stop_gradient(targets[name]), features[name])
             for name in layers) / len(layers)


def task_loss(network: FrozenNetwork, clean, compressed, labels, quality, *, task: str,
              layers: Sequence[str]) -> jax.Array:
  """Per image `(B,)` task loss of `network` on `compressed` (pixels or `Coefficients`).

  "ce": cross-entropy against `labels` (or, with `labels=None`, against the network's own
  softmax on `clean`: label-free, for saliency); "features": the distance of the features
  `layers` to those of `clean`.
  """
  logits, features = network(compressed, quality)
  if task == "ce" and labels is not None:
    return _cross_entropy(logits, labels)
  clean_logits, clean_features = jax.lax.stop_gradient(network(clean))
  if task == "ce":
    return optax.softmax_cross_entropy(logits, jax.nn.softmax(clean_logits))
  return _feature_loss(features, clean_features, layers)


def _encode(network: FrozenNetwork, images, tables, deadzone=None):
  return djpeg.encode(images, tables=tables, subsampling=SUBSAMPLING, deadzone=deadzone)


def _clean_input(network: FrozenNetwork, images):
  """What the network sees for a clean image: the pixels, or quality-100 coefficients."""
  if network.inputs == "pixels":
    return images
  return jax.lax.stop_gradient(djpeg.encode(images, quality=100.0, subsampling=SUBSAMPLING))


def _noise_gradient(network: FrozenNetwork, images, tables, exact, key):
  """The exact JPEG copy `exact` (pixels, or `Coefficients`) with the gradient of the
  additive-noise proxy: dequantized coefficients x + u * T, u ~ U(-1/2, 1/2), whose derivative
  in a step T is the noise itself (Balle et al.), not the rounding residual of straight-through
  rounding, which flips sign from one image to the next."""
  noisy = djpeg.encode(images, tables=tables, subsampling=SUBSAMPLING, rounding="noise", key=key)
  if network.inputs == "pixels":
    decoded = djpeg.decode(noisy)
    return jax.lax.stop_gradient(exact) + decoded - jax.lax.stop_gradient(decoded)
  steps = jax.lax.stop_gradient(exact.tables)
  components = []
  for c, (e, n) in enumerate(zip(exact.components, noisy.components)):
    t = noisy.tables[:, c, None, None, :, :]
    dequantized = n * t
    components.append(jax.lax.stop_gradient(e) + (dequantized - jax.lax.stop_gradient(
        dequantized)) / steps[:, c, None, None, :, :])
  return djpeg.Coefficients(tuple(components), steps, exact.height, exact.width, exact.sampling)


def task_objective(network: FrozenNetwork | Classifier, images, labels, tables, lmbda, *,
                   task: str = "ce", layers: Sequence[str] = ("pooled",),
                   rate_weight: float = 1.0, codec: bool = True, deadzone=None,
                   surrogate: str = "ste", key: jax.Array | None = None):
  """Per image `rate_weight * bpp + lmbda * task`, with its two terms.

  Args:
    network: the frozen classifier (a `Classifier` or its `network`).
    images: `(B, H, W, 3)` float in [0, 1]; labels: `(B,)` int (used by task "ce").
    tables: `(B, 3, 8, 8)` or `(3, 8, 8)` real steps (rounded straight-through by the codec).
    lmbda: scalar or `(B,)`, bits per pixel per unit of task loss.
    task, layers: the task loss (`task_loss`).
    rate_weight: weight of the bits per pixel (0 leaves the task loss alone).
    codec: False makes the "JPEG copy" the clean image itself (the identity codec); the bits
      are still those of the file `tables` would give.
    deadzone: per component dead-zone offsets for `djpeg.encode` (the trellis stand-in).
    surrogate: the gradient of the task loss in the tables: "ste" (straight-through rounding)
      or "noise" (`_noise_gradient`, needs `key`); the forward values are exact either way.
  Returns:
    (objective, bpp, task), each `(B,)`: bpp of the whole baseline file (`djpeg.rate.file_bytes`).
  """
  if isinstance(network, Classifier):
    network = network.network
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}; got {task!r}.")
  if surrogate not in SURROGATES or (surrogate == "noise" and key is None):
    raise ValueError(f"surrogate must be one of {SURROGATES} (\"noise\" with a key); got "
                     f"{surrogate!r}.")
  if checks.is_concrete(lmbda):
    for x in np.unique(np.asarray(lmbda, np.float64)):
      check_lambda(x)
  images = jnp.asarray(images, jnp.float32)
  b, height, width = images.shape[:3]
  tables = jnp.broadcast_to(jnp.asarray(tables, jnp.float32), (b, 3, 8, 8))
  coefficients = _encode(network, images, tables, deadzone)
  bpp = 8.0 * djpeg.rate.file_bytes(coefficients, code=_RATE_CODE) / (height * width)
  clean = _clean_input(network, images)
  if not codec:
    compressed, quality = clean, jnp.full((b,), 100.0)
  else:
    compressed = djpeg.decode(coefficients) if network.inputs == "pixels" else coefficients
    if surrogate == "noise":
      compressed = _noise_gradient(network, images, tables, compressed, key)
    quality = file_quality(coefficients.tables)
  task_value = task_loss(network, clean, compressed, labels, quality, task=task, layers=layers)
  return rate_weight * bpp + lmbda * task_value, bpp, task_value


# ------------------------------------------------------------- block weights for the trellis


def sensitivity_maps(network: FrozenNetwork | Classifier, images, tables, *, task: str = "ce",
                     layers: Sequence[str] = ("pooled",)) -> jax.Array:
  """The classifier's per-block weight of squared error around the JPEG of `images` at `tables`.

  `djpeg.metrics.block_sensitivity` of the label-free task loss (`task_loss` with no labels):
  how much the classifier's loss grows per unit of squared error in each 8x8 block. The same
  measurement `djpeg.roi` makes for MS-SSIM ("ms-ssim" saliency), with the network as metric.

  Args:
    images: `(B, H, W, 3)` float in [0, 1]; tables: `(B, 3, 8, 8)` or `(3, 8, 8)`.
  Returns:
    `(B, ceil(H / 8), ceil(W / 8))` weights in (0, 1], largest 1 per image; `djpeg.roi.
    pixel_map` makes them the `(H, W)` maps `djpeg.encoder.compress(saliency=)` takes.
  """
  if isinstance(network, Classifier):
    network = network.network
  images = jnp.asarray(images, jnp.float32)
  b = images.shape[0]
  tables = jax.lax.stop_gradient(jnp.broadcast_to(jnp.asarray(tables, jnp.float32), (b, 3, 8, 8)))
  decoded = jax.lax.stop_gradient(djpeg.jpeg(images, tables=tables, subsampling=SUBSAMPLING))
  quality = file_quality(tables)
  clean = _clean_input(network, images)

  def loss(reference, distorted):
    x = distorted if network.inputs == "pixels" else djpeg.encode(
        distorted, quality=100.0, subsampling=SUBSAMPLING)
    return task_loss(network, clean, x, None, quality, task=task, layers=layers)

  return metrics_lib.block_sensitivity(loss, images, decoded)


def block_weight_maps(block_map: jax.Array, height: int, width: int, background: float):
  """Sensitivity `(B, rows, cols)` -> per component `(B, rows_c, cols_c)` trellis block weights:
  `background + (1 - background) * map` per pixel, mean 1 per image, averaged over each block
  (`djpeg.roi.pixel_weights` and `block_means`, in JAX)."""
  pixels = background + (1.0 - background) * roi.pixel_map(block_map, height, width)
  pixels = pixels / jnp.mean(pixels, axis=(-2, -1), keepdims=True)
  return roi.block_means(pixels, height, width, sampling.factors_for(SUBSAMPLING, 3))


def mse_slope(images, tables) -> jax.Array:
  """`(B,)` bits per pixel saved per unit of RGB MSE added when the AC steps grow by 10%: the
  tables' own rate-distortion slope, the lambda the exporter's trellis uses for them
  (`djpeg.exact.trellis.table_slope`, here with the rate model; no gradient)."""
  images = jnp.asarray(images, jnp.float32)
  height, width = images.shape[1:3]
  factors = sampling.factors_for(SUBSAMPLING, 3)
  dct = djpeg.transform(images, subsampling=SUBSAMPLING)
  steps = jnp.clip(jnp.round(jax.lax.stop_gradient(jnp.asarray(tables, jnp.float32))), 1, 255)
  steps = jnp.broadcast_to(steps, (images.shape[0], 3, 8, 8))
  ac = jnp.ones((8, 8)).at[0, 0].set(0.0)
  move = jnp.maximum(1.0, jnp.round(_SLOPE_STEP * steps)) * ac

  def one(d0, d1, d2, t, m):
    fine = rate_distortion((d0, d1, d2), jnp.clip(t - m, 1, 255), sampling=factors,
                           height=height, width=width, code="entropy", headers=False)
    coarse = rate_distortion((d0, d1, d2), jnp.clip(t + m, 1, 255), sampling=factors,
                             height=height, width=width, code="entropy", headers=False)
    saved, added = fine[0] - coarse[0], coarse[1] - fine[1]
    return jnp.where((saved > 0) & (added > 0), saved / jnp.maximum(added, 1e-12), 0.0)

  return jax.lax.stop_gradient(jax.vmap(one)(*dct, steps, move))


def trellis_deadzone(network: FrozenNetwork, images, tables, *, task: str, layers, background):
  """The dead-zone offsets (`djpeg.roi.deadzone`) the trellis would apply with the classifier's
  sensitivity maps as block weights, at the tables' own slope: per component
  `(B, rows_c, cols_c, 8, 8)`."""
  height, width = images.shape[1:3]
  maps = sensitivity_maps(network, images, tables, task=task, layers=layers)
  weights = block_weight_maps(maps, height, width, background)
  slope = mse_slope(images, tables)[:, None, None, None, None]
  return roi.deadzone(weights, tables, lmbda=slope, height=height, width=width,
                      subsampling=SUBSAMPLING)


# ---------------------------------------------------------------------- models and losses


def start_quality(lmbda, lambda_range: tuple[float, float]) -> jax.Array:
  """The IJG quality a lambda starts from: 10 at the bottom of `lambda_range` to 90 at its top,
  linear in log lambda (as the family's levels start), clipped to [1, 100] outside."""
  lo, hi = np.log(lambda_range[0]), np.log(lambda_range[1])
  t = (jnp.log(jnp.asarray(lmbda, jnp.float32)) - lo) / (hi - lo)
  return jnp.clip(10.0 + 80.0 * t, 1.0, 100.0)


def _anchor_weights(lmbda, lambda_range: tuple[float, float], anchors: int) -> jax.Array:
  """`(B, anchors)` piecewise-linear weights of log lambda between `anchors` log-spaced anchor
  lambdas over `lambda_range` (clamped at the ends)."""
  lo, hi = np.log(lambda_range[0]), np.log(lambda_range[1])
  t = (jnp.log(jnp.asarray(lmbda, jnp.float32)) - lo) / (hi - lo) * (anchors - 1)
  return jnp.maximum(0.0, 1.0 - jnp.abs(jnp.clip(t, 0, anchors - 1)[:, None] - jnp.arange(anchors)))


class _Branch(nnx.Module):
  """Two 3x3 convolutions over a block-DCT map, then global average and max pooling."""

  def __init__(self, channels_in: int, width: int, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels_in, width, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.gelu(self.conv2(nnx.gelu(self.conv1(x))))
    return jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)


class TaskTableNet(nnx.Module):
  """Per-image tables for a lambda: a family over lambda plus a per-image correction.

      log T(x, lambda) = log K(q(lambda)) + sum_k a_k(lambda) (offset_k + head_k . h(x))

  * K(q): the Annex K tables at the lambda's start quality (`start_quality`), so that the
    network starts where a family's levels start;
  * a_k: piecewise-linear weights of log lambda between `anchors` log-spaced lambdas over
    `lambda_range` (`_anchor_weights`);
  * offset_k `(3, 8, 8)`: learned log-steps of anchor k, the dataset-level part;
  * h(x) `(2 * width,)`: image features, QTableNet's design (convolutions over the luma and
    chroma block-DCT log-magnitude maps, one block = one pixel of 64 channels, and per-frequency
    statistics), centred and of unit length; head_k `(2 * width, 3 * 64)` maps them to anchor
    k's per-image correction.

  Each anchor has its own offsets and head: a shared output would let the lambdas whose rate
  gradient is strong and steady (small lambda: coarser everywhere) move every lambda's tables
  (tried on CIFAR-10 with QTableNet's lambda knob: the middle lambdas' objective rose). Heads
  start at zero, so the net starts as Annex K. Steps are clipped to 1..255 straight-through;
  Cr uses Cb's table.

  Args:
    lambda_range: (lo, hi) lambdas trained on; width: feature width; anchors: lambda anchors.
  """

  def __init__(self, lambda_range: tuple[float, float], *, width: int,
               anchors: int = NET_ANCHORS, rngs: nnx.Rngs):
    self.lambda_range = tuple(float(x) for x in lambda_range)
    self.anchors = anchors
    self.luma = _Branch(64, width, rngs)
    self.chroma = _Branch(128, width, rngs)
    self.stats = nnx.Linear(3 * 64, width, rngs=rngs)
    self.hidden = nnx.Linear(5 * width, 2 * width, rngs=rngs)
    self.heads = nnx.Param(jnp.zeros((anchors, 2 * width, 3 * 64), jnp.float32))
    self.offsets = nnx.Param(jnp.zeros((anchors, 3, 8, 8), jnp.float32))

  def features(self, dct: tuple[jax.Array, ...]) -> jax.Array:
    """Per component `(B, rows, cols, 8, 8)` DCT -> `(B, 2 * width)` image features."""
    def magnitudes(blocks):
      b, rows, cols = blocks.shape[:3]
      return jnp.log1p(jnp.abs(blocks.reshape(b, rows, cols, 64))) / np.log1p(1024.0)

    y = magnitudes(dct[0])
    chroma = jnp.concatenate([magnitudes(dct[1]), magnitudes(dct[2])], axis=-1)
    stats = jnp.concatenate([y.mean(axis=(1, 2)), chroma.mean(axis=(1, 2))], axis=-1)
    joined = jnp.concatenate([self.luma(y), self.chroma(chroma), nnx.gelu(self.stats(stats))],
                             axis=-1)
    # Centred and scaled to unit length per image. Unnormalized (a GELU here), Adam's steps,
    # which move every weight by about the learning rate whatever its gradient, grew the
    # features about 800-fold in 200 steps on CIFAR-10 (mean |h| 0.03 -> 23): each head step
    # then moved the tables by tens of percent, the gradient norm rose from 0.02 to 135, and
    # the training and validation objectives rose from their start.
    z = self.hidden(joined)
    z = z - z.mean(axis=-1, keepdims=True)
    return z * jax.lax.rsqrt(jnp.sum(z * z, axis=-1, keepdims=True) + _FEATURE_EPS)

  def __call__(self, dct: tuple[jax.Array, ...], lmbda: jax.Array) -> jax.Array:
    """Per component `(B, rows, cols, 8, 8)` DCT (colour, 4:2:0) and `(B,)` lambda ->
    `(B, 3, 8, 8)` steps in [1, 255] (Cr = Cb)."""
    b = dct[0].shape[0]
    q = start_quality(lmbda, self.lambda_range)
    scale = jnp.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q) / 100.0
    weights = _anchor_weights(lmbda, self.lambda_range, self.anchors)          # (B, K)
    correction = jnp.einsum("bf,kfo->bko", self.features(dct), self.heads[...])
    log_offset = jnp.einsum("bk,bko->bo", weights,
                            correction + self.offsets[...].reshape(self.anchors, -1))
    # A smooth bound of +-LOG_OFFSET_LIMIT (a factor of 403): enough to reach 1 or 255 from any
    # start, and no overflow of exp (an unbounded head reached inf, then NaN gradients, on
    # CIFAR-10 after a few hundred steps).
    log_offset = LOG_OFFSET_LIMIT * jnp.tanh(log_offset / LOG_OFFSET_LIMIT)
    base = np.asarray(ANNEX_K, np.float32)[[0, 1, 1]]
    tables = base * scale[:, None, None, None] * jnp.exp(log_offset.reshape(b, 3, 8, 8))
    return tie_chroma(clip_ste(tables, 1.0, 255.0))


def build_tables_model(kind: str, cfg: Config):
  """A `TableFamily` (family, alternate) or a `TaskTableNet` (net, block), from the seed."""
  if kind in ("family", "alternate"):
    lambdas = np.asarray(cfg.family_lambdas)
    # Start from Annex K tables spanning qualities 10..90, coarse for small lambdas.
    return TableFamily(lambdas, np.linspace(10, 90, len(lambdas)))
  return TaskTableNet(cfg.net_lambda_range, width=cfg.width, rngs=nnx.Rngs(cfg.seed))


def family_loss(model: TableFamily, batch, key, network: FrozenNetwork, *, task, layers,
                surrogate: str = "ste", one_table: bool = False):
  """Every level on an equal share of the batch: mean_k log(E[bpp] + lambda_k E[task]).
  (With `one_table` the file's one DQT entry fewer is a constant the gradient does not see.)"""
  images, labels = batch
  key = jax.random.PRNGKey(0) if key is None else key
  levels = model.lambdas.shape[0]
  level = jnp.arange(images.shape[0]) % levels
  lambdas = model.lambdas[...]
  tables = tie_chroma(model(level), one_table)
  _, bpp, value = task_objective(network, images, labels, tables, lambdas[level], task=task,
                                 layers=layers, surrogate=surrogate, key=key)
  onehot = jax.nn.one_hot(level, levels)
  count = onehot.sum(axis=0)
  mean_bpp, mean_task = (onehot.T @ bpp) / count, (onehot.T @ value) / count
  loss = jnp.mean(jnp.log(mean_bpp + lambdas * mean_task))
  return loss, {"bpp": jnp.mean(bpp), "task": jnp.mean(value)}


def net_loss(model: TaskTableNet, batch, key, network: FrozenNetwork, *, task, layers,
             lambda_range, block: bool = False, background: float = 0.01,
             surrogate: str = "ste"):
  """Lambdas on a jittered ladder: image i falls in bin i mod K of K = `model.anchors` equal
  bins of log lambda over `lambda_range` and draws its lambda log-uniformly inside it; each bin
  minimises log(mean_i (bpp_i + lambda_i task_i)) over its images. That is the dataset's
  objective near that lambda, which per-image tables minimise image by image; the log balances
  the bins (a per-image log(bpp_i + lambda_i task_i) would weigh the bits of images the
  classifier is sure of most). With `block`, the trellis stand-in follows the classifier's
  sensitivity maps (`trellis_deadzone`)."""
  images, labels = batch
  key = jax.random.PRNGKey(0) if key is None else key
  key_lambda, key_noise = jax.random.split(key)
  bins = model.anchors
  lo, hi = np.log(lambda_range)
  index = jnp.arange(images.shape[0]) % bins
  u = jax.random.uniform(key_lambda, (images.shape[0],))
  lmbda = jnp.exp(lo + (index + u) * (hi - lo) / bins)
  tables = model(djpeg.transform(images, subsampling=SUBSAMPLING), lmbda)
  deadzone = (trellis_deadzone(network, images, tables, task=task, layers=layers,
                               background=background) if block else None)
  objective, bpp, value = task_objective(network, images, labels, tables, lmbda, task=task,
                                         layers=layers, deadzone=deadzone, surrogate=surrogate,
                                         key=key_noise)
  onehot = jax.nn.one_hot(index, bins)
  per_bin = (onehot.T @ objective) / onehot.sum(axis=0)
  return jnp.mean(jnp.log(per_bin)), {"bpp": jnp.mean(bpp), "task": jnp.mean(value)}


def tables_loss_fn(kind: str, cfg: Config):
  """`loss_fn(model, batch, key, network)` of a table level."""
  if kind in ("family", "alternate"):
    return functools.partial(family_loss, task=cfg.task, layers=cfg.layers,
                             surrogate=cfg.surrogate, one_table=cfg.one_table)
  return functools.partial(net_loss, task=cfg.task, layers=cfg.layers,
                           lambda_range=cfg.net_lambda_range, block=kind == "block",
                           background=cfg.background, surrogate=cfg.surrogate)


def _optimizer(kind: str, learning_rate: float,
               offsets_rate: float = 0.01) -> optax.GradientTransformation:
  # Unlike djpeg.train.tables (momentum SGD for MSE tables), Adam: the task loss's gradient in
  # each entry is noisy (a few images per level and step), and momentum SGD at a rate that
  # moves the common entries fast enough let the rare ones wander (tried on CIFAR-10: it raised
  # the objective of the upper levels where Adam lowered every level's). A TaskTableNet's
  # offsets (its family) learn at the family's rate, the image part at `learning_rate`.
  if kind in ("family", "alternate"):
    return optax.adam(learning_rate)
  label = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, _: "offsets" if "offsets" in jax.tree_util.keystr(path) else "image", params)
  # Clipped, and the image part at 3e-4: unclipped at 1e-3, a CIFAR-10 run's validation
  # objective rose from its start and its gradients overflowed by step 375 (the features'
  # growth, since normalized in `TaskTableNet.features`; with them normalized, 1e-3 was no
  # better than 3e-4 on held-out CIFAR-10 images after 1,200 steps).
  return optax.chain(optax.clip_by_global_norm(NET_GRADIENT_CLIP),
                     optax.multi_transform({"offsets": optax.adam(offsets_rate),
                                            "image": optax.adam(learning_rate)}, label))


def _with_network(graphdef, tx, loss_fn):
  """A step `(state, batch, network) -> (state, metrics)`: `loss_fn(model, batch, key, network)`
  with the frozen network passed in (replicated, not a compiled-in constant)."""
  def step(state, batch, network):
    inner = state_lib.make_train_step(graphdef, tx, lambda m, b, k: loss_fn(m, b, k, network))
    return inner(state, batch)
  return step


def _structural(cfg: Config) -> Config:
  """`cfg` without what does not change the compiled step (paths, seed, logging, limits)."""
  return dataclasses.replace(cfg, classifier="", data="", out="", seed=0, eval_every=1,
                             checkpoint_every=1, log_every=1, val_images=1, time_limit=None,
                             steps=1, rounds=1)


@functools.lru_cache(maxsize=16)
def _compiled_tables(cfg: Config, network_graphdef, devices: tuple):
  """(graphdef, tx, mesh, step, evaluate) of a table level, built once per structure so that
  seeds and resumed runs reuse the compiled step."""
  model = build_tables_model(cfg.kind, cfg)
  tx = _optimizer(cfg.kind, cfg.lr)
  graphdef, _ = state_lib.create_state(model, tx, seed=0)
  mesh = parallel.data_mesh(list(devices))
  loss_fn = tables_loss_fn(cfg.kind, cfg)
  step = parallel.parallel_step(_with_network(graphdef, tx, loss_fn), mesh)

  @jax.jit
  def evaluate(state, batch, network):
    model = state_lib.merge_model(graphdef, state)
    if cfg.kind in ("family", "alternate"):
      return family_loss(model, batch, None, network, task=cfg.task, layers=cfg.layers,
                         surrogate=cfg.surrogate, one_table=cfg.one_table)
    # The same lambdas every time (the range's ends and middle), for a comparable curve; at
    # each, log(mean objective) over the images, as the training bins measure it.
    images, labels = batch
    lo, hi = cfg.net_lambda_range
    losses, extra = [], {}
    for lmbda in (lo, float(np.sqrt(lo * hi)), hi):
      tables = model(djpeg.transform(images, subsampling=SUBSAMPLING),
                     jnp.full((images.shape[0],), lmbda))
      objective, bpp, value = task_objective(network, images, labels, tables, lmbda,
                                             task=cfg.task, layers=cfg.layers)
      losses.append(jnp.log(jnp.mean(objective)))
      extra.update({f"bpp_{lmbda:g}": jnp.mean(bpp), f"task_{lmbda:g}": jnp.mean(value)})
    return jnp.mean(jnp.stack(losses)), extra

  return graphdef, tx, mesh, step, evaluate


# ------------------------------------------------------------------------- training driver


def _fit(state, step, stream, *, out: str, mesh, num_steps: int, cfg: Config, network,
         validate, name: str, meta: dict, progress_keys=("loss", "bpp", "task")):
  """`loop.fit` in stretches of `cfg.eval_every` steps under `<out>/checkpoints`, validating
  after each; stops early (and saves) `cfg.time_limit` seconds after the first stretch.

  Returns (state, first step of this session, last step reached).
  """
  replicated = parallel.replicate(network, mesh)
  step_fn = lambda s, b: step(s, b, replicated)  # noqa: E731
  with checkpoint.Checkpointer(os.path.join(out, "checkpoints")) as ckpt:
    state = loop.resume(ckpt, parallel.replicate(state, mesh), stream,
                        config=meta.get("config"), num_steps=num_steps)
    start = first = int(jax.device_get(state.step))
    log = monitor.MetricsLog(os.path.join(out, "metrics.csv"), resume_step=start or None)
    val_log = monitor.MetricsLog(os.path.join(out, "validation.csv"), resume_step=start or None)
    progress = monitor.Progress(num_steps, name=name, start_step=start)

    def validation(at):
      values = validate(state)
      val_log.write(at, values)
      print(f"[{name}] step {at}: validation " + ", ".join(
          f"{k} {v:.4g}" for k, v in values.items()), flush=True)

    if start == 0:
      validation(0)
    deadline = None
    while start < num_steps:
      if deadline is not None and time.time() > deadline:
        print(f"[{name}] time limit reached at step {start} of {num_steps}", flush=True)
        break
      stop = min(num_steps, (start // cfg.eval_every + 1) * cfg.eval_every)
      state = loop.fit(state, step_fn, stream, num_steps=stop, mesh=mesh, checkpointer=ckpt,
                       checkpoint_every=cfg.checkpoint_every, log=log, log_every=cfg.log_every,
                       progress=progress, meta=meta, progress_keys=progress_keys)
      start = stop
      validation(start)
      if deadline is None and cfg.time_limit is not None:
        deadline = time.time() + cfg.time_limit
  return state, first, start


def _validator(evaluate, graphdef, network, batch):
  def validate(state):
    loss, extra = evaluate(jax.device_get(state), batch, network)
    return {"loss": float(loss), **{k: float(v) for k, v in extra.items()}}
  return validate


def _check_layers(classifier: Classifier, layers: Sequence[str]) -> None:
  consistency.build_model(dataclasses.replace(classifier.cfg, layers=tuple(layers)),
                          len(classifier.classes))


def _net_record(cfg: Config, classifier: Classifier) -> dict:
  return {"format": "djpeg-task-net", "version": 1, "kind": cfg.kind, "width": cfg.width,
          "lambda_range": list(cfg.net_lambda_range), "task": cfg.task,
          "layers": list(cfg.layers), "background": cfg.background,
          "subsampling": SUBSAMPLING, "classifier": classifier.source}


def export_family(path: str, model: TableFamily, cfg: Config, classifier: Classifier,
                  steps: int) -> np.ndarray:
  """Writes the family file; returns its `(K, 3, 8, 8)` int tables."""
  tables = np.asarray(tie_chroma(model(jnp.arange(len(cfg.family_lambdas))), cfg.one_table))
  djpeg.tables.save_table_family(
      path, tables, cfg.family_lambdas, subsampling=SUBSAMPLING,
      description=f"task-aware tables learned by djpeg-train task-tables {cfg.kind} for "
                  f"{classifier.source} ({cfg.task}, {steps} steps, batch {cfg.batch}, seed "
                  f"{cfg.seed}{', one table for all components' if cfg.one_table else ''}); "
                  "lambda in bits per pixel per unit of task loss",
      extra=[{"task": cfg.task} for _ in cfg.family_lambdas])
  return np.clip(np.round(tables), 1, 255).astype(np.int32)


def _train_tables(cfg: Config, classifier: Classifier, split: LabeledImages, *, state=None,
                  out: str | None = None, num_steps: int | None = None,
                  name: str | None = None):
  """Trains (or resumes) one table level against `classifier`; returns (graphdef, state,
  first step, last step)."""
  out = out or cfg.out
  graphdef, tx, mesh, step, evaluate = _compiled_tables(
      _structural(cfg), classifier.network.graphdef, tuple(jax.devices()))
  parallel.check_batch_size(cfg.batch, mesh)
  if state is None:
    _, state = state_lib.create_state(build_tables_model(cfg.kind, cfg), tx, seed=cfg.seed)
  stream = ArrayStream(split, batch_size=cfg.batch, seed=cfg.seed)
  batch = fixed_images(split, cfg.val_images)
  validate = _validator(evaluate, graphdef, classifier.network, batch)
  state, first, last = _fit(state, step, stream, out=out, mesh=mesh,
                            num_steps=num_steps or cfg.steps, cfg=cfg,
                            network=classifier.network, validate=validate,
                            name=name or f"{cfg.kind} s{cfg.seed}",
                            meta={"config": as_dict(cfg)})
  return graphdef, jax.device_get(state), first, last


# ------------------------------------------------------------------- alternating training


def classifier_loss_fn(ccfg: consistency.Config):
  """`loss_fn(model, batch, key, family_tables)` for the classifier's rounds of `alternate`:
  its own method (`consistency.method_loss`) with JPEG copies from the family's tables (a random
  level) for half the images and from Annex K tables at a random quality for the rest."""
  base = np.asarray(ANNEX_K)[[0, 1, 1]]

  def loss_fn(model, batch, key, family):
    images, labels = batch
    images = jnp.asarray(images, jnp.float32)
    b = labels.shape[0]
    k_quality, k_level, k_choice = jax.random.split(key, 3)
    q = consistency.random_qualities(k_quality, b, ccfg.quality_range)
    with state_lib.fast_random():
      level = jax.random.randint(k_level, (b,), 0, family.shape[0])
      learned = jax.random.bernoulli(k_choice, 0.5, (b,))
    tables = jnp.where(learned[:, None, None, None], family[level], quality_tables(q, base))
    quality = jnp.where(learned, file_quality(family[level]), q)
    if ccfg.model == "dct":
      clean = jax.lax.stop_gradient(djpeg.encode(images, quality=100.0,
                                                 subsampling=ccfg.subsampling))
      compressed = jax.lax.stop_gradient(djpeg.encode(images, tables=tables,
                                                      subsampling=ccfg.subsampling))
    else:
      clean = images
      compressed = jax.lax.stop_gradient(djpeg.jpeg(images, tables=tables,
                                                    subsampling=ccfg.subsampling))
    return consistency.method_loss(model, clean, compressed, labels, quality, cfg=ccfg)

  return loss_fn


@functools.lru_cache(maxsize=4)
def _compiled_classifier(ccfg: consistency.Config, num_classes: int, num_steps: int,
                         steps_per_epoch: int, devices: tuple):
  mesh = parallel.data_mesh(list(devices))
  graphdef = _structure(ccfg, num_classes)[0]
  tx = consistency.make_optimizer(ccfg, num_steps, steps_per_epoch)
  step = parallel.parallel_step(_with_network(graphdef, tx, classifier_loss_fn(ccfg)), mesh)
  return graphdef, tx, mesh, step


def _alternate(cfg: Config, classifier: Classifier, split: LabeledImages
               ) -> tuple[Classifier, Any, int]:
  """The rounds of `alternate`; returns (classifier, family state, table steps done)."""
  ccfg = dataclasses.replace(classifier.cfg, data=cfg.data, out=os.path.join(cfg.out, "classifier"))
  stream = ArrayStream(split, batch_size=ccfg.batch_size, seed=ccfg.seed, flip=ccfg.flip)
  c_steps = max(cfg.rounds, round(ccfg.epochs * stream.steps_per_epoch))
  cgraph, ctx, mesh, cstep = _compiled_classifier(
      dataclasses.replace(ccfg, seed=0, data="", out=""), len(split.classes), c_steps,
      stream.steps_per_epoch, tuple(jax.devices()))
  _, cstate = state_lib.create_state(consistency.build_model(ccfg, len(split.classes)), ctx,
                                     seed=ccfg.seed)
  family_graph, family_state = None, None
  meta = {"config": as_dict(cfg), "classifier_config": as_dict(ccfg)}
  log = None
  t_done = 0
  for r in range(cfg.rounds):
    c_target = round((r + 1) * c_steps / cfg.rounds)
    t_target = max(1, round((r + 1) * cfg.steps / cfg.rounds))
    family_ckpt = os.path.join(cfg.out, "family", "checkpoints")
    with checkpoint.Checkpointer(family_ckpt) as ckpt:
      t_saved = ckpt.latest_step() or 0
    if t_saved >= t_target:
      continue        # this round finished in an earlier session
    if family_state is None:   # the family as the previous round left it (or fresh)
      model = build_tables_model("alternate", cfg)
      _, family_state = state_lib.create_state(model, _optimizer("alternate", cfg.lr),
                                               seed=cfg.seed)
      if t_saved:
        with checkpoint.Checkpointer(family_ckpt) as ckpt:
          family_state, _ = ckpt.restore(family_state)
    family_graph = family_graph or state_lib.split_model(build_tables_model("alternate", cfg))[0]
    family = tie_chroma(state_lib.merge_model(family_graph, family_state)(
        jnp.arange(len(cfg.family_lambdas))), cfg.one_table)
    with checkpoint.Checkpointer(os.path.join(ccfg.out, "checkpoints")) as ckpt:
      cstate = loop.resume(ckpt, parallel.replicate(cstate, mesh), stream)
      log = monitor.MetricsLog(os.path.join(ccfg.out, "metrics.csv"),
                               resume_step=int(jax.device_get(cstate.step)) or None)
      replicated = parallel.replicate(jnp.round(family), mesh)
      cstate = loop.fit(cstate, lambda s, b: cstep(s, b, replicated), stream,
                        num_steps=c_target, mesh=mesh, checkpointer=ckpt,
                        checkpoint_every=cfg.checkpoint_every, log=log,
                        log_every=cfg.log_every, meta=meta,
                        progress=monitor.Progress(c_steps, name=f"alternate classifier r{r + 1}",
                                                  start_step=int(jax.device_get(cstate.step))),
                        progress_keys=("loss", "ce", "accuracy"))
    cstate = jax.device_get(cstate)
    classifier = Classifier(network_of(ccfg, cgraph, cstate.params, cstate.rest), ccfg,
                            split.classes, os.path.join(cfg.out, "classifier.npz"))
    _, family_state, _, t_done = _train_tables(
        cfg, classifier, split, state=family_state, out=os.path.join(cfg.out, "family"),
        num_steps=t_target, name=f"alternate family r{r + 1}")
    if t_done < t_target:
      break
  if family_state is None:     # everything was done before: read the final states
    _, family_state = state_lib.create_state(build_tables_model("alternate", cfg),
                                             _optimizer("alternate", cfg.lr), seed=cfg.seed)
    with checkpoint.Checkpointer(os.path.join(cfg.out, "family", "checkpoints")) as ckpt:
      family_state, _ = ckpt.restore(family_state)
      t_done = int(family_state.step)
    with checkpoint.Checkpointer(os.path.join(ccfg.out, "checkpoints")) as ckpt:
      cstate, _ = ckpt.restore(cstate)
    classifier = Classifier(network_of(ccfg, cgraph, cstate.params, cstate.rest), ccfg,
                            split.classes, os.path.join(cfg.out, "classifier.npz"))
  return classifier, family_state, t_done


# ------------------------------------------------------------------------------------- run


def run(cfg: Config) -> dict:
  """Trains (or resumes) one run and exports its result; returns the summary (also written to
  `<out>/summary.json`)."""
  cfg.check()
  if cfg.distributed:
    jax.distributed.initialize()
  split = load_split(cfg.data, "train")
  classifier = load_classifier(cfg.classifier, split.classes)
  if classifier.network.inputs == "coefficients" and cfg.kind == "block":
    raise ValueError("block weights need a pixel classifier: the DCT-domain model's sensitivity "
                     "is not measured in pixels.")
  if cfg.task == "features":
    _check_layers(classifier, cfg.layers)
  os.makedirs(cfg.out, exist_ok=True)
  started = time.time()
  summary = {"config": as_dict(cfg), "classifier": classifier.source,
             "classifier_config": as_dict(classifier.cfg), "classes": list(classifier.classes)}
  if cfg.kind == "alternate":
    classifier, state, done = _alternate(cfg, classifier, split)
    save_classifier(os.path.join(cfg.out, "classifier.npz"), classifier)
    graphdef = state_lib.split_model(build_tables_model("alternate", cfg))[0]
    first = None
  else:
    graphdef, state, first, done = _train_tables(cfg, classifier, split)
  model = state_lib.merge_model(graphdef, state)
  if cfg.kind in ("family", "alternate"):
    path = os.path.join(cfg.out, "family.json")
    tables = export_family(path, model, cfg, classifier, done)
    summary["tables"] = tables.tolist()
  else:
    path = os.path.join(cfg.out, "task_net.npz")
    save_params(model, path)
    with open(os.path.join(cfg.out, "task_net.json"), "w") as f:
      json.dump(_net_record(cfg, classifier), f, indent=1)
  elapsed = time.time() - started
  summary.update({"export": path, "steps": done, "seconds": elapsed,
                  "stopped_early": done < cfg.steps})
  if first is not None:
    summary["images_per_second"] = (done - first) * cfg.batch / max(elapsed, 1e-9)
  with open(os.path.join(cfg.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"[{cfg.kind} s{cfg.seed}] done: {path} ({done} steps, {elapsed:.0f} s)", flush=True)
  return summary


# ---------------------------------------------------------------------------- inference


def load_task_net(folder: str) -> tuple[TaskTableNet, dict]:
  """(the TaskTableNet, its record) exported by a `net` or `block` run into `folder`."""
  try:
    with open(os.path.join(folder, "task_net.json")) as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{folder!r} holds no task network record (task_net.json): {e}") from None
  if record.get("format") != "djpeg-task-net":
    raise ValueError(f"{folder!r}: task_net.json is not a djpeg task network record.")
  record["lambda_range"] = tuple(record["lambda_range"])
  net = TaskTableNet(record["lambda_range"], width=int(record["width"]), rngs=nnx.Rngs(0))
  return load_params(net, os.path.join(folder, "task_net.npz")), record


@nnx.jit
def _predict(net: TaskTableNet, images, lmbda):
  tables = net(djpeg.transform(images, subsampling=SUBSAMPLING), lmbda)
  return jnp.clip(jnp.floor(tables + 0.5), 1, 255)


def predict_task_tables(net: TaskTableNet, images, lmbda) -> np.ndarray:
  """Per-image task tables: `(B, H, W, 3)` float in [0, 1] and lambda (scalar or `(B,)`) ->
  `(B, 3, 8, 8)` int32 tables in 1..255 (Cr = Cb), for `djpeg.encode` / `djpeg.dumps`.

  Raises:
    ValueError: lambda outside `LAMBDA_LIMITS` (outside `net.lambda_range`, the range it was
      trained on, the network extrapolates, and its tables stay valid).
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be (B, H, W, 3); got shape {images.shape}.")
  lmbda = np.broadcast_to(np.asarray(lmbda, np.float64), images.shape[:1])
  for x in np.unique(lmbda):
    check_lambda(x)
  return np.asarray(_predict(net, jnp.asarray(images), jnp.asarray(lmbda, jnp.float32))
                    ).astype(np.int32)


def main(argv: Sequence[str] | None = None) -> int:
  return config_lib.main(Config, run, argv, prog="djpeg-train task-tables",
                         description=__doc__.splitlines()[0],
                         errors=(ValueError, monitor.NonFiniteError))


if __name__ == "__main__":
  sys.exit(main())
