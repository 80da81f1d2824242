"""Orbax checkpoints of a training run: the state pytree plus a JSON record, saved atomically.

    ckpt = Checkpointer("runs/x/checkpoints", max_to_keep=2)
    ckpt.save(step, state, {"data": stream.get_state(), "config": {...}})
    state, meta = ckpt.restore(state)           # latest step; `state` gives structure and sharding
    stream.set_state(meta["data"])

`state` is any pytree of arrays (a `djpeg.train.state.TrainState`: parameters, batch statistics,
optimizer state, step, PRNG key). The JSON record carries what is not an array: the data
iterator's position, the configuration, the last metrics. Restoring both reproduces an
uninterrupted run bit for bit (on CPU; on GPUs up to XLA's non-deterministic reductions).

Atomicity: orbax writes each checkpoint into a temporary `<step>.orbax-checkpoint-tmp-*` folder
and renames it to `<step>` only when every file is written, so a run killed mid-save leaves the
previous checkpoints intact and a temporary folder that is ignored (and deleted in the background
when the folder is next opened, at the latest before the next save). Saves are synchronous here:
when `save` returns, the checkpoint is final. The last `max_to_keep` checkpoints are kept
(default 2, so one good checkpoint survives a save that turns out bad); older ones are renamed
out of the listing before they are deleted, so a kill mid-delete leaves no half checkpoint. Unreadable or corrupt
checkpoints raise `CheckpointError` naming the step and folder.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

#: The name a checkpoint folder takes while it is deleted (orbax's temporary-folder marker, so
#: that orbax never lists it either).
_DISCARDED = ".orbax-checkpoint-tmp-discarded-"


class CheckpointError(ValueError):
  """A checkpoint is missing, unreadable, corrupt, or does not fit the state it restores into."""


class Checkpointer:
  """Saves and restores `(state pytree, JSON dict)` pairs under `directory`, one folder per step.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many of the most recent checkpoints to keep (at least 1).
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    if max_to_keep < 1:
      raise ValueError(f"max_to_keep must be at least 1; got {max_to_keep}.")
    self.directory = os.path.abspath(directory)
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      raise ValueError(f"checkpoint directory {self.directory!r} exists and is not a folder.")
    self.max_to_keep = max_to_keep
    # Old checkpoints are deleted here (`_discard`), not by orbax: orbax deletes a step folder in
    # place, and a run killed meanwhile left a listed step with half its files.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, create=True, enable_async_checkpointing=False,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    """Steps of the finished checkpoints, ascending."""
    self._manager.reload()   # another process (or a crash) may have changed the folder
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The most recent finished checkpoint's step, or None if there is none."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, meta: dict | None = None) -> None:
    """Writes checkpoint `step` (replacing one of the same step) and waits until it is final."""
    self._remove_discarded()
    if step in self.all_steps():
      self._discard(step)
    saved = self._manager.save(
        int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(dict(meta or {}))),
        force=True)
    self._manager.wait_until_finished()
    if not saved:
      raise CheckpointError(f"orbax declined to save step {step} in {self.directory!r}.")
    for old in self.all_steps()[:-self.max_to_keep]:
      self._discard(old)

  def _discard(self, step: int) -> None:
    """Deletes checkpoint `step` atomically: renamed out of the listing first (a temporary name,
    which a later save removes if this process dies first), then deleted."""
    path = os.path.join(self.directory, str(step))
    doomed = f"{path}{_DISCARDED}{time.time_ns()}"
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    self._manager.reload()

  def _remove_discarded(self) -> None:
    for name in os.listdir(self.directory):
      if _DISCARDED in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore(self, state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Reads checkpoint `step` (default: the latest) into the structure of `state`.

    Args:
      state: a pytree of the same structure, shapes and dtypes (e.g. a freshly initialized
        state); its arrays' shardings are the restored arrays' shardings.
      step: which checkpoint; None for the latest.
    Returns:
      (restored state, the JSON dict saved with it).
    Raises:
      CheckpointError: no checkpoint (or not that step), or it cannot be read or does not match.
    """
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory!r}.")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
      raise CheckpointError(f"no checkpoint for step {step} in {self.directory!r}; it has steps "
                            f"{steps}.")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                        meta=ocp.args.JsonRestore()))
      new_state, meta = restored["state"], restored["meta"]
      if meta is None or jax.tree.structure(new_state) != jax.tree.structure(state):
        raise ValueError("missing or mismatched items")
    except Exception as e:  # orbax and tensorstore raise many types for damaged files
      others = [s for s in steps if s != step]
      hint = (f" Other checkpoints here: steps {others}: delete "
              f"{os.path.join(self.directory, str(step))!r} to resume from the newest of them "
              "(from Python, Checkpointer.restore(state, step=N) reads one)." if others else "")
      detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
      raise CheckpointError(
          f"checkpoint step {step} in {self.directory!r} is corrupt, incomplete or does not match "
          f"the training state ({type(e).__name__}: {detail}).{hint}") from e
    return new_state, dict(meta)

  def restore_meta(self, step: int | None = None) -> tuple[int, dict]:
    """(step, JSON dict) of checkpoint `step` (default: the latest), without reading the arrays."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory!r}.")
    step = steps[-1] if step is None else int(step)
    try:
      args = ocp.args.Composite(meta=ocp.args.JsonRestore())
      meta = self._manager.restore(step, args=args)["meta"]
    except Exception as e:
      raise CheckpointError(f"the record of checkpoint step {step} in {self.directory!r} is "
                            f"corrupt or unreadable ({type(e).__name__}: {e}); delete that "
                            "step's folder to resume from an earlier one.") from e
    return step, dict(meta or {})

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
