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


@pytest.mark.parametrize("script", PAIRS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_the_parameters_cell(script, caplog):
    """papermill parses the parameters cell line by line; a line it cannot read (an '=' in a comment) logs a warning for
    every run and drops the parameter from those it knows, so it reports a passed value as unknown."""
    from papermill.translators import PythonTranslator

    notebook = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    with caplog.at_level("WARNING", logger="papermill"):
        found = [parameter.name for parameter in PythonTranslator.inspect(cell)]
    assert not [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and not line.lstrip().startswith("#")]
    assert found == assigned
