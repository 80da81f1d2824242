"""A generic, resumable training loop: batches in, steps, metrics, NaN guard, checkpoints out.

Any task plugs in with a pure step `(state, batch) -> (state, metrics)` (from
`djpeg.train.state.make_train_step`) and a batch stream with `get_state`/`set_state` (from
`djpeg.train.data`):

    mesh = parallel.data_mesh()
    graphdef, state = state_lib.create_state(model, tx, seed=seed)
    step = parallel.parallel_step(state_lib.make_train_step(graphdef, tx, loss_fn), mesh)
    ckpt = checkpoint.Checkpointer(out + "/checkpoints")
    state = resume(ckpt, parallel.replicate(state, mesh), stream)   # no-op on a fresh run
    state = fit(state, step, stream, num_steps=n, mesh=mesh, checkpointer=ckpt,
                checkpoint_every=200, log=monitor.MetricsLog(out + "/metrics.csv", ...))

`fit` runs until `state.step == num_steps`; killed at any point and restarted the same way, it
continues from the last checkpoint and ends with the same state, bit for bit, as if it had never
stopped. Metrics are averaged over each `log_every` window; the NaN guard checks every window and
before every save, so a checkpoint never holds a state that followed a non-finite step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from djpeg.train import monitor, parallel
from djpeg.train.checkpoint import Checkpointer
from djpeg.train.config import option


#: Settings a resumed run may change: how long and how often, where, not what is learned.
RESUMABLE = frozenset({"steps", "epochs", "eval_every", "checkpoint_every", "log_every",
                       "time_limit", "distributed", "out", "eval_limit", "eval_batch_size"})


def resume(checkpointer: Checkpointer | None, state, stream=None, *, config: dict | None = None,
           num_steps: int | None = None) -> Any:
  """The latest checkpoint's state (and the stream moved to where it was), or `state` unchanged.

  `state` gives the structure and sharding to restore into (a freshly created, replicated state).
  With `config` (the run's settings, as saved with its checkpoints), a checkpoint made with other
  settings (but those in `RESUMABLE`) is refused, naming them; with `num_steps`, so is one
  already past it (the run's exports would otherwise be labelled with steps it did not stop at).
  """
  if checkpointer is None or checkpointer.latest_step() is None:
    return state
  where = os.path.dirname(checkpointer.directory) or checkpointer.directory
  step, saved = checkpointer.restore_meta()
  if config is not None and isinstance(saved.get("config"), dict):
    now = json.loads(json.dumps(config, default=str))     # as the checkpoint stored it
    before = saved["config"]
    def same(a, b):     # one folder named two ways ("data" and "./data/") is the same
      if isinstance(a, str) and isinstance(b, str) and a != b and os.path.exists(a):
        return os.path.exists(b) and os.path.samefile(a, b)
      return a == b
    changed = [k for k in sorted(set(now) & set(before))
               if k not in RESUMABLE and not same(now[k], before[k])]
    if changed:
      raise ValueError(
          f"{where!r} holds a run started with other settings: " + ", ".join(
              f"{k} {before[k]!r} (now {now[k]!r})" for k in changed)
          + "; resume it with its own settings, or give another --out.")
  if num_steps is not None and step > num_steps:
    raise ValueError(f"the run in {where!r} is at step {step}, past the {num_steps} steps asked "
                     f"for; give at least {step} steps to resume it, or another --out.")
  state, meta = checkpointer.restore(state)
  if stream is not None:
    if "data" not in meta:
      raise ValueError(f"checkpoint in {checkpointer.directory!r} has no data iterator state; it "
                       "cannot resume this stream exactly.")
    stream.set_state(meta["data"])
  return state


def fit(state, step_fn: Callable, stream: Iterator, *, num_steps: int, mesh,
        checkpointer: Checkpointer | None = None, checkpoint_every: int | None = None,
        log: monitor.MetricsLog | None = None, log_every: int = 50,
        progress: monitor.Progress | None = None, meta: dict | None = None,
        progress_keys: tuple[str, ...] = ("loss",), is_main: bool | None = None):
  """Runs `step_fn` on batches of `stream` until `state.step == num_steps`.

  Args:
    state: replicated training state (`djpeg.train.state.TrainState`), e.g. from `resume`.
    step_fn: `(state, sharded batch) -> (state, metrics)`, e.g. `parallel.parallel_step(...)`.
    stream: yields host batches (pytrees of numpy arrays); `get_state()` is saved with checkpoints.
    num_steps: total steps of the run (not steps still to do).
    mesh: the data mesh the batches are sharded over.
    checkpointer, checkpoint_every: save every this many steps and at the end (None: only at the
      end; no checkpointer: never).
    log, log_every: CSV log of the metrics averaged over each window of `log_every` steps.
    progress: a `monitor.Progress` to update at each window.
    meta: extra JSON-serializable record saved with every checkpoint (configuration, ...).
    progress_keys: metrics shown in progress lines.
    is_main: whether this process writes logs and progress (default: process 0).
  Returns:
    The final state.
  Raises:
    monitor.NonFiniteError: a step's loss or gradients were not finite (checked per window).
  """
  is_main = jax.process_index() == 0 if is_main is None else is_main
  step = int(jax.device_get(state.step))
  last_saved = checkpointer.latest_step() if checkpointer is not None else None
  window, count = None, 0

  def flush():
    nonlocal window, count
    if not count:
      return {}
    means = {k: float(v) / count for k, v in jax.device_get(window).items()}
    means["finite"] = float(means.get("finite", 1.0) >= 1.0)
    window, count = None, 0
    monitor.check_finite(means, step, checkpointer and checkpointer.directory, last_saved)
    if is_main and log is not None:
      log.write(step, {k: v for k, v in means.items() if k != "finite"})
    if is_main and progress is not None:
      progress.update(step, {k: means[k] for k in progress_keys if k in means})
    return means

  def save():
    nonlocal last_saved
    flush()
    # The window's losses and gradients were finite, but the last update may still have made
    # the parameters non-finite (a learning rate of inf): never checkpoint such a state.
    leaves = [x for x in jax.tree.leaves(state.params)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if leaves and not bool(jax.device_get(jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in leaves])))):
      monitor.check_finite({"parameters": float("nan")}, step,
                           checkpointer and checkpointer.directory, last_saved)
    record = dict(meta or {})
    if hasattr(stream, "get_state"):
      record["data"] = stream.get_state()
    checkpointer.save(step, state, record)
    last_saved = step

  while step < num_steps:
    try:
      batch = next(stream)
    except StopIteration:
      raise ValueError(f"the data stream ended after {step} of {num_steps} steps; make it endless "
                       "(epochs=None) or lower num_steps.") from None
    state, metrics = step_fn(state, parallel.shard_batch(batch, mesh))
    step += 1
    # Sums stay on the device: no host round trip (and no pipeline stall) until a window ends.
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
    count += 1
    if count >= log_every or step == num_steps:
      flush()
    if checkpointer is not None and checkpoint_every and step % checkpoint_every == 0:
      save()
  if checkpointer is not None and last_saved != step:
    save()
  flush()
  return state


def fit_with_validation(state, step_fn: Callable, stream, *, out: str, mesh, num_steps: int,
                        eval_every: int, checkpoint_every: int, log_every: int,
                        validate: Callable, name: str, meta: dict | None = None,
                        progress_keys: tuple = ("loss",)):
  """`fit` in stretches of `eval_every` steps, validating after each, in the run folder `out`.

  Resumes from `<out>/checkpoints`, logs `<out>/metrics.csv` and `<out>/validation.csv`, and
  validates at step 0 of a fresh run. `validate(state) -> (metrics dict, text)`: the dict goes
  to validation.csv, the text is printed after "[name] step N: ".

  Returns:
    (state, first step of this session, seconds spent training).
  """
  with Checkpointer(os.path.join(out, "checkpoints")) as ckpt:
    state = resume(ckpt, parallel.replicate(state, mesh), stream,
                   config=(meta or {}).get("config"), num_steps=num_steps)
    start = first = int(jax.device_get(state.step))
    if start:
      print(f"resuming {out} from step {start}", flush=True)
    log = monitor.MetricsLog(os.path.join(out, "metrics.csv"), resume_step=start or None)
    val_log = monitor.MetricsLog(os.path.join(out, "validation.csv"), resume_step=start or None)
    progress = monitor.Progress(num_steps, name=name, start_step=start)

    def validation(step):
      metrics, text = validate(state)
      val_log.write(step, metrics)
      print(f"[{name}] step {step}: {text}", flush=True)

    if start == 0:
      validation(0)
    started = time.time()
    while start < num_steps:
      stop = min(num_steps, (start // eval_every + 1) * eval_every)
      state = fit(state, step_fn, stream, num_steps=stop, mesh=mesh, checkpointer=ckpt,
                  checkpoint_every=checkpoint_every, log=log, log_every=log_every,
                  progress=progress, meta=meta, progress_keys=progress_keys)
      start = stop
      validation(start)
  return state, first, time.time() - started


@dataclasses.dataclass(frozen=True, kw_only=True)
class CropRunConfig:
  """The settings every crop-stream training task shares (`djpeg.train.tables`, `djpeg.train.saliency`);
  each task's config extends it and may change the defaults."""

  data: str = option(help="folder of training images (recursive)", required=True)
  out: str = option(help="run folder: checkpoints, metrics, export", required=True)
  steps: int = option(1000, "training steps")
  batch: int = option(8, "crops per step")
  crop: int = option(128, "crop side in pixels")
  seed: int = option(0, "random seed (initialization and data order)")
  eval_every: int = option(250, "steps between validations")
  checkpoint_every: int = option(250, "steps between checkpoints")
  log_every: int = option(25, "steps per metrics.csv row")
  val_images: int = option(8, "validation centre crops")
  distributed: bool = option(False, "call jax.distributed.initialize() first (multi-host runs)")

  def check_run(self) -> None:
    """Raises ValueError naming the first bad setting of those every crop task shares."""
    for name in ("steps", "batch", "eval_every", "log_every", "val_images"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
    if self.checkpoint_every < 0:
      raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end); got "
                       f"{self.checkpoint_every}.")
    if self.seed < 0:         # numpy's generators refuse it later, without naming the flag
      raise ValueError(f"seed must be >= 0; got {self.seed}.")
