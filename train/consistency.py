"""Feature consistency training against JPEG (Wan et al., IEEE TCSVT 2020), its baselines, and CLI.

Every step draws a quality per image (uniform integers in `quality_range`, default 10..90) and
makes the JPEG copy of the batch with `djpeg.jpeg` inside the jitted step, so it runs where the
model runs, with libjpeg-turbo's exact arithmetic. Methods, all in one harness:

* "plain": cross-entropy on the clean batch.
* "augment": cross-entropy on the clean batch and its JPEG copy (extra samples).
* "consistency": the same cross-entropy (the JPEG copy's weighted by `jpeg_weight`) plus `beta`
  times the distance between chosen internal features (`layers`, e.g. "stage3", "pooled") of the
  clean image and its JPEG copy, computed by the same network: L2 (mean squared difference) or
  cosine (1 - cosine similarity, per image).
  With `stop_clean` (default) the clean features are the target (no gradient through them), so
  the network learns to map the JPEG copy onto what it sees in the clean image without moving
  the clean representation. `quality_block=i` adds a quality-conditioned residual block after
  stage i (`djpeg.models.classifier.QualityBlock`); at test time it gets the quality read from the file.

`model="dct"` trains `djpeg.models.dct_classifier.DCTResNet` on coefficients from `djpeg.encode`
instead; its "clean" input is quality 100.

Command line (`python -m djpeg.train.consistency --help`, or `djpeg-train consistency ...`):

    python -m djpeg.train.consistency --method consistency --epochs 8 --seed 0 --out runs/fc-s0

Progress goes to stdout, metrics to `<out>/metrics.csv`, checkpoints to `<out>/checkpoints`
(every `--checkpoint-every` steps); run the same command again to resume exactly where it
stopped. At the end the model is evaluated on `<data>/test` compressed by Pillow at
`--eval-qualities` and the accuracies are written to `<out>/results.json`. The test split is read
only then. With `--validation N`, N images per class of `<data>/train` are held out (the same
ones for every seed), the run trains on the rest and is evaluated on them instead: settings such
as `--beta` and `--layers` are chosen there, and the test split is not read at all.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import json
import os
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import djpeg
from djpeg.models.classifier import ResNet, feature_names
from djpeg.models.dct_classifier import DCTResNet
from djpeg.train import checkpoint, data, evaluate, loop, monitor, parallel
from djpeg.train import state as state_lib
from djpeg.train import config as config_lib
from djpeg.train.config import as_dict, option

METHODS = ("plain", "augment", "consistency")
DISTANCES = ("l2", "cosine")
MODELS = ("pixel", "dct")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a run (saved with its checkpoints and results)."""

  method: str = option("consistency", "training method", choices=METHODS)
  model: str = option("pixel", "pixel ResNet, or DCT-domain ResNet on JPEG coefficients",
                      choices=MODELS)
  data: str = option("../shared/data/cifar10", "folder with train/ and test/ class folders")
  out: str = option("runs/consistency", "run folder: checkpoints, metrics.csv, results.json")
  epochs: float = option(8.0, "training epochs")
  batch_size: int = option(128, "images per step")
  learning_rate: float = option(3e-3, "peak learning rate", flag="--lr")
  weight_decay: float = option(5e-4, "AdamW weight decay")
  warmup_epochs: float = option(0.5, "linear warm-up of the learning rate")
  seed: int = option(0, "random seed")
  quality_range: tuple[int, int] = option((10, 90), "lo,hi of the training JPEG qualities")
  subsampling: str = option("4:2:0", "chroma subsampling of the training JPEGs",
                            choices=djpeg.SUBSAMPLINGS)
  beta: float = option(0.5, "weight of the consistency term")
  jpeg_weight: float = option(1.0, "weight of the JPEG copy's cross-entropy beside the clean "
                                   "one's (consistency; augment always uses 1)")
  distance: str = option("l2", "distance between clean and JPEG features", choices=DISTANCES)
  layers: tuple[str, ...] = option(("stage3",), "feature maps compared, e.g. stage2,stage3,pooled")
  stop_clean: bool = option(True, "stop the consistency gradient at the clean features")
  quality_block: int | None = option(
      None, "add a quality-conditioned residual block after this stage (1 is what "
            "bench/consistency.py uses for the consistency method); at test time it gets the "
            "quality read from the file's tables")
  widths: tuple[int, ...] = option((16, 32, 64), "ResNet stage widths")
  blocks: tuple[int, ...] = option((1, 1, 1), "residual blocks per stage")
  stem: str = option("cifar", "input stem", choices=("cifar", "imagenet"))
  resize: int | None = option(None, "scale and centre-crop images to NxN")
  flip: bool = option(True, "random horizontal flips")
  pad_crop: int = option(0, "pad by N pixels and crop back at random")
  checkpoint_every: int = option(200, "steps between checkpoints")
  log_every: int = option(20, "steps per metrics.csv row")
  eval_qualities: tuple[int, ...] = option(evaluate.QUALITIES, "qualities of the test JPEGs")
  eval_batch_size: int = option(500, "images per evaluation batch")
  eval_limit: int | None = option(None, "test images to use: a fixed random subset (None: all)")
  validation: int = option(0, "hold out N images per class of train/ and evaluate on them "
                              "instead of test/ (for choosing settings; test/ is then not read)")
  distributed: bool = option(False, "call jax.distributed.initialize() (multi-host runs)")

  def check(self) -> None:
    """Raises ValueError naming the first bad option."""
    choices = {"method": METHODS, "model": MODELS, "distance": DISTANCES,
               "subsampling": djpeg.SUBSAMPLINGS}
    for name, allowed in choices.items():
      if getattr(self, name) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
    lo, hi = self.quality_range
    if not 1 <= lo <= hi <= 100:
      raise ValueError(f"quality_range must be (lo, hi) with 1 <= lo <= hi <= 100; got "
                       f"{self.quality_range}.")
    if not (self.epochs > 0 and self.batch_size >= 1 and 0 < self.learning_rate < math.inf):
      raise ValueError(f"epochs, batch_size and learning_rate must be positive and finite; got "
                       f"{self.epochs}, {self.batch_size}, {self.learning_rate}.")
    for name in ("weight_decay", "warmup_epochs", "beta", "jpeg_weight"):
      if not 0 <= getattr(self, name) < math.inf:
        raise ValueError(f"{name} must be >= 0 and finite; got {getattr(self, name)}.")
    if self.eval_batch_size < 1 or self.log_every < 1 or self.checkpoint_every < 0:
      raise ValueError(f"eval_batch_size and log_every must be positive, checkpoint_every >= 0; "
                       f"got {self.eval_batch_size}, {self.log_every}, {self.checkpoint_every}.")
    if self.eval_limit is not None and self.eval_limit < 1:
      raise ValueError(f"eval_limit must be at least 1 test image (or None: all); got "
                       f"{self.eval_limit}.")
    if self.validation < 0:
      raise ValueError(f"validation must be >= 0 images per class; got {self.validation}.")
    if not self.layers:
      raise ValueError("layers must name at least one feature map.")
    if self.model == "dct" and self.quality_block is not None:
      raise ValueError("quality_block is only available for the pixel model.")
    for q in self.eval_qualities:
      if not 1 <= q <= 100:
        raise ValueError(f"eval_qualities must be in 1..100; got {q}.")


def build_model(cfg: Config, num_classes: int, *, in_channels: int = 3) -> nnx.Module:
  """The network `cfg` describes, initialized from `cfg.seed`."""
  with state_lib.fast_random():
    return _build_model(cfg, num_classes, in_channels)


def _build_model(cfg: Config, num_classes: int, in_channels: int) -> nnx.Module:
  rngs = nnx.Rngs(cfg.seed)
  if cfg.model == "dct":
    model = DCTResNet(num_classes, widths=cfg.widths, blocks=cfg.blocks, rngs=rngs)
    names = feature_names(model.body)
  else:
    model = ResNet(num_classes, widths=cfg.widths, blocks=cfg.blocks, stem=cfg.stem,
                   in_channels=in_channels, quality_block=cfg.quality_block, rngs=rngs)
    names = feature_names(model)
  unknown = [layer for layer in cfg.layers if layer not in names]
  if unknown:
    raise ValueError(f"layers {unknown} are not features of this model; choose from {names}.")
  return model


def make_optimizer(cfg: Config, total_steps: int, steps_per_epoch: int
                   ) -> optax.GradientTransformation:
  """AdamW with linear warm-up and cosine decay to zero over the run."""
  warmup = min(int(cfg.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup,
                                                max(total_steps, warmup + 1))
  return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def random_qualities(key: jax.Array, batch: int, quality_range: tuple[int, int]) -> jax.Array:
  """`(batch,)` float32 integer qualities drawn uniformly from [lo, hi]."""
  lo, hi = quality_range
  with state_lib.fast_random():
    return jax.random.randint(key, (batch,), lo, hi + 1).astype(jnp.float32)


def feature_distance(a: jax.Array, b: jax.Array, kind: str = "l2") -> jax.Array:
  """Per-image distance `(B,)` between feature maps `(B, ...)`: L2 (mean squared) or cosine."""
  a = a.reshape(a.shape[0], -1).astype(jnp.float32)
  b = b.reshape(b.shape[0], -1).astype(jnp.float32)
  if kind == "l2":
    return jnp.mean((a - b) ** 2, axis=-1)
  if kind == "cosine":
    # 1 - cos(a, b) = |a/|a| - b/|b||^2 / 2, written so that equal features give exactly 0.
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-8)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-8)
    return 0.5 * jnp.sum((a - b) ** 2, axis=-1)
  raise ValueError(f"distance must be one of {DISTANCES}; got {kind!r}.")


def _concat(a, b):
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def method_loss(model: nnx.Module, clean, compressed, labels: jax.Array, quality: jax.Array, *,
                cfg: Config) -> tuple[jax.Array, dict]:
  """The loss of `cfg.method` on a clean batch and its JPEG copy (pixels or `Coefficients`).

  Args:
    model: a `ResNet` or `DCTResNet` in training mode (batch statistics are updated).
    clean, compressed: `(B, H, W, C)` images in [0, 1] (pixel model) or batched `Coefficients`.
    labels: `(B,)` int.
    quality: `(B,)` quality of each compressed image (for the quality block).
  Returns:
    (scalar loss, metrics {"ce", "consistency", "accuracy"}).
  """
  batch = labels.shape[0]
  kwargs = {}
  if cfg.method == "plain":
    if cfg.quality_block is not None:
      kwargs["quality"] = jnp.full((batch,), 100.0)
    logits, _ = model(clean, train=True, **kwargs)
    ce = _cross_entropy(logits, labels)
    return ce, {"ce": ce, "ce_jpeg": jnp.zeros(()), "consistency": jnp.zeros(()),
                "accuracy": _accuracy(logits, labels)}
  # Clean and JPEG halves go through the network as one batch: one pass, shared batch statistics.
  if cfg.quality_block is not None:
    kwargs["quality"] = jnp.concatenate([jnp.full((batch,), 100.0), quality])
  logits, features = model(_concat(clean, compressed), train=True, **kwargs)
  ce_clean = _cross_entropy(logits[:batch], labels)
  ce_jpeg = _cross_entropy(logits[batch:], labels)
  w = 1.0 if cfg.method == "augment" else cfg.jpeg_weight
  ce = (ce_clean + w * ce_jpeg) / (1.0 + w)
  term = jnp.zeros(())
  if cfg.method == "consistency":
    for layer in cfg.layers:
      f_clean, f_jpeg = features[layer][:batch], features[layer][batch:]
      if cfg.stop_clean:
        f_clean = jax.lax.stop_gradient(f_clean)
      term = term + jnp.mean(feature_distance(f_clean, f_jpeg, cfg.distance))
    term = term / len(cfg.layers)
  loss = ce + cfg.beta * term
  return loss, {"ce": ce, "ce_jpeg": ce_jpeg, "consistency": term,
                "accuracy": _accuracy(logits[batch:], labels)}


def make_loss_fn(cfg: Config, *, codec: bool = True):
  """`loss_fn(model, (images, labels), key)` for `djpeg.train.state.make_train_step`.

  The JPEG copy is made here, inside the step: `djpeg.jpeg` (pixel model) or `djpeg.encode`
  (DCT model) at a random quality per image. `codec=False` uses the clean batch as its own copy
  (same shapes and work for the network; for measuring what the codec costs, and for tests).
  """
  cfg.check()

  def loss_fn(model, batch, key):
    images, labels = batch
    images = jnp.asarray(images, jnp.float32)
    quality = random_qualities(key, labels.shape[0], cfg.quality_range)
    if cfg.model == "dct":
      def enc(q):
        return djpeg.encode(images, quality=q, subsampling=cfg.subsampling)
      clean = jax.lax.stop_gradient(enc(jnp.full_like(quality, 100.0)))
      compressed = jax.lax.stop_gradient(enc(quality)) if codec else clean
    else:
      clean = images
      compressed = (jax.lax.stop_gradient(
          djpeg.jpeg(images, quality=quality, subsampling=cfg.subsampling)) if codec else images)
    return method_loss(model, clean, compressed, labels, quality, cfg=cfg)

  return loss_fn


def make_predict(graphdef: nnx.GraphDef, cfg: Config):
  """A jitted `predict(state, inputs, quality) -> logits` in inference mode."""
  return _predict_fn(graphdef, cfg.quality_block is not None)


@functools.lru_cache(maxsize=8)
def _predict_fn(graphdef: nnx.GraphDef, conditioned: bool):
  # Cached: runs of one architecture (seeds, methods) share one compiled predict.
  @jax.jit
  def predict(state, inputs, quality):
    model = state_lib.merge_model(graphdef, state)
    kwargs = {"quality": quality} if conditioned else {}
    return model(inputs, train=False, **kwargs)[0]

  return predict


def split_folders(root: str) -> tuple[str, str]:
  """(`root/train`, `root/test`), checked to exist and to be separate folders."""
  train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
  for d in (train_dir, test_dir):
    if not os.path.isdir(d):
      raise ValueError(f"data folder {root!r} needs train/ and test/ subfolders (ImageFolder "
                       f"layout); {d!r} is missing.")
  a, b = os.path.realpath(train_dir), os.path.realpath(test_dir)
  if a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep):
    raise ValueError(f"train {a!r} and test {b!r} overlap; they must be separate folders.")
  return train_dir, test_dir


@dataclasses.dataclass
class Run:
  """A trained run: the model structure, its final state, the data stream and timings."""

  cfg: Config
  graphdef: nnx.GraphDef
  state: state_lib.TrainState
  stream: data.ImageFolder
  num_steps: int
  train_seconds: float


def train(cfg: Config, *, quiet: bool = False) -> Run:
  """Trains (or resumes) the run `cfg` describes on `<cfg.data>/train` (less the validation
  images when `cfg.validation`); never reads the test split.

  Checkpoints go to `<cfg.out>/checkpoints`; an existing checkpoint of the same run is resumed.
  """
  cfg.check()
  if cfg.distributed:
    jax.distributed.initialize()
  train_dir, _ = split_folders(cfg.data)
  mesh = parallel.data_mesh()
  parallel.check_batch_size(cfg.batch_size, mesh)
  stream = data.ImageFolder(train_dir, batch_size=cfg.batch_size, seed=cfg.seed, shuffle=True,
                            drop_last=True, resize=cfg.resize, flip=cfg.flip,
                            pad_crop=cfg.pad_crop, holdout=cfg.validation, part="rest",
                            process_index=jax.process_index(),
                            process_count=jax.process_count())
  num_steps = max(1, round(cfg.epochs * stream.steps_per_epoch))
  model = build_model(cfg, stream.num_classes)
  tx, step = _compiled_step(_structural(cfg), stream.num_classes, num_steps,
                            stream.steps_per_epoch, tuple(mesh.devices.flat))
  graphdef, state = state_lib.create_state(model, tx, seed=cfg.seed)
  os.makedirs(cfg.out, exist_ok=True)
  record = {"config": as_dict(cfg)}
  ckpt = checkpoint.Checkpointer(os.path.join(cfg.out, "checkpoints"))
  _check_same_run(ckpt, cfg)
  # Its own check of the configuration (`_check_same_run`) has run: bookkeeping may change.
  state = loop.resume(ckpt, parallel.replicate(state, mesh), stream)
  start = int(jax.device_get(state.step))
  is_main = jax.process_index() == 0
  if is_main and not quiet:
    what = f"resuming at step {start}" if start else "starting"
    print(f"[{cfg.method}/{cfg.model} seed {cfg.seed}] {what}: {num_steps} steps "
          f"({cfg.epochs:g} epochs of {stream.steps_per_epoch}), batch {cfg.batch_size} on "
          f"{mesh.devices.size} device(s), {len(stream)} training images, "
          f"{stream.num_classes} classes", flush=True)
  log = monitor.MetricsLog(os.path.join(cfg.out, "metrics.csv"), resume_step=start)
  progress = monitor.Progress(num_steps, name=f"{cfg.method} s{cfg.seed}", start_step=start,
                              enabled=is_main and not quiet)
  t0 = time.perf_counter()
  state = loop.fit(state, step, stream, num_steps=num_steps, mesh=mesh, checkpointer=ckpt,
                   checkpoint_every=cfg.checkpoint_every, log=log, log_every=cfg.log_every,
                   progress=progress, meta=record,
                   progress_keys=("loss", "ce", "consistency", "accuracy"))
  jax.block_until_ready(state)
  seconds = time.perf_counter() - t0
  ckpt.close()
  return Run(cfg, graphdef, state, stream, num_steps, seconds)


def _structural(cfg: Config) -> Config:
  """`cfg` without the settings that do not change the compiled step (seed, paths, logging)."""
  d = Config()
  return dataclasses.replace(cfg, seed=0, data="", out="", checkpoint_every=d.checkpoint_every,
                             log_every=d.log_every, eval_qualities=d.eval_qualities,
                             eval_batch_size=d.eval_batch_size, eval_limit=None)


@functools.lru_cache(maxsize=8)
def _compiled_step(cfg: Config, num_classes: int, num_steps: int, steps_per_epoch: int,
                   devices: tuple) -> tuple[optax.GradientTransformation, object]:
  """(optimizer, parallel step), shared by runs that differ only in seed or paths (one compile)."""
  mesh = parallel.data_mesh(devices)
  graphdef = state_lib.split_model(build_model(cfg, num_classes))[0]
  tx = make_optimizer(cfg, num_steps, steps_per_epoch)
  return tx, parallel.parallel_step(state_lib.make_train_step(graphdef, tx, make_loss_fn(cfg)),
                                    mesh)


def evaluation_split(cfg: Config) -> str:
  """"validation" (held-out training images, `cfg.validation` > 0) or "test"."""
  return "validation" if cfg.validation else "test"


def make_test_set(cfg: Config, *, cache: bool = False):
  """The evaluation split of `cfg.data` (`evaluation_split`) as a streaming ImageFolder, or a
  prepared `JpegTestSet`."""
  train_dir, test_dir = split_folders(cfg.data)
  # With a limit, a fixed random subset: the sorted order would give the first classes only.
  common = dict(batch_size=cfg.eval_batch_size, seed=0, shuffle=cfg.eval_limit is not None,
                drop_last=False, epochs=1, resize=cfg.resize, uint8=True)
  if cfg.validation:
    folder = data.ImageFolder(train_dir, holdout=cfg.validation, part="holdout", **common)
  else:
    folder = data.ImageFolder(test_dir, **common)
  if not cache:
    return folder
  return evaluate.JpegTestSet(folder, cfg.eval_qualities, subsampling=cfg.subsampling,
                              inputs="coefficients" if cfg.model == "dct" else "pixels",
                              limit=cfg.eval_limit)


def evaluate_run(run: Run, *, test_set: evaluate.JpegTestSet | None = None,
                 quiet: bool = False) -> dict:
  """Accuracy on `<data>/test` (or the validation images), clean and Pillow-compressed at
  `cfg.eval_qualities`.

  `test_set`: a prepared `JpegTestSet` to reuse across runs (default: stream the folder).
  """
  cfg = run.cfg
  predict = make_predict(run.graphdef, cfg)
  state = jax.device_get(run.state)
  t0 = time.perf_counter()
  fn = lambda x, q: predict(state, x, q)  # noqa: E731
  if test_set is not None:
    acc = test_set.accuracy(fn)
  else:
    folder = make_test_set(cfg)
    if folder.classes != run.stream.classes:
      raise ValueError(f"test classes {folder.classes} differ from training classes "
                       f"{run.stream.classes}.")
    acc = evaluate.jpeg_accuracy(fn, folder, cfg.eval_qualities, subsampling=cfg.subsampling,
                                 inputs="coefficients" if cfg.model == "dct" else "pixels",
                                 limit=cfg.eval_limit)
  if not quiet:
    print(f"[{cfg.method}/{cfg.model} seed {cfg.seed}] {evaluation_split(cfg)} accuracy "
          f"({acc['n']} images, "
          f"{time.perf_counter() - t0:.0f} s): " + ", ".join(
              f"{k}: {100 * v:.1f}" for k, v in acc.items() if k != "n"), flush=True)
  return acc


def run_and_evaluate(cfg: Config, *, test_set: evaluate.JpegTestSet | None = None,
                     quiet: bool = False) -> dict:
  """`train` then `evaluate_run`; writes and returns `<out>/results.json`."""
  run = train(cfg, quiet=quiet)
  acc = evaluate_run(run, test_set=test_set, quiet=quiet)
  result = {"config": as_dict(cfg), "steps": run.num_steps,
            "train_seconds": run.train_seconds, "skipped_images": run.stream.skipped,
            "accuracy": {str(k): v for k, v in acc.items() if k != "n"}, "test_images": acc["n"],
            "split": evaluation_split(cfg)}
  if jax.process_index() == 0:
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
      json.dump(result, f, indent=1)
  return result


# Settings that do not change what a run learns: where it lives, how often it logs, how it is tested.
_BOOKKEEPING = ("out", "checkpoint_every", "log_every", "eval_qualities", "eval_batch_size",
                "eval_limit", "distributed", "data")


def config_differences(saved: dict, cfg: Config) -> dict:
  """{setting: (saved, now)} where the config dict `saved` (from a checkpoint or results.json)
  trains something other than `cfg`; bookkeeping settings are ignored, and settings added since
  `saved` was written count as their defaults."""
  now, defaults = as_dict(cfg), as_dict(Config())
  return {k: (saved.get(k, defaults[k]), now[k]) for k in now
          if k not in _BOOKKEEPING and saved.get(k, defaults[k]) != now[k]}


def _check_same_run(ckpt: checkpoint.Checkpointer, cfg: Config) -> None:
  """Refuses to resume a checkpoint written with a different configuration."""
  if ckpt.latest_step() is None:
    return
  _, meta = ckpt.restore_meta()
  diff = config_differences(meta.get("config", {}), cfg)
  if diff:
    raise ValueError(f"{ckpt.directory!r} holds a run with other settings {diff} (saved, now); "
                     "use another --out or delete it.")


def main(argv: Sequence[str] | None = None) -> int:
  return config_lib.main(Config, run_and_evaluate, argv, prog="djpeg-train consistency",
                         description="Feature consistency training against JPEG (Wan et al. "
                                     "2020) and baselines.",
                         errors=(ValueError, monitor.NonFiniteError))


if __name__ == "__main__":
  sys.exit(main())
