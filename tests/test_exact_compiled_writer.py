"""The compiled sequential and progressive coders (`djpeg.exact.sequential_compiled`,
`progressive_compiled`, the writer's fast paths) against the array-pass coders they stand in for
(`djpeg.exact.sequential`, `progressive`, `scans`), which the other exact tests hold to
libjpeg-turbo: the same bytes for any coefficients, and the same errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import djpeg
from djpeg.exact import progressive_compiled, scans, sequential_compiled
from exact_util import random_coefficients
from test_exact_properties import FACTORS


def _array_pass_only(monkeypatch):
  monkeypatch.setattr(sequential_compiled, "scan", lambda *args, **kwargs: None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 200), width=st.integers(1, 200),
       sampling=st.sampled_from(sorted(FACTORS)), density=st.sampled_from([0.0, 0.05, 0.3, 0.9]),
       optimize=st.booleans(), restart=st.sampled_from([None, 1, 3, 50]),
       wide=st.booleans())
def test_compiled_coder_writes_the_array_coders_bytes(monkeypatch, seed, height, width, sampling,
                                                      density, optimize, restart, wide):
  rng = np.random.default_rng(seed)
  coefficients = random_coefficients(rng, height, width, FACTORS[sampling], density=density)
  if wide:                                  # int32 coefficients take the loop's other variant
    coefficients = dataclasses.replace(coefficients, components=tuple(
        np.asarray(c, np.int32) for c in coefficients.components))
  fast = djpeg.dumps(coefficients, optimize=optimize, restart_interval=restart)
  with monkeypatch.context() as m:
    _array_pass_only(m)
    reference = djpeg.dumps(coefficients, optimize=optimize, restart_interval=restart)
  assert fast == reference


@pytest.mark.parametrize("changes, message", [
    ({(0, 0, 0, 0): -2000, (0, 1, 0, 0): 2000}, "DC difference 4000"),
    ({(0, 0, 3, 1): 1500}, "AC coefficient"),
])
def test_values_baseline_cannot_code_are_named_as_before(changes, message):
  rng = np.random.default_rng(0)
  coefficients = random_coefficients(rng, 16, 24, FACTORS["gray"], density=0.1)
  y = np.array(coefficients.components[0], np.int32)
  for where, value in changes.items():
    y[where] = value
  bad = dataclasses.replace(coefficients, components=(y,))
  with pytest.raises(ValueError, match="block.*" + message):
    djpeg.dumps(bad)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 120), width=st.integers(1, 120),
       sampling=st.sampled_from(sorted(FACTORS)), density=st.sampled_from([0.0, 0.05, 0.3, 0.9]),
       optimize=st.booleans(), script=st.sampled_from(["libjpeg", "chosen", "deep"]),
       wide=st.booleans())
def test_compiled_progressive_coder_writes_the_array_coders_bytes(monkeypatch, seed, height,
                                                                  width, sampling, density,
                                                                  optimize, script, wide):
  # Every scan kind (DC first and refinement, interleaved with dummy blocks; AC first and
  # refinement at several point transforms), end-of-band runs of one block (Annex K tables) or
  # of many, and refinements whose correction bits fill libjpeg's buffer ("deep": Al up to 6,
  # dense coefficients).
  rng = np.random.default_rng(seed)
  coefficients = random_coefficients(rng, height, width, FACTORS[sampling], density=density)
  if wide:                                  # int32 coefficients take the loop's other variant
    coefficients = dataclasses.replace(coefficients, components=tuple(
        np.asarray(c, np.int32) for c in coefficients.components))
  n = len(coefficients.components)
  if script == "libjpeg":
    progressive = True
  else:
    progressive = True
    every = tuple(range(n))
    deep = 6 if script == "deep" else 2
    scans_ = [scans.Scan(every, 0, 0, 0, 1)]
    for c in range(n):
      scans_ += [scans.Scan((c,), 1, 5, 0, deep), scans.Scan((c,), 6, 63, 0, 1)]
    for al in range(deep, 0, -1):
      scans_ += [scans.Scan((c,), 1, 5, al, al - 1) for c in range(n)]
    scans_ += [scans.Scan((c,), 6, 63, 1, 0) for c in range(n)]
    scans_.append(scans.Scan(every, 0, 0, 1, 0))
    monkeypatch.setattr("djpeg.exact.scripts.choose", lambda *args: tuple(scans_))
    progressive = "optimize"
  if not optimize and progressive == "optimize":
    optimize = True                                   # optimized scans need optimal tables
  fast = djpeg.dumps(coefficients, optimize=optimize, progressive=progressive)
  with monkeypatch.context() as m:
    m.setattr(progressive_compiled, "scan", lambda *args, **kwargs: None)
    reference = djpeg.dumps(coefficients, optimize=optimize, progressive=progressive)
  assert fast == reference


def test_progressive_values_beyond_the_limits_are_named_as_before(monkeypatch):
  # A DC difference of 4000 at Al = 0 (libjpeg's script shifts the DC by one, which keeps any
  # 8-bit difference within 11 bits): the compiled coder leaves it to the array coder, whose
  # error names the block.
  rng = np.random.default_rng(0)
  coefficients = random_coefficients(rng, 16, 24, FACTORS["gray"], density=0.1)
  y = np.array(coefficients.components[0], np.int32)
  y[0, 0, 0, 0], y[0, 1, 0, 0] = -2000, 2000
  bad = dataclasses.replace(coefficients, components=(y,))
  monkeypatch.setattr("djpeg.exact.scripts.choose", lambda *args: (
      scans.Scan((0,), 0, 0, 0, 0), scans.Scan((0,), 1, 63, 0, 0)))
  with pytest.raises(ValueError, match="block.*DC difference 4000"):
    djpeg.dumps(bad, progressive="optimize")


@pytest.mark.parametrize("optimize", [True, False])
def test_compiled_progressive_coder_flushes_a_full_correction_buffer(monkeypatch, optimize):
  # Blocks whose every AC coefficient was nonzero a bit earlier and has no newly-nonzero one
  # (|c| = 2 or 3 at Al = 0): each sends 63 correction bits into the end-of-band run, which
  # libjpeg flushes before its buffer of 1000 bits could overflow.
  rng = np.random.default_rng(3)
  coefficients = random_coefficients(rng, 64, 256, FACTORS["gray"], density=0.1)
  y = rng.choice([-3, -2, 2, 3], np.shape(coefficients.components[0])).astype(np.int16)
  y[:, :, 0, 0] = 0
  full = dataclasses.replace(coefficients, components=(y,))
  fast = djpeg.dumps(full, optimize=optimize, progressive=True)
  with monkeypatch.context() as m:
    m.setattr(progressive_compiled, "scan", lambda *args, **kwargs: None)
    assert fast == djpeg.dumps(full, optimize=optimize, progressive=True)
