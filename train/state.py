"""The training state as one pytree, and a generic pure training step for any NNX model.

`TrainState` holds everything a run needs to continue exactly: the model's parameters and its
other variables (batch statistics), the optax optimizer state, the step count and the PRNG key.
It is a plain pytree of arrays, so it can be jitted, sharded (`djpeg.train.parallel`) and checkpointed
(`djpeg.train.checkpoint`) as it is. The model's structure (`nnx.GraphDef`) and the optax transformation
are static and live outside it.

    graphdef, state = create_state(model, optax.adamw(1e-3), seed=0)
    step = make_train_step(graphdef, tx, loss_fn)   # loss_fn(model, batch, key) -> (loss, metrics)
    state, metrics = jax.jit(step)(state, batch)
    model = merge_model(graphdef, state)            # an nnx module again, e.g. for evaluation

The step splits a fresh key from `state.key` each step, so the randomness of a run (JPEG
qualities, noise) depends only on the seed and the step number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class TrainState:
  """Parameters, other model variables, optimizer state, step `()` int32, key `(2,)` uint32."""

  params: Any
  rest: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array


jax.tree_util.register_dataclass(
    TrainState, data_fields=["params", "rest", "opt_state", "step", "key"], meta_fields=[])


def fast_random():
  """Context for random draws that need not be sharded (initialization, per-example scalars).

  jax 0.10's default partitionable threefry takes seconds of CPU to compile for every new shape
  (a dozen for a ResNet's initializers); the classic threefry compiles ~10x faster. Values depend
  only on the key either way, and jit semantics keep them independent of the sharding.
  """
  return jax.threefry_partitionable(False)


def split_model(model: nnx.Module):
  """(graphdef, params, rest) with plain arrays as leaves (no `nnx.Variable` wrappers)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # Pure states: a merged model gets fresh Variables, so tracing it never mutates the caller's.
  return graphdef, nnx.as_pure(params), nnx.as_pure(rest)


def create_state(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int
                 ) -> tuple[nnx.GraphDef, TrainState]:
  """The model's static structure and its initial training state (step 0, key from `seed`)."""
  graphdef, params, rest = split_model(model)
  # A raw uint32 key (not a typed key array) so that checkpoints store it as an ordinary array.
  key = jax.random.PRNGKey(seed)
  return graphdef, TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32), key)


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
  """The NNX model with the state's parameters and variables."""
  return nnx.merge(graphdef, state.params, state.rest)


LossFn = Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]]


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss_fn: LossFn
                    ) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
  """A pure step `(state, batch) -> (state, metrics)`: one gradient step of `loss_fn`.

  `loss_fn(model, batch, key)` returns a scalar loss and a dict of scalar metrics; it may update
  the model's non-parameter variables (batch statistics), which the new state keeps. `metrics`
  adds "loss", "grad_norm" and "finite" (1.0 when loss and gradients are all finite: the NaN
  guard reads it). Wrap it in `jax.jit` or `djpeg.train.parallel.parallel_step`.
  """

  def step(state: TrainState, batch) -> tuple[TrainState, dict]:
    key, sub = jax.random.split(state.key)

    def objective(params):
      model = nnx.merge(graphdef, params, state.rest)
      loss, metrics = loss_fn(model, batch, sub)
      return loss, (metrics, split_model(model)[2])

    (loss, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
    return TrainState(params, rest, opt_state, state.step + 1, key), metrics

  return step
