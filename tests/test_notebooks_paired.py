"""Notebooks are committed as paired .ipynb + jupytext .py, in sync and without outputs."""

import jupytext
import nbformat
import pytest

from taulib.study.run import NOTEBOOKS_DIR

PAIRS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def test_there_are_numbered_notebooks():
    assert [p.stem[:2] for p in PAIRS][:2] == ["01", "02"]


@pytest.mark.parametrize("script", PAIRS, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(script):
    notebook_path = script.with_suffix(".ipynb")
    assert notebook_path.is_file(), f"{notebook_path.name} missing: run `jupytext --sync {script.name}`"
    from_script = jupytext.read(script)
    notebook = nbformat.read(notebook_path, as_version=4)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [(c.cell_type, c.source) for c in from_script.cells], (
        f"{notebook_path.name} and {script.name} differ: run `jupytext --sync notebooks/{script.name}`"
    )
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook_path.name} has stored outputs"
    parameter_cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameter_cells) == 1, "exactly one cell tagged 'parameters' for papermill"
