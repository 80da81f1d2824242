"""train.parallel: the step sharded over 4 (forced CPU) devices equals the single-device step.

XLA_FLAGS must be set before jax starts, so the check runs in a fresh process.
"""

import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def test_sharded_step_equals_single_device_step():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, os.path.join(HERE, "parallel_check.py")], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["devices"] == 4 and result["shards"] == [1, 4]
  single, sharded = result["losses"]
  # Same loss and updates; only the order of the cross-device sums differs (float rounding).
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
  assert result["param_diff"] < 1e-5
  assert "does not divide among 4 devices" in result["bad_batch_error"]
