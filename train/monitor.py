"""Small run-time helpers for training loops: a NaN guard, a CSV metrics log, progress lines.

* `check_finite(metrics, step, checkpoint_dir)` raises `NonFiniteError` when a step's loss or
  gradients were NaN/inf (the "finite" metric of `djpeg.train.state.make_train_step`), naming the step
  and the last good checkpoint, which the loop has not overwritten.
* `MetricsLog(path)` appends one CSV row per call (`step`, `time`, then the metric names of the
  first row); it continues an existing file on resume, dropping rows past the resumed step so the
  log matches the state.
* `Progress(total)` prints `step/total`, rate, ETA and chosen metrics, every few seconds.
"""

from __future__ import annotations

import csv
import os
import sys
import time

import numpy as np


class NonFiniteError(RuntimeError):
  """Training produced a NaN or infinite loss or gradient."""


def check_finite(metrics: dict, step: int, checkpoint_dir: str | None = None,
                 last_good: int | None = None) -> None:
  """Raises NonFiniteError if `metrics["finite"]` is 0 or any metric is NaN/inf.

  `metrics` holds host scalars (numbers or 0-d arrays), typically the latest step's.
  """
  bad = [k for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v, np.float64)))]
  if "finite" in metrics and float(np.asarray(metrics["finite"])) < 1:
    bad.append("gradients")
  if bad:
    where = (f"; the last good checkpoint (step {last_good}) is kept in {checkpoint_dir!r}"
             if checkpoint_dir and last_good is not None else
             "; no checkpoint was written" if checkpoint_dir else "")
    raise NonFiniteError(
        f"non-finite {', '.join(sorted(set(bad)))} by step {step}{where}. Lower the learning rate "
        "or check the data; resuming restarts from the last good checkpoint.")


class MetricsLog:
  """Appends metrics to a CSV file: columns `step`, `time` (seconds since start), metrics."""

  def __init__(self, path: str, *, resume_step: int | None = None):
    self.path = path
    self.start = time.time()
    self.fields: list[str] | None = None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if resume_step is not None and os.path.exists(path):
      with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
      if rows:
        self.fields = [k for k in rows[0] if k not in ("step", "time")]
        self.start -= float(rows[-1].get("time") or 0)
      kept = [r for r in rows if int(float(r["step"])) <= resume_step]
      self._rewrite(kept)
    elif os.path.exists(path):
      os.remove(path)

  def _rewrite(self, rows: list[dict]) -> None:
    if self.fields is None:
      return
    with open(self.path, "w", newline="") as f:
      writer = csv.DictWriter(f, ["step", "time"] + self.fields)
      writer.writeheader()
      writer.writerows(rows)

  def write(self, step: int, metrics: dict) -> None:
    values = {k: float(np.asarray(v)) for k, v in metrics.items()}
    new = not os.path.exists(self.path) or self.fields is None
    if self.fields is None:
      self.fields = list(values)
    row = {"step": step, "time": f"{time.time() - self.start:.2f}"}
    row.update({k: f"{values[k]:.6g}" for k in self.fields if k in values})
    with open(self.path, "a", newline="") as f:
      writer = csv.DictWriter(f, ["step", "time"] + self.fields, extrasaction="ignore")
      if new:
        writer.writeheader()
      writer.writerow(row)


def read_log(path: str) -> dict[str, np.ndarray]:
  """A `MetricsLog` CSV as {column: (rows,) float64}."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    return {}
  return {k: np.asarray([float(r[k]) for r in rows]) for k in rows[0]}


class Progress:
  """Prints `[name] step/total  rate  ETA  metrics` every `every` seconds at most (and at end)."""

  def __init__(self, total: int, *, name: str = "train", every: float = 10.0, stream=None,
               start_step: int = 0, enabled: bool = True):
    self.total, self.name, self.every = total, name, every
    self.stream = stream or sys.stdout
    self.start_step = start_step
    self.enabled = enabled
    self.t0 = time.time()
    self.last = -float("inf")

  def update(self, step: int, metrics: dict | None = None, *, force: bool = False) -> None:
    now = time.time()
    if not self.enabled or (not force and now - self.last < self.every and step < self.total):
      return
    self.last = now
    done = step - self.start_step
    rate = done / max(now - self.t0, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    text = " ".join(f"{k} {float(np.asarray(v)):.4g}" for k, v in (metrics or {}).items())
    print(f"[{self.name}] {step}/{self.total}  {rate:.2f} steps/s  ETA {_duration(eta)}  {text}",
          file=self.stream, flush=True)


def _duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
