"""Run by test_train_parallel in a fresh process with 4 forced CPU devices: the sharded training
step against the single-device step. Prints one JSON line."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from djpeg.train import consistency, parallel  # noqa: E402
from djpeg.train import state as state_lib  # noqa: E402


def main():
  cfg = consistency.Config(method="consistency", widths=(4, 8), blocks=(1, 1), layers=("stage2",),
                           batch_size=8)
  model = consistency.build_model(cfg, 3)
  tx = consistency.make_optimizer(cfg, 10, 5)
  graphdef, state0 = state_lib.create_state(model, tx, seed=0)
  step = state_lib.make_train_step(graphdef, tx, consistency.make_loss_fn(cfg))
  rng = np.random.default_rng(0)
  batches = [(rng.random((8, 16, 16, 3), np.float32), rng.integers(0, 3, 8).astype(np.int32))
             for _ in range(3)]
  results = {}
  for name, devices in (("single", jax.devices()[:1]), ("sharded", jax.devices())):
    mesh = parallel.data_mesh(devices)
    run = parallel.parallel_step(step, mesh)
    state = parallel.replicate(jax.tree.map(jnp.copy, state0), mesh)
    losses = []
    for b in batches:
      sharded = parallel.shard_batch(b, mesh)
      shards = len(sharded[0].sharding.device_set)
      state, metrics = run(state, sharded)
      losses.append(float(metrics["loss"]))
    results[name] = (losses, jax.device_get(state), shards)
  (l1, s1, n1), (l4, s4, n4) = results["single"], results["sharded"]
  diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
             for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)))
  try:
    parallel.shard_batch(batches[0][0][:6], parallel.data_mesh())
    error = None
  except ValueError as e:
    error = str(e)
  print(json.dumps({"devices": len(jax.devices()), "shards": [n1, n4], "losses": [l1, l4],
                    "param_diff": diff, "bad_batch_error": error}))


if __name__ == "__main__":
  main()
