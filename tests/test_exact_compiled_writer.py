"""The compiled sequential coder (`djpeg.exact.sequential_compiled`, the writer's fast path)
against the array-pass coder it stands in for (`djpeg.exact.sequential`), which the other exact
tests hold to libjpeg-turbo: the same bytes for any coefficients, and the same errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import djpeg
from djpeg.exact import sequential_compiled
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
