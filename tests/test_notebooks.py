"""The notebooks run from top to bottom without errors."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, "notebooks")


@pytest.mark.parametrize("name", ["quickstart.ipynb", "learned_tables.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
  # Reduced size for CI: few training steps, and the bundled samples as training data.
  monkeypatch.setenv("DJPEG_NOTEBOOK_STEPS", "20")
  data = tmp_path / "data"
  data.mkdir()
  from PIL import Image
  from djpeg import samples
  for n in ("limes", "houses", "castle"):
    pixels = samples.load(n, uint8=True)
    for i in range(2):
      Image.fromarray(pixels[:, 96 * i:96 * i + 96]).save(data / f"{n}{i}.png")
  monkeypatch.setenv("DJPEG_NOTEBOOK_DATA", str(data))
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": REPO}}).execute()
  errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
