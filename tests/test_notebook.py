"""docs/walkthrough.ipynb, executed top to bottom on a fresh kernel (nbclient), as a reader runs it.

The notebook is committed without outputs; this test runs every cell and fails on the first error.
The kernel imports this checkout's package: PYTHONPATH is set to the repository root in the kernel's
environment (the venv's editable install may point at another checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat (test extra) not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient (test extra) not installed")
pytest.importorskip("ipykernel", reason="ipykernel (test extra) not installed")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "walkthrough.ipynb"


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_committed_without_outputs_and_hides_no_failure():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert len(cells) >= 15 and all(not c.outputs and c.execution_count is None for c in cells)
    assert not any("except" in c.source for c in cells)  # a failing step must stop the notebook


def test_runs_top_to_bottom_on_a_fresh_kernel(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # which package the kernel imported, asked after the last cell
    nb.cells.append(nbformat.v4.new_code_cell("import sdzero_mlx\nprint(sdzero_mlx.__file__)"))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "PYTHONPATH": path})  # raises CellExecutionError on any cell's error

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    assert text(nb.cells[-1]).strip() == str(ROOT / "sdzero_mlx" / "__init__.py")
    pictures = sum("image/png" in o.get("data", {}) for c in code_cells(nb) for o in c.outputs)
    assert pictures >= 4  # the two token strips, the training curves, accuracy against generations
    printed = "".join(text(c) for c in code_cells(nb))
    for line in ("student loss:", "step loss", "correction rate", "| SD-Zero |", "| RFT |", "chain", "notebook ran in"):
        assert line in printed
