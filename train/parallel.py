"""Data parallelism with JAX's own sharding: one mesh axis "data" over all devices.

The training step is an ordinary jitted function of `(state, batch)`. `parallel_step` compiles it
with the batch sharded on its leading axis across the mesh and the state (parameters, optimizer
state, step, keys) replicated; XLA inserts the gradient all-reduce itself. Nothing in the step
changes between one CPU, eight GPUs or many hosts.

One host, all local devices:

    mesh = data_mesh()                            # Mesh over jax.devices(), axis "data"
    state = replicate(state, mesh)
    step = parallel_step(train_step, mesh)
    state, metrics = step(state, shard_batch(batch, mesh))

Several hosts (e.g. a TPU pod slice or GPU nodes): start the same program on every host and call
`jax.distributed.initialize()` first (on Cloud TPU and SLURM it finds its peers by itself;
elsewhere pass `coordinator_address="host0:1234", num_processes=N, process_id=i`), or pass
`--distributed` to the `djpeg-train` commands, which do it. `jax.devices()` then lists every
host's devices and the mesh spans them all. Give each process its slice of the global batch (the
data streams in `djpeg.train.data` take `process_index=jax.process_index(),
process_count=jax.process_count()`); `shard_batch` assembles the global array from the local
slices with `jax.make_array_from_process_local_data`. Checkpoints (orbax) are written
collectively: every process calls save and restore. Print and log from process 0 only.

To test several devices on one CPU, set `XLA_FLAGS=--xla_force_host_platform_device_count=4`
before jax is imported (in a fresh process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named "data" over `devices` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("data_mesh needs at least one device.")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device (parameters, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis across the devices."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
  """Places every array of `tree` on all devices of `mesh` (same value everywhere)."""
  return jax.device_put(tree, replicated(mesh))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch divides evenly among the mesh's devices."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(f"batch size {batch_size} does not divide among {devices} devices; use a "
                     f"multiple of {devices}.")


def shard_batch(batch, mesh: Mesh):
  """This process's part of a batch (numpy arrays, leading axis = examples) -> global arrays.

  On one host the local batch is the global batch. With several processes each passes its own
  slice (same size everywhere) and gets the global array, sharded on its leading axis.
  """
  sharding = batch_sharded(mesh)

  def put(x):
    x = np.asarray(x)
    check_batch_size(x.shape[0] * jax.process_count(), mesh)
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def parallel_step(step: Callable, mesh: Mesh, *, donate: bool = True) -> Callable:
  """jit-compiles `step(state, batch, *rest) -> (state, metrics)` for data parallelism on `mesh`.

  The state and extra arguments are replicated, the batch sharded on its leading axis, the new
  state and metrics replicated. With `donate`, the old state's buffers are reused for the new one
  (do not use the old state afterwards).
  """
  rep = replicated(mesh)

  def wrapped(state, batch, *rest):
    return step(state, batch, *rest)

  # No in_shardings: the inputs carry theirs (state from `replicate`, batch from `shard_batch`),
  # so one compiled step serves every caller that placed its arrays this way.
  compiled = jax.jit(wrapped, donate_argnums=(0,) if donate else (), out_shardings=(rep, rep))

  def run(state, batch, *rest):
    if not all(isinstance(x, jax.Array) for x in jax.tree.leaves(batch)):
      batch = shard_batch(batch, mesh)
    return compiled(state, batch, *rest)

  run.compiled = compiled
  return run
