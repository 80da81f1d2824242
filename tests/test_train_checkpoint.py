"""train.checkpoint, train.monitor and train.loop: round trips, atomicity, corruption, NaN guard."""

from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from djpeg.train import checkpoint, loop, monitor, parallel
from djpeg.train import state as state_lib


class Tiny(nnx.Module):
  def __init__(self, rngs):
    self.dense = nnx.Linear(3, 2, rngs=rngs)
    self.bn = nnx.BatchNorm(2, rngs=rngs)

  def __call__(self, x, train=False):
    return self.bn(self.dense(x), use_running_average=not train)


def regression_loss(model, batch, key):
  x, y = batch
  noise = 0.01 * jax.random.normal(key, x.shape)
  loss = jnp.mean((model(x + noise, train=True)[:, 0] - y) ** 2)
  return loss, {"mse": loss}


class Stream:
  """Deterministic endless batches with get_state/set_state; `poison` makes batch k NaN."""

  def __init__(self, poison: int | None = None):
    self.position, self.poison = 0, poison

  def __next__(self):
    rng = np.random.default_rng(self.position)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = x.sum(-1)
    if self.position == self.poison:
      x = x * np.nan
    self.position += 1
    return x, y

  def get_state(self):
    return {"position": self.position}

  def set_state(self, s):
    self.position = s["position"]


@pytest.fixture(scope="module")
def setup():
  tx = optax.adam(1e-2)
  graphdef, state = state_lib.create_state(Tiny(nnx.Rngs(0)), tx, seed=0)
  mesh = parallel.data_mesh(jax.devices()[:1])
  step = parallel.parallel_step(state_lib.make_train_step(graphdef, tx, regression_loss), mesh)
  return graphdef, state, mesh, step


def fresh(setup):
  _, state, mesh, _ = setup
  # A copy: the steps donate their input state, and device_put onto the same device does not copy.
  return parallel.replicate(jax.tree.map(jnp.copy, state), mesh)


def equal_trees(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_round_trip_and_keep_last(tmp_path, setup):
  state = fresh(setup)
  with checkpoint.Checkpointer(str(tmp_path / "ck"), max_to_keep=2) as ck:
    assert ck.latest_step() is None
    for s in (1, 2, 3):
      ck.save(s, state, {"data": {"position": s}})
    assert ck.all_steps() == [2, 3]
    restored, meta = ck.restore(state)
    assert meta == {"data": {"position": 3}} and equal_trees(restored, state)
    assert ck.restore(state, step=2)[1]["data"]["position"] == 2
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 7"):
      ck.restore(state, step=7)
  # Nothing but finished step folders remain: orbax renames a checkpoint into place at the end.
  assert sorted(os.listdir(tmp_path / "ck")) == ["2", "3"]


def test_half_written_checkpoint_is_ignored(tmp_path, setup):
  state = fresh(setup)
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  ck.save(5, state, {"a": 1})
  # What a run killed in the middle of saving step 6 leaves behind: a temporary folder.
  tmp = tmp_path / "ck" / "6.orbax-checkpoint-tmp-1234567"
  (tmp / "state").mkdir(parents=True)
  (tmp / "state" / "_METADATA").write_text("{trunc")
  ck.close()
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  assert ck.all_steps() == [5]
  assert ck.restore(state)[1] == {"a": 1}
  ck.save(7, state)
  assert not glob.glob(str(tmp_path / "ck" / "*tmp*"))   # cleaned up, at the latest by a save


# orbax leaves an asyncio callback behind when a read fails; harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_checkpoint_clear_error(tmp_path, setup):
  state = fresh(setup)
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  ck.save(1, state)
  ck.save(2, state)
  for f in glob.glob(str(tmp_path / "ck" / "2" / "state" / "**" / "d" / "*"), recursive=True):
    with open(f, "wb") as fh:
      fh.write(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match=r"step 2 .* corrupt.*steps \[1\]"):
    ck.restore(state)
  assert equal_trees(ck.restore(state, step=1)[0], state)
  (tmp_path / "ck" / "1" / "meta" / "metadata").write_text("{not json")
  with pytest.raises(checkpoint.CheckpointError, match="step 1"):
    ck.restore(state, step=1)
  other = {"w": jnp.zeros(3)}
  with pytest.raises(checkpoint.CheckpointError, match="does not match"):
    checkpoint.Checkpointer(str(tmp_path / "ck")).restore(other, step=2)


def test_fit_resume_is_exact(tmp_path, setup):
  _, _, mesh, step = setup
  full = loop.fit(fresh(setup), step, Stream(), num_steps=12, mesh=mesh, log_every=4)

  class Crash(Exception):
    pass

  class Crashing(Stream):
    def __next__(self):
      if self.position == 9:
        raise Crash
      return super().__next__()

  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  log = monitor.MetricsLog(str(tmp_path / "m.csv"))
  with pytest.raises(Crash):
    loop.fit(fresh(setup), step, Crashing(), num_steps=12, mesh=mesh, checkpointer=ck,
             checkpoint_every=4, log=log, log_every=2)
  assert ck.latest_step() == 8
  stream = Stream()
  resumed = loop.resume(ck, fresh(setup), stream)
  assert stream.position == 8 and int(resumed.step) == 8
  log = monitor.MetricsLog(str(tmp_path / "m.csv"), resume_step=8)
  resumed = loop.fit(resumed, step, stream, num_steps=12, mesh=mesh, checkpointer=ck,
                     checkpoint_every=4, log=log, log_every=2)
  assert equal_trees(resumed, full)
  assert list(monitor.read_log(str(tmp_path / "m.csv"))["step"]) == [2, 4, 6, 8, 10, 12]


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, setup):
  _, _, mesh, step = setup
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  with pytest.raises(monitor.NonFiniteError, match=r"non-finite .* step 6.*last good checkpoint "
                                                   r"\(step 4\)"):
    loop.fit(fresh(setup), step, Stream(poison=5), num_steps=12, mesh=mesh, checkpointer=ck,
             checkpoint_every=4, log_every=2)
  assert ck.all_steps() == [4]
  good, _ = ck.restore(fresh(setup))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(good))


KILL_CHILD = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from djpeg.train.checkpoint import Checkpointer
ck = Checkpointer(sys.argv[1], max_to_keep=3)
for step in range(1, 10000):
  ck.save(step, {"w": np.full((1 << 20,), step, np.float32)}, {"step": step})
  print(step, flush=True)
"""


def test_killed_mid_save_leaves_only_whole_checkpoints(tmp_path):
  import subprocess
  import sys
  import time
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(tmp_path / "ck"), repo],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  try:
    for _ in range(3):               # a few finished saves, then kill it while it writes more
      child.stdout.readline()
    time.sleep(0.05)
  finally:
    child.kill()
    child.wait()
  ck = checkpoint.Checkpointer(str(tmp_path / "ck"))
  steps = ck.all_steps()
  assert steps
  template = {"w": np.zeros((1 << 20,), np.float32)}
  for s in steps:
    state, meta = ck.restore(template, step=s)
    assert meta == {"step": s} and np.all(np.asarray(state["w"]) == s)
  # The interrupted save's temporary folder is gone at the latest once the next save starts.
  ck.save(steps[-1] + 1, template)
  assert not [d for d in os.listdir(tmp_path / "ck") if "tmp" in d]
