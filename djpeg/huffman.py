"""Optimal JPEG Huffman code lengths in JAX: libjpeg's `jpeg_gen_optimal_table`, vectorized.

The rate model needs the code lengths the file writer will use, for many images at once and
inside `jit`. This is T.81 Annex K.2 as libjpeg implements it: Huffman's merging (ties broken
towards the larger symbol), a reserved pseudo-symbol 256 so that no code is all ones, the
Annex K adjustment to at most 16 bits, and lengths handed out in order of (tree depth, symbol).
Counts are `(..., 256)` int32 histograms of one table's symbols; batch axes map with `vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_MAX_LEN = 32
_BIG = jnp.iinfo(jnp.int32).max


def _tree_depths(freq: jax.Array) -> jax.Array:
  """Huffman tree depth of each of 257 symbols (0 for unused ones); freq `(257,)` int32."""
  index = jnp.arange(257)

  def smallest(freq, exclude):
    key = jnp.where((freq > 0) & (index != exclude), freq, _BIG)
    low = key.min()
    # libjpeg scans with `<=`, so among equal frequencies it keeps the larger symbol.
    return jnp.max(jnp.where(key == low, index, -1)), low < _BIG

  def merge(_, state):
    freq, depth, group = state
    c1, _ = smallest(freq, -1)
    c2, valid = smallest(freq, c1)
    members = (group == c1) | (group == c2)
    depth = jnp.where(valid & members, depth + 1, depth)
    group = jnp.where(valid & (group == c2), c1, group)
    freq = jnp.where(valid & (index == c1), freq[c1] + freq[c2], freq)
    freq = jnp.where(valid & (index == c2), 0, freq)
    return freq, depth, group

  _, depth, _ = jax.lax.fori_loop(0, 256, merge, (freq, jnp.zeros(257, jnp.int32), index))
  return depth


def _limit_lengths(bits: jax.Array) -> jax.Array:
  """Annex K.2 adjustment of the length histogram `(33,)` to codes of at most 16 bits."""
  lengths = jnp.arange(_MAX_LEN + 1)

  def step(state):
    bits, i = state
    j = jnp.max(jnp.where((lengths <= i - 2) & (bits > 0), lengths, 0))
    moved = bits + jnp.where(lengths == i, -2, 0) + jnp.where(lengths == i - 1, 1, 0) \
        + jnp.where(lengths == j + 1, 2, 0) + jnp.where(lengths == j, -1, 0)
    has = bits[i] > 0
    return jnp.where(has, moved, bits), jnp.where(has, i, i - 1)

  bits, _ = jax.lax.while_loop(lambda s: s[1] > 16, step, (bits, jnp.int32(_MAX_LEN)))
  top = jnp.max(jnp.where(bits > 0, lengths, 0))
  return bits.at[top].add(-1)   # drop the pseudo-symbol 256 from the longest length


def _code_lengths_one(counts: jax.Array) -> jax.Array:
  counts = jnp.asarray(counts, jnp.int32)
  freq = jnp.concatenate([counts, jnp.ones(1, jnp.int32)])
  depth = _tree_depths(freq)
  bits = jnp.zeros(_MAX_LEN + 1, jnp.int32).at[depth].add(1).at[0].set(0)
  bits = _limit_lengths(bits)
  # Symbols in order of (depth, symbol) receive the limited lengths in increasing order.
  symbols = jnp.arange(256)
  key = jnp.where(depth[:256] > 0, depth[:256] * 256 + symbols, _BIG)
  rank = jnp.zeros(256, jnp.int32).at[jnp.argsort(key)].set(symbols)
  ends = jnp.cumsum(bits[1:17])                       # ends[L-1]: symbols with length <= L
  length = 1 + jnp.searchsorted(ends, rank, side="right")
  return jnp.where(depth[:256] > 0, length, 0).astype(jnp.int32)


def code_lengths(counts: jax.Array) -> jax.Array:
  """Optimal JPEG Huffman code lengths for symbol histograms.

  Args:
    counts: `(..., 256)` non-negative symbol counts of one Huffman table.
  Returns:
    `(..., 256)` int32 code lengths in 1..16 for used symbols, 0 for unused ones: exactly the
    lengths libjpeg's optimizing encoder assigns for these counts.
  """
  counts = jnp.asarray(counts, jnp.int32)
  fn = _code_lengths_one
  for _ in range(counts.ndim - 1):
    fn = jax.vmap(fn)
  return fn(counts)
