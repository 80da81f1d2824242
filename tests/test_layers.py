"""The layering contract (import-linter, pyproject.toml) holds, and would catch a reversed import.

import-linter reads packages from the file system, and the repository keeps `models/` and
`train/` at the top level while they install as `djpeg.models` and `djpeg.train`; so the test
lays the sources out as they install (a copy in a temporary folder) and lints that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which(
    "lint-imports")

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed")


def installed_layout(folder) -> str:
  """Copies the package as it installs: djpeg/, with models/ and train/ inside it."""
  target = os.path.join(folder, "djpeg")
  ignore = shutil.ignore_patterns("__pycache__", "data")
  shutil.copytree(os.path.join(ROOT, "djpeg"), target, ignore=ignore)
  for name in ("models", "train"):
    shutil.copytree(os.path.join(ROOT, name), os.path.join(target, name), ignore=ignore)
  shutil.copy(os.path.join(ROOT, "pyproject.toml"), folder)
  return str(folder)


def lint(folder: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=folder, NO_COLOR="1")
  return subprocess.run([LINT, os.path.join(folder, "pyproject.toml"), "--no-cache"],
                        cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_holds(tmp_path):
  result = lint(installed_layout(tmp_path))
  assert result.returncode == 0, result.stdout + result.stderr
  assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    # The numpy backend reaching up into the JAX codec.
    ("exact/sizes.py", "from djpeg import codec", "layers import only downwards"),
    # The library importing the training code.
    ("rate.py", "import djpeg.train.loop", "never imports the models or the training code"),
])
def test_a_reversed_import_breaks_the_contract(tmp_path, module, line, contract):
  folder = installed_layout(tmp_path)
  path = os.path.join(folder, "djpeg", module)
  with open(path) as f:
    source = f.read()
  with open(path, "w") as f:
    f.write(source.replace("from __future__ import annotations\n",
                           f"from __future__ import annotations\n\n{line}\n", 1))
  result = lint(folder)
  assert result.returncode != 0
  assert contract in result.stdout and "BROKEN" in result.stdout, result.stdout
